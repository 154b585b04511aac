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
    score_model_file: str | None = None,
) -> dict[str, Any]:
    """The manifest dict for ``model_dir / model_file`` (which must already exist), and for
    ``model_dir / score_model_file`` (the graph pruned to probabilities) when given."""
    score = {}
    if score_model_file is not None:
        score = {
            "score_model_file": score_model_file,
            "score_model_sha256": sha256_file(model_dir / score_model_file),
        }
    return {
        "format": FORMAT,
        "format_version": FORMAT,  # the daemon's loader (netwarden.scoring) reads this key
        "name": name,
        "version": version,
        "model_file": model_file,
        "model_sha256": sha256_file(model_dir / model_file),
        **score,
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


def load_raw(model_dir: Path) -> dict[str, Any]:
    """``manifest.json`` as parsed JSON, unchecked."""
    m: dict[str, Any] = json.loads((model_dir / "manifest.json").read_text())
    return m


def add_score_model(model_dir: Path, score_model_file: str) -> Path:
    """Name ``score_model_file`` and its sha256 in ``manifest.json``, right after
    ``model_sha256``; every other key, value and the file's layout (indent, final newline)
    stay as they were."""
    path = model_dir / "manifest.json"
    text = path.read_text()
    old: dict[str, Any] = json.loads(text)
    new: dict[str, Any] = {}
    for key, value in old.items():
        if key not in ("score_model_file", "score_model_sha256"):
            new[key] = value
        if key == "model_sha256":
            new["score_model_file"] = score_model_file
            new["score_model_sha256"] = sha256_file(model_dir / score_model_file)
    lines = text.splitlines()
    indent = len(lines[1]) - len(lines[1].lstrip(" ")) if len(lines) > 1 else 1
    end = "\n" if text.endswith("\n") else ""
    path.write_text(json.dumps(new, indent=indent or None) + end)
    return path


def read(model_dir: Path) -> dict[str, Any]:
    """Read and check a manifest against the running schema.

    Raises:
        ValueError: wrong format, schema mismatch, or the sha256 of the model file (or of
            the score model file, when named) differs.
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
    for key in ("model", "score_model"):
        name = m.get(f"{key}_file")
        if key != "model" and not name:
            continue
        if not isinstance(name, str) or not (model_dir / name).is_file():
            raise ValueError(
                f"manifest: {key}_file names {name!r}, which is not a file in {model_dir}"
            )
        if sha256_file(model_dir / name) != m.get(f"{key}_sha256"):
            raise ValueError(f"manifest: {key}_sha256 mismatch for {name}")
    return m
