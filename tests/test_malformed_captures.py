"""Broken captures and garbage frames: clear errors at open, counted skips inside, no crashes."""

from __future__ import annotations

import logging
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from capwriter import Frame, PcapngBuilder, make_batch, pcap_bytes, read_all, write_pcap
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from netwarden.capture import READER_SKIP_NAMES, CaptureError, open_capture
from netwarden.decode import SkipReason, decode
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

T0 = 1_600_000_000_000_000_000
GOOD = [(T0 + i * 1000, b"frame-%d" % i) for i in range(5)]
NO_SKIPS = dict.fromkeys(READER_SKIP_NAMES, 0)
HYP = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def read(path: Path) -> tuple[int, dict[str, int], int]:
    """Frames read, skips, records seen."""
    batches, r = read_all(path)
    return sum(len(b) for b in batches), r.skips, r.records


def open_error(path: Path) -> str:
    with pytest.raises(CaptureError) as e:
        open_capture(path)
    msg = str(e.value)
    assert str(path) in msg and "\n" not in msg
    return msg


def test_open_errors_name_the_file_and_problem(tmp_path: Path) -> None:
    (tmp_path / "empty.pcap").write_bytes(b"")
    (tmp_path / "elf.pcap").write_bytes(b"\x7fELF" + b"\0" * 60)
    (tmp_path / "short.pcap").write_bytes(pcap_bytes([])[:10])
    (tmp_path / "v3.pcap").write_bytes(pcap_bytes(GOOD, version=(3, 0)))
    (tmp_path / "tiny").write_bytes(b"ab")
    assert "empty file" in open_error(tmp_path / "empty.pcap")
    assert "not a pcap or pcapng file (magic 0x7f454c46)" in open_error(tmp_path / "elf.pcap")
    assert "truncated pcap file header (10 of 24 bytes)" in open_error(tmp_path / "short.pcap")
    assert "unsupported pcap version 3.0" in open_error(tmp_path / "v3.pcap")
    assert "too short" in open_error(tmp_path / "tiny")
    assert "cannot read file" in open_error(tmp_path / "missing.pcap")
    assert "not a regular file" in open_error(tmp_path)
    os.mkfifo(tmp_path / "fifo")
    assert "not a regular file" in open_error(tmp_path / "fifo")


def test_pcapng_open_errors(tmp_path: Path) -> None:
    good = PcapngBuilder().shb().idb(1).epb(0, T0, b"x").bytes()
    bad_bom = good[:8] + b"\x01\x02\x03\x04" + good[12:]
    huge = good[:4] + struct.pack("<I", 0xFFFFFFF0) + good[8:]
    v2 = PcapngBuilder().shb(version=(2, 0)).bytes()
    for name, data, text in [
        ("bom", bad_bom, "bad pcapng byte-order magic 0x04030201"),
        ("huge", huge, "impossible pcapng section header length 4294967280"),
        ("v2", v2, "unsupported pcapng version 2.0"),
    ]:
        (tmp_path / name).write_bytes(data)
        assert text in open_error(tmp_path / name)


@pytest.mark.parametrize("cut", [3, 16 + 4])  # inside the record header, inside the data
def test_truncated_last_pcap_record_is_a_counted_skip(tmp_path: Path, cut: int) -> None:
    data = pcap_bytes(GOOD)
    last = len(data) - (16 + len(GOOD[-1][1]))
    (tmp_path / "t.pcap").write_bytes(data[: last + cut])
    n, skips, _ = read(tmp_path / "t.pcap")
    assert (n, skips["truncated_record"]) == (4, 1)


def test_truncated_last_pcapng_block(tmp_path: Path) -> None:
    data = PcapngBuilder().shb().idb(1).epb(0, T0, b"a" * 20).epb(0, T0, b"b" * 20).bytes()
    (tmp_path / "t.pcapng").write_bytes(data[:-10])
    n, skips, _ = read(tmp_path / "t.pcapng")
    assert (n, skips["truncated_record"]) == (1, 1)


def test_zero_length_records_are_counted_and_skipped(tmp_path: Path) -> None:
    frames: list[Frame] = [GOOD[0], (T0, b""), GOOD[1], (T0, b"", 60)]
    path = write_pcap(tmp_path / "z.pcap", frames)
    with open_capture(path) as r:
        batches = list(r)
    assert batches[0].seq.tolist() == [0, 2]
    assert (r.skips["empty_record"], r.records) == (2, 4)


def test_oversize_record_stops_the_file_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = bytearray(pcap_bytes(GOOD))
    rec2 = 24 + 2 * (16 + 7)  # third record header
    data[rec2 + 8 : rec2 + 12] = struct.pack("<I", 300 * 1024)
    (tmp_path / "o.pcap").write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING, logger="netwarden.capture"):
        n, skips, _ = read(tmp_path / "o.pcap")
    assert (n, skips["bad_record_length"], skips["truncated_record"]) == (2, 1, 0)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "o.pcap" in warnings[0].getMessage()


@pytest.mark.parametrize(
    "corrupt",
    [
        "caplen_past_block",
        "length_not_multiple_of_4",
        "length_too_small",
        "length_zero",
        "trailer_mismatch",
    ],
)
def test_pcapng_impossible_lengths_stop_the_file(tmp_path: Path, corrupt: str) -> None:
    b = PcapngBuilder().shb().idb(1).epb(0, T0, b"ok")
    before = len(b.bytes())
    data = bytearray(b.epb(0, T0, b"bad-one!").epb(0, T0, b"after").bytes())
    if corrupt == "caplen_past_block":
        data[before + 20 : before + 24] = struct.pack("<I", 500)
    elif corrupt == "length_not_multiple_of_4":
        data[before + 4 : before + 8] = struct.pack("<I", 41)
    elif corrupt == "length_too_small":
        data[before + 4 : before + 8] = struct.pack("<I", 8)
    elif corrupt == "length_zero":  # would loop forever if the scan stepped by it
        data[before + 4 : before + 8] = struct.pack("<I", 0)
    else:
        data[before + 36 : before + 40] = struct.pack("<I", 44)
    (tmp_path / "c.pcapng").write_bytes(bytes(data))
    n, skips, _ = read(tmp_path / "c.pcapng")
    assert (n, skips["bad_record_length"]) == (1, 1)


def test_zero_length_section_header_and_interface_block(tmp_path: Path) -> None:
    shb_zero = bytearray(PcapngBuilder().shb().idb(1).epb(0, T0, b"x").bytes())
    shb_zero[4:8] = bytes(4)
    (tmp_path / "shb.pcapng").write_bytes(bytes(shb_zero))
    assert "impossible pcapng section header length 0" in open_error(tmp_path / "shb.pcapng")
    b = PcapngBuilder().shb()
    idb = len(b.bytes())
    data = bytearray(b.idb(1).epb(0, T0, b"x").bytes())
    data[idb + 4 : idb + 8] = bytes(4)
    (tmp_path / "idb.pcapng").write_bytes(bytes(data))
    assert read(tmp_path / "idb.pcapng")[:2] == (0, {**NO_SKIPS, "bad_record_length": 1})


def test_huge_snaplen_in_pcap_header_is_harmless(tmp_path: Path) -> None:
    # The file header's snaplen is advice; each record's own length (<= 256 KiB) is checked.
    data = bytearray(pcap_bytes(GOOD))
    data[16:20] = struct.pack("<I", 0xFFFF_FFFF)
    (tmp_path / "snap.pcap").write_bytes(bytes(data))
    assert read(tmp_path / "snap.pcap") == (5, NO_SKIPS, 5)


def test_pcapng_bad_second_section_header(tmp_path: Path) -> None:
    data = bytearray(PcapngBuilder().shb().idb(1).epb(0, T0, b"ok").bytes())
    second = len(data)
    data += PcapngBuilder().shb().idb(1).epb(0, T0, b"no").bytes()
    data[second + 8 : second + 12] = b"\xde\xad\xbe\xef"
    (tmp_path / "s.pcapng").write_bytes(bytes(data))
    n, skips, _ = read(tmp_path / "s.pcapng")
    assert (n, skips["bad_section_header"]) == (1, 1)


def test_pcapng_packet_before_any_interface(tmp_path: Path) -> None:
    path = (
        PcapngBuilder().shb().spb(b"lost").idb(1).epb(0, T0, b"kept").write(tmp_path / "i.pcapng")
    )
    n, skips, records = read(path)
    assert (n, skips["unknown_interface"], records) == (1, 1, 2)


@HYP
@given(tail=st.binary(max_size=600), ng=st.booleans())
def test_garbage_after_a_valid_header_never_raises(tmp_path: Path, tail: bytes, ng: bool) -> None:
    head = PcapngBuilder().shb().idb(1).bytes() if ng else pcap_bytes([])
    path = tmp_path / "g.cap"
    path.write_bytes(head + tail)
    n, skips, records = read(path)
    assert records == n + skips["empty_record"] + skips["unknown_interface"]
    assert n <= len(tail) // 12 + 1


# --- decoder on garbage ------------------------------------------------------------------

_SEEDS = [
    bytes(Ether() / IP() / TCP() / Raw(b"x" * 20)),
    bytes(Ether() / Dot1Q() / IPv6() / IPv6ExtHdrHopByHop() / UDP()),
    bytes(Ether() / IPv6() / IPv6ExtHdrFragment(offset=0, m=1) / TCP()),
    bytes(Ether() / IP(flags="MF") / ICMP()),
]
_LINKTYPES = st.one_of(st.sampled_from([0, 1, 12, 14, 101, 108, 113, 276]), st.integers(0, 65535))


@st.composite
def _frames(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        return draw(st.binary(max_size=200))
    frame = bytearray(draw(st.sampled_from(_SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        frame[draw(st.integers(0, len(frame) - 1))] = draw(st.integers(0, 255))
    return bytes(frame[: draw(st.integers(0, len(frame)))])


@HYP
@given(frames=st.lists(_frames(), max_size=30), linktypes=st.data())
def test_decode_never_raises_and_accounts_for_every_frame(
    frames: list[bytes], linktypes: st.DataObject
) -> None:
    lts = [linktypes.draw(_LINKTYPES) for _ in frames]
    batch = make_batch(frames, lts)
    packets, skips = decode(batch)
    assert len(packets) + int(skips.sum()) == len(frames)
    assert (packets["ip_version"] != 0).all()


def test_decode_empty_batch() -> None:
    packets, skips = decode(make_batch([]))
    assert len(packets) == 0 and skips.shape == (len(SkipReason),) and skips.sum() == 0


def test_batch_of_real_garbage_is_all_counted() -> None:
    rng = np.random.default_rng(7)
    frames = [rng.bytes(int(n)) for n in rng.integers(0, 1500, size=2000)]
    packets, skips = decode(make_batch(frames, [int(x) for x in rng.integers(0, 300, 2000)]))
    assert len(packets) + int(skips.sum()) == 2000
