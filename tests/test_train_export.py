"""ONNX export: parity with torch for every layer kind, attributions, INT8, manifest checks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from netwarden.features.cic_schema import CIC_SCHEMA
from netwarden.scoring.manifest import ModelError, load_manifest
from netwarden.scoring.model import load_model
from netwarden_train import cli, export, onnx_graph
from netwarden_train import run as run_mod
from netwarden_train.config import ModelConfig
from netwarden_train.model import Classifier, Preprocess, attack_attributions, fit_scaler
from netwarden_train.synthetic import make_table

N = len(CIC_SCHEMA)


def _model(norm: str, act: str, seed: int = 0) -> tuple[Classifier, np.ndarray]:
    torch.manual_seed(seed)
    x, _ = make_table(100, seed)
    mean, std = fit_scaler(x)
    m = Classifier(Preprocess(mean, std, 6.0), N, 4, ModelConfig([32, 16], act, 0.2, norm))
    if norm == "batch":  # non-trivial running statistics, as after training
        m.train()
        with torch.no_grad():
            for _ in range(3):
                m(torch.from_numpy(x.astype(np.float32)))
    return m.eval(), x.astype(np.float32)


@pytest.mark.parametrize(("norm", "act"), [("batch", "relu"), ("none", "tanh"), ("batch", "silu")])
def test_onnx_matches_torch_probabilities_and_attributions(
    tmp_path: Path, norm: str, act: str
) -> None:
    m, x = _model(norm, act)
    x[:5, 3] = np.inf  # non-finite inputs are zeroed in both graphs
    x[5:10, 7] = np.nan
    x[10:15] *= 1e6  # far outside the training range: the clip is exercised
    z_ref = np.zeros(N, np.float32)
    proto = export.to_onnx(m, benign=0, z_ref=z_ref, opset=17, attributions=True)
    path = tmp_path / "m.onnx"
    export.save(proto, path)
    res = export.parity(m, export.session(path), x, benign=0, z_ref=z_ref, tol=1e-4)
    assert res["probabilities_max_abs_diff"] < 1e-5
    assert res["attributions_max_rel_diff"] < 1e-4


def test_layer_norm_exports_without_attributions(tmp_path: Path) -> None:
    m, x = _model("layer", "relu")
    z_ref = np.zeros(N, np.float32)
    with pytest.raises(ValueError, match="layer norm"):
        export.to_onnx(m, benign=0, z_ref=z_ref, opset=17, attributions=True)
    path = tmp_path / "m.onnx"
    export.save(export.to_onnx(m, benign=0, z_ref=z_ref, opset=17, attributions=False), path)
    res = export.parity(m, export.session(path), x, benign=0, z_ref=z_ref, tol=1e-4)
    assert "attributions_max_abs_diff" not in res


def test_attributions_equal_autograd_reference() -> None:
    m, x = _model("batch", "relu", seed=3)
    z_ref = np.full(N, 0.1, np.float32)
    a = attack_attributions(m, torch.from_numpy(x[:4]), benign=0, z_ref=torch.from_numpy(z_ref))
    assert a.shape == (4, N) and torch.isfinite(a).all()


def test_int8_variant_within_tolerance(tmp_path: Path) -> None:
    m, x = _model("batch", "relu", seed=1)
    fp32, int8 = tmp_path / "fp32.onnx", tmp_path / "int8.onnx"
    export.save(
        export.to_onnx(m, benign=0, z_ref=np.zeros(N, np.float32), opset=17, attributions=True),
        fp32,
    )
    export.quantize(fp32, int8)
    p32 = export.run_onnx(export.session(fp32), x)[0]
    p8 = export.run_onnx(export.session(int8), x)[0]
    assert int8.stat().st_size < fp32.stat().st_size
    assert np.abs(p32 - p8).max() < 0.05
    assert (p32.argmax(1) == p8.argmax(1)).mean() > 0.97


@pytest.fixture(scope="module")
def shipped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = Path(__file__).resolve().parent.parent / "models" / "netwarden-cic"
    dst = tmp_path_factory.mktemp("model") / "netwarden-cic"
    shutil.copytree(src, dst)
    return dst


def test_shipped_model_loads_and_is_small(shipped: Path) -> None:
    model = load_model(shipped, providers="cpu")
    assert model.manifest.classes[0] == "BENIGN"
    assert (shipped / "model.onnx").stat().st_size < 5 * 2**20
    assert model.has_score_graph  # scores with model.score.onnx, explains with model.onnx
    s = model.score(np.zeros((2, N), np.float32))
    assert s.attributions is None and s.probs.shape == (2, 9)
    att = model.explain(np.zeros((2, N), np.float32))
    assert att is not None and att.shape == (2, N)
    assert "Sharafaldin" in (shipped / "MODEL_CARD.md").read_text()


def test_manifest_with_other_schema_is_refused(shipped: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(shipped, bad)
    man = json.loads((bad / "manifest.json").read_text())
    man["feature_schema"]["hash"] = "0" * 64
    (bad / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(ModelError, match="does not match the running schema"):
        load_manifest(bad, schema=CIC_SCHEMA)
    with pytest.raises(ModelError):
        load_model(bad, providers="cpu")


def test_shipped_model_scores_a_flow_the_same_in_any_batch(shipped: Path) -> None:
    # A deterministic detector: a flow's score must not depend on the other flows of its
    # micro-batch (dynamic INT8 failed this by up to 0.12, so the fp32 graph ships).
    sess = export.session(shipped / "model.onnx")
    x = np.abs(np.random.default_rng(3).lognormal(3, 2, size=(128, N))).astype(np.float32)
    assert export.batch_dependence(sess, x) <= run_mod.BATCH_TOLERANCE
    assert export.batch_dependence(export.session(shipped / "model.int8.onnx"), x) > 1e-3


def _rows(n: int = 512, seed: int = 5) -> np.ndarray:
    x = np.random.default_rng(seed).lognormal(3, 3, size=(n, N)).astype(np.float32)
    x[0], x[1, ::4] = 0.0, np.nan
    return x


def _without_score_graph(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    man = json.loads((dst / "manifest.json").read_text())
    del man["score_model_file"], man["score_model_sha256"]
    (dst / "manifest.json").write_text(json.dumps(man, indent=2))
    (dst / "model.score.onnx").unlink()
    return dst


def test_shipped_score_graph_equals_full_graph(shipped: Path, tmp_path: Path) -> None:
    full = export.run_onnx(export.session(shipped / "model.onnx"), _rows())
    score = export.run_onnx(export.session(shipped / "model.score.onnx"), _rows())
    assert len(score) == 1 and float(np.abs(score[0] - full[0]).max()) <= export.SCORE_TOL
    # derived again from model.onnx alone: the same bytes, model.onnx and the rest untouched
    d = _without_score_graph(shipped, tmp_path / "m")
    before = json.loads((d / "manifest.json").read_text())
    onnx_bytes = (d / "model.onnx").read_bytes()
    res = export.write_score_graph(d)
    assert res["probabilities_max_abs_diff"] <= export.SCORE_TOL
    assert res["batch_dependence"] <= run_mod.BATCH_TOLERANCE
    assert (d / "model.score.onnx").read_bytes() == (shipped / "model.score.onnx").read_bytes()
    assert (d / "model.onnx").read_bytes() == onnx_bytes
    after = json.loads((d / "manifest.json").read_text())
    assert list(after)[list(after).index("model_sha256") + 1] == "score_model_file"
    assert {k: v for k, v in after.items() if not k.startswith("score_")} == before
    assert (
        after["score_model_sha256"]
        == json.loads((shipped / "manifest.json").read_text())["score_model_sha256"]
    )


def test_score_graph_model_scores_like_the_full_graph(shipped: Path, tmp_path: Path) -> None:
    plain = load_model(_without_score_graph(shipped, tmp_path / "plain"), providers="cpu")
    model = load_model(shipped, providers="cpu")
    assert model.has_score_graph and not plain.has_score_graph
    x = _rows(256)
    s, ref = model.score(x), plain.score(x)
    assert s.attributions is None and ref.attributions is not None
    assert float(np.abs(s.probs - ref.probs).max()) <= export.SCORE_TOL
    np.testing.assert_array_equal(s.label_idx, ref.label_idx)
    att = model.explain(x[:17])
    assert att is not None
    np.testing.assert_array_equal(att, ref.attributions[:17])


@pytest.mark.parametrize("act", ["relu", "silu"])
def test_derived_score_graph_of_a_fresh_export(tmp_path: Path, act: str) -> None:
    m, x = _model("batch", act)
    proto = export.to_onnx(m, benign=0, z_ref=np.zeros(N, np.float32), opset=17, attributions=True)
    full = tmp_path / "model.onnx"
    export.save(proto, full)
    res = export.derive_score_graph(full, tmp_path / "model.score.onnx", x)
    assert res["probabilities_max_abs_diff"] <= export.SCORE_TOL
    pruned = export.session(tmp_path / "model.score.onnx")
    assert [o.name for o in pruned.get_outputs()] == ["probabilities"]
    assert [i.name for i in pruned.get_inputs()] == ["features"]
    assert pruned.get_inputs()[0].shape[0] == "batch"
    with pytest.raises(ValueError, match="not in graph outputs"):
        onnx_graph.prune(proto, ("logits",))


def test_publish_derives_the_score_graph_when_the_run_has_none(
    shipped: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    _without_score_graph(shipped, run / "model")
    assert cli.main(["publish", str(run), str(tmp_path / "x")]) == 2  # no DONE marker
    (run / "DONE").write_text("done\n")
    dest = tmp_path / "models" / "m"
    assert cli.main(["publish", str(run), str(dest)]) == 0
    assert (dest / "model.score.onnx").read_bytes() == (shipped / "model.score.onnx").read_bytes()
    assert load_model(dest, providers="cpu").has_score_graph
    # a run that has one: copied as it is
    run2 = tmp_path / "run2"
    shutil.copytree(shipped, run2 / "model")
    (run2 / "DONE").write_text("done\n")
    assert cli.main(["publish", str(run2), str(tmp_path / "m2")]) == 0
    assert (
        load_manifest(tmp_path / "m2").score_model_sha256
        == load_manifest(shipped).score_model_sha256
    )
