"""Decode stage: a :class:`FrameBatch` of raw frames to a ``PACKET_DTYPE`` array.

One numba kernel walks every frame of the batch (link layer in :mod:`netwarden.decode_link`,
then IPv4 with options or IPv6 with extension headers: hop-by-hop, routing, destination
options, fragment, AH, mobility, HIP, shim6; parsing stops at ESP and no-next-header) and
writes one row per decodable packet.  Every other frame is counted under a
:class:`SkipReason`, so ``len(packets) + skips.sum() == len(batch)`` always holds, whatever the
bytes are: nothing here raises on garbage.

Lengths come from the IP headers, not from the captured length, so snaplen-cut captures still
give true packet and payload sizes (an IPv4 total length or IPv6 payload length of 0, as
written by TCP segmentation offload or jumbograms, is taken from the frame's wire length).

IP fragments are marked, never reassembled: reassembly needs unbounded buffers and invites
overlap-evasion games.  A first fragment (offset 0, more-fragments set) carries the transport
header and is decoded normally with ``frag = FRAG_FIRST``.  A later fragment (offset > 0) has
no transport header: it becomes a row with ``frag = FRAG_LATER``, ports 0, ``l4_hdr_len`` 0
and its whole IP payload as ``payload_len``; the flow table decides how to attribute it (the
count of such rows is ``(packets["frag"] == FRAG_LATER).sum()``).  ICMP and ICMPv6 rows carry
type and code with ports 0; other protocols carry ports 0 (a flow on src, dst, proto).
"""

from __future__ import annotations

import enum

import numpy as np
import numpy.typing as npt
from numba import njit

from .decode_link import L2_NOT_IP, L2_RAW, L2_TRUNCATED, L2_UNKNOWN_LINKTYPE, be16, be32, find_ip
from .packets import (
    FRAG_FIRST,
    FRAG_LATER,
    FRAG_NONE,
    IPV4_MAPPED_PREFIX,
    PACKET_DTYPE,
    FrameBatch,
    PacketArray,
)


class SkipReason(enum.IntEnum):
    """Why a frame gave no packet row (index into the skip counts)."""

    UNKNOWN_LINKTYPE = 0  # link type the decoder does not know
    BAD_FRAME_BOUNDS = 1  # offset/caplen outside the batch buffer (a malformed batch)
    TRUNCATED_L2 = 2  # frame shorter than its link-layer header
    NOT_IP = 3  # ARP, LLDP, STP, ... (normal traffic, just not IP)
    TRUNCATED_IP = 4  # IP header (or an IPv6 extension header) cut short
    BAD_IP_VERSION = 5  # version nibble not what the link layer announced
    BAD_IP_HEADER = 6  # IPv4 IHL < 5, total length < header, extension headers past the end
    TRUNCATED_L4 = 7  # TCP/UDP/ICMP header not fully captured
    BAD_L4_HEADER = 8  # TCP data offset < 5 or past the segment, segment shorter than header


SKIP_REASON_NAMES: tuple[str, ...] = tuple(r.name.lower() for r in SkipReason)

_R_BOUNDS = int(SkipReason.BAD_FRAME_BOUNDS)
_R_L2 = int(SkipReason.TRUNCATED_L2)
_R_NOT_IP = int(SkipReason.NOT_IP)
_R_LINKTYPE = int(SkipReason.UNKNOWN_LINKTYPE)
_R_TRUNC_IP = int(SkipReason.TRUNCATED_IP)
_R_VERSION = int(SkipReason.BAD_IP_VERSION)
_R_IP_HDR = int(SkipReason.BAD_IP_HEADER)
_R_TRUNC_L4 = int(SkipReason.TRUNCATED_L4)
_R_L4_HDR = int(SkipReason.BAD_L4_HEADER)
_OK = -1

_PROTO_ICMP = 1
_PROTO_TCP = 6
_PROTO_UDP = 17
_PROTO_ICMPV6 = 58
_PROTO_AH = 51
_PROTO_FRAGMENT = 44
# hop-by-hop, routing, fragment, AH, destination options, mobility, HIP, shim6
_IPV6_EXT_HEADERS = (0, 43, _PROTO_FRAGMENT, _PROTO_AH, 60, 135, 139, 140)


def decode(batch: FrameBatch) -> tuple[PacketArray, npt.NDArray[np.int64]]:
    """Decode every frame of ``batch``.

    Returns:
        ``(packets, skips)``: a ``PACKET_DTYPE`` array (one row per decoded packet, in frame
        order) and int64 skip counts indexed by :class:`SkipReason`.
    """
    out = np.zeros(len(batch), dtype=PACKET_DTYPE)
    skips = np.zeros(len(SkipReason), dtype=np.int64)
    b = batch
    # The batch types are the contract; this only copies when a source broke it (no-op else),
    # and keeps the kernel to one compiled signature.
    frames = (
        np.ascontiguousarray(b.offsets, dtype=np.int64),
        np.ascontiguousarray(b.caplen, dtype=np.uint32),
        np.ascontiguousarray(b.wirelen, dtype=np.uint32),
        np.ascontiguousarray(b.ts_ns, dtype=np.int64),
        np.ascontiguousarray(b.linktype, dtype=np.uint16),
        np.ascontiguousarray(b.part, dtype=np.int32),
        np.ascontiguousarray(b.seq, dtype=np.int64),
    )
    k = _decode_frames(np.ascontiguousarray(b.data, dtype=np.uint8), frames, out, skips)
    return out[:k], skips


@njit(cache=True, nogil=True)
def _decode_frames(data, frames, out, skips):  # type: ignore[no-untyped-def]
    offsets, caplen, wirelen, ts_ns, linktype, part, seq = frames
    size = data.shape[0]
    k = 0
    for i in range(offsets.shape[0]):
        p = offsets[i]
        end = p + np.int64(caplen[i])
        if p < 0 or end > size:
            skips[_R_BOUNDS] += 1
            continue
        r = out[k]
        wire = max(np.int64(wirelen[i]), end - p)
        reason = _decode_frame(data, p, end, wire, linktype[i], r)
        if reason != _OK:
            skips[reason] += 1
            continue
        r.ts_ns = ts_ns[i]
        r.wire_len = wirelen[i]
        r.src_part = part[i]
        r.src_seq = seq[i]
        k += 1
    return k


@njit(cache=True)
def _decode_frame(buf, p, end, wire, linktype, r):  # type: ignore[no-untyped-def]
    """Fill row ``r`` from one frame; return ``_OK`` or a skip reason."""
    q, kind, vlan = find_ip(buf, p, end, linktype)
    if kind < 0:
        if kind == L2_NOT_IP:
            return _R_NOT_IP
        if kind == L2_TRUNCATED:
            return _R_L2
        if kind == L2_UNKNOWN_LINKTYPE:
            return _R_LINKTYPE
    if q >= end:
        return _R_TRUNC_IP
    version = np.int64(buf[q] >> 4)
    if kind == L2_RAW:
        kind = version
    if version != kind or (kind != 4 and kind != 6):
        return _R_VERSION
    r.vlan = vlan
    # IP length when the header says 0 (offload, jumbogram): what the wire carried past L2.
    wire_ip = wire - (q - p)
    if kind == 4:
        l4, seg, proto, reason = _ipv4(buf, q, end, wire_ip, r)
    else:
        l4, seg, proto, reason = _ipv6(buf, q, end, wire_ip, r)
    if reason != _OK:
        return reason
    r.proto = proto
    r.sport = 0
    r.dport = 0
    r.tcp_flags = 0
    r.tcp_window = 0
    r.icmp_type = 0
    r.icmp_code = 0
    if r.frag == FRAG_LATER:
        r.l4_hdr_len = 0
        r.payload_len = seg
        return _OK
    return _l4(buf, l4, end, seg, proto, r)


@njit(cache=True)
def _addr128(buf, p):  # type: ignore[no-untyped-def]
    hi = np.uint64(0)
    lo = np.uint64(0)
    for j in range(8):
        hi = (hi << np.uint64(8)) | np.uint64(buf[p + j])
        lo = (lo << np.uint64(8)) | np.uint64(buf[p + 8 + j])
    return hi, lo


@njit(cache=True)
def _ipv4(buf, p, end, wire_ip, r):  # type: ignore[no-untyped-def]
    """IPv4 header at ``p``: returns ``(l4_offset, segment_len, proto, reason)``."""
    if end - p < 20:
        return p, 0, 0, _R_TRUNC_IP
    ihl = np.int64(buf[p] & 0x0F) * 4
    if ihl < 20:
        return p, 0, 0, _R_IP_HDR
    if end - p < ihl:
        return p, 0, 0, _R_TRUNC_IP
    total = be16(buf, p + 2)
    if total == 0:
        total = wire_ip
    if total < ihl:
        return p, 0, 0, _R_IP_HDR
    ff = be16(buf, p + 6)
    if ff & 0x1FFF:
        r.frag = FRAG_LATER
    elif ff & 0x2000:
        r.frag = FRAG_FIRST
    else:
        r.frag = FRAG_NONE
    r.ip_version = 4
    r.ttl = buf[p + 8]
    r.src_hi = 0
    r.src_lo = IPV4_MAPPED_PREFIX | np.uint64(be32(buf, p + 12))
    r.dst_hi = 0
    r.dst_lo = IPV4_MAPPED_PREFIX | np.uint64(be32(buf, p + 16))
    r.ip_len = total
    r.ip_hdr_len = ihl
    return p + ihl, total - ihl, np.int64(buf[p + 9]), _OK


@njit(cache=True)
def _ipv6(buf, p, end, wire_ip, r):  # type: ignore[no-untyped-def]
    """IPv6 header and extension headers at ``p``: as :func:`_ipv4`."""
    if end - p < 40:
        return p, 0, 0, _R_TRUNC_IP
    plen = be16(buf, p + 4)
    if plen == 0:
        plen = max(wire_ip - 40, 0)
    total = 40 + plen
    nh = np.int64(buf[p + 6])
    r.ip_version = 6
    r.ttl = buf[p + 7]
    r.src_hi, r.src_lo = _addr128(buf, p + 8)
    r.dst_hi, r.dst_lo = _addr128(buf, p + 24)
    r.frag = FRAG_NONE
    hdr = np.int64(40)
    while nh in _IPV6_EXT_HEADERS:
        q = p + hdr
        if end - q < 8:  # every extension header is at least 8 bytes
            return p, 0, 0, _R_TRUNC_IP
        if nh == _PROTO_FRAGMENT:
            elen = np.int64(8)
            fo = be16(buf, q + 2)
            if fo >> 3:
                r.frag = FRAG_LATER
            elif fo & 1:
                r.frag = FRAG_FIRST
        elif nh == _PROTO_AH:
            elen = (np.int64(buf[q + 1]) + 2) * 4
        else:
            elen = (np.int64(buf[q + 1]) + 1) * 8
        if hdr + elen > total:
            return p, 0, 0, _R_IP_HDR
        hdr += elen
        nh = np.int64(buf[q])
        if r.frag == FRAG_LATER:
            break
    r.ip_len = total
    r.ip_hdr_len = hdr
    return p + hdr, total - hdr, nh, _OK


@njit(cache=True)
def _l4(buf, q, end, seg, proto, r):  # type: ignore[no-untyped-def]
    """Transport header at ``q`` (``seg`` bytes by the IP lengths); return a reason."""
    avail = end - q
    if proto == _PROTO_TCP:
        if seg < 20:
            return _R_L4_HDR
        if avail < 20:
            return _R_TRUNC_L4
        doff = np.int64(buf[q + 12] >> 4) * 4
        if doff < 20 or doff > seg:
            return _R_L4_HDR
        r.sport = be16(buf, q)
        r.dport = be16(buf, q + 2)
        r.tcp_flags = buf[q + 13]
        r.tcp_window = be16(buf, q + 14)
        hdr = doff
    elif proto == _PROTO_UDP:
        if seg < 8:
            return _R_L4_HDR
        if avail < 8:
            return _R_TRUNC_L4
        r.sport = be16(buf, q)
        r.dport = be16(buf, q + 2)
        hdr = np.int64(8)
    elif proto in (_PROTO_ICMP, _PROTO_ICMPV6):
        if seg < 4:
            return _R_L4_HDR
        if avail < 2:
            return _R_TRUNC_L4
        r.icmp_type = buf[q]
        r.icmp_code = buf[q + 1]
        hdr = min(seg, np.int64(8))
    else:
        hdr = np.int64(0)
    r.l4_hdr_len = hdr
    r.payload_len = seg - hdr
    return _OK
