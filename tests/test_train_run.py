"""A tiny training run end to end, attributions, evaluation metrics and calibration."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from netwarden.features.cic_schema import CIC_SCHEMA
from netwarden.scoring.model import load_model
from netwarden_train import config, run
from netwarden_train.calibrate import calibrate, threshold_for_rate
from netwarden_train.cli import main
from netwarden_train.evaluation import detection_at_fpr, evaluate, roc_curve
from netwarden_train.synthetic import make_table, write_csv

TINY = {
    "name": "tiny",
    "seed": 3,
    "data": {"val": 0.2, "test": 0.2},
    "model": {"hidden": [16], "dropout": 0.0},
    "train": {"epochs": 15, "batch_size": 32, "patience": 5, "lr": 0.01},
    "export": {"quantize": True},
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("tiny")
    csv = write_csv(d / "flows.csv", 120)
    cfg = config.from_dict(
        {**TINY, "runs_dir": str(d / "runs"), "data": {**TINY["data"], "csv": [str(csv)]}}
    )
    return run.run(cfg)


def test_run_writes_everything(tiny_run: Path) -> None:
    for name in (
        "config.json",
        "data_summary.json",
        "metrics.json",
        "report.md",
        "DONE",
        "confusion_stratified.png",
        "model/model.onnx",
        "model/manifest.json",
    ):
        assert (tiny_run / name).is_file(), name
    assert (tiny_run / "confusion_stratified.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    m = json.loads((tiny_run / "metrics.json").read_text())
    assert m["test_stratified"]["all"]["macro_f1"] > 0.95  # three well-separated classes
    assert m["export"]["parity"]["probabilities_max_abs_diff"] < 1e-4
    assert abs(m["export"]["int8"]["macro_f1_delta"]) < 0.05
    model = load_model(tiny_run / "model", providers="cpu")  # the daemon's own loader
    assert model.manifest.classes == ("BENIGN", "DoS", "PortScan")


def test_run_is_reproducible(tiny_run: Path, tmp_path: Path) -> None:
    csv = write_csv(tmp_path / "flows.csv", 120)
    cfg = config.from_dict(
        {**TINY, "runs_dir": str(tmp_path / "runs"), "data": {**TINY["data"], "csv": [str(csv)]}}
    )
    again = run.run(cfg)
    a = json.loads((tiny_run / "metrics.json").read_text())["test_stratified"]["all"]
    b = json.loads((again / "metrics.json").read_text())["test_stratified"]["all"]
    assert a["confusion"] == b["confusion"]


def test_attribution_names_the_decisive_feature(tiny_run: Path) -> None:
    """A benign flow with only its SYN count raised to a DoS level: SYN count comes first."""
    model = load_model(tiny_run / "model", providers="cpu")
    x, labels = make_table(50, seed=9)
    benign = x[np.array(labels) == "BENIGN"].astype(np.float32)
    i = CIC_SCHEMA.index("SYN Flag Count")
    probe = benign.copy()
    probe[:, i] = 1500.0
    s = model.score(probe)  # the score-only graph: no attributions
    att = model.explain(probe)  # the full graph, as the alert path calls it
    assert att is not None
    assert (s.attack_score > model.threshold).mean() > 0.9
    top = np.argmax(att, axis=1)
    assert (top == i).mean() > 0.9


def test_cli_evaluate_prints_json(
    tiny_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    csv = write_csv(tmp_path / "other.csv", 30, seed=5)
    assert main(["evaluate", "--model", str(tiny_run / "model"), "--data", str(csv)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["csv"]["rows"] == 90 and out["csv"]["accuracy"] > 0.9


def test_calibration_hits_its_rate_on_held_back_benign(tiny_run: Path, tmp_path: Path) -> None:
    x, labels = make_table(4000, seed=11)
    benign = x[np.array(labels) == "BENIGN"]
    fit_half, held_back = benign[:2000], benign[2000:]
    rate = 0.05
    out = tmp_path / "threshold.json"
    doc = calibrate(tiny_run / "model", x=fit_half, max_alert_rate=rate, out=out)
    assert doc["alert_rate_at_threshold"] <= rate
    model = load_model(tiny_run / "model", providers="cpu", threshold_override=out)
    assert model.threshold == pytest.approx(doc["threshold"])
    held = (model.score(held_back.astype(np.float32)).attack_score >= model.threshold).mean()
    assert held <= 2.5 * rate  # binomial noise on 2,000 held-back flows, same distribution


def test_threshold_for_rate_is_exact_on_its_own_scores() -> None:
    s = np.random.default_rng(0).uniform(size=10_000)
    for r in (0.0, 0.001, 0.01, 0.2):
        t = threshold_for_rate(s, r)
        assert (s >= t).mean() <= r
        assert (s >= np.nextafter(t, -np.inf) - 1e-9).mean() >= r - 1e-4


def test_roc_auc_and_detection_against_brute_force() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 500)
    p1 = np.clip(y * 0.3 + rng.uniform(size=500) * 0.7, 0, 1)
    prob = np.stack([1 - p1, p1], axis=1)
    m = evaluate(y, prob, ["BENIGN", "X"], benign=0, threshold=0.5)
    pos, neg = p1[y == 1], p1[y == 0]
    brute = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert m["binary"]["roc_auc"] == pytest.approx(brute, abs=1e-9)
    d = detection_at_fpr(p1, y == 1, 0.01)
    assert d["fpr"] <= 0.01 and d["detection_rate"] == pytest.approx((pos >= d["threshold"]).mean())
    fpr, tpr, _ = roc_curve(p1, y == 1)
    assert fpr[0] == 0 and tpr[-1] == 1


def test_weight_cells_keep_capture_names_whole_unless_told() -> None:
    from types import SimpleNamespace

    from netwarden_train.run import weight_cells

    t = SimpleNamespace(family=np.array(["BruteForce", "Infiltration", "DoS"]),
                        origin=np.array(["capture", "csv", "capture"]),
                        source=np.array(["synth-brute-ssh", "day3.csv", "udp-amplification-x"]))
    assert weight_cells(t).tolist() == [
        "BruteForce|capture|synth-brute-ssh", "Infiltration|csv", "DoS|capture|udp-amplification-x"]
    # the cells models up to 0.4.0 were trained with: names cut to 20 characters
    assert weight_cells(t, width=20).tolist() == [
        "BruteForce|capture|s", "Infiltration|csv", "DoS|capture|udp-ampl"]
