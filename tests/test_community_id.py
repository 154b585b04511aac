"""Community ID v1 against the published reference vectors.

Vectors copied by hand from corelight/community-id-spec (baseline/baseline_deflt.json and
baseline_seed1.json) and corelight/pycommunityid (tests/communityid_test.py).  The baseline
files list ICMP "ports" after the type mapping; here each row gives the raw ICMP type and code
a packet carries.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from netwarden.community_id import community_id, icmp_ports

# (saddr, daddr, proto, sport-or-type, dport-or-code, seed 0, seed 1)
# fmt: off
VECTORS = [
    # TCP over IPv4, both directions.
    ("128.232.110.120", "66.35.250.204", 6, 34855, 80,
     "1:LQU9qZlK+B5F3KDmev6m5PMibrg=", "1:3V71V58M3Ksw/yuFALMcW0LAHvc="),
    ("66.35.250.204", "128.232.110.120", 6, 80, 34855,
     "1:LQU9qZlK+B5F3KDmev6m5PMibrg=", "1:3V71V58M3Ksw/yuFALMcW0LAHvc="),
    # TCP: ports compared as numbers (pycommunityid issue 3).
    ("10.0.0.1", "10.0.0.2", 6, 10, 11569,
     "1:SXBGMX1lBOwhhoDrZynfROxnhnM=", "1:HmBRGR+fUyXF4t8WEtal7Y0gEAo="),
    # TCP over IPv6.
    ("2001:470:e5bf:dead:4957:2174:e82c:4887", "2607:f8b0:400c:c03::1a", 6, 63943, 25,
     "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=", "1:eJYTW6AOzFLlSUoESovMjnu7rMw="),
    ("2607:f8b0:400c:c03::1a", "2001:470:e5bf:dead:4957:2174:e82c:4887", 6, 25, 63943,
     "1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=", "1:eJYTW6AOzFLlSUoESovMjnu7rMw="),
    # UDP.
    ("192.168.1.52", "8.8.8.8", 17, 54585, 53,
     "1:d/FP5EW3wiY1vCndhwleRRKHowQ=", "1:Q9We8WO3piVF8yEQBNJF4uiSVrI="),
    ("8.8.8.8", "192.168.1.52", 17, 53, 54585,
     "1:d/FP5EW3wiY1vCndhwleRRKHowQ=", "1:Q9We8WO3piVF8yEQBNJF4uiSVrI="),
    # SCTP.
    ("192.168.170.8", "192.168.170.56", 132, 7, 80,
     "1:jQgCxbku+pNGw8WPbEc/TS/uTpQ=", "1:Y1/0jQg6e+I3ZwZZ9LP65DNbTXU="),
    ("192.168.170.56", "192.168.170.8", 132, 7, 7,
     "1:MP2EtRCAUIZvTw6MxJHLV7N7JDs=", "1:5w3ZRjeKBzqT3zsaEECDGjUbYeg="),
    # ICMP echo request (type 8) and reply (type 0): one flow.
    ("192.168.0.89", "192.168.0.1", 1, 8, 0,
     "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=", "1:03g6IloqVBdcZlPyX8r0hgoE7kA="),
    ("192.168.0.1", "192.168.0.89", 1, 0, 0,
     "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=", "1:03g6IloqVBdcZlPyX8r0hgoE7kA="),
    # Echo reply: the code is ignored for request/reply types.
    ("192.168.0.1", "192.168.0.89", 1, 0, 20,
     "1:X0snYXpgwiv9TZtqg64sgzUn6Dk=", "1:03g6IloqVBdcZlPyX8r0hgoE7kA="),
    # One-way ICMP types: the code is hashed, no reordering.
    ("10.0.0.1", "10.0.0.2", 1, 11, 0,
     "1:YHxtAirCG//0OzkcVAukqKQN9xM=", "1:XjUibYHaafLQ3pxQeiMI8g25q20="),
    ("192.168.0.89", "192.168.0.1", 1, 20, 0,
     "1:3o2RFccXzUgjl7zDpqmY7yJi8rI=", "1:lCXHHxavE1Vq3oX9NH5ladQg02o="),
    ("192.168.0.89", "192.168.0.1", 1, 20, 1,
     "1:tz/fHIDUHs19NkixVVoOZywde+I=", "1:Ie3wmFyxiEyikbsbcO03d2nh+PM="),
    # ICMPv6 neighbour solicitation (135) / advertisement (136).
    ("fe80::200:86ff:fe05:80da", "fe80::260:97ff:fe07:69ea", 58, 135, 0,
     "1:dGHyGvjMfljg6Bppwm3bg0LO8TY=", "1:kHa1FhMYIT6Ym2Vm2AOtoOARDzY="),
    ("fe80::260:97ff:fe07:69ea", "fe80::200:86ff:fe05:80da", 58, 136, 0,
     "1:dGHyGvjMfljg6Bppwm3bg0LO8TY=", "1:kHa1FhMYIT6Ym2Vm2AOtoOARDzY="),
    ("fe80::260:97ff:fe07:69ea", "fe80::200:86ff:fe05:80da", 58, 135, 0,
     "1:zavyT/cezQr1fmImYCwYnMXbgck=", "1:2hSqmsDZ2kdcY9kbiUzOEBic0iM="),
    # ICMPv6 echo request (128) / reply (129).
    ("3ffe:507:0:1:200:86ff:fe05:80da", "3ffe:501:0:1001::2", 58, 128, 0,
     "1:+TW+HtLHvV1xnGhV1lv7XoJrqQg=", "1:GfZxjAkDk2MkegpBYHV6tadtFXQ="),
    ("3ffe:501:0:1001::2", "3ffe:507:0:1:200:86ff:fe05:80da", 58, 129, 0,
     "1:+TW+HtLHvV1xnGhV1lv7XoJrqQg=", "1:GfZxjAkDk2MkegpBYHV6tadtFXQ="),
    # ICMPv6 router solicitation (133) / advertisement (134) to multicast.
    ("fe80::200:86ff:fe05:80da", "ff02::2", 58, 133, 0,
     "1:hO+sN4H+MG5MY/8hIrXPqc4ZQz0=", "1:L7Ka0ZMYu+J3bL4ulW2PrqyXNo8="),
    ("fe80::260:97ff:fe07:69ea", "ff02::1", 58, 134, 0,
     "1:pkvHqCL88/tg1k4cPigmZXUtL00=", "1:K/ee5UCqAMAQXDorP5nSa2CGLjc="),
    # One-way ICMPv6: time exceeded (3), destination unreachable (1, code 4).
    ("3ffe:501:1800:2345::2", "3ffe:507:0:1:200:86ff:fe05:80da", 58, 3, 0,
     "1:2ObVBgIn28oZvibYZhZMBgh7WdQ=", "1:lVEtCZpYu84Xqaa++3lXFyuu2n4="),
    ("3ffe:501:410:0:2c0:dfff:fe47:33e", "3ffe:507:0:1:200:86ff:fe05:80da", 58, 1, 4,
     "1:hLZd0XGWojozrvxqE0dWB1iM6R0=", "1:W8MHwXpWzpoSTD+cGcaJr4u0ys8="),
    ("3ffe:507:0:1:260:97ff:fe07:69ea", "3ffe:507:0:1:200:86ff:fe05:80da", 58, 3, 0,
     "1:NdobDX8PQNJbAyfkWxhtL2Pqp5w=", "1:OlOWx9psIbBFi7lOCw/4MhlKR9M="),
    ("3ffe:507:0:1:200:86ff:fe05:80da", "3ffe:507:0:1:260:97ff:fe07:69ea", 58, 3, 0,
     "1:/OGBt9BN1ofenrmSPWYicpij2Vc=", "1:Ij4ZxnC87/MXzhOjvH2vHu7LRmE="),
    # A protocol without ports (RSVP, 46): addresses and protocol only.
    ("10.1.12.1", "10.1.12.2", 46, 0, 0,
     "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw=", "1:rYir8gphR31noO9iDRQmF/BteEI="),
    ("10.1.12.2", "10.1.12.1", 46, 0, 0,
     "1:KHlLkgoJW7ifUTyTSgyVfkFHzKw=", "1:rYir8gphR31noO9iDRQmF/BteEI="),
    ("10.1.24.4", "10.1.12.1", 46, 0, 0,
     "1:/nQI4Rh/TtY3mf0R2gJFBkVlgS4=", "1:BK3BVW3U2eemuwVQVN3zd/GULno="),
]
# fmt: on


@pytest.mark.parametrize(("saddr", "daddr", "proto", "sport", "dport", "seed0", "seed1"), VECTORS)
def test_reference_vectors(
    saddr: str, daddr: str, proto: int, sport: int, dport: int, seed0: str, seed1: str
) -> None:
    assert community_id(saddr, daddr, proto, sport, dport) == seed0
    assert community_id(saddr, daddr, proto, sport, dport, seed=1) == seed1


def test_icmp_port_mapping() -> None:
    assert icmp_ports(1, 13, 0) == (13, 14, False)  # timestamp
    assert icmp_ports(1, 3, 3) == (3, 3, True)  # port unreachable: one-way
    assert icmp_ports(58, 128, 0) == (128, 129, False)
    assert icmp_ports(58, 8, 0) == (8, 0, True)  # 8 is not an ICMPv6 echo type


ports = st.integers(0, 65535)
v4 = st.integers(0, 2**32 - 1).map(lambda i: ".".join(str((i >> s) & 255) for s in (24, 16, 8, 0)))


@given(v4, v4, st.sampled_from([6, 17, 132]), ports, ports)
def test_direction_does_not_matter(a: str, b: str, proto: int, pa: int, pb: int) -> None:
    assert community_id(a, b, proto, pa, pb) == community_id(b, a, proto, pb, pa)


# Wireshark's Community ID of every packet of a few shared captures, as a second oracle (TCP,
# UDP, ICMP echo and one-way types, IPv6 with ICMPv6 behind extension headers).  Skipped: ICMP
# error messages, where Wireshark hashes the type of the ICMP header quoted inside (not the
# spec), and IP fragments without ports.
_CAPTURES = (
    "attack/tunnel/icmp-tunnel.pcap",
    "attack/scan/icmp-sweep.pcap",
    "attack/c2/slips-test7-malicious.pcap",
    "attack/dos/syn-flood-100.pcap",
    "attack/dos/udp-amplification-isakmp.pcap",
    "benign/dns-edns.pcap",
)
_FIELDS = ("ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "ip.proto", "tcp.srcport", "tcp.dstport",
           "udp.srcport", "udp.dstport", "icmp.type", "icmp.code", "icmpv6.type",
           "icmpv6.code", "communityid")  # fmt: skip
_ICMP_ERRORS = {1: {3, 4, 5, 11, 12}, 58: {1, 2, 3, 4}}


def _tshark_rows(path: Path) -> list[dict[str, str]]:
    cmd = ["tshark", "-n", "-r", str(path), "--enable-protocol", "communityid", "-c", "500",
           "-T", "fields", "-E", "occurrence=f"]  # fmt: skip
    for f in _FIELDS:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=True).stdout
    return [dict(zip(_FIELDS, line.split("\t"), strict=True)) for line in out.splitlines()]


def _ours(r: dict[str, str]) -> str | None:
    src, dst = (r["ip.src"], r["ip.dst"]) if r["ip.src"] else (r["ipv6.src"], r["ipv6.dst"])
    if r["icmpv6.type"]:
        proto, sport, dport = 58, r["icmpv6.type"], r["icmpv6.code"]
    elif r["icmp.type"] and r["ip.proto"] == "1":
        proto, sport, dport = 1, r["icmp.type"], r["icmp.code"]
    elif r["tcp.srcport"]:
        proto, sport, dport = 6, r["tcp.srcport"], r["tcp.dstport"]
    elif r["udp.srcport"]:
        proto, sport, dport = 17, r["udp.srcport"], r["udp.dstport"]
    else:
        return None
    if int(sport) in _ICMP_ERRORS.get(proto, ()):
        return None
    return str(community_id(src, dst, proto, int(sport), int(dport)))


@pytest.mark.shared_data
@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_matches_wireshark_on_shared_captures(shared_data: Path) -> None:
    checked = 0
    protos: set[str] = set()
    for rel in _CAPTURES:
        path = shared_data / "pcaps" / rel
        if not path.is_file():
            continue
        for r in _tshark_rows(path):
            ours = _ours(r)
            if ours is None or not r["communityid"]:
                continue
            assert ours == r["communityid"], (rel, r)
            checked += 1
            protos.add("icmpv6" if r["icmpv6.type"] else "v6" if r["ipv6.src"] else "v4")
    assert checked >= 500, checked
    assert {"v4", "icmpv6"} <= protos, protos
