"""The ``replay``, ``run``, ``check-config`` and ``model info`` subcommands.

Called by :mod:`netwarden.cli` with parsed arguments; each returns an exit code and raises
user errors (:class:`~netwarden.exitcodes.UserError`, ``CaptureError``, ``ModelError``) for the
CLI to turn into one log line.  Results go to stdout, summaries to stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import logging
import os
import signal
import sys
import time
import tomllib
from pathlib import Path
from typing import Any

from .app import Hooks
from .app_build import build_pipeline
from .app_sources import PcapSource, capture_paths
from .app_summary import Summary
from .config import Config, ConfigError, load_config
from .exitcodes import OK
from .logsetup import setup_logging
from .metrics import Metrics

log = logging.getLogger(__name__)


def apply_logging(args: argparse.Namespace, cfg: Config) -> None:
    """Use the config's [logging] unless the command line set the level or format."""
    if cfg.path is None:
        return
    setup_logging(getattr(args, "log_level", cfg.logging.level),
                  getattr(args, "log_format", cfg.logging.format))


# Replay is throughput-bound (a file, nobody waiting on an alert): bigger batches amortise the
# per-batch cost of scoring, the alert gate and alert building, unless the config file sets
# [batching] max_batch itself.  Measured 2026-12-04 (2 shared cores, pipeline timer, 2 runs
# each): bench-1m.pcap (floods: 582k flows) 2.07 s at 1024, 1.90 at 4096, 1.78 at 8192;
# bench-benign-1m.pcap (70k flows, all distinct) 0.97-1.23 s at 1024, 0.84 at 4096 and 8192.
REPLAY_MAX_BATCH = 4096


def replay_config(args: argparse.Namespace) -> Config:
    """The config a replay runs with: the file (if any), then the flags; ``max_batch`` is
    :data:`REPLAY_MAX_BATCH` unless the file sets it."""
    cfg = load_config(args.config)
    apply_logging(args, cfg)
    sinks = [args.alerts_out] if args.alerts_out else (list(cfg.alerts.sinks) if args.config
                                                       else ["-"])
    cfg = cfg.with_overrides(alert_sinks=sinks, flow_log=args.flows_out, model_dir=args.model,
                             threshold=args.threshold, threshold_file=args.threshold_file,
                             providers=args.providers)
    if cfg.path is not None and "max_batch" in _toml_table(cfg.path, "batching"):
        return cfg
    return dataclasses.replace(cfg, batching=dataclasses.replace(cfg.batching,
                                                                 max_batch=REPLAY_MAX_BATCH))


def _toml_table(path: Path, name: str) -> dict[str, Any]:
    """The keys the (already validated) config file itself sets in one table."""
    table = tomllib.loads(path.read_text(encoding="utf-8")).get(name, {})
    return table if isinstance(table, dict) else {}


def cmd_replay(args: argparse.Namespace) -> int:
    """``netwarden replay PCAP...``: alerts as JSON lines, summary on stderr."""
    cfg = replay_config(args)
    if "-" in cfg.alerts.sinks or cfg.alerts.flow_log == "-":
        # `netwarden replay x.pcap | head`: end quietly when the reader leaves, like cat does
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    metrics = Metrics()
    paths = [p for pattern in args.pcaps for p in capture_paths(pattern)]
    source = PcapSource(paths, metrics=metrics)
    server = _serve_metrics(metrics, "127.0.0.1", args.metrics_port) if args.metrics_port else None
    try:
        with build_pipeline(cfg, metrics, source=source, realtime=args.realtime) as pipe:
            pipe.install_signal_handlers()
            freeze_startup_heap()
            summary = pipe.run()
    finally:
        if server is not None:
            server.close()
    sys.stdout.flush()
    sys.stderr.write(format_summary(summary))
    if args.summary_json:
        Path(args.summary_json).write_text(json.dumps(summary.to_dict(), indent=2) + "\n")
    return OK


def freeze_startup_heap() -> None:
    """Take what start-up built (modules, numba's loaded kernels, the model) out of the
    garbage collector's scans.

    It lives as long as the process, yet every full collection walked it again: tens of
    thousands of objects that the pipeline's short-lived ones (alert documents) made the
    collector visit, and once more at exit.  Called by ``replay`` and ``run`` once the
    pipeline is built, never by library code.
    """
    gc.freeze()


def format_summary(s: Summary) -> str:
    """The human summary of a run (stderr of ``replay``).

    >>> print(format_summary(Summary(packets=10, flows=2, elapsed_s=0.5)), end="")
    packets 10 (0 bytes), flows 2, alerts 0 in 0.50 s (20 packets/s)
    """
    rate = s.packets / s.elapsed_s if s.elapsed_s > 0 else 0.0
    lines = [f"packets {s.packets} ({s.bytes} bytes), flows {s.flows}, alerts {s.alerts} in "
             f"{s.elapsed_s:.2f} s ({rate:,.0f} packets/s)"]
    if s.alerts_by_label:
        lines.append("alerts by label: " + ", ".join(
            f"{k} {v}" for k, v in s.alerts_by_label.most_common()))
    if s.flows_alerted_by_label:
        lines.append("flows alerted (alone or in a summary) by label: " + ", ".join(
            f"{k} {v}" for k, v in s.flows_alerted_by_label.most_common()))
    if s.skipped:
        lines.append("frames skipped: " + ", ".join(
            f"{k} {v}" for k, v in s.skipped.most_common()))
    if s.errors:
        lines.append("errors: " + ", ".join(f"{k} {v}" for k, v in s.errors.most_common()))
    return "\n".join(lines) + "\n"


def _serve_metrics(metrics: Metrics, host: str, port: int, health: Any = None) -> Any:
    from .service.http import serve_status

    try:
        return serve_status(metrics.registry, health, host=host, port=port)
    except OSError as e:
        raise ConfigError(f"metrics: {e.strerror or e}") from None


# ---------------------------------------------------------------------------------------------
# run


def cmd_run(args: argparse.Namespace) -> int:
    """``netwarden run``: the long-running daemon (SIGTERM/SIGINT stop, SIGHUP reloads)."""
    from .service.health import Watchdog, health_from_settings, loop_tick
    from .service.notify import Notifier

    def current_config() -> Config:  # the file as it is now, with the command line on top
        return load_config(args.config).with_overrides(
            source_url=args.source, alert_sinks=args.alerts, model_dir=args.model)

    cfg = load_config(args.config)
    apply_logging(args, cfg)
    cfg = current_config()
    metrics = Metrics()
    health = health_from_settings(cfg.service)
    notifier = Notifier.from_env(os.environ)
    hooks = Hooks(on_tick=[loop_tick(health, Watchdog(notifier, health), metrics)])
    pipe = build_pipeline(cfg, metrics, realtime=args.realtime, hooks=hooks,
                          reread=current_config if args.config else None)

    def model_loaded(model: Any) -> None:
        health.set_model(f"{model.manifest.name} {model.manifest.version}", loaded=True)

    hooks.on_reload.append(model_loaded)
    _notify_service_state(hooks, notifier, pipe.s.source.name)
    model_loaded(pipe.s.model)
    health.set_source(pipe.s.source.name, connected=True)
    health.beat(time.time())
    server = None
    with pipe:
        if cfg.metrics.port:
            server = _serve_metrics(metrics, cfg.metrics.listen_address, cfg.metrics.port, health)
        health.export_ready(metrics, time.time)
        pipe.install_signal_handlers()
        notifier.ready(f"reading {pipe.s.source.name}")
        freeze_startup_heap()
        try:
            summary = pipe.run()
        finally:
            pipe.stop()  # the source ended: "stopping" now (after SIGTERM it was sent already)
            if server is not None:
                server.close()
    log.info("stopped: %s", format_summary(summary).strip().replace("\n", "; "))
    return OK


def _notify_service_state(hooks: Hooks, notifier: Any, source_name: str) -> None:
    """sd_notify around signals: RELOADING=1 (with MONOTONIC_USEC) when a SIGHUP reload
    starts, READY=1 when it ends (new model or the old one kept), STOPPING=1 as soon as a stop
    is requested (before the final flush, which may take a while)."""
    hooks.on_reload_start.append(lambda: notifier.reloading())
    hooks.on_reload_done.append(
        lambda swapped: notifier.ready(f"reading {source_name}" + ("" if swapped else
                                       " (reload failed: kept the running model)")))
    hooks.on_stop.append(lambda: notifier.stopping())


# ---------------------------------------------------------------------------------------------
# check-config, model info


def cmd_check_config(args: argparse.Namespace) -> int:
    """``netwarden check-config FILE``: "ok" and every resolved key, or the error."""
    path = args.config or args.file
    if path is None:
        raise ConfigError("check-config: give the config file (check-config FILE)")
    cfg = load_config(path)
    lines = [f"ok: {path}"]
    for section, values in cfg.to_dict().items():
        for key, value in values.items():
            shown = value
            if value is None:
                shown = "(the model's)" if section in ("flows", "model") else "(unset)"
            lines.append(f"{section}.{key} = {json.dumps(shown, default=str)}")
    if cfg.source.url is None:
        lines.append("note: no source.url; 'netwarden run' then needs --source URL")
    sys.stdout.write("\n".join(lines) + "\n")
    return OK


def _compact(v: Any) -> str:
    """A metric value on one line: numbers to 4 significant digits, dicts as k=v pairs.

    >>> _compact({"rows": 6951, "f1": 0.97650081})
    'rows=6951 f1=0.9765'
    """
    if isinstance(v, dict):
        return " ".join(f"{k}={_compact(x)}" for k, x in v.items())
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def cmd_model_info(args: argparse.Namespace) -> int:
    """``netwarden model info DIR``: the manifest summary (``--json``: the whole manifest)."""
    from .scoring import load_model

    model = load_model(Path(args.dir), providers="cpu")
    m = model.manifest
    if args.json:
        doc = m.to_dict()
        doc["threshold_in_force"] = {"value": model.threshold, "source": model.threshold_source}
        sys.stdout.write(json.dumps(doc, indent=2, default=str) + "\n")
        return OK
    classes = ", ".join(f"{c} (benign)" if c == m.benign_class else c for c in m.classes)
    flow = " ".join(f"{k}={v:g}" for k, v in m.flow.to_dict().items())
    rows = [
        ("model", f"{m.name} {m.version}"),
        ("directory", str(args.dir)),
        ("file", f"{m.model_file} (sha256 {m.model_sha256[:16]}...)"),
        ("schema", f"{m.feature_schema.id} (hash {m.feature_schema.hash[:16]}...): matches"),
        ("classes", classes),
        ("threshold", f"{model.threshold:.6g} ({model.threshold_source})"),
        ("flow", flow),
        ("explains", "attributions" if m.outputs.attributions else "benign statistics"),
    ]
    rows += [(f"metric {k}", _compact(v)) for k, v in sorted(m.metrics.items())]
    sys.stdout.write("".join(f"{k:<12} {v}\n" for k, v in rows))
    return OK
