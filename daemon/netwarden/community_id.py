"""Community ID v1 flow hashing (corelight community-id-spec).

The hash input is ``seed(2) . addr_a . addr_b . proto(1) . 0(1) [. port_a(2) . port_b(2)]``
in network byte order, where the endpoint with the smaller (address, port) comes first;
SHA-1 of it, base64-encoded, prefixed ``"1:"``.  ICMP and ICMPv6 use the message type as the
source "port" and, for request/reply types, the counterpart type as the destination port
(otherwise the code, and the flow is one-way: endpoints are not reordered).  Protocols without
ports (neither TCP, UDP, SCTP nor the ICMPs) hash addresses and protocol only.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import struct

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ICMPV6 = 58
PROTO_SCTP = 132
_PORT_PROTOS = frozenset((PROTO_TCP, PROTO_UDP, PROTO_SCTP))

# Request/reply type pairs (Zeek's ICMP4_counterpart / ICMP6_counterpart).
_ICMP4_COUNTERPART = {8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 10: 9, 9: 10, 17: 18, 18: 17}
_ICMP6_COUNTERPART = {
    128: 129,
    129: 128,
    130: 131,
    131: 130,
    133: 134,
    134: 133,
    135: 136,
    136: 135,
    139: 140,
    140: 139,
    144: 145,
    145: 144,
}


def icmp_ports(proto: int, icmp_type: int, icmp_code: int) -> tuple[int, int, bool]:
    """The (source port, destination port, one_way) equivalents of an ICMP/ICMPv6 message.

    >>> icmp_ports(1, 8, 0)  # echo request: counterpart is echo reply (0)
    (8, 0, False)
    >>> icmp_ports(1, 11, 0)  # time exceeded: one-way, the code is the "port"
    (11, 0, True)
    """
    table = _ICMP6_COUNTERPART if proto == PROTO_ICMPV6 else _ICMP4_COUNTERPART
    if icmp_type in table:
        return icmp_type, table[icmp_type], False
    return icmp_type, icmp_code, True


def community_id_packed(
    saddr: bytes, daddr: bytes, proto: int, sport: int = 0, dport: int = 0, *, seed: int = 0
) -> str:
    """Community ID from packed addresses (4 or 16 bytes each, network order).

    For ICMP/ICMPv6 ``sport``/``dport`` are the message type and code.
    """
    one_way = False
    if proto in (PROTO_ICMP, PROTO_ICMPV6):
        sport, dport, one_way = icmp_ports(proto, sport, dport)
    has_ports = proto in _PORT_PROTOS or proto in (PROTO_ICMP, PROTO_ICMPV6)
    if not one_way and (daddr, dport) < (saddr, sport):
        saddr, daddr, sport, dport = daddr, saddr, dport, sport
    data = struct.pack("!H", seed) + saddr + daddr + struct.pack("!BB", proto, 0)
    if has_ports:
        data += struct.pack("!HH", sport, dport)
    return "1:" + base64.b64encode(hashlib.sha1(data).digest()).decode("ascii")


def community_id(
    saddr: str, daddr: str, proto: int, sport: int = 0, dport: int = 0, *, seed: int = 0
) -> str:
    """Community ID v1 of a flow given textual addresses.

    Args:
        saddr: source address (IPv4 or IPv6 text).
        daddr: destination address (same family).
        proto: IP protocol number.
        sport: source port, or the ICMP/ICMPv6 type.
        dport: destination port, or the ICMP/ICMPv6 code.
        seed: the 16-bit seed (0 unless the deployment configures one).

    >>> community_id("128.232.110.120", "66.35.250.204", 6, 34855, 80)
    '1:LQU9qZlK+B5F3KDmev6m5PMibrg='
    """
    return community_id_packed(
        ipaddress.ip_address(saddr).packed,
        ipaddress.ip_address(daddr).packed,
        proto,
        sport,
        dport,
        seed=seed,
    )
