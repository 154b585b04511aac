"""Fit the alert threshold to a site's benign traffic for a target false-alarm rate.

Writes ``threshold.json`` ({"threshold", "source", "max_alert_rate", ...}) that the daemon
reads as an override of the manifest's threshold; the model is not retrained.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from netwarden.scoring.model import load_model

from .captures import extract
from .table import FlowTable


def threshold_for_rate(scores: npt.NDArray[np.float64], max_alert_rate: float) -> float:
    """Smallest threshold t with mean(scores >= t) <= max_alert_rate (alert: score >= t).

    >>> threshold_for_rate(np.array([0.1, 0.2, 0.3, 0.9]), 0.25) > 0.3
    True
    >>> float((np.array([0.1, 0.2, 0.3, 0.9]) >= threshold_for_rate(
    ...     np.array([0.1, 0.2, 0.3, 0.9]), 0.25)).mean())
    0.25
    """
    if not 0.0 <= max_alert_rate < 1.0:
        raise ValueError(f"max_alert_rate must be in [0, 1), got {max_alert_rate}")
    s = np.sort(np.asarray(scores, dtype=np.float64))
    if len(s) == 0:
        raise ValueError("calibration needs at least one benign flow")
    allowed = math.floor(max_alert_rate * len(s))  # flows that may alert
    # the threshold sits just above the (allowed+1)-th highest score
    t = float(np.nextafter(s[len(s) - allowed - 1], np.inf))
    return min(t, 1.0)


def benign_flows(pcaps: list[Path], model_dir: Path) -> FlowTable:
    """Every flow of the benign captures, cut with the model's own flow parameters."""
    model = load_model(model_dir, providers="cpu")
    xs = [fl.features for _, fl in extract(pcaps, model.manifest.flow) if len(fl)]
    x = np.concatenate(xs).astype(np.float64) if xs else np.zeros((0, model.n_features))
    n = len(x)
    lab = np.full(n, "BENIGN")
    return FlowTable(x, lab, lab, np.full(n, "pcap"), np.full(n, "pcap"), np.full(n, "capture"))


def calibrate(
    model_dir: Path,
    *,
    benign: list[Path] | None = None,
    x: np.ndarray | None = None,
    max_alert_rate: float,
    out: Path | None = None,
) -> dict[str, Any]:
    """Compute and write the threshold override; returns what was written.

    Either ``benign`` (captures) or ``x`` (raw benign feature rows) supplies the flows.
    """
    model = load_model(model_dir, providers="cpu")
    if x is None:
        x = benign_flows(list(benign or []), model_dir).x
    scores = model.score(np.asarray(x, dtype=np.float32)).attack_score.astype(np.float64)
    t = threshold_for_rate(scores, max_alert_rate)
    doc = {
        "threshold": t,
        "source": f"calibrate on {len(scores)} benign flows"
        + (f" from {', '.join(p.name for p in benign)}" if benign else ""),
        "max_alert_rate": max_alert_rate,
        "flows": len(scores),
        "alert_rate_at_threshold": float((scores >= t).mean()),
        "manifest_threshold": model.manifest.threshold,
    }
    path = out or (model_dir / "threshold.json")
    path.write_text(json.dumps(doc, indent=1) + "\n")
    doc["path"] = str(path)
    return doc
