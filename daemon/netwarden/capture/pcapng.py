"""pcapng files: section header check and the compiled block scan.

The scan (a numba kernel, no Python per block) understands section header blocks (either byte
order; a new section resets the interface table), interface description blocks (link type,
snap length, ``if_tsresol`` in powers of 10 or of 2, ``if_tsoffset``), enhanced packet blocks,
simple packet blocks (snap length of interface 0, no timestamp: the previous frame's is reused)
and the obsolete packet block.  Every other block type (name resolution, interface statistics,
decryption secrets, custom, ...) is stepped over.  Each frame carries its interface's link type.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt
from numba import njit

from .pcapfile import (
    DONE_BAD,
    DONE_EOF,
    MAX_CAPLEN,
    SKIP_BAD_LENGTH,
    SKIP_BAD_SECTION,
    SKIP_EMPTY,
    SKIP_TRUNCATED,
    SKIP_UNKNOWN_IF,
    ST_BAD_POS,
    ST_DONE,
    ST_NIF,
    ST_NREC,
    ST_POS,
    ST_PREV_TS,
    ST_SWAP,
    CaptureError,
    rd32,
)

SHB = 0x0A0D0D0A
IDB = 1
OPB = 2  # obsolete packet block
SPB = 3
EPB = 6
BOM = 0x1A2B3C4D
BOM_SWAPPED = 0x4D3C2B1A

MAX_IFACES = 4096  # interfaces past this in one section are ignored (their packets: skips)
# Columns of the interface table.
IF_LINKTYPE = 0
IF_SNAPLEN = 1
IF_TSRESOL = 2  # raw if_tsresol byte: bit 7 set = 2^-n, else 10^-n
IF_TSOFFSET = 3  # seconds added to every timestamp
IF_COLS = 4

OPT_TSRESOL = 9
OPT_TSOFFSET = 14


def new_iface_table() -> npt.NDArray[np.int64]:
    """An empty interface table for :func:`scan_pcapng`."""
    return np.zeros((MAX_IFACES, IF_COLS), dtype=np.int64)


def check_pcapng_header(head: bytes, *, size: int, path: str) -> None:
    """Check the first section header block of a pcapng file.

    Args:
        head: the first 16 (or more) bytes of the file.
        size: file size in bytes.
        path: file name, for error messages.

    Raises:
        CaptureError: bad byte-order magic, impossible block length or unsupported version.
    """
    if len(head) < 16:
        raise CaptureError(f"{path}: truncated pcapng section header ({len(head)} of 28 bytes)")
    bom = int.from_bytes(head[8:12], "little")
    if bom not in (BOM, BOM_SWAPPED):
        raise CaptureError(f"{path}: bad pcapng byte-order magic 0x{bom:08x}")
    order: Literal["little", "big"] = "little" if bom == BOM else "big"
    length = int.from_bytes(head[4:8], order)
    if length < 28 or length % 4 or length > size:
        raise CaptureError(
            f"{path}: impossible pcapng section header length {length} (file size {size})"
        )
    major = int.from_bytes(head[12:14], order)
    minor = int.from_bytes(head[14:16], order)
    if major != 1:
        raise CaptureError(f"{path}: unsupported pcapng version {major}.{minor}")


@njit(cache=True, inline="always")
def _rd16(buf, p, swap):  # type: ignore[no-untyped-def]
    if swap:
        return (np.int64(buf[p]) << 8) | np.int64(buf[p + 1])
    return np.int64(buf[p]) | (np.int64(buf[p + 1]) << 8)


@njit(cache=True)
def _read_idb(buf, body, bend, swap, row):  # type: ignore[no-untyped-def]
    """Fill one interface-table row from an IDB body (``body`` .. ``bend``)."""
    row[IF_LINKTYPE] = _rd16(buf, body, swap)
    row[IF_SNAPLEN] = rd32(buf, body + 4, swap)
    row[IF_TSRESOL] = 6  # default: microseconds
    row[IF_TSOFFSET] = 0
    p = body + 8
    while p + 4 <= bend:
        code = _rd16(buf, p, swap)
        olen = _rd16(buf, p + 2, swap)
        if code == 0 or p + 4 + olen > bend:
            break
        if code == OPT_TSRESOL and olen >= 1:
            row[IF_TSRESOL] = buf[p + 4]
        elif code == OPT_TSOFFSET and olen >= 8:
            hi = rd32(buf, p + 8, swap) if not swap else rd32(buf, p + 4, swap)
            lo = rd32(buf, p + 4, swap) if not swap else rd32(buf, p + 8, swap)
            row[IF_TSOFFSET] = (hi << 32) | lo
        p += 4 + ((olen + 3) & ~3)


@njit(cache=True)
def ts_to_ns(raw, tsresol, offset_s):  # type: ignore[no-untyped-def]
    """Convert a pcapng timestamp in interface units to nanoseconds since the epoch."""
    v = tsresol & 0x7F
    if tsresol & 0x80:
        v = min(v, 62)
        sec = raw >> v
        frac = raw & ((np.int64(1) << v) - 1)
        if v > 33:  # keep frac * 1e9 inside int64
            frac >>= v - 33
            v = 33
        ns = sec * 1_000_000_000 + ((frac * 1_000_000_000) >> v)
    elif v <= 9:
        ns = raw * 10 ** (9 - v)
    else:
        ns = raw // 10 ** (min(v, 18) - 9)
    return ns + offset_s * 1_000_000_000


@njit(cache=True)
def _stop(state, skips, reason, done, pos):  # type: ignore[no-untyped-def]
    """Count ``reason`` and end the scan at ``pos``; returns -1."""
    skips[reason] += 1
    state[ST_DONE] = done
    state[ST_BAD_POS] = pos
    return -1


@njit(cache=True)
def _block_length(buf, pos, state, skips):  # type: ignore[no-untyped-def]
    """Check the block at ``pos`` (a section header switches the byte order and clears the
    interface table); return its length, or -1 when the scan must stop."""
    if pos + 12 > buf.shape[0]:
        return _stop(state, skips, SKIP_TRUNCATED, DONE_EOF, pos)
    swap = state[ST_SWAP]
    if rd32(buf, pos, swap) == SHB:
        bom = rd32(buf, pos + 8, 0)
        if bom != BOM and bom != BOM_SWAPPED:
            return _stop(state, skips, SKIP_BAD_SECTION, DONE_BAD, pos)
        swap = 0 if bom == BOM else 1
        state[ST_SWAP] = swap
        state[ST_NIF] = 0
    blen = rd32(buf, pos + 4, swap)
    if blen < 12 or blen % 4 != 0:
        return _stop(state, skips, SKIP_BAD_LENGTH, DONE_BAD, pos)
    if pos + blen > buf.shape[0]:
        return _stop(state, skips, SKIP_TRUNCATED, DONE_EOF, pos)
    if rd32(buf, pos + blen - 4, swap) != blen:  # the trailing copy of the length
        return _stop(state, skips, SKIP_BAD_LENGTH, DONE_BAD, pos)
    return blen


@njit(cache=True)
def _packet_block(buf, btype, body, bend, swap, snaplen0):  # type: ignore[no-untyped-def]
    """Fields of an EPB/OPB/SPB: ``(data, caplen, wirelen, ifid, raw_ts)``; caplen -1 when
    the lengths are impossible.  SPBs use interface 0's snap length and have no timestamp."""
    if btype == SPB:
        if bend - body < 4:
            return 0, -1, 0, 0, 0
        orig = rd32(buf, body, swap)
        cap = min(orig, bend - body - 4)
        if snaplen0 > 0:
            cap = min(cap, snaplen0)
        return body + 4, cap, orig, 0, 0
    if bend - body < 20:
        return 0, -1, 0, 0, 0
    ifid = _rd16(buf, body, swap) if btype == OPB else rd32(buf, body, swap)
    raw = (rd32(buf, body + 4, swap) << 32) | rd32(buf, body + 8, swap)
    cap = rd32(buf, body + 12, swap)
    if cap > bend - body - 20:
        cap = -1
    return body + 20, cap, rd32(buf, body + 16, swap), ifid, raw


@njit(cache=True)
def _add_interface(buf, body, bend, state, ifaces):  # type: ignore[no-untyped-def]
    nif = state[ST_NIF]
    if nif < MAX_IFACES and bend - body >= 8:
        _read_idb(buf, body, bend, state[ST_SWAP], ifaces[nif])
        state[ST_NIF] = nif + 1


@njit(cache=True, nogil=True)
def scan_pcapng(buf, state, skips, ifaces, limits, out):  # type: ignore[no-untyped-def]
    """Find up to ``limits[0]`` frames from ``state[ST_POS]``; return how many were stored.

    Arguments as :func:`netwarden.capture.pcapfile.scan_pcap`, with ``ifaces`` the interface
    table (``new_iface_table()``) in place of the file header.
    """
    max_frames, max_span = limits
    offsets, caplen, wirelen, ts_ns, lt, seq = out
    pos = state[ST_POS]
    start = pos
    n = 0
    while n < max_frames and pos - start < max_span:
        if pos >= buf.shape[0]:
            state[ST_DONE] = DONE_EOF
            break
        blen = _block_length(buf, pos, state, skips)
        if blen < 0:
            break
        swap = state[ST_SWAP]
        btype = rd32(buf, pos, swap)
        body, bend = pos + 8, pos + blen - 4
        pos += blen
        if btype == IDB:
            _add_interface(buf, body, bend, state, ifaces)
        if btype != EPB and btype != OPB and btype != SPB:
            continue
        data, cap, orig, ifid, raw = _packet_block(
            buf, btype, body, bend, swap, ifaces[0, IF_SNAPLEN]
        )
        if cap < 0 or cap > MAX_CAPLEN:
            _stop(state, skips, SKIP_BAD_LENGTH, DONE_BAD, pos - blen)
            break
        state[ST_NREC] += 1
        if ifid >= state[ST_NIF]:
            skips[SKIP_UNKNOWN_IF] += 1
            continue
        if cap == 0:
            skips[SKIP_EMPTY] += 1
            continue
        if btype != SPB:
            state[ST_PREV_TS] = ts_to_ns(raw, ifaces[ifid, IF_TSRESOL], ifaces[ifid, IF_TSOFFSET])
        offsets[n] = data
        caplen[n] = cap
        wirelen[n] = orig
        ts_ns[n] = state[ST_PREV_TS]
        lt[n] = ifaces[ifid, IF_LINKTYPE]
        seq[n] = state[ST_NREC] - 1
        n += 1
    state[ST_POS] = pos
    return n
