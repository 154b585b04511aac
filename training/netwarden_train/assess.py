"""Score a shipped model folder on CSVs or labelled capture sets (``evaluate``).

The model is loaded with the daemon's own loader (``netwarden.scoring.load_model``), so the
manifest check, the threshold override and the ONNX session are exactly what serving uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from netwarden.flows.params import FlowParams
from netwarden.scoring.model import load_model

from .captures import extract, table_for
from .csvdata import read_csvs
from .evaluation import evaluate
from .rules import load_rules
from .table import FlowTable


def _is_rules(p: Path) -> bool:
    return p.suffix == ".toml"


def load_tables(paths: list[Path], params: FlowParams) -> tuple[FlowTable, FlowTable]:
    """(CSV rows, capture rows) from CSV files/folders and label-rule files."""
    csv_paths = [p for p in paths if not _is_rules(p)]
    csv_t = read_csvs(csv_paths)[0] if csv_paths else FlowTable.empty()
    cap_tables = []
    for rp in (p for p in paths if _is_rules(p)):
        caps = load_rules(rp)
        by_path = {c.path: c for c in caps}
        for path, flows in extract([c.path for c in caps], params):
            cap_tables.append(table_for(by_path[Path(path)], flows)[0])
    return csv_t, FlowTable.concat(cap_tables)


def per_capture(t: FlowTable, score: np.ndarray, threshold: float) -> dict[str, Any]:
    """Share of flows alerted per capture file, with the capture's label(s)."""
    out: dict[str, Any] = {}
    for src in np.unique(t.source).tolist():
        m = t.source == src
        fams = sorted(set(t.family[m].tolist()))
        out[src] = {
            "label": "/".join(fams),
            "flows": int(m.sum()),
            "alerted": float((score[m] >= threshold).mean()),
        }
    return out


def assess(model_dir: Path, paths: list[Path]) -> dict[str, Any]:
    """Metrics for each kind of input (and per capture file), as one JSON-able dict."""
    model = load_model(model_dir, providers="cpu")
    classes = list(model.manifest.classes)
    params = model.manifest.flow
    csv_t, cap_t = load_tables(paths, params)
    out: dict[str, Any] = {
        "model": str(model_dir),
        "threshold": model.threshold,
        "threshold_source": model.threshold_source,
    }
    for name, t in (("csv", csv_t), ("captures", cap_t)):
        if len(t) == 0:
            continue
        t = t.take(np.isin(t.family, classes))  # a family this model lacks cannot be scored
        s = model.score(t.x.astype(np.float32))
        y = np.array([classes.index(f) for f in t.family.tolist()], dtype=np.int64)
        out[name] = evaluate(
            y,
            s.probs.astype(np.float64),
            classes,
            benign=model.manifest.benign_index,
            threshold=model.threshold,
        )
        if name == "captures":
            out["per_capture"] = per_capture(t, s.attack_score, model.threshold)
    return out
