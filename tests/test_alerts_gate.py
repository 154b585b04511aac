"""The alert gate: corroboration of lone flows, aggregation of floods, their documents,
metrics and watermarks, and the windowed counter under them."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from modelutil import CLASSES, N_FEATURES, write_model_dir
from netwarden.alerts import AlertPolicy
from netwarden.alerts_gate import GateConfig
from netwarden.alerts_window import WindowCounts, address_keys
from netwarden.flows.params import FLOW_META_DTYPE, EndedFlows, EndReason
from netwarden.metrics import Metrics
from netwarden.scoring import Scores, load_model
from netwarden.scoring.manifest import Manifest
from prometheus_client import CollectorRegistry

REPO = Path(__file__).resolve().parent.parent
S = 1_000_000_000
T0 = 1_700_000_000 * S


def _addr(text: str) -> tuple[int, int]:
    v = int(ipaddress.ip_address(text)) | 0xFFFF_0000_0000
    return v >> 64, v & 0xFFFF_FFFF_FFFF_FFFF


def flows(pairs: list[tuple[str, str]], *, packets: int = 1, t: int = T0,
          part: int = -1, seq0: int = 0) -> EndedFlows:
    """One flow per (src, dst) pair: ``packets`` forward packets, ending at ``t``."""
    m = np.zeros(len(pairs), FLOW_META_DTYPE)
    for i, (src, dst) in enumerate(pairs):
        m["src_hi"][i], m["src_lo"][i] = _addr(src)
        m["dst_hi"][i], m["dst_lo"][i] = _addr(dst)
    m["sport"] = 40000 + np.arange(len(pairs)) % 20000
    m["dport"], m["proto"], m["ip_version"] = 80, 6, 4
    m["first_ts_ns"], m["last_ts_ns"] = t - S // 10, t
    m["fwd_packets"], m["fwd_bytes"] = packets, 60 * packets
    m["end_reason"] = int(EndReason.IDLE)
    m["src_part"], m["first_seq"] = part, seq0 + np.arange(len(pairs))
    return EndedFlows(m, np.ones((len(pairs), N_FEATURES), np.float32))


def scores(n: int, attack: float = 0.9, label: int = 1) -> Scores:
    probs = np.zeros((n, len(CLASSES)), np.float32)
    probs[:, 0], probs[:, label] = 1 - attack, attack
    return Scores(probs, np.full(n, attack, np.float32), np.full(n, label, np.intp),
                  np.full(n, label, np.intp), None)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Manifest:
    return load_model(write_model_dir(tmp_path_factory.mktemp("m")), providers="cpu").manifest


def policy(manifest: Manifest, metrics: Metrics | None = None, **kw: Any) -> AlertPolicy:
    return AlertPolicy(manifest, threshold=0.5, emit_flows=True, metrics=metrics,
                       gate=GateConfig(**kw))


def decide(pol: AlertPolicy, f: EndedFlows, attack: float = 0.9) -> Any:
    return pol.decide(f, scores(len(f), attack))


def spread(n: int, dst: str = "10.9.0.1") -> list[tuple[str, str]]:
    """n flows from n different sources to one destination."""
    return [(f"172.16.{i // 250}.{i % 250 + 1}", dst) for i in range(n)]


# --- corroboration -------------------------------------------------------------------------

def test_lone_flows_without_corroboration_are_dropped_at_the_end(manifest: Manifest) -> None:
    reg = CollectorRegistry()
    pol = policy(manifest, Metrics(registry=reg), aggregate_after=0)
    out = decide(pol, flows(spread(4)))  # 4 lone flows, one destination: below 5
    assert out.alerts == [] and out.flow_log == [] and len(out.flows) == 4
    assert pol.gate is not None and pol.gate.held == 4
    assert reg.get_sample_value("netwarden_alerts_held") == 4
    end = pol.flush()
    assert end is not None and end.alerts == [] and not end.alerted.any()
    assert [d["netwarden"]["suppressed"] for d in end.flow_log] == ["uncorroborated"] * 4
    assert all(d["netwarden"]["alert"] is False for d in end.flow_log)
    assert reg.get_sample_value("netwarden_alerts_suppressed_total",
                                {"reason": "uncorroborated"}) == 4
    assert pol.gate.held == 0


def test_the_fifth_flow_to_a_host_releases_the_held_ones(manifest: Manifest) -> None:
    pol = policy(manifest, aggregate_after=0)
    first = decide(pol, flows(spread(4)))
    assert first.alerts == []
    later = decide(pol, flows(spread(5)[4:], t=T0 + 30 * S))
    assert len(later.alerts) == 5 and later.alerted.all()  # the new one and the 4 held
    assert sorted(d["event"]["end"][:19] for d in later.alerts)[0] == "2023-11-14T22:13:20"
    assert pol.gate is not None and pol.gate.held == 0


def test_multi_packet_alerts_corroborate_a_lone_flow_of_the_same_host(manifest: Manifest) -> None:
    pol = policy(manifest, aggregate_after=0)
    scan = [("10.1.1.1", f"10.2.0.{i}") for i in range(1, 5)]
    assert len(decide(pol, flows(scan, packets=2)).alerts) == 4  # never held
    out = decide(pol, flows([("10.1.1.1", "10.2.0.99")], packets=1))
    assert len(out.alerts) == 1  # 4 earlier alerts of 10.1.1.1 + itself = 5


def test_a_sensor_wide_flood_of_lone_flows_alerts_without_shared_addresses(
    manifest: Manifest,
) -> None:
    pairs = [(f"172.16.0.{i}", f"10.3.0.{i}") for i in range(1, 21)]
    pol = policy(manifest, aggregate_after=0)
    assert len(decide(pol, flows(pairs)).alerts) == 20
    few = policy(manifest, aggregate_after=0)
    assert decide(few, flows(pairs[:19])).alerts == []  # 19 < 20, no shared host


def test_held_flows_time_out_after_the_window(manifest: Manifest) -> None:
    pol = policy(manifest, aggregate_after=0, window_s=60)
    decide(pol, flows(spread(2)))
    out = decide(pol, flows([("192.0.2.1", "192.0.2.2")], packets=9, t=T0 + 61 * S), 0.1)
    assert [d["netwarden"].get("suppressed") for d in out.flow_log].count("uncorroborated") == 2
    assert pol.gate is not None and pol.gate.held == 0
    assert pol.tick(T0 + 200 * S) is None  # nothing left to decide


def test_a_quiet_clock_tick_times_out_held_flows(manifest: Manifest) -> None:
    pol = policy(manifest, aggregate_after=0, window_s=60)
    decide(pol, flows(spread(3)))
    assert pol.tick(T0 + 59 * S) is None
    out = pol.tick(T0 + 60 * S)
    assert out is not None and len(out.flow_log) == 3 and not out.alerted.any()


def test_below_the_threshold_nothing_is_held(manifest: Manifest) -> None:
    pol = policy(manifest)
    out = decide(pol, flows(spread(3)), attack=0.2)
    assert out.alerts == [] and len(out.flow_log) == 3
    assert pol.gate is not None and pol.gate.held == 0


def test_the_hold_is_bounded_and_fails_open(manifest: Manifest) -> None:
    pol = policy(manifest, aggregate_after=0, max_held=3)
    pairs = [(f"172.16.1.{i}", f"10.4.0.{i}") for i in range(1, 6)]
    out = decide(pol, flows(pairs))
    assert len(out.alerts) == 2  # the two oldest alert rather than wait
    assert pol.gate is not None and pol.gate.held == 3 and pol.gate.overflowed == 2


# --- aggregation ---------------------------------------------------------------------------

def test_a_flood_to_one_host_becomes_100_alerts_and_one_summary(manifest: Manifest) -> None:
    reg = CollectorRegistry()
    pol = policy(manifest, Metrics(registry=reg), corroborate_max_packets=0)
    out = decide(pol, flows(spread(250), packets=3))
    assert len(out.alerts) == 100 and out.alerted.all()
    agg_rows = [d for d in out.flow_log if "aggregate_id" in d["netwarden"]]
    assert len(agg_rows) == 150 and all(d["netwarden"]["alert"] for d in agg_rows)
    end = pol.flush()
    assert end is not None and len(end.alerts) == 1
    summary = end.alerts[0]
    assert summary["event"]["kind"] == "alert"
    assert summary["event"]["dataset"] == "netwarden.alert_summary"
    assert summary["destination"] == {"ip": "10.9.0.1"} and "source" not in summary
    agg = summary["netwarden"]["aggregate"]
    assert (agg["flows"], agg["packets"], agg["bytes"]) == (150, 450, 150 * 180)
    assert agg["by"] == "destination.ip" and agg["alerted_individually"] == 100
    assert summary["event"]["id"] == agg_rows[0]["netwarden"]["aggregate_id"]
    assert summary["netwarden"]["label"] == CLASSES[1]
    json.dumps(summary)  # plain JSON
    assert reg.get_sample_value("netwarden_alerts_suppressed_total",
                                {"reason": "aggregated"}) == 150
    assert reg.get_sample_value("netwarden_alerts_total", {"label": CLASSES[1]}) == 101


def test_a_scan_from_one_host_aggregates_by_source(manifest: Manifest) -> None:
    pol = policy(manifest, corroborate_max_packets=0, aggregate_after=10)
    pairs = [("10.5.5.5", f"10.6.{i // 250}.{i % 250 + 1}") for i in range(40)]
    assert len(decide(pol, flows(pairs, packets=2)).alerts) == 10
    end = pol.flush()
    assert end is not None
    (summary,) = end.alerts
    assert summary["source"] == {"ip": "10.5.5.5"}
    assert summary["netwarden"]["aggregate"]["flows"] == 30


def test_summary_ids_are_deterministic_and_windows_roll_over(manifest: Manifest) -> None:
    def run() -> list[Any]:
        pol = policy(manifest, corroborate_max_packets=0, aggregate_after=5, window_s=60)
        docs = decide(pol, flows(spread(8), packets=2)).alerts
        docs += decide(pol, flows(spread(8), packets=2, t=T0 + 61 * S)).alerts
        end = pol.flush()
        return docs + (end.alerts if end else [])

    docs = run()
    summaries = [d for d in docs if d["event"]["dataset"] == "netwarden.alert_summary"]
    assert len(docs) == 5 + 1 + 5 + 1  # alerts, first window's summary, alerts, last summary
    assert [s["netwarden"]["aggregate"]["flows"] for s in summaries] == [3, 3]
    assert summaries[0]["event"]["id"] != summaries[1]["event"]["id"]
    assert [d["event"]["id"] for d in run()] == [d["event"]["id"] for d in docs]


def test_policy_without_a_gate_alerts_every_flow(manifest: Manifest) -> None:
    pol = AlertPolicy(manifest, threshold=0.5)
    alerts, _ = pol.documents(flows(spread(150)), scores(150))
    assert len(alerts) == 150 and pol.flush() is None and pol.tick(T0) is None


# --- watermarks ----------------------------------------------------------------------------

def test_pending_flows_hold_back_the_partition_watermark(manifest: Manifest) -> None:
    pol = policy(manifest, aggregate_after=3)
    decide(pol, flows(spread(2), part=1, seq0=40))  # held
    assert pol.min_pending_seq(1) == 40 and pol.min_pending_seq(0) is None
    pol.flush()
    assert pol.min_pending_seq(1) is None
    decide(pol, flows(spread(5, "10.7.0.1"), packets=4, part=0, seq0=7))  # 2 aggregated
    assert pol.min_pending_seq(0) == 10
    pol.flush()
    assert pol.min_pending_seq(0) is None


# --- the counter ---------------------------------------------------------------------------

@settings(max_examples=40, deadline=None)
@given(st.lists(st.lists(st.tuples(st.integers(2, 40), st.integers(0, 3)), max_size=30),
                max_size=12), st.integers(1, 20))
def test_window_counts_match_a_dict(batches: list[list[tuple[int, int]]], window: int) -> None:
    w, ref, t = WindowCounts(window, capacity=16), {}, 0
    for b, batch in enumerate(batches):
        keys = np.array([k for k, _ in batch], np.uint64)
        ts = np.array([t + dt for _, dt in batch], np.int64)
        t = int(ts.max()) if batch else t
        expect = []
        for k, tt in zip(keys.tolist(), ts.tolist(), strict=True):
            start, count = ref.get(k, (None, 0))
            if start is None or tt - start >= window:
                start, count = tt, 0
            ref[k] = (start, count + 1)
            expect.append(count + 1)
        assert w.add(keys, ts)[0].tolist() == expect
        if b % 3 == 2:
            w.prune(t)
        probe = np.arange(2, 41, dtype=np.uint64)
        assert w.get(probe, t).tolist() == [
            ref[k][1] if k in ref and t - ref[k][0] < window else 0 for k in probe.tolist()]


def test_address_keys_separate_addresses_and_tags() -> None:
    hi = np.zeros(4, np.uint64)
    lo = np.array([1, 2, 1, 2], np.uint64)
    keys = address_keys(hi, lo, np.array([0, 0, 1, 1], np.uint64))
    assert len(set(keys.tolist())) == 4
    assert address_keys(hi[:1], lo[:1], 0).tolist() == keys[:1].tolist()


# --- end to end ----------------------------------------------------------------------------

@pytest.mark.shared_data
def test_replay_of_benign_dns_answers_gives_no_alerts(shared_data: Path, tmp_path: Path) -> None:
    """dns-edns.pcap has 5 DNS answers without their queries: lone flows the model scores as
    amplification; with the gate none alerts, without it they do."""
    from netwarden.cli import main

    pcap = shared_data / "pcaps" / "benign" / "dns-edns.pcap"
    gated, plain = tmp_path / "gated.jsonl", tmp_path / "plain.jsonl"
    assert main(["replay", str(pcap), "--alerts-out", str(gated), "--log-level", "error"]) == 0
    cfg = tmp_path / "nogate.toml"
    cfg.write_text("[alerts]\ncorroborate_max_packets = 0\naggregate_after = 0\n")
    assert main(["replay", str(pcap), "--config", str(cfg), "--alerts-out", str(plain),
                 "--log-level", "error"]) == 0
    assert gated.read_text() == ""
    assert len(plain.read_text().splitlines()) >= 1


def test_a_reload_with_the_same_rules_keeps_the_held_flows(manifest: Manifest) -> None:
    old = policy(manifest, aggregate_after=0)
    decide(old, flows(spread(4)))
    new = policy(manifest, aggregate_after=0)
    assert new.adopt(old) and new.gate is not None and new.gate.held == 4
    assert len(decide(new, flows(spread(5)[4:])).alerts) == 5  # the fifth releases them
    other = policy(manifest, aggregate_after=0, corroborate_min_flows=3)
    assert not other.adopt(new)  # other rules: the caller flushes the old policy instead


def test_a_replay_gives_the_same_alerts_every_time(tmp_path: Path) -> None:
    """The demo capture (a SYN flood and a scan the gate aggregates) replayed three times:
    byte-identical alert files (batches are cut by size alone in a replay)."""
    from netwarden.cli import main
    from netwarden.demo_traffic import write_demo_pcap

    pcap = tmp_path / "demo.pcap"
    write_demo_pcap(pcap, seed=7)
    outs = []
    for i in range(3):
        out = tmp_path / f"alerts{i}.jsonl"
        assert main(["replay", str(pcap), "--alerts-out", str(out), "--log-level", "error"]) == 0
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] == outs[2]
    docs = [json.loads(line) for line in outs[0].splitlines()]
    assert any(d["event"]["dataset"] == "netwarden.alert_summary" for d in docs)


@pytest.mark.shared_data
def test_a_live_pipeline_holds_lone_flows_and_drops_them_when_the_link_goes_quiet(
    shared_data: Path, tmp_path: Path
) -> None:
    """dns-edns.pcap as a live source with the shipped model: its 5 lone DNS answers are held
    (the partition's commits stay below them), then the quiet link's clock ticks past the
    window and drops them: no alert, 5 uncorroborated rows in the flow log."""
    from netwarden.app import Hooks
    from netwarden.app_build import build_pipeline
    from netwarden.capture import open_capture
    from netwarden.config import Config
    from test_app import FakeTime, MemorySource, _sample

    with open_capture(shared_data / "pcaps" / "benign" / "dns-edns.pcap", max_frames=64) as r:
        batches = list(r)
    src = MemorySource(batches, quiet=3)
    t = FakeTime(wall=int(batches[-1].ts_ns.max()) / 1e9 + 10_000)  # far past every timeout
    cfg = Config().with_overrides(
        model_dir=REPO / "models" / "netwarden-cic", alert_sinks=[str(tmp_path / "a.jsonl")],
        flow_log=str(tmp_path / "f.jsonl"))
    m = Metrics(registry=CollectorRegistry())
    hooks = Hooks()
    with build_pipeline(cfg, m, source=src, clock=t.clock(), hooks=hooks) as pipe:
        held: list[tuple[int, int]] = []  # (watermark, lowest held seq) while flows wait

        def on_commit(marks: dict[int, int]) -> None:
            low = pipe.s.policy.min_pending_seq(0)
            if low is not None:
                held.append((marks[0], low))

        hooks.on_commit.append(on_commit)
        s = pipe.run()
    assert held and all(mark <= low for mark, low in held)  # never committed past them
    assert (tmp_path / "a.jsonl").read_text() == "" and s.flows_alerted == 0
    log = [json.loads(line) for line in (tmp_path / "f.jsonl").read_text().splitlines()]
    assert len(log) == s.flows == 73
    assert sum(d["netwarden"].get("suppressed") == "uncorroborated" for d in log) == 5
    assert _sample(m, "netwarden_alerts_suppressed_total", reason="uncorroborated") == 5
    assert _sample(m, "netwarden_alerts_held") == 0
    assert src.commits[-1] == {0: sum(len(b) for b in batches)}  # all done in the end
