"""Command line: ``train``, ``evaluate``, ``calibrate`` and ``publish``.

``add_parser(subparsers)`` mounts the commands on another argparse parser (the ``netwarden``
CLI does this); ``main`` is the stand-alone ``netwarden-train`` entry point.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _train(args: argparse.Namespace) -> int:
    from . import config, run

    cfg = config.load(args.config)
    if args.runs_dir:
        cfg = config.from_dict({**cfg.to_dict(), "runs_dir": str(args.runs_dir)})
    run_dir = run.run(cfg, config_text=args.config.read_text())
    print(run_dir)
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    if args.replay:
        from .replay_eval import replay_alerts

        rules = [p for p in args.data if p.suffix == ".toml"]
        print(json.dumps(replay_alerts(args.model, rules, gate=not args.no_gate), indent=1))
        return 0
    from .assess import assess

    print(json.dumps(assess(args.model, list(args.data)), indent=1))
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from .calibrate import calibrate

    doc = calibrate(
        args.model, benign=list(args.benign), max_alert_rate=args.max_alert_rate, out=args.out
    )
    print(json.dumps(doc, indent=1))
    return 0


def _publish(args: argparse.Namespace) -> int:
    """Copy a finished run's model (model.onnx, model.score.onnx, manifest.json) into a model
    folder.  A run exported before score graphs existed gets one derived (and checked) in the
    destination, so every published model has it."""
    from . import export, manifest

    src = args.run / "model"
    if not (args.run / "DONE").is_file():
        print(f"{args.run}: run has no DONE marker", file=sys.stderr)
        return 2
    m = manifest.read(src)  # checks both sha256 before anything is copied
    args.dest.mkdir(parents=True, exist_ok=True)
    score = m.get("score_model_file")
    for name in (m["model_file"], "manifest.json", *([score] if score else [])):
        shutil.copy2(src / name, args.dest / name)
    if not score:
        log.info("%s: no score graph in the run; deriving %s", src, export.SCORE_MODEL_FILE)
        export.write_score_graph(args.dest)
    manifest.read(args.dest)
    print(args.dest)
    return 0


def add_parser(subparsers: Any) -> None:
    """Register train / evaluate / calibrate / publish on an argparse subparsers object."""
    p = subparsers.add_parser("train", help="train a model from a TOML experiment file")
    p.add_argument("config", type=Path, help="experiment TOML (see training/configs/)")
    p.add_argument("--runs-dir", type=Path, default=None, help="override runs_dir")
    p.set_defaults(func=_train)

    p = subparsers.add_parser("evaluate", help="metrics of a model on CSVs or labelled captures")
    p.add_argument("--model", type=Path, required=True, help="model folder (manifest.json)")
    p.add_argument(
        "--data",
        type=Path,
        nargs="+",
        required=True,
        help="flow CSV files/folders, or label-rule TOML files naming captures",
    )
    p.add_argument("--replay", action="store_true",
                   help="label-rule files only: count what the daemon's alert path (alert "
                        "gate included) alerts per capture and family, as `netwarden replay`")
    p.add_argument("--no-gate", action="store_true", help="with --replay: the alert gate off")
    p.set_defaults(func=_evaluate)

    p = subparsers.add_parser("calibrate", help="fit the alert threshold on benign traffic")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--benign", type=Path, nargs="+", required=True, help="benign captures")
    p.add_argument(
        "--max-alert-rate",
        type=float,
        required=True,
        help="target share of benign flows that may alert, e.g. 0.001",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="where to write threshold.json (default: inside the model folder)",
    )
    p.set_defaults(func=_calibrate)

    p = subparsers.add_parser("publish", help="copy a finished run's model into a model folder")
    p.add_argument("run", type=Path)
    p.add_argument("dest", type=Path)
    p.set_defaults(func=_publish)


def main(argv: list[str] | None = None) -> int:
    """``netwarden-train`` entry point."""
    parser = argparse.ArgumentParser(prog="netwarden-train", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    add_parser(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args))
    except (ValueError, FileNotFoundError) as e:
        print(f"netwarden-train: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
