"""One training run, top to bottom: config in, seeded run, metrics and model out.

Writes ``runs/<name>-<UTC timestamp>/``: ``config.json`` (resolved), ``data_summary.json``,
``metrics.json``, ``report.md`` with PNG plots, ``model/`` (model.onnx, model.score.onnx --
the same graph pruned to the probabilities output -- manifest.json, and the INT8 variant) and
``DONE`` when everything finished.
"""

from __future__ import annotations

import json
import logging
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from netwarden.flows.params import FlowParams

from . import data as data_mod
from . import export, manifest, splits
from .assess import assess, per_capture
from .augment import time_scaled
from .calibrate import threshold_for_rate
from .config import RunConfig
from .evaluation import evaluate, pr_curve, roc_curve
from .model import Classifier, Preprocess, fit_scaler
from .trainer import History, fit, predict_proba

log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True, warn_only=True)


def train_on_split(
    cfg: RunConfig, bundle: data_mod.DataBundle, split: splits.Split
) -> tuple[Classifier, History, dict[str, Any]]:
    """Fit the scaler on the training rows, train, and evaluate on the test rows."""
    seed_everything(cfg.seed)
    t, y = bundle.table, bundle.y
    tr = _repeat_captures(t, split.train, cfg.data.capture_repeat)
    x = t.x.astype(np.float32)
    mean, std = fit_scaler(t.x[tr])
    x_tr, y_tr = x[tr], y[tr]
    cells = weight_cells(t.take(tr), width=cfg.train.cell_name_width)
    if cfg.augment.time_scale > 0 and cfg.augment.time_scale_copies > 0:
        x_tr, y_tr, cells = _time_augment(cfg, t.x[tr], (x_tr, y_tr, cells), t.origin[tr])
    model = Classifier(
        Preprocess(mean, std, cfg.model.clip_z), x.shape[1], len(bundle.classes), cfg.model
    )
    hist = fit(
        model,
        (x_tr, y_tr, x[split.val], y[split.val]),
        cells=cells,
        n_classes=len(bundle.classes),
        cfg=cfg.train,
        aug=cfg.augment,
        seed=cfg.seed,
    )
    prob = predict_proba(model, x[split.test], torch.device("cpu"))
    metrics = evaluate_by_origin(
        y[split.test], prob, t.origin[split.test], bundle.classes, threshold=cfg.export.threshold
    )
    metrics["curves"] = curves(1.0 - prob[:, 0], y[split.test] != 0)
    cap = t.origin[split.test] == "capture"
    if cap.any():
        metrics["per_capture"] = per_capture(
            t.take(split.test[cap]), 1.0 - prob[cap, 0], cfg.export.threshold
        )
    return model, hist, metrics


def _time_augment(
    cfg: RunConfig,
    raw: np.ndarray,
    base: tuple[np.ndarray, np.ndarray, np.ndarray],
    origin: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Append time-scaled copies of the capture rows (same label and weighting cell)."""
    rng = np.random.default_rng(cfg.seed + 1)
    cap = origin == "capture"
    xs, ys, cs = [base[0]], [base[1]], [base[2]]
    for _ in range(cfg.augment.time_scale_copies):
        xs.append(time_scaled(raw[cap], cfg.augment.time_scale, rng).astype(np.float32))
        ys.append(base[1][cap])
        cs.append(base[2][cap])
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(cs)


def weight_cells(t: Any, width: int = 0) -> np.ndarray:
    """The loss-weighting cell of each row: "family|csv", or "family|capture|file" (every
    capture is its own network and gets its own share, however many flows it has).

    ``width`` > 0 cuts every name to that many characters: models up to 0.4.0 were trained
    with names cut to 20 by a fixed-width array (``train.cell_name_width = 20`` reproduces
    them); 0 keeps them whole.
    """
    base = np.char.add(np.char.add(t.family, "|"), t.origin)
    full = np.char.add(np.char.add(base, "|"), t.source)  # its own width: nothing cut short
    if width > 0:
        base, full = base.astype(f"<U{width}"), full.astype(f"<U{width}")
    return np.where(t.origin == "capture", full, base)


def curves(score: np.ndarray, is_attack: np.ndarray, points: int = 200) -> dict[str, Any]:
    """ROC and PR curves thinned to about ``points`` points each (for the report's plots)."""
    if is_attack.all() or not is_attack.any():
        return {}
    fpr, tpr, _ = roc_curve(score, is_attack)
    rec, prec = pr_curve(score, is_attack)
    k1 = np.unique(np.linspace(0, len(fpr) - 1, points).astype(int))
    k2 = np.unique(np.linspace(0, len(rec) - 1, points).astype(int))
    return {
        "roc": {"fpr": fpr[k1].tolist(), "tpr": tpr[k1].tolist()},
        "pr": {"recall": rec[k2].tolist(), "precision": prec[k2].tolist()},
    }


def evaluate_by_origin(
    y: np.ndarray, prob: np.ndarray, origin: np.ndarray, classes: list[str], *, threshold: float
) -> dict[str, Any]:
    out: dict[str, Any] = {"all": evaluate(y, prob, classes, benign=0, threshold=threshold)}
    for o in np.unique(origin).tolist():
        m = origin == o
        out[o] = evaluate(y[m], prob[m], classes, benign=0, threshold=threshold)
    return out


def _repeat_captures(t: Any, idx: np.ndarray, repeat: int) -> np.ndarray:
    if repeat <= 1:
        return idx
    cap = idx[t.origin[idx] == "capture"]
    return np.concatenate([idx, *([cap] * (repeat - 1))])


def benign_reference(model: Classifier, x_benign: np.ndarray) -> np.ndarray:
    """Median of the benign training rows in the model's z-space (attribution baseline)."""
    with torch.no_grad():
        z = model.pre(torch.from_numpy(x_benign.astype(np.float32))).numpy()
    return np.median(z, axis=0).astype(np.float32)


def export_model(
    cfg: RunConfig,
    model: Classifier,
    bundle: data_mod.DataBundle,
    split: splits.Split,
    out_dir: Path,
    metrics: dict[str, Any],
) -> dict[str, Any]:
    """ONNX + parity + INT8 variant + score graph + manifest into ``out_dir``; returns the
    export facts."""
    out_dir.mkdir(parents=True, exist_ok=True)
    t = bundle.table
    benign_tr = t.x[split.train][bundle.y[split.train] == 0]
    z_ref = benign_reference(model, benign_tr)
    proto = export.to_onnx(
        model, benign=0, z_ref=z_ref, opset=cfg.export.opset, attributions=cfg.export.attributions
    )
    fp32 = out_dir / "model.fp32.onnx"
    export.save(proto, fp32)
    x_test = t.x[split.test].astype(np.float32)
    sess = export.session(fp32)
    facts: dict[str, Any] = {"opset": cfg.export.opset}
    facts["parity"] = export.parity(
        model, sess, x_test[:4096], benign=0, z_ref=z_ref, tol=cfg.export.parity_tol
    )
    chosen = fp32
    if cfg.export.quantize:
        chosen, facts["int8"] = _quantised(cfg, bundle, split, fp32, sess)
    final = out_dir / "model.onnx"
    final.write_bytes(chosen.read_bytes())
    facts["shipped"] = "int8" if chosen != fp32 else "fp32"
    # the daemon scores every flow with the score graph (no attribution pass: ~half the
    # time) and runs the full graph only for alerts; same nodes, so equal probabilities
    facts["score_graph"] = export.derive_score_graph(
        final, out_dir / export.SCORE_MODEL_FILE, x_test[:4096]
    )
    facts["threshold"] = pick_threshold(cfg, bundle, split, model)
    m = manifest.build(
        name=cfg.name,
        version=cfg.version,
        model_file="model.onnx",
        score_model_file=export.SCORE_MODEL_FILE,
        model_dir=out_dir,
        classes=bundle.classes,
        threshold=facts["threshold"],
        attributions=cfg.export.attributions,
        stats=manifest.benign_stats(benign_tr),
        metrics=_headline(metrics),
        flow=FlowParams(),
        training={
            "config": cfg.to_dict(),
            "data_files_sha256": bundle.files,
            "rows_per_class": bundle.summary()["rows_per_class"],
            "export": facts,
            "trained_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )
    manifest.write(m, out_dir)
    return facts


def pick_threshold(
    cfg: RunConfig, bundle: data_mod.DataBundle, split: splits.Split, model: Classifier
) -> float:
    """The configured threshold, raised to meet ``threshold_max_fpr`` on validation benign."""
    t = cfg.export.threshold
    if cfg.export.threshold_max_fpr <= 0:
        return t
    val = split.val[bundle.y[split.val] == 0]
    prob = predict_proba(model, bundle.table.x[val].astype(np.float32), torch.device("cpu"))
    fitted = threshold_for_rate(1.0 - prob[:, 0].astype(np.float64), cfg.export.threshold_max_fpr)
    return float(min(max(t, fitted), 0.999))


BATCH_TOLERANCE = export.BATCH_TOLERANCE  # max |P(batch) - P(row alone)| a shipped model may show


def _quantised(
    cfg: RunConfig, bundle: data_mod.DataBundle, split: splits.Split, fp32: Path, sess: Any
) -> tuple[Path, dict[str, Any]]:
    q = fp32.with_name("model.int8.onnx")
    export.quantize(fp32, q)
    qs = export.session(q)
    x = bundle.table.x[split.test].astype(np.float32)
    y = bundle.y[split.test]
    p32, p8 = export.run_onnx(sess, x)[0], export.run_onnx(qs, x)[0]
    f32 = evaluate(y, p32, bundle.classes, benign=0, threshold=cfg.export.threshold)
    f8 = evaluate(y, p8, bundle.classes, benign=0, threshold=cfg.export.threshold)
    bench = x[np.arange(4096) % len(x)]
    info = {
        "macro_f1_fp32": f32["macro_f1"],
        "macro_f1_int8": f8["macro_f1"],
        "macro_f1_delta": f32["macro_f1"] - f8["macro_f1"],
        "max_abs_prob_diff": float(np.abs(p32 - p8).max()),
        "rows_per_s_fp32": export.speed(sess, bench),
        "rows_per_s_int8": export.speed(qs, bench),
        "bytes_fp32": fp32.stat().st_size,
        "bytes_int8": q.stat().st_size,
    }
    info["speedup"] = info["rows_per_s_int8"] / info["rows_per_s_fp32"]
    info["batch_dependence_fp32"] = export.batch_dependence(sess, x[:256])
    info["batch_dependence_int8"] = export.batch_dependence(qs, x[:256])
    # INT8 ships only when it costs < 0.005 macro-F1, is clearly faster (>= 1.2x; the timing
    # on a shared 2-core box moves by about 10 %) and scores a flow the same whatever batch it
    # is in.  Dynamic quantisation fails the last test: DynamicQuantizeLinear picks one scale
    # per batch, so a flow's score moved by up to 0.14 between batches of 256 and 4096 --
    # replay output would depend on batching and live scores on traffic timing.
    ok = (
        info["macro_f1_delta"] < 0.005
        and info["speedup"] >= 1.2
        and info["batch_dependence_int8"] <= BATCH_TOLERANCE
    )
    return (q if ok else fp32), info


def _headline(metrics: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for origin, m in metrics.get("test_stratified", {}).items():
        if origin in ("per_capture", "curves"):
            continue
        b = m["binary"]
        out[f"{origin}_test"] = {
            "rows": m["rows"],
            "accuracy": m["accuracy"],
            "macro_f1": m["macro_f1"],
            "roc_auc": b["roc_auc"],
            "pr_auc": b["pr_auc"],
            "detection_at_fpr_1pct": (b["at_fpr_1pct"] or {}).get("detection_rate"),
        }
    return out


def run(cfg: RunConfig, *, config_text: str = "") -> Path:
    """Execute one run; returns the run folder."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    run_dir = Path(cfg.runs_dir) / f"{cfg.name}-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=False)
    (run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=1))
    if config_text:
        (run_dir / "config.toml").write_text(config_text)
    t0 = time.perf_counter()
    bundle = data_mod.load(cfg.data)
    (run_dir / "data_summary.json").write_text(json.dumps(bundle.summary(), indent=1))
    metrics: dict[str, Any] = {}
    kinds = [cfg.data.split] + [k for k in ("stratified", "grouped") if k != cfg.data.split]
    shipped = None
    for kind in kinds:
        sp = splits.make(
            bundle.table, kind=kind, val=cfg.data.val, test=cfg.data.test, seed=cfg.seed
        )
        if kind == "stratified" and cfg.data.captures_all_train:
            sp = splits.origin_to_train(sp, bundle.table.origin, "capture")
        model, hist, m = train_on_split(cfg, bundle, sp)
        metrics[f"test_{kind}"] = m
        metrics[f"history_{kind}"] = {
            "best_epoch": hist.best_epoch,
            "best_val_macro_f1": hist.best_val_macro_f1,
            "augmented_rows": hist.augmented_rows,
            "epochs": hist.epochs,
        }
        if shipped is None:
            shipped = (model, sp)
    assert shipped is not None
    metrics["export"] = export_model(
        cfg, shipped[0], bundle, shipped[1], run_dir / "model", metrics
    )
    if cfg.data.captures:
        # every flow of every labelled capture, scored by the exported model through the
        # daemon's loader: in-sample for the captures that are partly in the training split
        metrics["replay"] = assess(run_dir / "model", [Path(cfg.data.captures)])
    metrics["seconds"] = time.perf_counter() - t0
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=1))
    from .report import write_report

    write_report(run_dir, cfg, bundle.summary(), metrics)
    (run_dir / "DONE").write_text(stamp + "\n")
    log.info("run finished in %.1f s: %s", metrics["seconds"], run_dir)
    return run_dir
