"""Link-layer part of the decoder: find the IP header inside a frame (numba kernels).

Understands Ethernet with any stack of 802.1Q / 802.1ad / QinQ tags (the outermost VLAN id is
kept) and PPPoE session frames carrying IPv4/IPv6, Linux cooked capture v1 and v2, BSD
loopback (address family in the capturing host's byte order, guessed per frame), OpenBSD
loopback (network byte order) and raw IP.  Used by :mod:`netwarden.decode`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .packets import (
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    LINKTYPE_RAW_OLD,
    LINKTYPE_RAW_OLD2,
)

# Results of :func:`find_ip` besides 4 and 6 (IP version expected at the returned offset).
L2_UNKNOWN_LINKTYPE = -1
L2_TRUNCATED = -2
L2_NOT_IP = -3
L2_RAW = 0  # raw IP: the version nibble decides

ETH_IPV4 = 0x0800
ETH_IPV6 = 0x86DD
ETH_VLAN = 0x8100
ETH_QINQ = 0x88A8
ETH_QINQ_OLD = 0x9100
ETH_PPPOE_SESSION = 0x8864
PPP_IPV4 = 0x0021
PPP_IPV6 = 0x0057

# Address families seen in loopback headers: AF_INET, then AF_INET6 on OpenBSD/NetBSD,
# FreeBSD/DragonFly and macOS.
AF_INET = 2
AF_INET6_VALUES = (24, 28, 30)


@njit(cache=True, inline="always")
def be16(buf, p):  # type: ignore[no-untyped-def]
    """Big-endian unsigned 16-bit value at ``buf[p]``."""
    return (np.int64(buf[p]) << 8) | np.int64(buf[p + 1])


@njit(cache=True, inline="always")
def be32(buf, p):  # type: ignore[no-untyped-def]
    """Big-endian unsigned 32-bit value at ``buf[p]`` (as int64)."""
    return (be16(buf, p) << 16) | be16(buf, p + 2)


@njit(cache=True)
def _by_ethertype(buf, p, end, et):  # type: ignore[no-untyped-def]
    """Step over VLAN tags and PPPoE; return ``(ip_offset, version_or_L2_code, vlan)``."""
    vlan = 0
    tagged = False
    while et in (ETH_VLAN, ETH_QINQ, ETH_QINQ_OLD):
        if end - p < 4:
            return p, L2_TRUNCATED, vlan
        if not tagged:
            vlan = be16(buf, p) & 0x0FFF
            tagged = True
        et = be16(buf, p + 2)
        p += 4
    if et == ETH_IPV4:
        return p, 4, vlan
    if et == ETH_IPV6:
        return p, 6, vlan
    if et == ETH_PPPOE_SESSION:
        if end - p < 8:
            return p, L2_TRUNCATED, vlan
        ppp = be16(buf, p + 6)
        if ppp == PPP_IPV4:
            return p + 8, 4, vlan
        if ppp == PPP_IPV6:
            return p + 8, 6, vlan
    return p, L2_NOT_IP, vlan


@njit(cache=True)
def _by_family(buf, p, end, big_endian):  # type: ignore[no-untyped-def]
    """Loopback headers: a 4-byte address family, then IP."""
    if end - p < 4:
        return p, L2_TRUNCATED, 0
    fam = be32(buf, p)
    # Host byte order of the capturing machine: a small number read big-endian means it was
    # big-endian, anything else is taken as little-endian.
    if not big_endian and fam > 0xFFFF:
        fam = ((fam & 0xFF) << 24) | ((fam & 0xFF00) << 8) | ((fam >> 8) & 0xFF00) | (fam >> 24)
    if fam == AF_INET:
        return p + 4, 4, 0
    if fam in AF_INET6_VALUES:
        return p + 4, 6, 0
    return p, L2_NOT_IP, 0


@njit(cache=True)
def find_ip(buf, p, end, linktype):  # type: ignore[no-untyped-def]
    """Locate the IP header of the frame ``buf[p:end]``.

    Returns:
        ``(ip_offset, kind, vlan)``: kind is 4 or 6 (the link layer says which), ``L2_RAW``
        (raw IP: read the version nibble) or a negative ``L2_*`` code.
    """
    if linktype == LINKTYPE_ETHERNET:
        if end - p < 14:
            return p, L2_TRUNCATED, 0
        return _by_ethertype(buf, p + 14, end, be16(buf, p + 12))
    if linktype == LINKTYPE_LINUX_SLL:
        if end - p < 16:
            return p, L2_TRUNCATED, 0
        return _by_ethertype(buf, p + 16, end, be16(buf, p + 14))
    if linktype == LINKTYPE_LINUX_SLL2:
        if end - p < 20:
            return p, L2_TRUNCATED, 0
        return _by_ethertype(buf, p + 20, end, be16(buf, p))
    if linktype == LINKTYPE_NULL:
        return _by_family(buf, p, end, False)
    if linktype == LINKTYPE_LOOP:
        return _by_family(buf, p, end, True)
    if linktype in (LINKTYPE_RAW, LINKTYPE_RAW_OLD, LINKTYPE_RAW_OLD2):
        return p, L2_RAW, 0
    return p, L2_UNKNOWN_LINKTYPE, 0
