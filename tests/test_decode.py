"""Decoder: every link type, VLAN/QinQ/PPPoE, IPv4/IPv6 (extension headers, fragments),
TCP/UDP/ICMP/other, skip reasons, and every shared capture compared with scapy's parse."""

from __future__ import annotations

import ipaddress
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from capwriter import make_batch
from conftest import all_shared_pcaps
from netwarden.capture import open_capture
from netwarden.decode import SKIP_REASON_NAMES, SkipReason, decode
from netwarden.packets import FRAG_FIRST, FRAG_LATER, FRAG_NONE, FrameBatch
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_RR, fragment
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    fragment6,
)
from scapy.layers.ipsec import AH
from scapy.layers.l2 import ARP, GRE, CookedLinux, CookedLinuxV2, Dot1AD, Dot1Q, Ether
from scapy.layers.ppp import PPP, PPPoE
from scapy.packet import Packet, Raw

ETH = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
V4 = IP(src="10.1.2.3", dst="192.168.9.8", ttl=61)
V6 = IPv6(src="2001:db8::1", dst="fe80::abcd:1", hlim=33)
SEG = TCP(
    sport=40000,
    dport=443,
    flags="PA",
    window=512,
    options=[("MSS", 1460), ("NOP", None), ("NOP", None)],
) / Raw(b"x" * 37)


def one(frame: bytes | Packet, linktype: int = 1) -> np.void:
    """Decode a single frame that must give a packet row."""
    pk, sk = decode(make_batch([bytes(frame)], linktype))
    assert sk.sum() == 0, dict(zip(SKIP_REASON_NAMES, sk.tolist(), strict=True))
    assert len(pk) == 1
    row: np.void = pk[0]
    return row


def skip_of(frame: bytes | Packet, linktype: int = 1) -> SkipReason:
    pk, sk = decode(make_batch([bytes(frame)], linktype))
    assert len(pk) == 0 and sk.sum() == 1
    return SkipReason(int(np.flatnonzero(sk)[0]))


def v4_halves(a: str) -> tuple[int, int]:
    return 0, 0xFFFF_0000_0000 | int(ipaddress.IPv4Address(a))


def v6_halves(a: str) -> tuple[int, int]:
    v = int(ipaddress.IPv6Address(a))
    return v >> 64, v & (2**64 - 1)


def test_tcp_over_ethernet_fills_every_field() -> None:
    ip = V4.copy()
    ip.options = [IPOption_RR()]
    frame = ETH / ip / SEG
    batch = make_batch([b"junk", bytes(frame)], [999, 1], part=4)
    pk, sk = decode(batch)
    assert sk[SkipReason.UNKNOWN_LINKTYPE] == 1 and len(pk) == 1
    r = pk[0]
    ihl = IP(bytes(ip / SEG)).ihl * 4
    assert ihl > 20
    assert (int(r["src_hi"]), int(r["src_lo"])) == v4_halves("10.1.2.3")
    assert (int(r["dst_hi"]), int(r["dst_lo"])) == v4_halves("192.168.9.8")
    assert (r["sport"], r["dport"], r["proto"], r["ip_version"]) == (40000, 443, 6, 4)
    assert (r["tcp_flags"], r["tcp_window"], r["ttl"], r["vlan"]) == (0x18, 512, 61, 0)
    assert (r["ip_hdr_len"], r["l4_hdr_len"], r["payload_len"]) == (ihl, 28, 37)
    assert r["ip_len"] == ihl + 28 + 37
    assert r["wire_len"] == len(frame)
    assert (r["ts_ns"], r["src_part"], r["src_seq"], r["frag"]) == (1000, 4, 1, FRAG_NONE)
    assert (r["icmp_type"], r["icmp_code"]) == (0, 0)


@pytest.mark.parametrize(
    ("l2", "linktype"),
    [
        (bytes(ETH)[:12] + b"\x08\x00", 1),
        (bytes(CookedLinux(pkttype=0, proto=0x0800)), 113),
        (bytes(CookedLinuxV2(proto=0x0800))[:20], 276),
        (struct.pack("<I", 2), 0),
        (struct.pack(">I", 2), 0),
        (struct.pack(">I", 2), 108),
        (b"", 101),
        (b"", 12),
        (b"", 14),
    ],
)
def test_link_types_ipv4(l2: bytes, linktype: int) -> None:
    r = one(l2 + bytes(V4 / SEG), linktype)
    assert (r["sport"], r["dport"], r["payload_len"], r["ip_version"]) == (40000, 443, 37, 4)


@pytest.mark.parametrize(
    ("l2", "linktype"),
    [
        (bytes(ETH)[:12] + b"\x86\xdd", 1),
        (bytes(CookedLinux(pkttype=4, proto=0x86DD)), 113),
        (bytes(CookedLinuxV2(proto=0x86DD))[:20], 276),
        (struct.pack("<I", 30), 0),
        (struct.pack("<I", 28), 0),
        (struct.pack(">I", 24), 0),
        (struct.pack(">I", 24), 108),
        (b"", 101),
    ],
)
def test_link_types_ipv6(l2: bytes, linktype: int) -> None:
    r = one(l2 + bytes(V6 / SEG), linktype)
    assert (int(r["src_hi"]), int(r["src_lo"])) == v6_halves("2001:db8::1")
    assert (int(r["dst_hi"]), int(r["dst_lo"])) == v6_halves("fe80::abcd:1")
    assert (r["ip_version"], r["ttl"], r["ip_len"], r["ip_hdr_len"]) == (6, 33, 40 + 65, 40)


@pytest.mark.parametrize(
    ("tags", "vlan"),
    [
        (Dot1Q(vlan=100), 100),
        (Dot1AD(vlan=200) / Dot1Q(vlan=100), 200),
        (Dot1Q(vlan=7, type=0x9100) / Dot1Q(vlan=8, type=0x8100) / Dot1Q(vlan=9), 7),
    ],
)
def test_vlan_tags_keep_outermost_id(tags: Packet, vlan: int) -> None:
    r = one(ETH / tags / V4 / UDP(sport=53, dport=5353) / Raw(b"q" * 11))
    assert (r["vlan"], r["sport"], r["dport"], r["proto"], r["payload_len"]) == (
        vlan,
        53,
        5353,
        17,
        11,
    )


def test_pppoe_session_ipv4_ipv6_and_control() -> None:
    r4 = one(ETH / PPPoE(sessionid=5) / PPP(proto=0x21) / V4 / UDP(sport=1, dport=2))
    r6 = one(ETH / PPPoE(sessionid=5) / PPP(proto=0x57) / V6 / UDP(sport=3, dport=4))
    assert (r4["ip_version"], r4["sport"], r6["ip_version"], r6["dport"]) == (4, 1, 6, 4)
    assert skip_of(ETH / PPPoE() / PPP(proto=0xC021) / Raw(b"\x01" * 10)) == SkipReason.NOT_IP


def test_ipv6_extension_headers() -> None:
    ah = bytes([6, 4, 0, 0]) + b"\x00" * 20  # AH: next TCP, (4 + 2) * 4 = 24 bytes
    frame = (
        ETH
        / IPv6(src="::1", dst="::2", nh=0)
        / IPv6ExtHdrHopByHop()
        / IPv6ExtHdrRouting(addresses=["2001:db8::9"])
        / IPv6ExtHdrDestOpt(nh=51)
        / Raw(ah + bytes(SEG))
    )
    r = one(frame)
    assert (r["proto"], r["sport"], r["dport"], r["tcp_flags"]) == (6, 40000, 443, 0x18)
    assert r["ip_hdr_len"] == 40 + 8 + 24 + 8 + 24
    assert (r["l4_hdr_len"], r["payload_len"]) == (28, 37)


def test_ipv6_esp_and_no_next_header_stop_parsing() -> None:
    esp = one(ETH / IPv6(nh=50) / Raw(b"\x00" * 40))
    none = one(ETH / IPv6(nh=0) / IPv6ExtHdrHopByHop(nh=59) / Raw(b"\x00" * 8))
    assert (esp["proto"], esp["sport"], esp["l4_hdr_len"], esp["payload_len"]) == (50, 0, 0, 40)
    assert (none["proto"], none["ip_hdr_len"], none["payload_len"]) == (59, 48, 8)


def test_ipv4_fragments_first_has_ports_later_do_not() -> None:
    frags = fragment(  # type: ignore[no-untyped-call]
        V4 / UDP(sport=7777, dport=53) / Raw(b"z" * 3000), fragsize=1000
    )
    pk, sk = decode(make_batch([bytes(ETH / f) for f in frags]))
    assert sk.sum() == 0 and len(pk) == len(frags) == 4
    assert pk["frag"].tolist() == [FRAG_FIRST, FRAG_LATER, FRAG_LATER, FRAG_LATER]
    assert (pk[0]["sport"], pk[0]["dport"], pk[0]["payload_len"]) == (7777, 53, 1000 - 8)
    assert pk["sport"][1:].tolist() == [0, 0, 0] and pk["dport"][1:].tolist() == [0, 0, 0]
    assert pk["proto"].tolist() == [17] * 4
    assert int(pk["payload_len"].sum()) == 3000 + 8 - 8  # later fragments: IP payload
    assert pk["l4_hdr_len"].tolist() == [8, 0, 0, 0]


def test_ipv6_fragments() -> None:
    pkt = (
        IPv6(src="2001:db8::1", dst="2001:db8::2")
        / IPv6ExtHdrFragment()
        / UDP(sport=9, dport=10)
        / Raw(b"y" * 2500)
    )
    frags = fragment6(pkt, 1280)  # type: ignore[no-untyped-call]
    pk, sk = decode(make_batch([bytes(ETH / f) for f in frags]))
    assert sk.sum() == 0 and len(pk) == len(frags) >= 2
    assert pk["frag"].tolist() == [FRAG_FIRST] + [FRAG_LATER] * (len(frags) - 1)
    assert (pk[0]["sport"], pk[0]["dport"], pk[0]["proto"]) == (9, 10, 17)
    assert pk["sport"][1:].tolist() == [0] * (len(frags) - 1)
    assert pk["proto"].tolist() == [17] * len(frags)
    # atomic fragment (offset 0, no more fragments) is not a fragment
    atomic = one(ETH / IPv6() / IPv6ExtHdrFragment(m=0, offset=0) / UDP(sport=1, dport=2))
    assert (atomic["frag"], atomic["sport"]) == (FRAG_NONE, 1)


def test_icmp_icmpv6_and_other_protocols() -> None:
    echo = one(ETH / V4 / ICMP(type=8, code=0) / Raw(b"p" * 56))
    unreach = one(ETH / V4 / ICMP(type=3, code=3) / IP() / UDP())
    echo6 = one(ETH / V6 / ICMPv6EchoRequest() / Raw(b"p" * 10))
    gre = one(ETH / V4 / GRE() / IP() / UDP())
    assert (echo["icmp_type"], echo["icmp_code"], echo["sport"], echo["dport"]) == (8, 0, 0, 0)
    assert (echo["proto"], echo["l4_hdr_len"], echo["payload_len"]) == (1, 8, 56)
    assert (unreach["icmp_type"], unreach["icmp_code"], unreach["payload_len"]) == (3, 3, 28)
    assert (echo6["proto"], echo6["icmp_type"], echo6["payload_len"]) == (58, 128, 10)
    assert (gre["proto"], gre["sport"], gre["l4_hdr_len"], gre["payload_len"]) == (47, 0, 0, 32)


def test_lengths_come_from_ip_not_caplen() -> None:
    full = bytes(ETH / V4 / SEG)
    cut = make_batch([full[:66]])  # snaplen 66: headers only
    cut = FrameBatch(
        **{
            **{f: getattr(cut, f) for f in cut.__dataclass_fields__},
            "wirelen": np.array([len(full)], np.uint32),
        }
    )
    pk, _ = decode(cut)
    assert (pk[0]["payload_len"], pk[0]["ip_len"], pk[0]["wire_len"]) == (37, 85, len(full))
    padded = one(bytes(ETH / V4 / UDP() / Raw(b"ab")) + b"\x00" * 16)  # Ethernet padding
    assert padded["payload_len"] == 2
    tso = bytearray(bytes(ETH / V4 / SEG))
    tso[16:18] = b"\x00\x00"  # total length 0, as captured before segmentation offload
    assert one(bytes(tso))["payload_len"] == 37


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (bytes(ETH / ARP()), SkipReason.NOT_IP),
        (bytes(ETH / V4 / SEG)[:10], SkipReason.TRUNCATED_L2),
        (bytes(ETH / Dot1Q(vlan=1) / V4)[:16], SkipReason.TRUNCATED_L2),
        (bytes(ETH / V4 / SEG)[:30], SkipReason.TRUNCATED_IP),
        (bytes(ETH / V6 / SEG)[:50], SkipReason.TRUNCATED_IP),
        (bytes(ETH / V4 / SEG)[:40], SkipReason.TRUNCATED_L4),
        (bytes(ETH)[:12] + b"\x08\x00" + bytes(V6 / SEG), SkipReason.BAD_IP_VERSION),
        (bytes(ETH / IP(ihl=4) / SEG), SkipReason.BAD_IP_HEADER),
        (bytes(ETH / IP(len=10) / SEG), SkipReason.BAD_IP_HEADER),
        (bytes(ETH / IP() / TCP(dataofs=4)), SkipReason.BAD_L4_HEADER),
        (bytes(ETH / IP(len=24) / UDP()), SkipReason.BAD_L4_HEADER),
    ],
)
def test_skip_reasons(frame: bytes, reason: SkipReason) -> None:
    assert skip_of(frame) == reason


def test_raw_ip_with_bad_version_and_unknown_linktype() -> None:
    assert skip_of(b"\x50" + b"\x00" * 40, 101) == SkipReason.BAD_IP_VERSION
    assert skip_of(bytes(ETH / V4 / SEG), 147) == SkipReason.UNKNOWN_LINKTYPE
    assert skip_of(struct.pack("<I", 7) + bytes(V4), 0) == SkipReason.NOT_IP


def test_frame_outside_the_buffer_is_a_skip() -> None:
    b = make_batch([bytes(ETH / V4 / SEG)] * 2)
    bad = FrameBatch(
        **{
            **{f: getattr(b, f) for f in b.__dataclass_fields__},
            "offsets": np.array([0, 10**6], np.int64),
        }
    )
    pk, sk = decode(bad)
    assert len(pk) == 1 and sk[SkipReason.BAD_FRAME_BOUNDS] == 1


def test_skip_reason_names_are_metric_labels() -> None:
    assert SKIP_REASON_NAMES[SkipReason.NOT_IP] == "not_ip"
    assert all(n.islower() and " " not in n for n in SKIP_REASON_NAMES)
    assert len(set(SKIP_REASON_NAMES)) == len(SkipReason)


# --- every shared capture against scapy's parse ---------------------------------------------

_EXT6 = (0, 43, 60, 51, 135, 139, 140)


def _expected(pkt: Packet) -> dict[str, int] | None:
    """What the decoder should say about a scapy-parsed frame (None: not an IP packet)."""
    ip = next((layer for layer in pkt.layers() if layer in (IP, IPv6)), None)
    if ip is None:
        return None
    ipl = pkt[ip]
    if ip is IP:
        exp = {
            "ip_version": 4,
            "proto": ipl.proto,
            "ttl": ipl.ttl,
            "ip_len": ipl.len,
            "ip_hdr_len": ipl.ihl * 4,
        }
        later = ipl.frag > 0
        if ipl.len == 0:  # segmentation offload: the decoder takes the length from the frame
            exp["ip_len"] = len(ipl.original)
    else:
        exp = {"ip_version": 6, "ttl": ipl.hlim, "ip_len": 40 + ipl.plen}
        later = False
    addr = v4_halves if ip is IP else v6_halves
    exp["src_hi"], exp["src_lo"] = addr(ipl.src)
    exp["dst_hi"], exp["dst_lo"] = addr(ipl.dst)
    l4, hdr = ipl.payload, exp.get("ip_hdr_len", 40)
    while ip is IPv6 and (type(l4).__name__.startswith("IPv6ExtHdr") or type(l4) is AH):
        later = later or (type(l4) is IPv6ExtHdrFragment and l4.offset > 0)
        hdr += len(bytes(l4)) - len(bytes(l4.payload))
        l4 = l4.payload
    if not later and type(l4) in (TCP, UDP):
        exp["proto"] = 6 if type(l4) is TCP else 17
        exp["sport"], exp["dport"] = l4.sport, l4.dport
        l4_hdr = 8
        if type(l4) is TCP:
            exp["tcp_flags"], exp["tcp_window"] = int(l4.flags), l4.window
            exp["l4_hdr_len"] = l4_hdr = l4.dataofs * 4
        exp["payload_len"] = exp["ip_len"] - hdr - l4_hdr
    elif not later and (type(l4) is ICMP or type(l4).__name__.startswith("ICMPv6")):
        exp["proto"] = 1 if type(l4) is ICMP else 58
        exp["icmp_type"], exp["icmp_code"] = bytes(l4)[:2]
    return exp


@pytest.mark.shared_data
@pytest.mark.parametrize("path", all_shared_pcaps(), ids=lambda p: p.name)
def test_shared_capture_fields_match_scapy(shared_data: Path, path: Path) -> None:
    from scapy.utils import rdpcap

    with open_capture(path) as reader:
        batches = list(reader)
    assert len(batches) == 1
    ref = rdpcap(str(path), count=300)
    rows, skips = decode(batches[0])
    assert len(rows) + int(skips.sum()) == len(batches[0])
    assert int(skips.sum()) == int(skips[SkipReason.NOT_IP])  # only ARP, LLDP, ... skipped
    by_seq = {int(r["src_seq"]): r for r in rows}
    checked = icmp = 0
    for i, pkt in enumerate(ref):
        exp = _expected(pkt)
        if exp is None:
            assert i not in by_seq, f"frame {i} is not IP for scapy"
            continue
        row = by_seq[i]
        got = {k: int(row[k]) for k in exp}
        assert got == exp, f"frame {i}"
        checked += 1
        icmp += "icmp_type" in exp
    assert checked > 0
    assert icmp > 0 or "icmp" not in path.name


def test_batch_with_other_array_types_decodes_the_same() -> None:
    b = make_batch([bytes(ETH / V4 / SEG), bytes(ETH / V6 / SEG)])
    odd = FrameBatch(
        data=np.frombuffer(b.data.tobytes(), dtype=np.uint8),  # read-only
        offsets=b.offsets.astype(np.int32),
        caplen=b.caplen.astype(np.int64),
        wirelen=b.wirelen[::1],
        ts_ns=b.ts_ns,
        linktype=b.linktype.astype(np.int64),
        part=b.part,
        seq=b.seq,
    )
    assert decode(odd)[0].tobytes() == decode(b)[0].tobytes()


def test_importing_the_stages_compiles_nothing() -> None:
    # numba kernels compile (or load from cache) on first call, never as an import side effect
    code = (
        "import sys\n"
        "import netwarden.capture, netwarden.decode, netwarden.flows.table\n"
        "from numba.core.registry import CPUDispatcher\n"
        "mods = [m for n, m in list(sys.modules.items()) if n.startswith('netwarden')]\n"
        "ks = [v for m in mods for v in vars(m).values() if isinstance(v, CPUDispatcher)]\n"
        "assert len(ks) > 20, len(ks)\n"
        "print(sum(1 for k in ks if k.signatures))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0"
