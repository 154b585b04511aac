"""The model folder's ``manifest.json``: what the daemon needs to load, check and explain."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from netwarden.features.cic_schema import CIC_SCHEMA
from netwarden.flows.params import FlowParams

FORMAT = 1


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def benign_stats(x_benign: npt.NDArray[np.float64]) -> dict[str, dict[str, float]]:
    """Per feature p05 / median / p95 of the benign training flows (the "typical range")."""
    x = np.where(np.isfinite(x_benign), x_benign, 0.0)
    q = np.percentile(x, [5, 50, 95], axis=0) if len(x) else np.zeros((3, len(CIC_SCHEMA)))
    return {
        name: {"p05": float(q[0, i]), "median": float(q[1, i]), "p95": float(q[2, i])}
        for i, name in enumerate(CIC_SCHEMA.names)
    }


def build(
    *,
    name: str,
    version: str,
    model_file: str,
    model_dir: Path,
    classes: list[str],
    threshold: float,
    attributions: bool,
    stats: dict[str, dict[str, float]],
    metrics: dict[str, Any],
    training: dict[str, Any],
    flow: FlowParams,
) -> dict[str, Any]:
    """The manifest dict for ``model_dir / model_file`` (which must already exist)."""
    return {
        "format": FORMAT,
        "format_version": FORMAT,  # the daemon's loader (netwarden.scoring) reads this key
        "name": name,
        "version": version,
        "model_file": model_file,
        "model_sha256": sha256_file(model_dir / model_file),
        "feature_schema": {"id": CIC_SCHEMA.id, "hash": CIC_SCHEMA.hash},
        "inputs": {"features": "features"},
        "outputs": {
            "probabilities": "probabilities",
            "attributions": "attributions" if attributions else None,
        },
        "attribution_method": (
            "gradient x (z - z_benign_median) of 1 - P(BENIGN), z = standardised signed log1p "
            "features; computed analytically inside the ONNX graph"
            if attributions
            else None
        ),
        "classes": classes,
        "benign_class": "BENIGN",
        "threshold": threshold,
        "flow": flow.to_dict(),
        "benign_stats": stats,
        "metrics": metrics,
        "training": training,
    }


def write(manifest: dict[str, Any], model_dir: Path) -> Path:
    path = model_dir / "manifest.json"
    path.write_text(json.dumps(manifest, indent=1, sort_keys=False) + "\n")
    return path


def read(model_dir: Path) -> dict[str, Any]:
    """Read and check a manifest against the running schema.

    Raises:
        ValueError: wrong format, schema mismatch, or the model file's sha256 differs.
    """
    m: dict[str, Any] = json.loads((model_dir / "manifest.json").read_text())
    if m.get("format") != FORMAT:
        raise ValueError(f"manifest: format must be {FORMAT}, got {m.get('format')!r}")
    fs = m.get("feature_schema", {})
    if fs.get("id") != CIC_SCHEMA.id or fs.get("hash") != CIC_SCHEMA.hash:
        raise ValueError(
            f"manifest: feature_schema {fs.get('id')!r}/{str(fs.get('hash'))[:12]} does not match "
            f"the running schema {CIC_SCHEMA.id!r}/{CIC_SCHEMA.hash[:12]}"
        )
    digest = sha256_file(model_dir / m["model_file"])
    if digest != m.get("model_sha256"):
        raise ValueError(f"manifest: model_sha256 mismatch for {m['model_file']}")
    return m
