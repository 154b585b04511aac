"""The ONNX scorer: loading checks, provider choice, scores of a tiny linear model."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from modelutil import N_FEATURES, default_weights, linear_onnx, write_model_dir
from netwarden.metrics import Metrics
from netwarden.scoring import ModelError, file_sha256, load_model
from onnx import TensorProto
from prometheus_client import CollectorRegistry


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def test_scores_match_numpy(tmp_path: Path) -> None:
    model = load_model(write_model_dir(tmp_path / "m"), providers="cpu")
    assert model.provider == "CPUExecutionProvider"
    x = np.zeros((3, N_FEATURES), np.float32)
    x[1, 0] = 5.0  # DoS Hulk
    x[2, 1] = 5.0  # SSH-Patator
    s = model.score(x)
    w, b = default_weights()
    expect = _softmax(x @ w + b)
    np.testing.assert_allclose(s.probs, expect, rtol=1e-5)
    np.testing.assert_allclose(s.attack_score, 1 - expect[:, 0], rtol=1e-5)
    assert s.label_idx.tolist() == [0, 1, 2]
    assert s.attack_idx.tolist()[1:] == [1, 2]
    assert s.attributions is None
    assert len(s) == 3


def test_attributions_output(tmp_path: Path) -> None:
    model = load_model(write_model_dir(tmp_path / "m", attributions=True), providers="cpu")
    x = np.arange(2 * N_FEATURES, dtype=np.float32).reshape(2, N_FEATURES)
    s = model.score(x)
    assert s.attributions is not None and s.attributions.shape == (2, N_FEATURES)
    w, _ = default_weights()
    np.testing.assert_allclose(s.attributions, x * (w[:, 1] - w[:, 0]))


def test_empty_batch_and_bad_width(tmp_path: Path) -> None:
    model = load_model(write_model_dir(tmp_path / "m", attributions=True), providers="cpu")
    s = model.score(np.zeros((0, N_FEATURES), np.float32))
    assert s.probs.shape == (0, 3) and s.attack_score.shape == (0,)
    assert s.attributions is not None and s.attributions.shape == (0, N_FEATURES)
    with pytest.raises(ValueError, match=f"shape \\(n, {N_FEATURES}\\)"):
        model.score(np.zeros((2, 5), np.float32))


def test_auto_provider_falls_back_to_cpu_quietly(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="netwarden.scoring.model")
    model = load_model(write_model_dir(tmp_path / "m"), providers="auto")
    # On a machine with a working GPU "auto" picks CUDA; here (CPU only) it falls back.
    assert model.provider in ("CUDAExecutionProvider", "CPUExecutionProvider")
    if model.provider == "CPUExecutionProvider":
        err = capfd.readouterr().err
        assert "libonnxruntime_providers_cuda" not in err, err
        assert any("on CPUExecutionProvider" in r.getMessage() for r in caplog.records)


def test_cuda_required_but_unavailable(tmp_path: Path) -> None:
    d = write_model_dir(tmp_path / "m")
    probe = load_model(d, providers="auto")
    if probe.provider == "CUDAExecutionProvider":
        pytest.skip("CUDA works here")
    with pytest.raises(ModelError, match="providers 'cuda' requested"):
        load_model(d, providers="cuda")
    with pytest.raises(ModelError, match="providers must be one of"):
        load_model(d, providers="gpu")


def test_metrics_model_info_and_latency(tmp_path: Path) -> None:
    reg = CollectorRegistry()
    metrics = Metrics(reg)
    model = load_model(write_model_dir(tmp_path / "m"), providers="cpu", metrics=metrics)
    model.score(np.zeros((4, N_FEATURES), np.float32))
    info = {"name": "tiny-linear", "version": "0.0.1", "provider": "CPUExecutionProvider"}
    assert reg.get_sample_value("netwarden_model_info", info) == 1.0
    assert reg.get_sample_value("netwarden_model_loads_total", {"result": "ok"}) == 1.0
    assert reg.get_sample_value("netwarden_flows_scored_total") == 4.0  # the probe is not counted
    assert reg.get_sample_value("netwarden_inference_latency_seconds_count") == 1.0
    with pytest.raises(ModelError):
        load_model(tmp_path / "missing", metrics=metrics)
    assert reg.get_sample_value("netwarden_model_loads_total", {"result": "error"}) == 1.0


def test_threshold_override_applies(tmp_path: Path) -> None:
    d = write_model_dir(tmp_path / "m")
    assert load_model(d, providers="cpu").threshold == 0.5
    (d / "threshold.json").write_text(json.dumps({"threshold": 0.8, "source": "calibrate"}))
    m = load_model(d, providers="cpu")
    assert m.threshold == 0.8 and "calibrate" in m.threshold_source
    assert m.manifest.threshold == 0.5
    other = tmp_path / "t.json"
    other.write_text(json.dumps({"threshold": 0.3}))
    assert load_model(d, providers="cpu", threshold_override=other).threshold == 0.3


def _expect_one_line_error(d: Path, *parts: str) -> str:
    with pytest.raises(ModelError) as ei:
        load_model(d, providers="cpu")
    msg = str(ei.value)
    assert "\n" not in msg and "Traceback" not in msg
    for p in parts:
        assert p in msg, msg
    return msg


def test_not_an_onnx_file(tmp_path: Path) -> None:
    d = write_model_dir(tmp_path / "m", onnx_bytes=b"this is not a protobuf model")
    _expect_one_line_error(d, "model.onnx", "not a loadable ONNX model")


def test_wrong_input_width(tmp_path: Path) -> None:
    w, b = default_weights(n_features=10)
    d = write_model_dir(tmp_path / "m", onnx_bytes=linear_onnx(w, b))
    _expect_one_line_error(d, "model.onnx", "'features'", f"expected [batch, {N_FEATURES}]")


def test_wrong_width_hidden_behind_symbolic_dim(tmp_path: Path) -> None:
    w, b = default_weights(n_features=10)
    d = write_model_dir(tmp_path / "m", onnx_bytes=linear_onnx(w, b, input_width="F"))
    _expect_one_line_error(d, "model.onnx", "probe inference failed")


def test_wrong_input_and_output_names(tmp_path: Path) -> None:
    w, b = default_weights()
    d = write_model_dir(tmp_path / "m", onnx_bytes=linear_onnx(w, b, input_name="x"))
    _expect_one_line_error(d, "input 'features' (manifest inputs.features) not in model", "['x']")
    d2 = write_model_dir(tmp_path / "m2", onnx_bytes=linear_onnx(w, b, probs_name="p"))
    _expect_one_line_error(d2, "output 'probabilities' (manifest outputs.probabilities)")
    d3 = write_model_dir(
        tmp_path / "m3",
        manifest_overrides={
            "outputs": {"probabilities": "probabilities", "attributions": "attributions"}
        },
    )
    _expect_one_line_error(d3, "output 'attributions' (manifest outputs.attributions)")


def test_class_count_mismatch(tmp_path: Path) -> None:
    d = write_model_dir(tmp_path / "m", manifest_overrides={"classes": ["BENIGN", "A", "B", "C"]})
    _expect_one_line_error(d, "manifest lists 4 classes")


def test_output_not_a_float_tensor(tmp_path: Path) -> None:
    w, b = default_weights()
    d = write_model_dir(tmp_path / "m", onnx_bytes=linear_onnx(w, b, probs_type=TensorProto.INT64))
    _expect_one_line_error(d, "output 'probabilities' has type tensor(int64)")


def test_tampered_model_file_is_refused(tmp_path: Path) -> None:
    d = write_model_dir(tmp_path / "m")
    with (d / "model.onnx").open("ab") as f:
        f.write(b"\0")
    _expect_one_line_error(d, "manifest.json: key 'model_sha256'", "replaced or corrupt")


def _with_score_graph(path: Path, score_bytes: bytes | None = None) -> Path:
    """A tiny model with attributions plus a score graph (the same weights, probabilities only)."""
    d = write_model_dir(path, attributions=True)
    data = score_bytes if score_bytes is not None else linear_onnx(*default_weights())
    (d / "model.score.onnx").write_bytes(data)
    m = json.loads((d / "manifest.json").read_text())
    m["score_model_file"] = "model.score.onnx"
    m["score_model_sha256"] = file_sha256(d / "model.score.onnx")
    (d / "manifest.json").write_text(json.dumps(m))
    return d


def test_score_graph_scores_and_full_graph_explains(tmp_path: Path) -> None:
    plain = load_model(write_model_dir(tmp_path / "plain", attributions=True), providers="cpu")
    model = load_model(_with_score_graph(tmp_path / "m"), providers="cpu")
    assert model.has_score_graph and not plain.has_score_graph
    x = np.arange(3 * N_FEATURES, dtype=np.float32).reshape(3, N_FEATURES) / 50
    s, ref = model.score(x), plain.score(x)
    assert s.attributions is None and ref.attributions is not None
    np.testing.assert_array_equal(s.probs, ref.probs)
    np.testing.assert_array_equal(s.attack_idx, ref.attack_idx)
    att = model.explain(x[1:])
    assert att is not None and att.dtype == np.float32
    np.testing.assert_array_equal(att, ref.attributions[1:])
    empty = model.score(np.zeros((0, N_FEATURES), np.float32))
    assert empty.attributions is None and empty.probs.shape == (0, 3)
    none = model.explain(np.zeros((0, N_FEATURES), np.float32))
    assert none is not None and none.shape == (0, N_FEATURES)
    with pytest.raises(ValueError, match="shape"):
        model.explain(np.zeros((1, 3), np.float32))


def test_explain_without_attributions_output(tmp_path: Path) -> None:
    model = load_model(write_model_dir(tmp_path / "m"), providers="cpu")
    assert model.explain(np.zeros((2, N_FEATURES), np.float32)) is None
    s = model.score(np.zeros((2, N_FEATURES), np.float32))
    assert s.attributions is None


def test_explain_observes_latency_not_flows_scored(tmp_path: Path) -> None:
    reg = CollectorRegistry()
    model = load_model(_with_score_graph(tmp_path / "m"), providers="cpu", metrics=Metrics(reg))
    model.score(np.zeros((4, N_FEATURES), np.float32))
    model.explain(np.zeros((2, N_FEATURES), np.float32))
    assert reg.get_sample_value("netwarden_flows_scored_total") == 4.0
    assert reg.get_sample_value("netwarden_inference_latency_seconds_count") == 2.0


def test_bad_score_graph_is_refused_naming_it(tmp_path: Path) -> None:
    w, b = default_weights(n_classes=4)
    d = _with_score_graph(tmp_path / "classes", linear_onnx(w, b))
    _expect_one_line_error(d, "model.score.onnx", "manifest lists 3 classes")
    w, b = default_weights()
    d = _with_score_graph(tmp_path / "name", linear_onnx(w, b, input_name="x"))
    _expect_one_line_error(d, "model.score.onnx", "input 'features'")
    d = _with_score_graph(tmp_path / "junk", b"not a model")
    _expect_one_line_error(d, "model.score.onnx", "not a loadable ONNX model")
    d = _with_score_graph(tmp_path / "tampered")
    with (d / "model.score.onnx").open("ab") as f:
        f.write(b"\0")
    _expect_one_line_error(d, "'score_model_sha256'", "model.score.onnx", "replaced or corrupt")
