"""Alert policy: ECS fields and types, flow ids, allowlist, reasons and their order."""

from __future__ import annotations

import doctest
import importlib
import ipaddress
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from modelutil import N_FEATURES, write_model_dir
from netwarden.alerts import AlertPolicy, parse_cidr
from netwarden.alerts_ecs import flow_id, format_addr, rfc3339_us
from netwarden.community_id import community_id
from netwarden.features.cic_schema import CIC_SCHEMA
from netwarden.flows.params import FLOW_META_DTYPE, EndedFlows, EndReason
from netwarden.metrics import Metrics
from netwarden.scoring import Model, load_model
from prometheus_client import CollectorRegistry

T0 = 1_700_000_000_123_456_789  # 2023-11-14T22:13:20.123456789Z


def _addr(text: str) -> tuple[int, int]:
    ip = ipaddress.ip_address(text)
    v = int(ip) | (0xFFFF_0000_0000 if ip.version == 4 else 0)
    return v >> 64, v & 0xFFFF_FFFF_FFFF_FFFF


def meta_row(src: str, dst: str, sport: int, dport: int, proto: int = 6, **kw: Any) -> Any:
    m = np.zeros(1, FLOW_META_DTYPE)
    m["src_hi"], m["src_lo"] = _addr(src)
    m["dst_hi"], m["dst_lo"] = _addr(dst)
    m["sport"], m["dport"], m["proto"] = sport, dport, proto
    m["ip_version"] = ipaddress.ip_address(src).version
    m["first_ts_ns"], m["last_ts_ns"] = T0, T0 + 2_500_000_000
    m["fwd_packets"], m["bwd_packets"], m["fwd_bytes"], m["bwd_bytes"] = 5, 4, 400, 3000
    m["end_reason"] = int(EndReason.FIN)
    for k, v in kw.items():
        m[k] = v
    return m


def flows_of(rows: list[Any], features: np.ndarray | None = None) -> EndedFlows:
    meta = np.concatenate(rows)
    if features is None:
        features = benign_features(len(meta))
    return EndedFlows(meta, features.astype(np.float32))


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Model:
    return load_model(write_model_dir(tmp_path_factory.mktemp("m")), providers="cpu")


@pytest.fixture(scope="module")
def model_att(tmp_path_factory: pytest.TempPathFactory) -> Model:
    d = write_model_dir(tmp_path_factory.mktemp("ma"), attributions=True)
    return load_model(d, providers="cpu")


def benign_features(n: int) -> np.ndarray:
    """Every feature at its benign median (modelutil.benign_stats: 1, feature 2: 0)."""
    x = np.ones((n, N_FEATURES), np.float32)
    x[:, 2] = 0.0
    return x


def _attack_features(n: int) -> np.ndarray:
    x = benign_features(n)
    x[:, 0] = 10.0  # Flow Duration drives "DoS Hulk" in the tiny model
    return x


def test_alert_document_fields_and_types(model: Model) -> None:
    flows = flows_of(
        [
            meta_row("192.168.1.52", "8.8.8.8", 54585, 53, 17, vlan=42),
            meta_row("10.0.0.1", "10.0.0.2", 1234, 80),
        ],
        np.concatenate([_attack_features(1), benign_features(1)]),
    )
    scores = model.score(flows.features)
    policy = AlertPolicy(model.manifest, threshold=0.5)
    alerts, flow_log = policy.documents(flows, scores)
    assert flow_log == [] and len(alerts) == 1
    a = alerts[0]
    json.dumps(a, allow_nan=False)  # serialisable, no NaN
    assert a["@timestamp"] == "2023-11-14T22:13:22.623456Z"
    ev = a["event"]
    assert ev["kind"] == "alert" and ev["category"] == ["network"]
    assert ev["start"] == "2023-11-14T22:13:20.123456Z" and ev["end"] == a["@timestamp"]
    assert ev["duration"] == 2_500_000_000 and isinstance(ev["duration"], int)
    assert a["source"] == {"ip": "192.168.1.52", "port": 54585, "packets": 5, "bytes": 400}
    assert a["destination"] == {"ip": "8.8.8.8", "port": 53, "packets": 4, "bytes": 3000}
    net = a["network"]
    assert net["transport"] == "udp" and net["type"] == "ipv4" and net["vlan"] == {"id": "42"}
    assert net["community_id"] == "1:d/FP5EW3wiY1vCndhwleRRKHowQ="  # the spec's UDP vector
    nw = a["netwarden"]
    assert ev["id"] == nw["flow_id"] and len(nw["flow_id"]) == 16
    assert nw["label"] == "DoS Hulk" and nw["threshold"] == 0.5
    assert isinstance(nw["score"], float) and nw["score"] >= 0.5
    assert nw["score"] == pytest.approx(float(scores.attack_score[0]), abs=1e-6)
    assert nw["end_reason"] == "fin"
    assert nw["model"] == {"name": "tiny-linear", "version": "0.0.1"}
    assert "alert" not in nw
    assert a["message"].startswith(f"DoS Hulk {nw['score']:.2f}: Flow Duration 10 us")


def test_ipv6_icmp_and_untagged(model: Model) -> None:
    flows = flows_of(
        [
            meta_row(
                "fe80::200:86ff:fe05:80da",
                "fe80::260:97ff:fe07:69ea",
                0,
                0,
                58,
                icmp_type=135,
                icmp_code=0,
            )
        ],
        _attack_features(1),
    )
    a = AlertPolicy(model.manifest, threshold=0.5).documents(flows, model.score(flows.features))
    doc = a[0][0]
    assert doc["network"]["transport"] == "ipv6-icmp" and doc["network"]["type"] == "ipv6"
    assert doc["network"]["community_id"] == "1:dGHyGvjMfljg6Bppwm3bg0LO8TY="
    assert "vlan" not in doc["network"] and "port" not in doc["source"]
    assert doc["source"]["ip"] == "fe80::200:86ff:fe05:80da"
    assert doc["netwarden"]["icmp"] == {"type": 135, "code": 0}


def test_community_id_seed_is_configurable(model: Model) -> None:
    flows = flows_of([meta_row("128.232.110.120", "66.35.250.204", 34855, 80)], _attack_features(1))
    pol = AlertPolicy(model.manifest, threshold=0.5, community_id_seed=1)
    doc = pol.documents(flows, model.score(flows.features))[0][0]
    assert doc["network"]["community_id"] == "1:3V71V58M3Ksw/yuFALMcW0LAHvc="


def test_flow_id_is_deterministic_and_discriminating(model: Model) -> None:
    rows = [
        meta_row("10.0.0.1", "10.0.0.2", 1234, 80),
        meta_row("10.0.0.1", "10.0.0.2", 1234, 80, first_ts_ns=T0 + 1),
        meta_row("10.0.0.1", "10.0.0.2", 1235, 80),
        meta_row("10.0.0.1", "10.0.0.2", 1234, 80, vlan=7),
    ]
    pol = AlertPolicy(model.manifest, threshold=0.0, emit_flows=True)
    flows = flows_of(rows)
    ids = [d["netwarden"]["flow_id"] for d in pol.documents(flows, model.score(flows.features))[1]]
    again = [
        d["netwarden"]["flow_id"]
        for d in pol.documents(flows_of(rows), model.score(flows.features))[1]
    ]
    assert ids == again
    assert len(set(ids)) == 4
    assert all(len(i) == 16 and int(i, 16) >= 0 for i in ids)


def test_flow_log_marks_alerts(model: Model) -> None:
    x = benign_features(2)
    x[0, 0] = 10.0
    flows = flows_of(
        [meta_row("10.0.0.1", "10.0.0.2", 1, 2), meta_row("10.0.0.3", "10.0.0.4", 3, 4)], x
    )
    alerts, log = AlertPolicy(model.manifest, threshold=0.5, emit_flows=True).documents(
        flows, model.score(x)
    )
    assert len(alerts) == 1 and len(log) == 2
    assert [d["event"]["kind"] for d in log] == ["event", "event"]
    assert [d["netwarden"]["alert"] for d in log] == [True, False]
    assert log[1]["netwarden"]["label"] == "BENIGN" and "reasons" not in log[1]["netwarden"]
    assert log[0]["netwarden"]["reasons"] == alerts[0]["netwarden"]["reasons"]
    assert log[0]["netwarden"]["flow_id"] == alerts[0]["netwarden"]["flow_id"]


def test_allowlist_suppresses_and_counts(model: Model) -> None:
    reg = CollectorRegistry()
    rows = [
        meta_row("10.1.2.3", "192.0.2.1", 1, 2),  # source allowlisted (v4)
        meta_row("192.0.2.9", "10.200.0.1", 3, 4),  # destination allowlisted
        meta_row("2001:db8::5", "2001:db9::1", 5, 6, ip_version=6),  # v6 allowlisted
        meta_row("192.0.2.7", "198.51.100.1", 7, 8),
    ]  # alerts
    flows = flows_of(rows, _attack_features(4))
    pol = AlertPolicy(
        model.manifest,
        threshold=0.5,
        metrics=Metrics(reg),
        emit_flows=True,
        allowlist_cidrs=["10.0.0.0/8", "2001:db8::/32"],
    )
    alerts, log = pol.documents(flows, model.score(flows.features))
    assert [a["source"]["ip"] for a in alerts] == ["192.0.2.7"]
    assert reg.get_sample_value("netwarden_alerts_suppressed_total", {"reason": "allowlist"}) == 3
    assert reg.get_sample_value("netwarden_alerts_total", {"label": "DoS Hulk"}) == 1
    assert [d["netwarden"].get("suppressed") for d in log] == ["allowlist"] * 3 + [None]
    assert [d["netwarden"]["alert"] for d in log] == [False, False, False, True]
    assert {d["netwarden"]["label"] for d in log} == {"DoS Hulk"}  # what it would have been
    with pytest.raises(ValueError, match=r"'10\.0\.0\.0/33'"):
        AlertPolicy(model.manifest, threshold=0.5, allowlist_cidrs=["10.0.0.0/33"])


def test_benign_flows_in_allowlist_are_not_counted(model: Model) -> None:
    reg = CollectorRegistry()
    flows = flows_of([meta_row("10.1.2.3", "192.0.2.1", 1, 2)])
    pol = AlertPolicy(
        model.manifest, threshold=0.5, metrics=Metrics(reg), allowlist_cidrs=["10.0.0.0/8"]
    )
    assert pol.documents(flows, model.score(flows.features)) == ([], [])
    assert (
        reg.get_sample_value("netwarden_alerts_suppressed_total", {"reason": "allowlist"}) is None
    )


def test_reasons_fallback_robust_z_order(model: Model) -> None:
    x = _attack_features(1)
    names = CIC_SCHEMA.names
    # Benign stats in the helper: p05 0, median 1, p95 2 (scale 2/3.29); names[2] constant 0.
    x[0, 5] = 4.0  # z = 3 / 0.608 = 4.9
    x[0, 2] = 0.01  # constant feature moved: scale floor 1e-3 -> z = 10
    # Flow Duration 10 -> z = 14.8 (largest)
    flows = flows_of([meta_row("10.0.0.1", "10.0.0.2", 1, 2)], x)
    a = AlertPolicy(model.manifest, threshold=0.5).documents(flows, model.score(x))[0][0]
    reasons = a["netwarden"]["reasons"]
    assert a["netwarden"]["explanation_method"] == "robust_z"
    assert [r["feature"] for r in reasons] == [names[0], names[2], names[5]]
    assert reasons[0]["value"] == 10.0 and reasons[0]["benign_range"] == [0.0, 2.0]
    assert reasons[0]["unit"] == "us" and reasons[0]["benign_median"] == 1.0
    contribs = [r["contribution"] for r in reasons]
    assert contribs == sorted(contribs, reverse=True)
    assert "Flow Duration 10 us (benign 0..2)" in a["message"]


def test_reasons_from_attributions(model_att: Model) -> None:
    x = benign_features(1)
    x[0, 0] = 3.0  # attribution of feature 0 = x * (W[0,1] - W[0,0]) = 3; every other is 0
    flows = flows_of([meta_row("10.0.0.1", "10.0.0.2", 1, 2)], x)
    a = AlertPolicy(model_att.manifest, threshold=0.1).documents(flows, model_att.score(x))[0][0]
    nw = a["netwarden"]
    assert nw["explanation_method"] == "attributions"
    assert [r["feature"] for r in nw["reasons"]] == [CIC_SCHEMA.names[0]]  # only positives
    assert nw["reasons"][0]["contribution"] == 3.0


def test_threshold_boundary_and_nan(model: Model) -> None:
    flows = flows_of([meta_row("10.0.0.1", "10.0.0.2", 1, 2)] * 3, _attack_features(3))
    s = model.score(flows.features)
    edge = float(s.attack_score[0])
    s.attack_score[2] = np.nan
    alerts, log = AlertPolicy(model.manifest, threshold=edge, emit_flows=True).documents(flows, s)
    assert len(alerts) == 2  # score >= threshold alerts; NaN never does
    assert log[2]["netwarden"]["score"] is None and log[2]["netwarden"]["alert"] is False
    json.dumps(log, allow_nan=False)


def test_empty_batch(model: Model) -> None:
    flows = EndedFlows.empty(N_FEATURES)
    pol = AlertPolicy(model.manifest, threshold=0.5, emit_flows=True)
    assert pol.documents(flows, model.score(flows.features)) == ([], [])


@given(st.integers(0, 2**32 - 1))
def test_ipv4_text_matches_ipaddress(v: int) -> None:
    assert format_addr(0, 0xFFFF_0000_0000 | v) == str(ipaddress.IPv4Address(v))


def test_address_and_time_formatting() -> None:
    assert format_addr(*_addr("192.0.2.1")) == "192.0.2.1"
    assert format_addr(*_addr("::1")) == "::1"
    assert format_addr(*_addr("::fffe:a00:1")) == "::fffe:a00:1"  # not IPv4-mapped
    assert format_addr(0, 0xFFFF_0A00_0001) == "10.0.0.1"
    assert rfc3339_us(0) == "1970-01-01T00:00:00.000000Z"
    assert rfc3339_us(-1) == "1969-12-31T23:59:59.999999Z"
    assert community_id("10.0.0.1", "10.0.0.2", 6, 1, 2).startswith("1:")


def test_alert_file_round_trip(tmp_path: Path, model: Model) -> None:
    flows = flows_of([meta_row("10.0.0.1", "10.0.0.2", 1, 2)], _attack_features(1))
    alerts, _ = AlertPolicy(model.manifest, threshold=0.5).documents(
        flows, model.score(flows.features)
    )
    p = tmp_path / "a.json"
    p.write_text(json.dumps(alerts[0]))
    assert json.loads(p.read_text()) == alerts[0]


def test_reason_ranking_and_noise_floor(model: Model) -> None:
    from netwarden.alerts_reasons import Explainer

    ex = Explainer.build(model.manifest, CIC_SCHEMA)
    att = np.zeros((2, N_FEATURES), np.float32)
    att[0, [0, 1, 2, 3, 4]] = [5.0, 0.01, 0.2, -3.0, np.nan]  # 0.01 < 1 % of 5: noise
    att[1, [7, 9]] = [1.0, 2.0]
    reasons, method = ex.reasons(benign_features(2), att)
    assert method == "attributions"
    names = CIC_SCHEMA.names
    assert [r["feature"] for r in reasons[0]] == [names[0], names[2]]
    assert [r["feature"] for r in reasons[1]] == [names[9], names[7]]
    none, _ = ex.reasons(benign_features(1), np.zeros((1, N_FEATURES), np.float32))
    assert none == [[]]


_v4 = st.integers(0, 2**32 - 1).map(lambda i: str(ipaddress.IPv4Address(i)))
_v6 = st.integers(0, 2**128 - 1).map(lambda i: str(ipaddress.IPv6Address(i)))


_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def _in_allowlist(addr: str, net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    """Oracle: IPv4 is ::ffff:a.b.c.d; an IPv6 net outside ::ffff:0:0/96 matches IPv6 only."""
    a = ipaddress.ip_address(addr)
    if isinstance(net, ipaddress.IPv4Network):
        return a.version == 4 and a in net
    if a.version == 4:
        return net.subnet_of(_MAPPED) and ipaddress.ip_address(f"::ffff:{a}") in net
    return a in net


@settings(max_examples=300, deadline=None)
@given(st.one_of(_v4, _v6), st.one_of(_v4, _v6), st.integers(0, 128))
def test_allowlist_matches_ipaddress(addr: str, net_addr: str, plen: int) -> None:
    """The vectorised uint64-halves match agrees with the ipaddress module."""
    assume(not (":" in addr and ipaddress.ip_address(addr) in _MAPPED))  # stored as IPv4
    net_ip = ipaddress.ip_address(net_addr)
    net = ipaddress.ip_network(f"{net_addr}/{min(plen, net_ip.max_prefixlen)}", strict=False)
    pol = AlertPolicy.__new__(AlertPolicy)
    pol._allow = [parse_cidr(str(net))]
    other = "100::1"
    m = meta_row(addr, other, 1, 2)
    expect = _in_allowlist(addr, net) or _in_allowlist(other, net)
    assert bool(pol.allowlisted(m)[0]) == expect


def test_allowlist_v6_nets_and_mapped_v4(model: Model) -> None:
    v4 = flows_of([meta_row("10.1.2.3", "192.0.2.1", 1, 2)])
    pol = AlertPolicy(model.manifest, threshold=0.5, allowlist_cidrs=["::/0"])
    assert not pol.allowlisted(v4.meta)[0]  # "all IPv6" does not swallow IPv4
    pol = AlertPolicy(model.manifest, threshold=0.5, allowlist_cidrs=["::ffff:10.0.0.0/104"])
    assert pol.allowlisted(v4.meta)[0]  # an explicit IPv4-mapped net does match


@given(_v4, _v4, st.integers(0, 65535), st.integers(0, 65535))
def test_flow_id_ignores_direction(a: str, b: str, pa: int, pb: int) -> None:
    fwd = flow_id(meta_row(a, b, pa, pb).tolist()[0])
    rev = flow_id(meta_row(b, a, pb, pa).tolist()[0])
    assert fwd == rev


@pytest.mark.parametrize(
    "module",
    [
        "netwarden.alerts",
        "netwarden.alerts_ecs",
        "netwarden.alerts_reasons",
        "netwarden.community_id",
        "netwarden.scoring.batcher",
        "netwarden.sinks.jsonl",
    ],
)
def test_docstring_examples(module: str) -> None:
    """The examples in the docstrings of the scoring, alert and sink modules hold."""
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0, result
