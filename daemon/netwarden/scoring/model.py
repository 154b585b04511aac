"""The scorer: an ONNX Runtime session behind a checked manifest.

:func:`load_model` validates the manifest, refuses a feature-schema mismatch, opens the session
on the requested execution provider, checks the graph's input/output names and shapes against
the manifest and the schema, and runs one probe row, so every problem surfaces at load as a
one-line :class:`~netwarden.scoring.manifest.ModelError`, never mid-stream.

When the manifest names a score graph (the graph pruned to the probabilities output),
:meth:`Model.score` runs only that one, and :meth:`Model.explain` runs the full graph for the
rows that need attributions (ONNX Runtime computes every node of a graph whatever outputs
are asked for: the attribution half costs about as much as the forward pass).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from ..features.cic_schema import CIC_SCHEMA
from ..features.schema import FeatureSchema
from ..metrics import Metrics
from .dedupe import distinct_rows
from .manifest import (
    Manifest,
    ModelError,
    find_threshold_override,
    load_manifest,
    read_model_bytes,
    read_score_model_bytes,
)

log = logging.getLogger(__name__)

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
PROVIDER_CHOICES = ("auto", "cpu", "cuda")

# ORT's default logger level (0 verbose .. 4 fatal); 2 = warning is its built-in default.
_ORT_LOG_WARNING = 2
_DEDUPE_MIN_ROWS = 64  # below this, hashing costs more than it can save
_ORT_LOG_FATAL = 4


@dataclass(frozen=True, slots=True)
class Scores:
    """Model output for n flows."""

    probs: npt.NDArray[np.float32]  # (n, n_classes)
    attack_score: npt.NDArray[np.float32]  # (n,) = 1 - probs[:, benign]
    label_idx: npt.NDArray[np.intp]  # (n,) argmax over all classes
    attack_idx: npt.NDArray[np.intp]  # (n,) argmax over the non-benign classes
    attributions: npt.NDArray[np.float32] | None  # (n, n_features) when the model has them

    def __len__(self) -> int:
        return int(self.probs.shape[0])


def _session_options(intra_op_threads: int) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.intra_op_num_threads = intra_op_threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Session messages: fatal only.  Errors raise Python exceptions, which we turn into
    # ModelError (load) or count (scoring); ORT's own copy on stderr would be noise.
    so.log_severity_level = _ORT_LOG_FATAL
    return so


def _open_session(model: bytes, so: ort.SessionOptions, providers: list[str]) -> Any:
    try:
        return ort.InferenceSession(model, sess_options=so, providers=providers)
    except Exception as e:  # ORT raises its own pybind classes (InvalidProtobuf, Fail, ...)
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"not a loadable ONNX model: {msg}") from None


def _try_cuda(model: bytes, so: ort.SessionOptions) -> Any | None:
    """A CUDA session, or None when CUDA is listed but does not really work here.

    onnxruntime-gpu lists CUDAExecutionProvider even without a GPU or CUDA libraries; the
    session then silently runs on CPU after logging a long error, which we silence.
    """
    if CUDA not in ort.get_available_providers():
        return None
    ort.set_default_logger_severity(_ORT_LOG_FATAL)
    try:
        sess = _open_session(model, so, [CUDA, CPU])
    finally:
        ort.set_default_logger_severity(_ORT_LOG_WARNING)
    return sess if sess.get_providers()[0] == CUDA else None


def create_session(model: bytes, *, providers: str = "auto", intra_op_threads: int = 1) -> Any:
    """An InferenceSession on ``providers``: "auto" (CUDA when it works, else CPU), "cpu", "cuda".

    Raises:
        ModelError: unknown choice, "cuda" unavailable, or bytes that are not an ONNX model.
    """
    if providers not in PROVIDER_CHOICES:
        raise ModelError(f"providers must be one of {PROVIDER_CHOICES}, got {providers!r}")
    so = _session_options(intra_op_threads)
    if providers != "cpu":
        sess = _try_cuda(model, so)
        if sess is not None:
            return sess
        if providers == "cuda":
            raise ModelError(
                "providers 'cuda' requested but CUDAExecutionProvider does not work "
                "here (no GPU, or CUDA/cuDNN libraries missing); use 'auto' or 'cpu'"
            )
        log.debug("CUDA execution provider not usable here; scoring on CPU")
    return _open_session(model, so, [CPU])


def _dims(shape: Any) -> list[int | None]:
    return [d if isinstance(d, int) else None for d in (shape or [])]


def _check_io(sess: Any, m: Manifest, n_features: int, *, attributions: bool = True) -> None:
    ins = {i.name: i for i in sess.get_inputs()}
    outs = {o.name: o for o in sess.get_outputs()}
    name = m.inputs.features
    if name not in ins:
        raise ModelError(
            f"input {name!r} (manifest inputs.features) not in model inputs {sorted(ins)}"
        )
    extra = sorted(set(ins) - {name})
    if extra:
        raise ModelError(f"model has inputs {extra} the manifest does not describe")
    if ins[name].type != "tensor(float)":
        raise ModelError(f"input {name!r} has type {ins[name].type}; expected tensor(float)")
    dims = _dims(ins[name].shape)
    if len(dims) != 2 or dims[1] not in (None, n_features):
        raise ModelError(
            f"input {name!r} has shape {ins[name].shape}; expected [batch, "
            f"{n_features}] ({n_features} features in the schema)"
        )
    for key, out in (
        ("probabilities", m.outputs.probabilities),
        ("attributions", m.outputs.attributions if attributions else None),
    ):
        if out is None:
            continue
        if out not in outs:
            raise ModelError(
                f"output {out!r} (manifest outputs.{key}) not in model outputs {sorted(outs)}"
            )
        if outs[out].type != "tensor(float)":
            raise ModelError(
                f"output {out!r} has type {outs[out].type}; expected tensor(float) "
                "(export plain tensors, e.g. without a ZipMap)"
            )


def _check_probe(
    probs: npt.NDArray[np.float32] | None, att: npt.NDArray[np.float32] | None, m: Manifest, n: int
) -> None:
    n_classes, n_features = len(m.classes), n
    if probs is not None and probs.shape != (1, n_classes):
        raise ModelError(
            f"output {m.outputs.probabilities!r} has shape {probs.shape[1:]} "
            f"per row; the manifest lists {n_classes} classes"
        )
    if att is not None and att.shape != (1, n_features):
        raise ModelError(
            f"output {m.outputs.attributions!r} has shape {att.shape[1:]} per "
            f"row; expected ({n_features},)"
        )


class Model:
    """A loaded, checked model.  Use :func:`load_model` to build one."""

    def __init__(
        self,
        session: Any,
        manifest: Manifest,
        *,
        n_features: int,
        threshold: float,
        threshold_source: str,
        metrics: Metrics | None,
        score_session: Any | None = None,
    ) -> None:
        self._session = session
        self._score_session = score_session
        self.manifest = manifest
        self.n_features = n_features
        self.threshold = threshold
        self.threshold_source = threshold_source
        self.provider: str = session.get_providers()[0]
        self._metrics = metrics
        self._outputs = [manifest.outputs.probabilities]
        if manifest.outputs.attributions is not None and score_session is None:
            self._outputs.append(manifest.outputs.attributions)
        self._benign = manifest.benign_index

    @property
    def has_score_graph(self) -> bool:
        """True when :meth:`score` runs the pruned score graph (attributions: :meth:`explain`)."""
        return self._score_session is not None

    def _empty(self) -> Scores:
        n_cls = len(self.manifest.classes)
        att = np.zeros((0, self.n_features), np.float32) if len(self._outputs) > 1 else None
        return Scores(
            np.zeros((0, n_cls), np.float32),
            np.zeros(0, np.float32),
            np.zeros(0, np.intp),
            np.zeros(0, np.intp),
            att,
        )

    def _run(
        self, sess: Any, outputs: list[str], x: npt.NDArray[np.float32], *, scored: bool
    ) -> list[Any]:
        t0 = time.perf_counter()
        out: list[Any] = sess.run(outputs, {self.manifest.inputs.features: x})
        if self._metrics is not None:
            self._metrics.inference_latency.observe(time.perf_counter() - t0)
            if scored:
                self._metrics.flows_scored.inc(x.shape[0])
        return out

    def _checked(self, features: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        if features.ndim != 2 or features.shape[1] != self.n_features:
            raise ValueError(
                f"features must have shape (n, {self.n_features}), got {features.shape}"
            )
        return np.ascontiguousarray(features, dtype=np.float32)

    def score(self, features: npt.NDArray[np.float32]) -> Scores:
        """Score ``features`` (float32, shape (n, n_features), schema order).

        With a score graph only that graph runs and ``Scores.attributions`` is None (ask
        :meth:`explain` for the rows that need them); without one the full graph runs and
        ``Scores.attributions`` is set when the manifest has an attributions output.
        Identical rows are scored once (:mod:`netwarden.scoring.dedupe`: a flood's flows
        share one feature vector).  Observes ``inference_latency_seconds`` and
        ``flows_scored`` (every row) when built with metrics (the batch size is observed by
        the batcher).
        """
        x = self._checked(features)
        if x.shape[0] == 0:
            return self._empty()
        sess = self._session if self._score_session is None else self._score_session
        dup = distinct_rows(x) if x.shape[0] >= _DEDUPE_MIN_ROWS else None
        out = self._run(sess, self._outputs, x if dup is None else x[dup[0]], scored=True)
        if dup is not None:  # each distinct row was scored once: spread the outputs back
            out = [np.asarray(o)[dup[1]] for o in out]
            if self._metrics is not None:
                self._metrics.flows_scored.inc(x.shape[0] - dup[0].size)
        probs = np.asarray(out[0], dtype=np.float32)
        masked = probs.copy()
        masked[:, self._benign] = -np.inf
        att = np.asarray(out[1], dtype=np.float32) if len(out) > 1 else None
        return Scores(
            probs,
            (1.0 - probs[:, self._benign]).astype(np.float32),
            np.argmax(probs, axis=1),
            np.argmax(masked, axis=1),
            att,
        )

    def explain(self, features: npt.NDArray[np.float32]) -> npt.NDArray[np.float32] | None:
        """Attributions ``(n, n_features)`` of the full graph for ``features``; None when the
        manifest has no attributions output.

        Observes ``inference_latency_seconds`` (one more inference batch) but not
        ``flows_scored`` (these flows were counted when they were scored).
        """
        x = self._checked(features)
        name = self.manifest.outputs.attributions
        if name is None:
            return None
        if x.shape[0] == 0:
            return np.zeros((0, self.n_features), np.float32)
        out = self._run(self._session, [name], x, scored=False)
        return np.asarray(out[0], dtype=np.float32)


def _build(
    model_dir: Path,
    *,
    schema: FeatureSchema,
    providers: str,
    intra_op_threads: int,
    threshold_override: Path | None,
    metrics: Metrics | None,
) -> Model:
    m = load_manifest(model_dir, schema=schema, verify_sha256=False)
    data = read_model_bytes(model_dir, m)
    override = find_threshold_override(model_dir, threshold_override)
    score_data = read_score_model_bytes(model_dir, m)
    n = len(schema)
    sess = _session(model_dir / m.model_file, data, m, n, providers, intra_op_threads, full=True)
    score_sess = None
    if score_data is not None and m.score_model_file is not None:
        path = model_dir / m.score_model_file
        score_sess = _session(path, score_data, m, n, providers, intra_op_threads, full=False)
    threshold, source = (
        (override.threshold, f"{override.path} ({override.source})")
        if override is not None
        else (m.threshold, "manifest")
    )
    model = Model(
        sess,
        m,
        n_features=len(schema),
        threshold=threshold,
        threshold_source=source,
        metrics=None,
        score_session=score_sess,
    )
    _probe(model, model_dir)
    model._metrics = metrics
    return model


def _session(
    path: Path,
    data: bytes,
    m: Manifest,
    n_features: int,
    providers: str,
    threads: int,
    *,
    full: bool,
) -> Any:
    """An ORT session for one graph file, its inputs and outputs checked against ``m``
    (``full``: the attributions output too)."""
    try:
        sess = create_session(data, providers=providers, intra_op_threads=threads)
        _check_io(sess, m, n_features, attributions=full)
    except ModelError as e:
        raise ModelError(f"{path}: {e}") from None
    return sess


def _probe(model: Model, model_dir: Path) -> None:
    """One all-zero row through every graph: shapes as the manifest says, or ModelError."""
    m, zero = model.manifest, np.zeros((1, model.n_features), np.float32)
    path = model_dir / (m.score_model_file or m.model_file)
    try:
        _check_probe(model.score(zero).probs, None, m, model.n_features)
        path = model_dir / m.model_file
        _check_probe(None, model.explain(zero), m, model.n_features)
    except ModelError as e:
        raise ModelError(f"{path}: {e}") from None
    except Exception as e:  # ORT runtime errors: shape mismatches inside the graph
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"{path}: probe inference failed: {first}") from None


def load_model(
    model_dir: Path | str,
    *,
    schema: FeatureSchema = CIC_SCHEMA,
    providers: str = "auto",
    threshold_override: Path | None = None,
    intra_op_threads: int = 1,
    metrics: Metrics | None = None,
) -> Model:
    """Load and check the model in ``model_dir``.

    Args:
        model_dir: directory with ``manifest.json`` and the model file it names.
        schema: the running feature schema; a model trained on another one is refused.
        providers: "auto" (CUDA when it really works, else CPU), "cpu" or "cuda".
        threshold_override: a ``threshold.json`` to use instead of ``<model_dir>/threshold.json``.
        intra_op_threads: ORT intra-op threads (1: the pipeline is a single process).
        metrics: when given, ``model_info`` and ``model_loads`` are set, and :meth:`Model.score`
            observes inference latency.

    Raises:
        ModelError: one line naming the file and the problem.
    """
    try:
        model = _build(
            Path(model_dir),
            schema=schema,
            providers=providers,
            intra_op_threads=intra_op_threads,
            threshold_override=threshold_override,
            metrics=metrics,
        )
    except ModelError:
        if metrics is not None:
            metrics.model_loads.labels(result="error").inc()
        raise
    m = model.manifest
    note = (
        " (CUDA listed but not usable here)"
        if providers == "auto" and model.provider == CPU and CUDA in ort.get_available_providers()
        else ""
    )
    log.info(
        "model %s %s loaded from %s on %s%s, threshold %.4g (%s)",
        m.name,
        m.version,
        model_dir,
        model.provider,
        note,
        model.threshold,
        model.threshold_source,
    )
    if metrics is not None:
        metrics.model_loads.labels(result="ok").inc()
        metrics.model_info.info({"name": m.name, "version": m.version, "provider": model.provider})
    return model
