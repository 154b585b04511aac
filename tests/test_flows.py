"""Flow table behaviour: keys, TCP termination, timeouts, eviction, partitions, determinism."""

from __future__ import annotations

import numpy as np
import pytest
from netwarden.features.cic_schema import CIC_SCHEMA
from netwarden.flows.params import EndedFlows, EndReason, FlowParams
from netwarden.flows.synth import PacketBuilder, addr_halves, random_packets
from netwarden.flows.table import FlowTable
from netwarden.packets import FRAG_LATER

A, B, C = "10.0.0.1", "10.0.0.2", "10.0.0.3"
SYN, ACK, FIN, RST, PSH = 0x02, 0x10, 0x01, 0x04, 0x08
S = 1_000_000  # one second in microseconds (PacketBuilder time unit)


def handshake(b: PacketBuilder, t: float = 0.0, c: str = A, sport: int = 1000) -> PacketBuilder:
    b.add(t, c, B, sport, 80, flags=SYN, window=100)
    b.add(t + 10, B, c, 80, sport, flags=SYN | ACK, window=200)
    return b.add(t + 20, c, B, sport, 80, flags=ACK, window=101)


def feat(ended: EndedFlows, name: str) -> np.ndarray:
    return np.asarray(ended.features[:, CIC_SCHEMA.index(name)])


def test_both_directions_are_one_flow_forward_is_first_sender() -> None:
    b = PacketBuilder()
    b.add(0, B, A, 80, 1000, payload=5).add(10, A, B, 1000, 80, payload=7)
    b.add(20, B, A, 80, 1000, payload=9)
    t = FlowTable(FlowParams(tcp_close_grace_s=0.0, active_timeout_s=1800.0))
    assert len(t.update(b.build())) == 0 and t.active == 1
    out = t.flush()
    m = out.meta[0]
    assert (m["src_lo"], m["sport"], m["dport"]) == (addr_halves(B)[1], 80, 1000)
    assert (m["fwd_packets"], m["bwd_packets"]) == (2, 1)
    assert feat(out, "Total Length of Fwd Packet")[0] == 14
    assert m["end_reason"] == EndReason.END_OF_INPUT


def test_vlan_and_proto_separate_flows() -> None:
    b = PacketBuilder()
    b.add(0, A, B, 1, 2).add(1, A, B, 1, 2, vlan=7).add(2, A, B, 1, 2, proto=17)
    t = FlowTable(FlowParams(tcp_close_grace_s=0.0, active_timeout_s=1800.0))
    t.update(b.build())
    assert t.active == 3


def test_fin_both_sides_then_last_ack_ends_flow() -> None:
    b = handshake(PacketBuilder())
    b.add(30, A, B, 1000, 80, flags=FIN | ACK).add(40, B, A, 80, 1000, flags=FIN | ACK)
    t = FlowTable(FlowParams(tcp_close_grace_s=0.0, active_timeout_s=1800.0))
    assert len(t.update(b.build())) == 0  # waiting for the last ACK
    out = t.update(PacketBuilder().add(50, A, B, 1000, 80, flags=ACK).build())
    assert len(out) == 1 and out.meta["end_reason"][0] == EndReason.FIN
    assert out.meta["fwd_packets"][0] == 4 and t.active == 0
    assert t.ended_by_reason[EndReason.FIN] == 1


def test_fin_one_side_only_stays_open() -> None:
    b = handshake(PacketBuilder()).add(30, A, B, 1000, 80, flags=FIN | ACK)
    b.add(40, B, A, 80, 1000, flags=ACK).add(50, B, A, 80, 1000, flags=ACK | PSH, payload=3)
    t = FlowTable(FlowParams(tcp_close_grace_s=0.0, active_timeout_s=1800.0))
    assert len(t.update(b.build())) == 0 and t.active == 1


def test_rst_ends_flow_and_next_packet_starts_new_flow() -> None:
    b = handshake(PacketBuilder()).add(30, B, A, 80, 1000, flags=RST)
    b.add(40, A, B, 1000, 80, flags=SYN)
    t = FlowTable(FlowParams(tcp_close_grace_s=0.0, active_timeout_s=1800.0))
    out = t.update(b.build())
    assert out.meta["end_reason"].tolist() == [EndReason.RST]
    assert feat(out, "Bwd RST Flags")[0] == 1 and t.active == 1


def test_grace_keeps_late_packets_and_syn_starts_new_flow() -> None:
    b = handshake(PacketBuilder())
    b.add(30, A, B, 1000, 80, flags=FIN | ACK).add(40, B, A, 80, 1000, flags=FIN | ACK)
    b.add(50, A, B, 1000, 80, flags=ACK).add(60, A, B, 1000, 80, flags=ACK)  # duplicate ACK
    b.add(70, A, B, 1000, 80, flags=SYN)
    t = FlowTable(FlowParams(tcp_close_grace_s=1.0))
    out = t.update(b.build())
    assert out.meta["fwd_packets"].tolist() == [5] and out.meta["end_reason"][0] == EndReason.FIN
    assert t.active == 1


def test_grace_expires_on_packet_clock() -> None:
    b = handshake(PacketBuilder()).add(30, B, A, 80, 1000, flags=RST)
    t = FlowTable(FlowParams(tcp_close_grace_s=0.5))
    assert len(t.update(b.build())) == 0
    out = t.expire(int(2 * S * 1000))
    assert out.meta["end_reason"].tolist() == [EndReason.RST]


def test_idle_timeout_cuts_on_next_packet_and_on_expire() -> None:
    b = PacketBuilder().add(0, A, B, 1, 2, proto=17).add(5 * S, A, B, 1, 2, proto=17)
    b.add(6 * S, A, C, 1, 2, proto=17)
    t = FlowTable(FlowParams(idle_timeout_s=2.0))
    out = t.update(b.build())
    assert out.meta["end_reason"].tolist() == [EndReason.IDLE]
    assert t.active == 2
    later = t.expire(9 * S * 1000)
    assert sorted(later.meta["end_reason"].tolist()) == [EndReason.IDLE] * 2 and t.active == 0


def test_idle_sweep_runs_inside_update() -> None:
    b = PacketBuilder().add(0, A, B, 1, 2, proto=17)
    for k in range(10):
        b.add((k + 1) * S, A, C, 1, 2, proto=17)
    t = FlowTable(FlowParams(idle_timeout_s=3.0))
    out = t.update(b.build())
    assert out.meta["end_reason"].tolist() == [EndReason.IDLE]
    assert out.meta["dst_lo"][0] == addr_halves(B)[1]


def test_active_timeout_cuts_a_long_flow() -> None:
    b = PacketBuilder()
    for k in range(31):
        b.add(k * S, A, B, 1, 2, proto=17, payload=1)
    t = FlowTable(FlowParams(idle_timeout_s=5.0, active_timeout_s=10.0))
    out = t.update(b.build())
    assert out.meta["end_reason"].tolist() == [EndReason.ACTIVE] * 2
    assert out.meta["fwd_packets"].tolist() == [11, 11]
    assert t.active == 1


def test_eviction_at_max_flows_is_counted() -> None:
    b = PacketBuilder()
    for k in range(10):
        b.add(k, A, B, 1000 + k, 80, proto=17)
    b.add(20, A, B, 1000, 80, proto=17)  # flow 0 was evicted: it comes back as a new flow
    t = FlowTable(FlowParams(max_flows=4))
    out = t.update(b.build())
    assert t.active == 4 and len(out) == 7
    assert (out.meta["end_reason"] == EndReason.EVICTED).all()
    assert out.meta["sport"].tolist() == [1000, 1001, 1002, 1003, 1004, 1005, 1006]
    assert t.ended_by_reason[EndReason.EVICTED] == 7


def test_lru_touch_protects_recent_flow() -> None:
    b = PacketBuilder().add(0, A, B, 1, 80, proto=17).add(1, A, B, 2, 80, proto=17)
    b.add(2, B, A, 80, 1, proto=17).add(3, A, B, 3, 80, proto=17)
    t = FlowTable(FlowParams(max_flows=2))
    out = t.update(b.build())
    assert out.meta["sport"].tolist() == [2]


def test_table_grows_by_doubling_and_keeps_flows() -> None:
    pk = random_packets(20_000, n_flows=3000, seed=1)
    t = FlowTable(FlowParams(max_flows=100_000))
    assert t.capacity == 1024
    t.update(pk)
    assert t.capacity == 4096 and t.active == len(np.unique(pk["src_lo"] ^ pk["dst_lo"]))
    out = t.flush()
    assert int(out.meta["fwd_packets"].sum() + out.meta["bwd_packets"].sum()) == len(pk)


def test_partitions_watermark_and_revocation() -> None:
    b = PacketBuilder()
    b.add(0, A, B, 1, 2, proto=17, part=0, seq=10).add(1, A, C, 1, 2, proto=17, part=1, seq=3)
    b.add(2, A, B, 5, 2, proto=17, part=0, seq=11).add(3, B, A, 2, 1, proto=17, part=1, seq=4)
    t = FlowTable(FlowParams(tcp_close_grace_s=0.0, active_timeout_s=1800.0))
    t.update(b.build())
    assert t.min_open_seq(0) == 10 and t.min_open_seq(1) == 3 and t.min_open_seq(7) is None
    out = t.flush_partition(0)
    assert sorted(out.meta["first_seq"].tolist()) == [10, 11]
    assert (out.meta["end_reason"] == EndReason.REVOKED).all()
    assert t.min_open_seq(0) is None and t.active == 1


def test_later_fragments_go_to_the_port_zero_flow() -> None:
    b = PacketBuilder().add(0, A, B, 53, 53, proto=17, payload=1400)
    b.add(1, A, B, proto=17, frag=FRAG_LATER, payload=600, l4_hdr=0)
    b.add(2, A, B, proto=17, frag=FRAG_LATER, payload=600, l4_hdr=0)
    t = FlowTable(FlowParams(tcp_close_grace_s=0.0, active_timeout_s=1800.0))
    t.update(b.build())
    out = t.flush()
    by_port = {int(m["sport"]): int(m["fwd_packets"]) for m in out.meta}
    assert by_port == {53: 1, 0: 2}


def test_same_packets_give_same_flows() -> None:
    pk = random_packets(5000, n_flows=300, seed=3, mean_gap_us=2000.0)
    runs = []
    for seed in (1, 2):  # the hash seed only places keys in the index
        t = FlowTable(FlowParams(idle_timeout_s=1.0, max_flows=128), hash_seed=seed)
        a = t.update(pk[:2500])
        b = t.update(pk[2500:])
        c = t.flush()
        runs.append(
            (
                np.concatenate([a.meta, b.meta, c.meta]),
                np.concatenate([a.features, b.features, c.features]),
            )
        )
    assert np.array_equal(runs[0][0], runs[1][0])
    assert np.array_equal(runs[0][1], runs[1][1])


def test_bytes_per_flow_under_one_kib() -> None:
    assert FlowTable(FlowParams(max_flows=1000)).bytes_per_flow <= 1024


@pytest.mark.parametrize(
    ("key", "value"),
    [("idle_timeout_s", 0.0), ("max_flows", 0), ("tcp_close_grace_s", -1.0)],
)
def test_invalid_params_are_refused(key: str, value: float) -> None:
    with pytest.raises(ValueError, match=key):
        FlowTable(FlowParams(**{key: value}))


def test_total_tcp_flow_time_spans_an_active_cut() -> None:
    b = handshake(PacketBuilder())
    for k in range(1, 6):
        b.add(k * S, A, B, 1000, 80, flags=ACK, payload=10)
    t = FlowTable(FlowParams(active_timeout_s=3.0, idle_timeout_s=10.0))
    cut = t.update(b.build())
    rest = t.flush()
    assert cut.meta["end_reason"].tolist() == [EndReason.ACTIVE]
    assert feat(cut, "Total TCP Flow Time")[0] == pytest.approx(3 * S)
    assert feat(rest, "Flow Duration")[0] == pytest.approx(1 * S)
    assert feat(rest, "Total TCP Flow Time")[0] == pytest.approx(5 * S)
    udp = PacketBuilder().add(0, A, B, 1, 2, proto=17).add(5, A, B, 1, 2, proto=17)
    t.update(udp.build())
    assert feat(t.flush(), "Total TCP Flow Time")[0] == 0


def test_expire_cuts_an_old_flow_as_active() -> None:
    b = PacketBuilder().add(0, A, B, 1, 2, proto=17).add(4 * S, A, B, 1, 2, proto=17)
    b.add(8 * S, A, B, 1, 2, proto=17)
    t = FlowTable(FlowParams(idle_timeout_s=5.0, active_timeout_s=10.0))
    assert len(t.update(b.build())) == 0
    out = t.expire(11 * S * 1000)
    assert out.meta["end_reason"].tolist() == [EndReason.ACTIVE]


def test_icmp_type_and_code_of_first_packet() -> None:
    b = PacketBuilder().add(0, A, B, proto=1, icmp_type=8, icmp_code=0, payload=56)
    b.add(10, B, A, proto=1, icmp_type=0, icmp_code=0, payload=56)
    t = FlowTable(FlowParams(tcp_close_grace_s=0.0, active_timeout_s=1800.0))
    t.update(b.build())
    out = t.flush()
    assert (out.meta["icmp_type"][0], out.meta["icmp_code"][0]) == (8, 0)
    assert (feat(out, "ICMP Type")[0], feat(out, "ICMP Code")[0]) == (8, 0)
    assert out.meta["fwd_packets"][0] == 1 and out.meta["bwd_packets"][0] == 1
    udp = t.update(PacketBuilder().add(20, A, B, 5, 6, proto=17).build())
    assert len(udp) == 0 and feat(t.flush(), "ICMP Type")[0] == -1


def test_wrong_dtype_is_refused() -> None:
    with pytest.raises(TypeError, match="PACKET_DTYPE"):
        FlowTable(FlowParams()).update(np.zeros(3, dtype=np.int64))


def test_repeated_expire_on_a_quiet_table_does_not_grow_buffers() -> None:
    # A live source ticks expire() every 0.5 s on a quiet link; each tick must reuse the output
    # buffers (a doubling per tick asked for 40 GiB after ~27 ticks).
    t = FlowTable(FlowParams(idle_timeout_s=1e4))
    t.update(PacketBuilder().add(0, "10.0.0.1", "10.0.0.2", 1000, 80, proto=6, flags=0x02).build())
    sizes = set()
    for i in range(60):
        assert len(t.expire(i * 500_000_000)) == 0
        sizes.add(t._out_meta.shape[0])
    assert len(sizes) == 1


def test_sweep_sees_deadlines_moved_earlier() -> None:
    # The sweep only looks at flows whose stored deadline passed; an out-of-order packet (idle
    # clock moves back) and a close (grace starts) both move it earlier, and must say so.
    b = PacketBuilder().add(10 * S, A, B, 1, 2, proto=17).add(5 * S, B, A, 2, 1, proto=17)
    b.add(20 * S, A, C, 1000, 80, flags=SYN).add(20 * S + 10, C, A, 80, 1000, flags=RST)
    b.add(21.5 * S, C, B, 3, 4, proto=17)  # sweeps at 21.5 s: A-B idle since 5 s, A-C reset
    t = FlowTable(FlowParams(idle_timeout_s=12.0, tcp_close_grace_s=1.0))
    out = t.update(b.build())
    assert out.meta["end_reason"].tolist() == [EndReason.IDLE, EndReason.RST]
    assert t.active == 1
