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
import binascii
import hashlib
import ipaddress
import struct

import numpy as np
import numpy.typing as npt

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


def _counterpart_table(pairs: dict[int, int]) -> npt.NDArray[np.int16]:
    t = np.full(256, -1, dtype=np.int16)
    for k, v in pairs.items():
        t[k] = v
    return t


_CP4, _CP6 = _counterpart_table(_ICMP4_COUNTERPART), _counterpart_table(_ICMP6_COUNTERPART)
# Hash input records, network order, seed first; without ports the last 4 bytes are dropped.
_REC4 = np.dtype(
    [
        ("seed", ">u2"),
        ("a", ">u4"),
        ("b", ">u4"),
        ("proto", "u1"),
        ("pad", "u1"),
        ("ap", ">u2"),
        ("bp", ">u2"),
    ]
)
_REC6 = np.dtype(
    [
        ("seed", ">u2"),
        ("ahi", ">u8"),
        ("alo", ">u8"),
        ("bhi", ">u8"),
        ("blo", ">u8"),
        ("proto", "u1"),
        ("pad", "u1"),
        ("ap", ">u2"),
        ("bp", ">u2"),
    ]
)
_U64 = npt.NDArray[np.uint64]


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


def _mapped(hi: _U64, lo: _U64) -> npt.NDArray[np.bool_]:
    mapped: npt.NDArray[np.bool_] = (hi == 0) & ((lo >> np.uint64(32)) == np.uint64(0xFFFF))
    return mapped


def _packed(hi: int, lo: int, v4: bool) -> bytes:
    return struct.pack("!I", lo & 0xFFFF_FFFF) if v4 else struct.pack("!QQ", hi, lo)


def community_ids(
    src: tuple[_U64, _U64],
    dst: tuple[_U64, _U64],
    proto: npt.NDArray[np.integer],
    sport: npt.NDArray[np.integer],
    dport: npt.NDArray[np.integer],
    *,
    seed: int = 0,
) -> list[str]:
    """Community IDs of many flows at once; the same strings as :func:`community_id_packed`.

    Addresses are ``(hi, lo)`` uint64 halves of the 128-bit form, IPv4 stored IPv4-mapped
    (``::ffff:a.b.c.d``).  For ICMP/ICMPv6 rows ``sport``/``dport`` are the type and code.
    The hash inputs are built for the whole batch with numpy; only SHA-1 runs per row.
    """
    proto_i = proto.astype(np.int64)
    sp, dp = sport.astype(np.int64), dport.astype(np.int64)
    icmp6 = proto_i == PROTO_ICMPV6
    icmp = (proto_i == PROTO_ICMP) | icmp6
    cp = np.where(icmp6, _CP6[sp & 0xFF], _CP4[sp & 0xFF]).astype(np.int64)
    one_way = icmp & (cp < 0)
    dp = np.where(icmp & (cp >= 0), cp, dp)
    has_ports = icmp | np.isin(proto_i, tuple(_PORT_PROTOS))
    (sh, sl), (dh, dl) = src, dst
    v4 = _mapped(sh, sl)
    # (daddr, dport) < (saddr, sport) on the packed bytes == on the halves, same family.
    less = (dh < sh) | ((dh == sh) & ((dl < sl) | ((dl == sl) & (dp < sp))))
    swap = ~one_way & less
    ah, al, ap = np.where(swap, dh, sh), np.where(swap, dl, sl), np.where(swap, dp, sp)
    bh, bl, bp = np.where(swap, sh, dh), np.where(swap, sl, dl), np.where(swap, sp, dp)
    n = proto_i.shape[0]
    r4, r6 = np.zeros(n, _REC4), np.zeros(n, _REC6)
    for r in (r4, r6):
        r["seed"], r["proto"], r["ap"], r["bp"] = seed, proto_i, ap, bp
    r4["a"], r4["b"] = al & np.uint64(0xFFFF_FFFF), bl & np.uint64(0xFFFF_FFFF)
    r6["ahi"], r6["alo"], r6["bhi"], r6["blo"] = ah, al, bh, bl
    rows = np.arange(n)
    off = np.where(v4, rows * _REC4.itemsize, n * _REC4.itemsize + rows * _REC6.itemsize)
    size = np.where(v4, _REC4.itemsize, _REC6.itemsize) - np.where(has_ports, 0, 4)
    buf = memoryview(r4.tobytes() + r6.tobytes())
    sha1, b64 = hashlib.sha1, binascii.b2a_base64
    out = [
        "1:" + b64(sha1(buf[o : o + k]).digest(), newline=False).decode("ascii")
        for o, k in zip(off.tolist(), size.tolist(), strict=True)
    ]
    for i in np.flatnonzero(v4 != _mapped(dh, dl)).tolist():  # mixed families: per row
        s4, d4 = bool(v4[i]), not bool(v4[i])
        out[i] = community_id_packed(
            _packed(int(sh[i]), int(sl[i]), s4),
            _packed(int(dh[i]), int(dl[i]), d4),
            int(proto_i[i]),
            int(sport[i]),
            int(dport[i]),
            seed=seed,
        )
    return out
