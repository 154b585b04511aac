"""Synthetic packet arrays for tests and benchmarks of the flow table.

Builds ``PACKET_DTYPE`` rows without a decoder: a :class:`PacketBuilder` appends one packet per
call (tests that script a TCP conversation), :func:`random_packets` draws many packets of many
flows at once (property tests, benchmarks).
"""

from __future__ import annotations

import ipaddress

import numpy as np

from ..packets import IPV4_MAPPED_PREFIX, PACKET_DTYPE, PacketArray

_HDR = {6: 20, 17: 8, 1: 8, 58: 8}


def addr_halves(addr: str) -> tuple[int, int]:
    """Return the (hi, lo) uint64 halves of an IPv4 (mapped) or IPv6 address.

    >>> addr_halves("10.0.0.1") == (0, 0xFFFF_0A00_0001)
    True
    """
    ip = ipaddress.ip_address(addr)
    if ip.version == 4:
        return 0, int(IPV4_MAPPED_PREFIX) | int(ip)
    v = int(ip)
    return v >> 64, v & 0xFFFF_FFFF_FFFF_FFFF


class PacketBuilder:
    """Append packets one by one, then :meth:`build` a packet array."""

    def __init__(self) -> None:
        self._rows: list[dict[str, int]] = []

    def add(
        self,
        ts_us: float,
        src: str,
        dst: str,
        sport: int = 0,
        dport: int = 0,
        *,
        proto: int = 6,
        flags: int = 0,
        payload: int = 0,
        window: int = 0,
        l4_hdr: int | None = None,
        vlan: int = 0,
        frag: int = 0,
        icmp_type: int = 0,
        icmp_code: int = 0,
        part: int = -1,
        seq: int = -1,
    ) -> PacketBuilder:
        """Append one packet (time in microseconds); returns self for chaining."""
        sh, sl = addr_halves(src)
        dh, dl = addr_halves(dst)
        hdr = _HDR.get(proto, 0) if l4_hdr is None else l4_hdr
        ip_hdr = 20 if sh == 0 else 40
        self._rows.append(
            dict(
                ts_ns=round(ts_us * 1000),
                src_hi=sh,
                src_lo=sl,
                dst_hi=dh,
                dst_lo=dl,
                sport=sport,
                dport=dport,
                proto=proto,
                ip_version=4 if sh == 0 else 6,
                vlan=vlan,
                wire_len=14 + ip_hdr + hdr + payload,
                ip_len=ip_hdr + hdr + payload,
                ip_hdr_len=ip_hdr,
                l4_hdr_len=hdr,
                payload_len=payload,
                tcp_flags=flags,
                tcp_window=window,
                icmp_type=icmp_type,
                icmp_code=icmp_code,
                ttl=64,
                frag=frag,
                src_part=part,
                src_seq=seq if seq >= 0 else len(self._rows),
            )
        )
        return self

    def build(self) -> PacketArray:
        out = np.zeros(len(self._rows), dtype=PACKET_DTYPE)
        for i, row in enumerate(self._rows):
            for k, v in row.items():
                out[i][k] = v
        return out


def random_packets(
    n: int, *, n_flows: int = 1000, seed: int = 0, mean_gap_us: float = 10.0
) -> PacketArray:
    """``n`` packets of ``n_flows`` random TCP/UDP flows in time order (both directions).

    Every flow has distinct endpoints, so the number of flows seen is ``n_flows`` or fewer.
    """
    rng = np.random.default_rng(seed)
    out = np.zeros(n, dtype=PACKET_DTYPE)
    flow = rng.integers(0, n_flows, n)
    back = rng.random(n) < 0.4
    proto = np.where(flow % 5 == 0, 17, 6).astype(np.uint8)
    a = IPV4_MAPPED_PREFIX | (np.uint64(0x0A00_0000) + flow.astype(np.uint64))
    b = IPV4_MAPPED_PREFIX | np.uint64(0xC0A8_0001)
    cport = (1024 + flow % 60000).astype(np.uint16)
    out["ts_ns"] = np.cumsum(rng.exponential(mean_gap_us * 1000, n)).astype(np.int64)
    out["src_lo"] = np.where(back, b, a)
    out["dst_lo"] = np.where(back, a, b)
    out["sport"] = np.where(back, 443, cport)
    out["dport"] = np.where(back, cport, 443)
    out["proto"] = proto
    out["ip_version"] = 4
    payload = rng.integers(0, 1400, n) * (rng.random(n) < 0.6)
    hdr = np.where(proto == 6, 32, 8)
    out["payload_len"] = payload
    out["l4_hdr_len"] = hdr
    out["ip_hdr_len"] = 20
    out["ip_len"] = 20 + hdr + payload
    out["wire_len"] = 34 + hdr + payload
    out["tcp_flags"] = np.where(proto == 6, 0x10 | (0x08 * (payload > 0)), 0)
    out["tcp_window"] = rng.integers(0, 65535, n)
    out["src_part"] = -1
    out["src_seq"] = np.arange(n)
    return out
