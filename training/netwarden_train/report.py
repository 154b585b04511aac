"""The run's ``report.md`` and its plots (confusion matrix, ROC and PR curves)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .config import RunConfig
from .png import canvas, line, text, write_png


def confusion_png(path: Path, cm: list[list[int]]) -> None:
    """Row-normalised confusion heat map; each cell shows its count."""
    a = np.asarray(cm, float)
    n = len(a)
    cell = 64
    img = canvas(n * cell + 1, n * cell + 1)
    frac = a / np.maximum(a.sum(axis=1, keepdims=True), 1)
    for i in range(n):
        for j in range(n):
            v = frac[i, j]
            img[i * cell : (i + 1) * cell, j * cell : (j + 1) * cell] = (
                int(255 * (1 - v)),
                int(255 * (1 - 0.6 * v)),
                255,
            )
            colour = (255, 255, 255) if v > 0.6 else (0, 0, 0)
            text(img, j * cell + 4, i * cell + 26, str(int(a[i, j]))[:7], colour)
    for k in range(n + 1):
        line(img, 0, k * cell, n * cell, k * cell, (128, 128, 128))
        line(img, k * cell, 0, k * cell, n * cell, (128, 128, 128))
    write_png(path, img)


def curve_png(path: Path, curves: list[tuple[np.ndarray, np.ndarray]], *, log_x: bool) -> None:
    """Curves on [0,1]^2 (x optionally log-scaled from 1e-4): black axes, coloured lines."""
    size, pad = 400, 20
    img = canvas(size + 2 * pad, size + 2 * pad)
    colours = [(200, 30, 30), (30, 30, 200), (30, 150, 30)]
    line(img, pad, pad + size, pad + size, pad + size, (0, 0, 0))
    line(img, pad, pad, pad, pad + size, (0, 0, 0))
    for k, (x, y) in enumerate(curves):
        xs = (np.log10(np.clip(x, 1e-4, 1)) + 4) / 4 if log_x else x
        px, py = pad + xs * size, pad + (1 - y) * size
        for i in range(len(px) - 1):
            line(img, px[i], py[i], px[i + 1], py[i + 1], colours[k % 3])
    write_png(path, img)


def _table(m: dict[str, Any]) -> list[str]:
    rows = ["| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    for c, v in m["per_class"].items():
        if v["support"]:
            rows.append(
                f"| {c} | {v['precision']:.4f} | {v['recall']:.4f} | {v['f1']:.4f} | "
                f"{v['support']} |"
            )
    return rows


def _binary_lines(b: dict[str, Any]) -> list[str]:
    if b.get("roc_auc") is None:
        return [
            f"- alert rate at threshold {b['threshold']}: detection {b['detection_rate']}, "
            f"false alarms {b['false_alarm_rate']}"
        ]
    return [
        f"- ROC-AUC {b['roc_auc']:.5f}, PR-AUC {b['pr_auc']:.5f}",
        f"- at threshold {b['threshold']}: detection {b['detection_rate']:.4f}, "
        f"false alarms {b['false_alarm_rate']:.4f}",
        f"- detection at 1 % FPR: {b['at_fpr_1pct']['detection_rate']:.4f}; "
        f"at 0.1 % FPR: {b['at_fpr_0.1pct']['detection_rate']:.4f}",
    ]


def write_report(
    run_dir: Path, cfg: RunConfig, summary: dict[str, Any], metrics: dict[str, Any]
) -> None:
    """Write report.md and the PNGs next to it."""
    lines = [
        f"# Run {run_dir.name}",
        "",
        f"Config: `{cfg.name}` seed {cfg.seed}; "
        f"rows {summary['rows']}; classes {', '.join(summary['classes'])}.",
        "",
        "## Data",
        "",
        "```",
        str(summary["rows_per_origin"]),
        "cleaning: " + str(summary["cleaning"]["dropped"]),
        "```",
        "",
    ]
    for key in sorted(k for k in metrics if k.startswith("test_")):
        kind = key[5:]
        for origin, m in metrics[key].items():
            if origin == "curves":
                lines += _curve_lines(run_dir, kind, m)
                continue
            if origin == "per_capture":
                lines += _capture_lines(f"Captures in the {kind} test split", m)
                continue
            lines += [
                f"## Test split: {kind}, rows from {origin}",
                "",
                f"accuracy {m['accuracy']:.4f}, macro-F1 {m['macro_f1']:.4f}, "
                f"weighted-F1 {m['weighted_f1']:.4f} ({m['rows']} rows)",
                "",
                *_table(m),
                "",
                *_binary_lines(m["binary"]),
                "",
            ]
        m = metrics[key]["all"]
        confusion_png(run_dir / f"confusion_{kind}.png", m["confusion"])
        lines += [
            f"![confusion {kind}](confusion_{kind}.png)",
            "",
            "Confusion (rows true, columns predicted; order " + ", ".join(m["classes"]) + "):",
            "",
            "```",
            *(" ".join(f"{v:6d}" for v in r) for r in m["confusion"]),
            "```",
            "",
        ]
    lines += _export_lines(metrics.get("export", {}))
    if "replay" in metrics:
        title = (
            "Replay of every labelled capture (exported model at the manifest threshold; "
            "in-sample where the capture is in training)"
        )
        lines += _capture_lines(title, metrics["replay"]["per_capture"])
    (run_dir / "report.md").write_text("\n".join(lines) + "\n")


def _export_lines(e: dict[str, Any]) -> list[str]:
    if not e:
        return []
    out = [
        "## Export",
        "",
        f"- ONNX opset {e['opset']}; shipped variant: {e['shipped']}; "
        f"manifest threshold {e.get('threshold')}",
        f"- ONNX Runtime vs torch: {e['parity']}",
    ]
    q = e.get("int8")
    if q:
        out += [
            "",
            "| variant | macro-F1 | rows/s (1 thread) | bytes |",
            "|---|---|---|---|",
            f"| fp32 | {q['macro_f1_fp32']:.4f} | {q['rows_per_s_fp32']:.0f} | {q['bytes_fp32']} |",
            f"| int8 | {q['macro_f1_int8']:.4f} | {q['rows_per_s_int8']:.0f} | {q['bytes_int8']} |",
            "",
            f"INT8 macro-F1 delta {q['macro_f1_delta']:+.4f}, speed-up {q['speedup']:.2f}x, "
            f"max probability difference {q['max_abs_prob_diff']:.4f}.",
        ]
    return [*out, ""]


def _capture_lines(title: str, per: dict[str, Any]) -> list[str]:
    out = [f"## {title}", "", "| capture | label | flows | alerted |", "|---|---|---|---|"]
    pooled: dict[str, list[float]] = {}
    for name, v in sorted(per.items(), key=lambda kv: (kv[1]["label"], kv[0])):
        out.append(f"| {name} | {v['label']} | {v['flows']} | {v['alerted']:.3f} |")
        acc = pooled.setdefault(v["label"], [0.0, 0.0])
        acc[0] += v["alerted"] * v["flows"]
        acc[1] += v["flows"]
    out += [
        "",
        "Pooled per label: "
        + ", ".join(f"{k} {a / n:.3f} of {n:.0f} flows" for k, (a, n) in sorted(pooled.items())),
        "",
    ]
    return out


def _curve_lines(run_dir: Path, kind: str, c: dict[str, Any]) -> list[str]:
    if not c:
        return []
    roc = (np.array(c["roc"]["fpr"]), np.array(c["roc"]["tpr"]))
    pr = (np.array(c["pr"]["recall"]), np.array(c["pr"]["precision"]))
    curve_png(run_dir / f"roc_{kind}.png", [roc], log_x=True)
    curve_png(run_dir / f"pr_{kind}.png", [pr], log_x=False)
    return [
        f"Attack-vs-benign ROC ({kind} split; x: false-positive rate, log scale 1e-4..1; "
        f"y: detection rate) and PR (x: recall, y: precision):",
        "",
        f"![roc {kind}](roc_{kind}.png) ![pr {kind}](pr_{kind}.png)",
        "",
    ]
