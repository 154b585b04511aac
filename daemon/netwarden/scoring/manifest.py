"""The model manifest: what a model directory promises, validated once at load.

A model directory holds ``model.onnx`` and ``manifest.json`` (and optionally
``threshold.json``, written by ``netwarden calibrate``, and ``model.score.onnx``, the same graph
pruned to the probabilities output, named by ``score_model_file``).  The manifest names the feature
schema the model was trained on, the ONNX input/output names, the classes, the benign class,
the alert threshold, the flow-assembly parameters and, optionally, per-feature statistics of
benign training flows (used to explain alerts).  Every problem is a :class:`ModelError` whose
message names the file, the key and the rule.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..features.schema import FeatureSchema
from ..flows.params import FlowParams
from ..flows.table import check_params

MANIFEST_FILE = "manifest.json"
THRESHOLD_FILE = "threshold.json"
MANIFEST_FORMAT_VERSION = 1


class ModelError(Exception):
    """A model directory, manifest or ONNX file that cannot be used (one-line message)."""


@dataclass(frozen=True, slots=True)
class SchemaRef:
    """Identity of the feature schema a model was trained on."""

    id: str
    hash: str


@dataclass(frozen=True, slots=True)
class ModelInputs:
    """ONNX input names: ``features`` takes float32 ``(n, n_features)`` in schema order."""

    features: str


@dataclass(frozen=True, slots=True)
class ModelOutputs:
    """ONNX output names: class probabilities ``(n, n_classes)``, optional attributions
    ``(n, n_features)`` (contribution of each feature towards P(attack); larger = more
    attack-like)."""

    probabilities: str
    attributions: str | None = None


@dataclass(frozen=True, slots=True)
class BenignStat:
    """Percentiles of one feature over the benign training flows."""

    p05: float
    median: float
    p95: float


@dataclass(frozen=True, slots=True)
class Manifest:
    """Everything the daemon needs to know about a model, validated."""

    format_version: int
    name: str
    version: str
    model_file: str
    model_sha256: str
    feature_schema: SchemaRef
    inputs: ModelInputs
    outputs: ModelOutputs
    classes: tuple[str, ...]
    benign_class: str
    threshold: float  # alert when 1 - P(benign) >= threshold
    flow: FlowParams
    benign_stats: dict[str, BenignStat] = field(default_factory=dict)
    attribution_method: str | None = None  # how the attributions output is computed (text)
    metrics: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    # the graph pruned to the probabilities output (no attribution work): scores every flow
    score_model_file: str | None = None
    score_model_sha256: str | None = None

    @property
    def benign_index(self) -> int:
        """Column of the benign class in the probabilities output."""
        return self.classes.index(self.benign_class)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (what :func:`load_manifest` reads back)."""
        d = asdict(self)
        d["classes"] = list(self.classes)
        d["flow"] = self.flow.to_dict()
        if self.score_model_file is None:
            del d["score_model_file"], d["score_model_sha256"]
        return d


@dataclass(frozen=True, slots=True)
class ThresholdOverride:
    """A calibrated threshold that replaces the manifest's."""

    threshold: float
    source: str  # free text from the file ("calibrate on ... at FPR 1e-4"), or the path
    path: Path


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class _Reader:
    """Typed access to one JSON object; errors name the file and the dotted key."""

    def __init__(self, path: Path, obj: Any, prefix: str = "") -> None:
        self.path = path
        self.prefix = prefix
        if not isinstance(obj, dict):
            raise self.error(prefix.rstrip(".") or "(top level)", "must be a JSON object")
        self.obj: dict[str, Any] = obj

    def error(self, key: str, problem: str) -> ModelError:
        return ModelError(f"{self.path}: key {key!r} {problem}")

    def _get(self, key: str, required: bool) -> Any:
        if key not in self.obj:
            if required:
                raise self.error(self.prefix + key, "is missing")
            return None
        return self.obj[key]

    def opt_str(self, key: str, *, required: bool = True) -> str | None:
        v = self._get(key, required)
        if v is None and not required:
            return None
        if not isinstance(v, str) or not v:
            raise self.error(self.prefix + key, f"must be a non-empty string, got {v!r}")
        return v

    def req_str(self, key: str) -> str:
        v = self.opt_str(key)
        assert v is not None
        return v

    def number(self, key: str) -> float:
        v = self._get(key, True)
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise self.error(self.prefix + key, f"must be a finite number, got {v!r}")
        return float(v)

    def integer(self, key: str) -> int:
        v = self._get(key, True)
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.error(self.prefix + key, f"must be an integer, got {v!r}")
        return v

    def sub(self, key: str, *, required: bool = True) -> _Reader | None:
        v = self._get(key, required)
        if v is None and not required:
            return None
        return _Reader(self.path, v, f"{self.prefix}{key}.")

    def req_sub(self, key: str) -> _Reader:
        r = self.sub(key)
        assert r is not None
        return r

    def free_dict(self, key: str) -> dict[str, Any]:
        v = self._get(key, False)
        if v is None:
            return {}
        if not isinstance(v, dict):
            raise self.error(self.prefix + key, f"must be a JSON object, got {type(v).__name__}")
        return v


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelError(f"{path}: file not found") from None
    except OSError as e:
        raise ModelError(f"{path}: cannot read: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ModelError(f"{path}: not valid JSON: not UTF-8 text ({e.reason})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ModelError(f"{path}: not valid JSON: {e}") from None
    except RecursionError:  # "[[[[..." thousands deep: json's recursive parser gives up
        raise ModelError(f"{path}: not valid JSON: nested too deeply") from None


def _classes(r: _Reader) -> tuple[str, ...]:
    v = r.obj.get("classes")
    if v is None:
        raise r.error("classes", "is missing")
    if not isinstance(v, list) or len(v) < 2:
        raise r.error("classes", f"must be a list of at least 2 class names, got {v!r}")
    if not all(isinstance(c, str) and c for c in v):
        raise r.error("classes", "must hold non-empty strings only")
    if len(set(v)) != len(v):
        raise r.error("classes", f"has duplicate names: {v!r}")
    return tuple(v)


def _flow(r: _Reader) -> FlowParams:
    fr = r.req_sub("flow")
    known = FlowParams.__dataclass_fields__
    unknown = sorted(set(fr.obj) - set(known))
    if unknown:
        raise fr.error(f"flow.{unknown[0]}", f"is not a flow parameter (known: {sorted(known)})")
    values: dict[str, Any] = {}
    for k in fr.obj:
        values[k] = fr.integer(k) if k == "max_flows" else fr.number(k)
    params = FlowParams.from_dict(values)
    try:
        check_params(params)
    except ValueError as e:  # "flow.<key>: <rule>, got <value>"
        key, _, problem = str(e).partition(": ")
        raise fr.error(key, problem) from None
    return params


def _benign_stats(r: _Reader) -> dict[str, BenignStat]:
    sr = r.sub("benign_stats", required=False)
    if sr is None:
        return {}
    out: dict[str, BenignStat] = {}
    for name in sr.obj:
        fr = sr.req_sub(name)
        st = BenignStat(fr.number("p05"), fr.number("median"), fr.number("p95"))
        if not st.p05 <= st.median <= st.p95:
            raise fr.error(f"benign_stats.{name}", f"must satisfy p05 <= median <= p95, got {st}")
        out[name] = st
    return out


def _check_sha256(r: _Reader, key: str) -> str:
    v = r.req_str(key)
    if len(v) != 64 or any(c not in "0123456789abcdef" for c in v):
        raise r.error(key, f"must be 64 lowercase hex digits, got {v!r}")
    return v


def _score_model(r: _Reader) -> tuple[str | None, str | None]:
    """``score_model_file`` and ``score_model_sha256``: both or neither."""
    name = r.opt_str("score_model_file", required=False)
    if name is None:
        if r.obj.get("score_model_sha256") is not None:
            raise r.error("score_model_sha256", "is set but 'score_model_file' is not")
        return None, None
    return name, _check_sha256(r, "score_model_sha256")


def parse_manifest(obj: Any, *, path: Path) -> Manifest:
    """Validate a parsed manifest object (``path`` is only used in error messages)."""
    r = _Reader(path, obj)
    fmt = r.integer("format_version")
    if fmt != MANIFEST_FORMAT_VERSION:
        raise r.error("format_version", f"is {fmt}; this netwarden reads {MANIFEST_FORMAT_VERSION}")
    schema = r.req_sub("feature_schema")
    inputs = r.req_sub("inputs")
    outputs = r.req_sub("outputs")
    classes = _classes(r)
    benign = r.req_str("benign_class")
    if benign not in classes:
        raise r.error("benign_class", f"is {benign!r}, which is not in classes {list(classes)}")
    threshold = r.number("threshold")
    if not 0.0 <= threshold <= 1.0:
        raise r.error("threshold", f"must be in [0, 1], got {threshold}")
    score_file, score_sha = _score_model(r)
    return Manifest(
        format_version=fmt,
        name=r.req_str("name"),
        version=r.req_str("version"),
        model_file=r.req_str("model_file"),
        model_sha256=_check_sha256(r, "model_sha256"),
        feature_schema=SchemaRef(schema.req_str("id"), schema.req_str("hash")),
        inputs=ModelInputs(inputs.req_str("features")),
        outputs=ModelOutputs(
            outputs.req_str("probabilities"), outputs.opt_str("attributions", required=False)
        ),
        classes=classes,
        benign_class=benign,
        threshold=threshold,
        flow=_flow(r),
        benign_stats=_benign_stats(r),
        attribution_method=r.opt_str("attribution_method", required=False),
        metrics=r.free_dict("metrics"),
        training=r.free_dict("training"),
        score_model_file=score_file,
        score_model_sha256=score_sha,
    )


def check_schema(manifest: Manifest, schema: FeatureSchema, *, path: Path) -> None:
    """Refuse a model trained on another feature schema (names both schemas).

    Also checks that ``benign_stats`` only names features of the schema.
    """
    ref = manifest.feature_schema
    if ref.id != schema.id or ref.hash != schema.hash:
        raise ModelError(
            f"{path}: model feature schema {ref.id} (hash {ref.hash}) does not match the "
            f"running schema {schema.id} (hash {schema.hash}); retrain or use a matching model"
        )
    unknown = sorted(set(manifest.benign_stats) - set(schema.names))
    if unknown:
        raise ModelError(
            f"{path}: key 'benign_stats.{unknown[0]}' is not a feature of schema {schema.id}"
        )


def load_manifest(
    model_dir: Path | str, *, schema: FeatureSchema | None = None, verify_sha256: bool = True
) -> Manifest:
    """Read and validate ``<model_dir>/manifest.json``.

    Args:
        model_dir: the model directory.
        schema: when given, refuse a manifest whose feature schema differs.
        verify_sha256: check ``model_sha256`` against the model file's bytes.

    Raises:
        ModelError: naming the file, the key and the problem.
    """
    d = Path(model_dir)
    path = d / MANIFEST_FILE
    if not d.is_dir():
        raise ModelError(f"{d}: model directory not found")
    m = parse_manifest(_read_json(path), path=path)
    if schema is not None:
        check_schema(m, schema, path=path)
    for key, name in (("model_file", m.model_file), ("score_model_file", m.score_model_file)):
        if name is not None and not (d / name).is_file():
            raise ModelError(f"{path}: key {key!r} names {d / name}, which does not exist")
    if verify_sha256:
        read_model_bytes(d, m)
        read_score_model_bytes(d, m)
    return m


def _read_checked(model_dir: Path, name: str, *, key: str, expected: str) -> bytes:
    model_path = model_dir / name
    try:
        data = model_path.read_bytes()
    except OSError as e:
        raise ModelError(f"{model_path}: cannot read: {e.strerror}") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise ModelError(
            f"{model_dir / MANIFEST_FILE}: key {key!r} is {expected} but "
            f"{model_path} has sha256 {actual} (model file replaced or corrupt)"
        )
    return data


def read_model_bytes(model_dir: Path, manifest: Manifest) -> bytes:
    """The model file's bytes, checked against ``model_sha256`` (read once: the bytes that
    were verified are the bytes that get loaded).

    Raises:
        ModelError: unreadable file or sha256 mismatch.
    """
    return _read_checked(
        model_dir, manifest.model_file, key="model_sha256", expected=manifest.model_sha256
    )


def read_score_model_bytes(model_dir: Path, manifest: Manifest) -> bytes | None:
    """The score graph's bytes checked against ``score_model_sha256``; None when the manifest
    names no score graph.

    Raises:
        ModelError: unreadable file or sha256 mismatch (naming the file).
    """
    if manifest.score_model_file is None or manifest.score_model_sha256 is None:
        return None
    return _read_checked(
        model_dir,
        manifest.score_model_file,
        key="score_model_sha256",
        expected=manifest.score_model_sha256,
    )


def load_threshold_override(path: Path) -> ThresholdOverride:
    """Read a ``threshold.json``: ``{"threshold": x, "source": "..."}``.

    Raises:
        ModelError: missing file, bad JSON, or a threshold outside [0, 1].
    """
    r = _Reader(path, _read_json(path))
    t = r.number("threshold")
    if not 0.0 <= t <= 1.0:
        raise r.error("threshold", f"must be in [0, 1], got {t}")
    src = r.obj.get("source")
    return ThresholdOverride(t, str(src) if src is not None else str(path), path)


def find_threshold_override(model_dir: Path, explicit: Path | None) -> ThresholdOverride | None:
    """The override in force: ``explicit`` (must exist) else ``<model_dir>/threshold.json``."""
    if explicit is not None:
        return load_threshold_override(explicit)
    default = model_dir / THRESHOLD_FILE
    return load_threshold_override(default) if default.is_file() else None
