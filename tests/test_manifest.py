"""Manifest validation: every problem is a one-line ModelError naming file, key and rule."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from modelutil import manifest_dict, write_model_dir
from netwarden.features.cic_schema import CIC_SCHEMA
from netwarden.features.schema import FeatureSchema, FeatureSpec
from netwarden.flows.params import FlowParams
from netwarden.scoring import (
    Manifest,
    ModelError,
    file_sha256,
    load_manifest,
    load_threshold_override,
)
from netwarden.scoring.manifest import find_threshold_override, parse_manifest


def _edit(model_dir: Path, fn: Any) -> None:
    p = model_dir / "manifest.json"
    d = json.loads(p.read_text())
    fn(d)
    p.write_text(json.dumps(d))


def test_valid_manifest_round_trips(tmp_path: Path) -> None:
    d = write_model_dir(tmp_path / "m")
    m = load_manifest(d, schema=CIC_SCHEMA)
    assert isinstance(m, Manifest)
    assert m.classes == ("BENIGN", "DoS Hulk", "SSH-Patator")
    assert m.benign_index == 0
    assert m.flow == FlowParams()
    assert m.outputs.attributions is None
    assert m.benign_stats["Flow Duration"].p95 == 2.0
    assert m.metrics == {"f1_macro": 0.5}
    again = parse_manifest(json.loads(json.dumps(m.to_dict())), path=d / "manifest.json")
    assert again == m


@pytest.mark.parametrize(
    ("edit", "key", "problem"),
    [
        (lambda d: d.pop("threshold"), "threshold", "is missing"),
        (lambda d: d["feature_schema"].pop("hash"), "feature_schema.hash", "is missing"),
        (lambda d: d.update(threshold="0.5"), "threshold", "must be a finite number"),
        (lambda d: d.update(threshold=1.5), "threshold", "must be in [0, 1]"),
        (lambda d: d.update(classes="BENIGN"), "classes", "must be a list"),
        (lambda d: d.update(classes=["BENIGN", "BENIGN"]), "classes", "duplicate"),
        (lambda d: d.update(benign_class="Normal"), "benign_class", "not in classes"),
        (lambda d: d.update(format_version=2), "format_version", "this netwarden reads 1"),
        (lambda d: d.update(name=""), "name", "non-empty string"),
        (lambda d: d.update(inputs=["features"]), "inputs", "must be a JSON object"),
        (lambda d: d["flow"].update(idle_timeout_s="2m"), "flow.idle_timeout_s", "finite"),
        (lambda d: d["flow"].update(max_flows=1.5), "flow.max_flows", "must be an integer"),
        (lambda d: d["flow"].update(bogus=1), "flow.bogus", "is not a flow parameter"),
        # values a flow table refuses: caught at model load, not when the daemon builds the table
        (lambda d: d["flow"].update(idle_timeout_s=0), "flow.idle_timeout_s", "must be > 0"),
        (lambda d: d["flow"].update(max_flows=0), "flow.max_flows", "must be in [1, 2**30]"),
        (lambda d: d["flow"].update(tcp_close_grace_s=-1), "flow.tcp_close_grace_s", ">= 0"),
        (
            lambda d: d["benign_stats"]["Flow Duration"].update(p05=5.0),
            "benign_stats.Flow Duration",
            "p05 <= median <= p95",
        ),
        (lambda d: d.update(model_sha256="abc"), "model_sha256", "64 lowercase hex"),
    ],
)
def test_bad_manifest_names_file_key_and_problem(
    tmp_path: Path, edit: Any, key: str, problem: str
) -> None:
    d = write_model_dir(tmp_path / "m")
    _edit(d, edit)
    with pytest.raises(ModelError) as ei:
        load_manifest(d)
    msg = str(ei.value)
    assert str(d / "manifest.json") in msg
    assert repr(key) in msg
    assert problem in msg
    assert "\n" not in msg


def test_missing_dir_and_file_and_bad_json(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="model directory not found"):
        load_manifest(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match=r"manifest\.json: file not found"):
        load_manifest(tmp_path / "empty")
    d = write_model_dir(tmp_path / "m")
    for garbage in (b"{not json", b"\xff\xfe\x00binary", b"[" * 100_000):
        (d / "manifest.json").write_bytes(garbage)
        with pytest.raises(ModelError, match=r"manifest\.json: not valid JSON") as ei:
            load_manifest(d)
        assert "\n" not in str(ei.value)


def test_schema_mismatch_names_both_schemas(tmp_path: Path) -> None:
    other = FeatureSchema("other-v2", (FeatureSpec("a", "s", "x"),))
    d = write_model_dir(
        tmp_path / "m", manifest_overrides={"feature_schema": {"id": other.id, "hash": other.hash}}
    )
    with pytest.raises(ModelError) as ei:
        load_manifest(d, schema=CIC_SCHEMA)
    msg = str(ei.value)
    for part in (other.id, other.hash, CIC_SCHEMA.id, CIC_SCHEMA.hash):
        assert part in msg
    # Same id, other hash (a feature was renamed): still refused.
    d2 = write_model_dir(
        tmp_path / "m2",
        manifest_overrides={"feature_schema": {"id": CIC_SCHEMA.id, "hash": "0" * 64}},
    )
    with pytest.raises(ModelError, match="0" * 64):
        load_manifest(d2, schema=CIC_SCHEMA)
    assert load_manifest(d2).feature_schema.hash == "0" * 64  # no schema: structure only


def test_benign_stats_must_name_schema_features(tmp_path: Path) -> None:
    d = write_model_dir(tmp_path / "m")
    _edit(d, lambda m: m["benign_stats"].update(Bogus={"p05": 0, "median": 0, "p95": 0}))
    with pytest.raises(ModelError, match=r"'benign_stats\.Bogus' is not a feature"):
        load_manifest(d, schema=CIC_SCHEMA)


def test_sha256_mismatch_is_refused(tmp_path: Path) -> None:
    d = write_model_dir(tmp_path / "m")
    with (d / "model.onnx").open("ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelError) as ei:
        load_manifest(d)
    assert "'model_sha256'" in str(ei.value)
    assert file_sha256(d / "model.onnx") in str(ei.value)
    assert load_manifest(d, verify_sha256=False).name == "tiny-linear"


def test_model_file_missing(tmp_path: Path) -> None:
    d = write_model_dir(tmp_path / "m")
    (d / "model.onnx").unlink()
    with pytest.raises(ModelError, match=r"'model_file' names .*model\.onnx, which does not exist"):
        load_manifest(d)


def test_threshold_override(tmp_path: Path) -> None:
    d = write_model_dir(tmp_path / "m")
    assert find_threshold_override(d, None) is None
    (d / "threshold.json").write_text(json.dumps({"threshold": 0.9, "source": "calibrate"}))
    o = find_threshold_override(d, None)
    assert o is not None and o.threshold == 0.9 and o.source == "calibrate"
    explicit = tmp_path / "t.json"
    explicit.write_text(json.dumps({"threshold": 0.25}))
    o2 = find_threshold_override(d, explicit)
    assert o2 is not None and o2.threshold == 0.25 and o2.source == str(explicit)
    explicit.write_text(json.dumps({"threshold": -1}))
    with pytest.raises(ModelError, match=r"t\.json: key 'threshold' must be in \[0, 1\]"):
        load_threshold_override(explicit)
    with pytest.raises(ModelError, match="file not found"):
        find_threshold_override(d, tmp_path / "missing.json")


def test_manifest_dict_helper_is_complete() -> None:
    # Guards the test helper itself: every Manifest field appears in it (the optional score
    # graph fields are tested with the shipped model, which has them).
    keys = set(manifest_dict("0" * 64)) | {"score_model_file", "score_model_sha256"}
    assert keys == set(Manifest.__dataclass_fields__)


def test_extra_keys_and_null_attributions_are_accepted(tmp_path: Path) -> None:
    # The training package writes a few informative keys the daemon does not need.
    d = write_model_dir(
        tmp_path / "m",
        manifest_overrides={
            "format": 1,
            "outputs": {"probabilities": "probabilities", "attributions": None},
            "attribution_method": None,
        },
    )
    m = load_manifest(d, schema=CIC_SCHEMA)
    assert m.outputs.attributions is None and m.attribution_method is None


def test_shipped_model_manifest_loads() -> None:
    d = Path(__file__).resolve().parent.parent / "models" / "netwarden-cic"
    if not (d / "manifest.json").is_file():
        pytest.skip("no model shipped in models/netwarden-cic")
    m = load_manifest(d, schema=CIC_SCHEMA)
    assert m.benign_class in m.classes
    assert set(m.benign_stats) <= set(CIC_SCHEMA.names)


def _score_fields(d: dict[str, Any]) -> None:
    d["score_model_file"] = "model.onnx"  # any existing file: load_manifest checks bytes only
    d["score_model_sha256"] = d["model_sha256"]


def test_score_model_fields_round_trip(tmp_path: Path) -> None:
    d = write_model_dir(tmp_path / "m")
    assert load_manifest(d).score_model_file is None
    assert "score_model_file" not in load_manifest(d).to_dict()
    _edit(d, _score_fields)
    m = load_manifest(d, schema=CIC_SCHEMA)
    assert m.score_model_file == "model.onnx" and m.score_model_sha256 == m.model_sha256
    assert parse_manifest(json.loads(json.dumps(m.to_dict())), path=d / "manifest.json") == m


def test_score_model_missing_or_mismatching_is_refused(tmp_path: Path) -> None:
    d = write_model_dir(tmp_path / "m")
    _edit(d, lambda m: m.update(score_model_file="model.score.onnx", score_model_sha256="a" * 64))
    with pytest.raises(ModelError, match=r"'score_model_file' names .*model\.score\.onnx, which"):
        load_manifest(d)
    (d / "model.score.onnx").write_bytes(b"other bytes")
    with pytest.raises(ModelError) as ei:
        load_manifest(d)
    msg = str(ei.value)
    assert "'score_model_sha256'" in msg and "model.score.onnx" in msg
    assert file_sha256(d / "model.score.onnx") in msg
    assert load_manifest(d, verify_sha256=False).score_model_file == "model.score.onnx"
    _edit(d, lambda m: m.pop("score_model_file"))
    with pytest.raises(ModelError, match="'score_model_sha256' is set but 'score_model_file'"):
        load_manifest(d)
    _edit(d, lambda m: m.update(score_model_file="model.score.onnx", score_model_sha256="x"))
    with pytest.raises(ModelError, match="'score_model_sha256' must be 64 lowercase hex"):
        load_manifest(d)
