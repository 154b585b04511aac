"""Tiny ONNX models and model directories for tests, built with onnx.helper.

The model is linear: ``probabilities = softmax(features @ W + b)``.  With ``attributions`` it
also outputs ``features * (W[:, attack] - W[:, benign])`` (gradient x input of the logit gap
between the first attack class and the benign class), shape (n, F).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from netwarden.features.cic_schema import CIC_SCHEMA
from netwarden.flows.params import FlowParams
from netwarden.scoring import file_sha256
from onnx import TensorProto, helper, numpy_helper

CLASSES = ("BENIGN", "DoS Hulk", "SSH-Patator")
N_FEATURES = len(CIC_SCHEMA)


def linear_onnx(
    weights: npt.NDArray[np.float32],
    bias: npt.NDArray[np.float32],
    *,
    attributions: bool = False,
    input_name: str = "features",
    probs_name: str = "probabilities",
    input_width: int | str | None = None,
    probs_type: int = TensorProto.FLOAT,
) -> bytes:
    """Serialized Gemm+Softmax model; ``input_width`` overrides the declared input dim 1,
    ``probs_type`` casts the probabilities (to build a wrongly typed model)."""
    f, c = weights.shape
    width = f if input_width is None else input_width
    x = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", width])
    y = helper.make_tensor_value_info(probs_name, probs_type, ["batch", c])
    inits = [
        numpy_helper.from_array(weights.astype(np.float32), "W"),
        numpy_helper.from_array(bias.astype(np.float32), "B"),
    ]
    soft = probs_name if probs_type == TensorProto.FLOAT else "soft"
    nodes = [
        helper.make_node("Gemm", [input_name, "W", "B"], ["logits"]),
        helper.make_node("Softmax", ["logits"], [soft], axis=1),
    ]
    if soft != probs_name:
        nodes.append(helper.make_node("Cast", [soft], [probs_name], to=probs_type))
    outputs = [y]
    if attributions:
        gap = (weights[:, 1] - weights[:, 0]).astype(np.float32).reshape(1, f)
        inits.append(numpy_helper.from_array(gap, "gap"))
        nodes.append(helper.make_node("Mul", [input_name, "gap"], ["attributions"]))
        outputs.append(
            helper.make_tensor_value_info("attributions", TensorProto.FLOAT, ["batch", f])
        )
    graph = helper.make_graph(nodes, "tiny", [x], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return bytes(model.SerializeToString())


def default_weights(
    n_features: int = N_FEATURES, n_classes: int = len(CLASSES)
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Weights where feature 0 pushes towards class 1 and feature 1 towards class 2."""
    w = np.zeros((n_features, n_classes), np.float32)
    w[0, 1] = 1.0
    w[1, 2] = 1.0
    b = np.zeros(n_classes, np.float32)
    b[0] = 2.0  # all-zero features: P(benign) = e^2 / (e^2 + 2) ~ 0.79
    return w, b


def benign_stats(names: tuple[str, ...] = CIC_SCHEMA.names) -> dict[str, dict[str, float]]:
    """Benign percentiles: every feature p05=0, median=1, p95=2 (except a constant one)."""
    stats = {n: {"p05": 0.0, "median": 1.0, "p95": 2.0} for n in names}
    stats[names[2]] = {"p05": 0.0, "median": 0.0, "p95": 0.0}
    return stats


def manifest_dict(model_sha256: str, **overrides: Any) -> dict[str, Any]:
    """A valid manifest as JSON-ready dict; ``overrides`` replace top-level keys."""
    d: dict[str, Any] = {
        "format_version": 1,
        "name": "tiny-linear",
        "version": "0.0.1",
        "model_file": "model.onnx",
        "model_sha256": model_sha256,
        "feature_schema": {"id": CIC_SCHEMA.id, "hash": CIC_SCHEMA.hash},
        "inputs": {"features": "features"},
        "outputs": {"probabilities": "probabilities"},
        "classes": list(CLASSES),
        "benign_class": "BENIGN",
        "threshold": 0.5,
        "flow": FlowParams().to_dict(),
        "benign_stats": benign_stats(),
        "attribution_method": None,
        "metrics": {"f1_macro": 0.5},
        "training": {"seed": 0},
    }
    d.update(overrides)
    return d


def write_model_dir(
    path: Path,
    *,
    onnx_bytes: bytes | None = None,
    attributions: bool = False,
    manifest_overrides: dict[str, Any] | None = None,
) -> Path:
    """Write ``model.onnx`` + ``manifest.json`` under ``path`` (created) and return ``path``."""
    path.mkdir(parents=True, exist_ok=True)
    if onnx_bytes is None:
        onnx_bytes = linear_onnx(*default_weights(), attributions=attributions)
    (path / "model.onnx").write_bytes(onnx_bytes)
    overrides = dict(manifest_overrides or {})
    if attributions and "outputs" not in overrides:
        overrides["outputs"] = {"probabilities": "probabilities", "attributions": "attributions"}
        overrides.setdefault("attribution_method", "x * (W[:, 1] - W[:, 0])")
    m = manifest_dict(file_sha256(path / "model.onnx"), **overrides)
    (path / "manifest.json").write_text(json.dumps(m, indent=2))
    return path
