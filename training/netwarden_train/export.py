"""Export a trained Classifier to ONNX, check parity against torch, and quantise to INT8.

Also derives the score graph (``model.score.onnx``: the served graph pruned to the
probabilities output) and checks it against the full graph: :func:`derive_score_graph` for a
fresh export, :func:`write_score_graph` for an existing model folder.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import torch
from netwarden.features.cic_schema import CIC_SCHEMA
from torch import nn

from . import manifest
from .model import Classifier, attack_attributions
from .onnx_graph import GraphSpec, Layer, build, prune

log = logging.getLogger(__name__)

SCORE_MODEL_FILE = "model.score.onnx"
SCORE_TOL = 1e-6  # max |P(score graph) - P(full graph)|: same nodes, same kernels, so ~0
BATCH_TOLERANCE = 1e-4  # max |P(batch) - P(row alone)| a shipped model may show


def _np(t: torch.Tensor) -> npt.NDArray[np.float32]:
    return t.detach().cpu().numpy().astype(np.float32)


def layers_of(model: Classifier) -> list[Layer]:
    """Walk the Sequential body: fold batch norm into the Linear before it, skip dropout."""
    out: list[Layer] = []
    w = b = None
    ln = None
    for m in model.body:
        if isinstance(m, nn.Linear):
            if w is not None:
                out.append(Layer(w, b, "", ln))  # type: ignore[arg-type]
            w, b, ln = _np(m.weight), _np(m.bias), None
        elif isinstance(m, nn.BatchNorm1d):
            s = _np(m.weight) / np.sqrt(_np(m.running_var) + m.eps)
            w, b = w * s[:, None], (b - _np(m.running_mean)) * s + _np(m.bias)  # type: ignore[operator]
        elif isinstance(m, nn.LayerNorm):
            ln = (_np(m.weight), _np(m.bias), float(m.eps))
        elif isinstance(m, nn.ReLU | nn.Tanh | nn.SiLU):
            name = {nn.ReLU: "relu", nn.Tanh: "tanh", nn.SiLU: "silu"}[type(m)]
            out.append(Layer(w, b, name, ln))  # type: ignore[arg-type]
            w = b = ln = None
    out.append(Layer(w, b, "", ln))  # type: ignore[arg-type]
    return out


def to_onnx(
    model: Classifier,
    *,
    benign: int,
    z_ref: npt.NDArray[np.float32],
    opset: int,
    attributions: bool,
) -> onnx.ModelProto:
    """The ONNX model for a trained (eval-mode) classifier."""
    model.eval()
    spec = GraphSpec(
        mean=_np(model.pre.mean),
        inv_std=_np(model.pre.inv_std),
        clip=model.pre.clip,
        layers=layers_of(model),
        benign=benign,
        z_ref=z_ref.astype(np.float32),
        opset=opset,
        attributions=attributions,
    )
    return build(spec)


def session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # the box is shared; a tiny MLP gains nothing from threads
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def run_onnx(sess: ort.InferenceSession, x: np.ndarray) -> list[np.ndarray]:
    """All outputs for raw features, in batches of 8192 rows."""
    outs: list[list[np.ndarray]] = []
    for i in range(0, max(1, len(x)), 8192):
        outs.append(sess.run(None, {"features": x[i : i + 8192].astype(np.float32)}))
    return [np.concatenate([o[k] for o in outs]) for k in range(len(outs[0]))]


def parity(
    model: Classifier,
    sess: ort.InferenceSession,
    x: np.ndarray,
    *,
    benign: int,
    z_ref: np.ndarray,
    tol: float,
) -> dict[str, float]:
    """Differences between torch and ONNX Runtime on the same rows.

    Raises:
        AssertionError: probabilities differ by more than ``tol`` (absolute), or attributions
            by more than ``10 * tol`` relative to the largest attribution (a ReLU whose input
            sits at 0 within float32 rounding flips its gradient mask).
    """
    model.eval()
    xt = torch.from_numpy(x.astype(np.float32))
    with torch.no_grad():
        p_t = torch.softmax(model(xt), dim=1).numpy()
    outs = run_onnx(sess, x)
    res = {"rows": len(x), "probabilities_max_abs_diff": float(np.abs(outs[0] - p_t).max())}
    if len(outs) > 1:
        a_t = attack_attributions(model, xt, benign=benign, z_ref=torch.from_numpy(z_ref)).numpy()
        res["attributions_max_abs_diff"] = float(np.abs(outs[1] - a_t).max())
        # attributions are products of float32 sums of size |z| <= clip: compare relative to
        # the largest attribution (1 at least), not absolutely
        res["attributions_max_rel_diff"] = res["attributions_max_abs_diff"] / max(
            1.0, float(np.abs(a_t).max())
        )
    attr = res.get("attributions_max_rel_diff", 0.0)
    if res["probabilities_max_abs_diff"] > tol or attr > 10 * tol:
        raise AssertionError(
            f"ONNX parity: above tolerance {tol:g} (attributions {10 * tol:g}): {res}"
        )
    return res


def quantize(src: Path, dst: Path) -> None:
    """Dynamic INT8 quantisation of every MatMul weight (activations stay float)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)


def speed(sess: ort.InferenceSession, x: np.ndarray, *, repeats: int = 5) -> float:
    """Best-of-``repeats`` rows per second on one thread (a figure for the report only)."""
    feed = {"features": x.astype(np.float32)}
    sess.run(None, feed)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        sess.run(None, feed)
        best = min(best, time.perf_counter() - t0)
    return len(x) / best


def save(model_proto: onnx.ModelProto, path: Path) -> dict[str, Any]:
    onnx.save(model_proto, str(path))
    return {"bytes": path.stat().st_size}


def batch_dependence(sess: Any, x: np.ndarray) -> float:
    """Largest probability difference between scoring ``x`` as one batch and row by row.

    A deterministic detector must give a flow the same score whatever else is in its batch.
    """
    together = run_onnx(sess, x)[0]
    alone = np.concatenate([run_onnx(sess, x[i : i + 1])[0] for i in range(len(x))])
    return float(np.abs(together - alone).max())


def score_parity(
    full: Path, score: Path, x: np.ndarray, *, tol: float = SCORE_TOL
) -> dict[str, Any]:
    """Check the score graph against the full graph on ``x``: equal probabilities (within
    ``tol``) and batch invariance (first 256 rows, within :data:`BATCH_TOLERANCE`).

    Raises:
        AssertionError: either check fails (the message holds the figures).
    """
    probs_full = run_onnx(session(full), x)[0]
    sess = session(score)
    res = {
        "rows": len(x),
        "probabilities_max_abs_diff": float(np.abs(run_onnx(sess, x)[0] - probs_full).max()),
        "batch_dependence": batch_dependence(sess, x[:256]),
        "bytes": score.stat().st_size,
    }
    if res["probabilities_max_abs_diff"] > tol or res["batch_dependence"] > BATCH_TOLERANCE:
        raise AssertionError(
            f"score graph {score}: probabilities differ from {full.name} by more than {tol:g} "
            f"or depend on the batch by more than {BATCH_TOLERANCE:g}: {res}"
        )
    return res


def derive_score_graph(full: Path, score: Path, x: np.ndarray) -> dict[str, Any]:
    """Write ``score`` = ``full`` pruned to its probabilities output; check it on ``x``.

    Returns:
        The parity figures of :func:`score_parity`.
    """
    save(prune(onnx.load(str(full)), ("probabilities",)), score)
    res = score_parity(full, score, x)
    log.info("score graph %s: %s", score, res)
    return res


def probe_rows(
    stats: dict[str, dict[str, float]], *, n: int = 1024, seed: int = 0
) -> npt.NDArray[np.float32]:
    """Check rows without data: per feature, values spread over the benign p05..p95 range
    (most rows), heavy-tailed random magnitudes (past the clip), zeros, NaN and inf.
    """
    rng = np.random.default_rng(seed)
    names = CIC_SCHEMA.names
    lo = np.array([stats.get(k, {}).get("p05", 0.0) for k in names])
    hi = np.array([stats.get(k, {}).get("p95", 1e6) for k in names])
    x = lo + rng.random((n, len(names))) * (hi - lo)
    wild = rng.random(n) < 0.25
    x[wild] = rng.lognormal(3.0, 4.0, size=(int(wild.sum()), len(names)))
    x[0], x[1, ::3], x[2, ::5] = 0.0, np.nan, np.inf
    rows: npt.NDArray[np.float32] = x.astype(np.float32)
    return rows


def write_score_graph(model_dir: Path, *, x: np.ndarray | None = None) -> dict[str, Any]:
    """Add ``model.score.onnx`` to an existing model folder, without retraining.

    Prunes the folder's model file to its probabilities output, checks it against the full
    graph on ``x`` (default: :func:`probe_rows` from the manifest's benign statistics) and
    adds ``score_model_file`` / ``score_model_sha256`` to ``manifest.json``; nothing else in
    the folder changes (the model file and its sha256 stay byte-identical).

    Raises:
        ValueError: the model file does not match its ``model_sha256``.
        AssertionError: the score graph fails :func:`score_parity`.
    """
    m = manifest.load_raw(model_dir)
    full = model_dir / m["model_file"]
    if manifest.sha256_file(full) != m["model_sha256"]:
        raise ValueError(f"{full}: sha256 differs from the manifest's model_sha256")
    rows = probe_rows(m.get("benign_stats") or {}) if x is None else x.astype(np.float32)
    res = derive_score_graph(full, model_dir / SCORE_MODEL_FILE, rows)
    manifest.add_score_model(model_dir, SCORE_MODEL_FILE)
    return res
