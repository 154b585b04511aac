"""Capture-file readers: pcap and pcapng formats, batching, and every shared capture vs scapy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from capwriter import PcapngBuilder, read_all, write_pcap
from conftest import all_shared_pcaps
from netwarden.capture import open_capture
from netwarden.packets import FrameBatch

T0 = 1_700_000_000_123_456_000  # ns, whole microseconds


def frames_of(n: int, *, step_ns: int = 1_000_000) -> list[tuple[int, bytes, int]]:
    return [(T0 + i * step_ns, bytes([i % 256]) * (10 + i), 100 + i) for i in range(n)]


def frame_bytes(b: FrameBatch, i: int) -> bytes:
    o = int(b.offsets[i])
    return bytes(b.data[o : o + int(b.caplen[i])])


def flat(batches: list[FrameBatch]) -> list[tuple[int, bytes, int]]:
    return [
        (int(b.ts_ns[i]), frame_bytes(b, i), int(b.wirelen[i]))
        for b in batches
        for i in range(len(b))
    ]


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("ns", [False, True])
def test_pcap_formats_round_trip(tmp_path: Path, ns: bool, big_endian: bool) -> None:
    frames = frames_of(20)
    if ns:
        frames = [(ts + 789, d, w) for ts, d, w in frames]
    path = write_pcap(tmp_path / "a.pcap", frames, linktype=113, ns=ns, big_endian=big_endian)
    batches, r = read_all(path, part=7)
    assert flat(batches) == frames
    assert r.linktypes == (113,)
    b = batches[0]
    assert set(b.linktype.tolist()) == {113}
    assert set(b.part.tolist()) == {7}
    assert b.seq.tolist() == list(range(20))
    assert sum(r.skips.values()) == 0


def test_modified_pcap(tmp_path: Path) -> None:
    frames = frames_of(5)
    batches, _ = read_all(write_pcap(tmp_path / "m.pcap", frames, modified=True))
    assert flat(batches) == frames


@pytest.mark.parametrize(("max_frames", "max_bytes", "n_batches"), [(3, 1 << 20, 4), (100, 60, 4)])
def test_batching_keeps_order_and_seq(
    tmp_path: Path, max_frames: int, max_bytes: int, n_batches: int
) -> None:
    frames = frames_of(10)
    path = write_pcap(tmp_path / "b.pcap", frames)
    batches, _ = read_all(path, max_frames=max_frames, max_bytes=max_bytes)
    # 26..35-byte records: a batch stops once it spans max_bytes or more
    assert len(batches) == n_batches
    assert flat(batches) == frames
    assert np.concatenate([b.seq for b in batches]).tolist() == list(range(10))


def test_batch_outlives_reader(tmp_path: Path) -> None:
    path = write_pcap(tmp_path / "c.pcap", frames_of(3))
    with open_capture(path) as r:
        batch = next(iter(r))
    assert frame_bytes(batch, 2) == bytes([2]) * 12


def test_header_only_file_gives_no_batches(tmp_path: Path) -> None:
    batches, r = read_all(write_pcap(tmp_path / "h.pcap", []))
    assert batches == []
    assert r.records == 0


def test_pcapng_interfaces_linktypes_and_resolutions(tmp_path: Path) -> None:
    b = PcapngBuilder().shb()
    b.idb(1)  # default: microseconds
    b.idb(113, tsresol=9)  # nanoseconds
    b.idb(101, tsresol=0x80 | 20)  # 2^-20 s
    b.idb(0, tsresol=3, tsoffset=100)  # milliseconds, +100 s
    b.block(4, b"\x01\x00\x04\x00\x0a\x00\x00\x01host\0\0\0\0")  # NRB: skipped
    ts = [T0 + 1_000, T0 + 2_345, T0 + 3_000_000, T0 // 10**6 * 10**6 + 4_000_000]
    for i, t in enumerate(ts):
        b.epb(i, t - (100 * 10**9 if i == 3 else 0), b"frame%d" % i, 200 + i)
    b.block(5, b"\0" * 12)  # ISB: skipped
    b.block(0x00000BAD, b"custom")  # custom: skipped
    batches, r = read_all(b.write(tmp_path / "n.pcapng"))
    got = flat(batches)
    assert [g[1] for g in got] == [b"frame0", b"frame1", b"frame2", b"frame3"]
    assert [g[2] for g in got] == [200, 201, 202, 203]
    assert batches[0].linktype.tolist() == [1, 113, 101, 0]
    assert r.linktypes == (0, 1, 101, 113)
    raw2 = ts[2] * 2**20 // 10**9
    assert [g[0] for g in got] == [ts[0], ts[1], raw2 * 10**9 // 2**20, ts[3]]


def test_pcapng_simple_packet_block_uses_snaplen_and_previous_ts(tmp_path: Path) -> None:
    b = PcapngBuilder().shb().idb(1, snaplen=8).epb(0, T0, b"first", 5)
    b.spb(b"0123456789", wire_len=1000)  # longer than the snaplen: cut to 8
    b.spb(b"abc")
    batches, r = read_all(b.write(tmp_path / "s.pcapng"))
    assert flat(batches) == [(T0, b"first", 5), (T0, b"01234567", 1000), (T0, b"abc", 3)]
    assert batches[0].seq.tolist() == [0, 1, 2]
    assert r.records == 3


def test_pcapng_obsolete_packet_block(tmp_path: Path) -> None:
    b = PcapngBuilder().shb().idb(1).opb(0, T0, b"old")
    batches, _ = read_all(b.write(tmp_path / "o.pcapng"))
    assert flat(batches) == [(T0, b"old", 3)]


def test_pcapng_sections_change_byte_order_and_reset_interfaces(tmp_path: Path) -> None:
    b = PcapngBuilder().shb().idb(1).idb(113).epb(1, T0, b"le-if1")
    b.shb(big_endian=True).idb(101, tsresol=9).epb(0, T0 + 5, b"be-if0")
    b.epb(1, T0, b"gone")  # interface 1 belonged to the previous section
    batches, r = read_all(b.write(tmp_path / "x.pcapng"))
    assert flat(batches) == [(T0, b"le-if1", 6), (T0 + 5, b"be-if0", 6)]
    assert np.concatenate([x.linktype for x in batches]).tolist() == [113, 101]
    assert r.skips["unknown_interface"] == 1
    assert r.linktypes == (1, 101, 113)


def test_pcapng_big_endian_first_section(tmp_path: Path) -> None:
    b = PcapngBuilder().shb(big_endian=True).idb(276).epb(0, T0, b"x" * 30, 60)
    batches, r = read_all(b.write(tmp_path / "be.pcapng"))
    assert flat(batches) == [(T0, b"x" * 30, 60)]
    assert r.linktypes == (276,)


def _scapy_frames(path: Path, *, timed: int = 2000) -> tuple[list[tuple[bytes, int]], list[int]]:
    """scapy's view of a capture: (bytes, wire length) of every frame, and the timestamps
    (ns) of the first ``timed`` frames (those need the slower decoding reader)."""
    from scapy.utils import PcapNgReader, PcapReader, RawPcapNgReader, RawPcapReader

    ng = path.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"
    with (RawPcapNgReader if ng else RawPcapReader)(str(path)) as rd:
        frames = [(bytes(data), int(meta.wirelen)) for data, meta in rd]
    with (PcapNgReader if ng else PcapReader)(str(path)) as rd:
        times = [int(pkt.time * 10**9) for pkt in rd.read_all(count=timed)]
    return frames, times


@pytest.mark.shared_data
@pytest.mark.parametrize("path", all_shared_pcaps(), ids=lambda p: p.name)
def test_shared_capture_matches_scapy(shared_data: Path, path: Path) -> None:
    batches, r = read_all(path, part=3)
    ours = flat(batches)
    ref, times = _scapy_frames(path)
    assert [(o[1], o[2]) for o in ours] == ref
    # scapy keeps times as decimals of the file's resolution: equal to the nanosecond.
    assert [o[0] for o in ours[: len(times)]] == times
    assert sum(r.skips.values()) == 0
    assert all((b.part == 3).all() for b in batches)
