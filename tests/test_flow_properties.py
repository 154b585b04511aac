"""Property tests (hypothesis) of the flow table: symmetry, bound, conservation of packets."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from netwarden.flows.params import EndedFlows, FlowParams
from netwarden.flows.synth import PacketBuilder, addr_halves
from netwarden.flows.table import FlowTable
from netwarden.packets import PacketArray

HOSTS = ["10.0.0.1", "10.0.0.2", "10.0.0.3", "2001:db8::1"]
FLAGS = [0x10, 0x18, 0x02, 0x12, 0x11, 0x04]  # ACK, PSH|ACK, SYN, SYN|ACK, FIN|ACK, RST

packet = st.tuples(
    st.integers(0, 3_000_000),  # gap to the previous packet, us
    st.sampled_from(HOSTS),
    st.sampled_from(HOSTS),
    st.sampled_from([80, 1000, 1001]),
    st.sampled_from([80, 1000]),
    st.sampled_from([6, 17]),
    st.sampled_from(FLAGS),
    st.integers(0, 1500),
)


def build(rows: list[tuple[int, str, str, int, int, int, int, int]]) -> PacketArray:
    b, t = PacketBuilder(), 0
    for gap, src, dst, sp, dp, proto, flags, pl in rows:
        t += gap
        b.add(t, src, dst, sp, dp, proto=proto, flags=flags if proto == 6 else 0, payload=pl)
    return b.build()


def run(pk: PacketArray, params: FlowParams, chunks: int = 1) -> tuple[list[EndedFlows], int]:
    table = FlowTable(params)
    ended: list[EndedFlows] = []
    peak = 0
    for part in np.array_split(pk, chunks):
        ended.append(table.update(part))
        peak = max(peak, table.active)
    ended.append(table.flush())
    return ended, peak


@settings(max_examples=60, deadline=None)
@given(st.lists(packet, min_size=1, max_size=80), st.integers(1, 6), st.integers(1, 4))
def test_every_packet_ends_in_exactly_one_flow_and_bound_holds(rows, max_flows, chunks) -> None:  # type: ignore[no-untyped-def]
    pk = build(rows)
    params = FlowParams(max_flows=max_flows, idle_timeout_s=2.0, active_timeout_s=6.0)
    ended, peak = run(pk, params, chunks)
    meta = np.concatenate([e.meta for e in ended])
    assert int(meta["fwd_packets"].sum() + meta["bwd_packets"].sum()) == len(pk)
    assert int(meta["fwd_bytes"].sum() + meta["bwd_bytes"].sum()) == int(pk["ip_len"].sum())
    assert peak <= max_flows
    assert (meta["fwd_packets"] >= 1).all()
    feats = np.concatenate([e.features for e in ended])
    assert np.isfinite(feats).all()


@settings(max_examples=40, deadline=None)
@given(st.lists(packet, min_size=1, max_size=40))
def test_key_symmetry_one_flow_per_conversation(rows) -> None:  # type: ignore[no-untyped-def]
    """Without ends (no FIN/RST, no timeouts) each conversation is one flow, either way round."""
    rows = [(g % 1000, s, d, sp, dp, pr, 0x10, pl) for g, s, d, sp, dp, pr, _, pl in rows]
    pk = build(rows)
    ended, _ = run(pk, FlowParams(tcp_close_grace_s=0.0))
    meta = ended[-1].meta
    convs = {(frozenset([(s, sp), (d, dp)]), pr) for _, s, d, sp, dp, pr, _, _ in rows}
    assert len(meta) == len(convs)
    # forward is the first sender of each conversation
    first: dict[tuple[frozenset[tuple[str, int]], int], tuple[str, int]] = {}
    for _, s, d, sp, dp, pr, _, _ in rows:
        first.setdefault((frozenset([(s, sp), (d, dp)]), pr), (s, sp))
    senders = sorted((int(m["sport"]), int(m["src_lo"])) for m in meta)
    want = sorted((sp, addr_halves(s)[1]) for s, sp in first.values())
    assert senders == want


@settings(max_examples=30, deadline=None)
@given(st.lists(packet, min_size=1, max_size=60), st.integers(2, 5))
def test_chunking_does_not_change_flows(rows, chunks) -> None:  # type: ignore[no-untyped-def]
    pk = build(rows)
    params = FlowParams(max_flows=3, idle_timeout_s=2.0, tcp_close_grace_s=0.5)
    whole, _ = run(pk, params, 1)
    split, _ = run(pk, params, chunks)

    def cat(ended: list[EndedFlows]) -> tuple[np.ndarray, np.ndarray]:
        m = np.concatenate([e.meta for e in ended])
        f = np.concatenate([e.features for e in ended])
        order = np.lexsort((m["sport"], m["first_ts_ns"], m["end_reason"]))
        return m[order], f[order]

    (m1, f1), (m2, f2) = cat(whole), cat(split)
    assert np.array_equal(m1, m2) and np.array_equal(f1, f2)
