"""The batch (fast) alert builder gives exactly the per-row builder's documents and lines."""

from __future__ import annotations

import copy
import json
import pickle
from typing import Any

import numpy as np
import pytest
from modelutil import N_FEATURES, write_model_dir
from netwarden.alerts import AlertPolicy
from netwarden.flows.params import FLOW_META_DTYPE, EndedFlows, EndReason
from netwarden.metrics import Metrics
from netwarden.scoring import Model, load_model
from netwarden.scoring.model import Scores
from netwarden.sinks.jsonl import EncodedDoc, encode_lines, json_line
from prometheus_client import CollectorRegistry

V4 = 0xFFFF_0000_0000


def _varied_meta(n: int, seed: int) -> np.ndarray:
    """IPv4 and IPv6, TCP/UDP/SCTP/ICMP/ICMPv6/GRE/ESP, VLANs, a few mixed-family rows,
    repeated endpoints (cache hits), equal endpoints, every end reason."""
    rng = np.random.default_rng(seed)
    m = np.zeros(n, FLOW_META_DTYPE)
    v6 = rng.random(n) < 0.3
    pool4 = np.uint64(V4) | rng.integers(0, 2**32, 12, dtype=np.uint64)
    for side in ("src", "dst"):
        m[f"{side}_hi"] = np.where(
            v6, rng.choice(np.array([0x2001_0DB8 << 32, 0xFE80 << 48, 0], np.uint64), n), 0
        )
        m[f"{side}_lo"] = np.where(
            v6, rng.integers(0, 2**63, n, dtype=np.uint64), rng.choice(pool4, n)
        )
    mixed = rng.random(n) < 0.03
    m["dst_hi"][mixed], m["dst_lo"][mixed] = 0x2001_0DB8 << 32, 7
    same = rng.random(n) < 0.05
    m["dst_hi"][same], m["dst_lo"][same] = m["src_hi"][same], m["src_lo"][same]
    m["ip_version"] = np.where(v6, 6, 4)
    m["sport"] = rng.choice([0, 22, 80, 443, 50000, 65535], n)
    m["dport"] = rng.choice([0, 22, 80, 443, 50000, 65535], n)
    m["proto"] = rng.choice([6, 6, 17, 132, 1, 58, 47, 50, 200], n)
    m["icmp_type"] = rng.choice([0, 3, 8, 11, 128, 129, 135, 136, 255], n)
    m["icmp_code"] = rng.integers(0, 4, n)
    m["vlan"] = rng.choice([0, 0, 0, 1, 42, 4095], n)
    m["end_reason"] = rng.choice([int(r) for r in EndReason] + [250], n)
    m["first_ts_ns"] = rng.integers(1_700_000_000 * 10**9, 1_700_000_050 * 10**9, n)
    m["last_ts_ns"] = m["first_ts_ns"] + rng.integers(0, 5 * 10**9, n)
    for k in ("fwd_packets", "bwd_packets", "fwd_bytes", "bwd_bytes"):
        m[k] = rng.integers(0, 10**6, n)
    return m


def _varied_features(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.choice(
        np.array([0.0, 1.0, 2.5, 1448.0, 65535.0, 1e7, 3.3e-5, -4.0], np.float32), (n, N_FEATURES)
    )
    x[rng.random((n, N_FEATURES)) < 0.01] = np.nan
    x[rng.random((n, N_FEATURES)) < 0.005] = np.inf
    x[: n // 4] = x[0]  # a flood: identical rows share their reasons
    return x


def _varied_scores(model: Model, flows: EndedFlows, seed: int) -> Scores:
    """The model's scores (and attributions), with attack scores spread over [0, 1] and
    both attack classes used, so most rows alert; a few NaN scores never alert."""
    s = model.score(flows.features)
    rng = np.random.default_rng(seed)
    s.attack_score[:] = rng.random(len(s)).astype(np.float32)
    s.attack_score[::9] = np.nan
    s.attack_idx[:] = rng.integers(1, 3, len(s))
    return s


@pytest.fixture(scope="module", params=[False, True], ids=["robust_z", "attributions"])
def model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Model:
    d = write_model_dir(tmp_path_factory.mktemp("m"), attributions=request.param)
    return load_model(d, providers="cpu")


@pytest.mark.parametrize("allow", [(), ("10.0.0.0/8", "2001:db8::/32")])
@pytest.mark.parametrize("seed", [1, 2])
def test_batch_documents_equal_per_row_documents(
    model: Model, allow: tuple[str, ...], seed: int
) -> None:
    meta = _varied_meta(400, seed)
    meta["src_lo"][:20] = V4 | 0x0A00_0001  # some rows in 10.0.0.0/8
    flows = EndedFlows(meta, _varied_features(400, seed))
    scores = _varied_scores(model, flows, seed)
    policy = AlertPolicy(
        model.manifest, threshold=0.2, allowlist_cidrs=allow, community_id_seed=seed * 1000
    )
    fast, _ = policy.documents(flows, scores)
    ref = policy.documents_per_row(flows, scores)
    assert len(fast) == len(ref) > 100
    kinds = {(d["network"]["type"], d["network"]["transport"], "vlan" in d["network"]) for d in ref}
    assert len(kinds) > 12  # the batch really is varied
    assert any(d["netwarden"]["reasons"] for d in ref)
    for f, r in zip(fast, ref, strict=True):
        assert isinstance(f, EncodedDoc) and type(r) is dict
        assert f == r  # the dicts, key for key
        assert list(f) == list(r)
        assert json.loads(f.json_line) == r  # the line says the same
        assert f.json_line == json.dumps(
            r, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )  # byte for byte


def test_alert_counts_and_flow_log_follow_the_batch_path(model: Model) -> None:
    meta = _varied_meta(200, 3)
    flows = EndedFlows(meta, _varied_features(200, 3))
    scores = _varied_scores(model, flows, 3)
    metrics = Metrics(CollectorRegistry())
    policy = AlertPolicy(model.manifest, threshold=0.2, emit_flows=True, metrics=metrics)
    alerts, log = policy.documents(flows, scores)
    labels = [a["netwarden"]["label"] for a in alerts]
    for label in set(labels):
        got = metrics.registry.get_sample_value("netwarden_alerts_total", {"label": label})
        assert got == labels.count(label)
    alerted = [d for d in log if d["netwarden"]["alert"]]
    assert len(alerted) == len(alerts) and len(log) == 200
    assert all(type(d) is dict and d["event"]["kind"] == "event" for d in alerted)
    assert alerts[0]["event"]["kind"] == "alert"  # the flow-log copy left the alert alone


def test_encoded_doc_is_written_as_is_and_copies_are_plain() -> None:
    doc = EncodedDoc({"a": {"b": 1}})
    doc.json_line = '{"a":{"b":1}}'
    assert encode_lines([doc, {"c": 2}]) == b'{"a":{"b":1}}\n{"c":2}\n'
    assert json_line(doc) == doc.json_line and json_line({"a": 1}) is None
    for cp in (copy.copy(doc), copy.deepcopy(doc), pickle.loads(pickle.dumps(doc)), dict(doc)):
        assert type(cp) is dict and cp == doc
        assert json_line(cp) is None  # a changed copy is encoded afresh
    deep: Any = copy.deepcopy(doc)
    deep["a"]["b"] = 2
    assert doc["a"]["b"] == 1
    bare = EncodedDoc({"x": 1})  # no line set: encoded like any dict
    assert encode_lines([bare]) == b'{"x":1}\n'
