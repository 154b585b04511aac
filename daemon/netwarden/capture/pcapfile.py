"""Classic pcap files: header check and the compiled record-boundary scan.

The scan walks record headers in a numba kernel and fills preallocated arrays (offset, captured
length, original length, timestamp) for up to ``max_frames`` records, so no Python code runs per
record.  Both byte orders, microsecond (``0xA1B2C3D4``) and nanosecond (``0xA1B23C4D``) magics and
the modified (Kuznetzov, ``0xA1B2CD34``) format with 24-byte record headers are read.

Scan state lives in a small int64 array shared with :mod:`netwarden.capture.pcapng`, so a
reader can resume a scan where the previous batch stopped.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numba import njit

MAX_CAPLEN = 256 * 1024  # a record claiming more than this is corrupt: stop reading the file

# Indices into the scan state array (int64).
ST_POS = 0  # byte offset of the next record/block
ST_NREC = 1  # packet records seen so far (the next frame's ``seq``)
ST_DONE = 2  # DONE_* value
ST_PREV_TS = 3  # timestamp of the last frame (pcapng simple packet blocks reuse it)
ST_SWAP = 4  # pcapng: 1 when the current section is byte-swapped
ST_NIF = 5  # pcapng: interfaces described in the current section
ST_BAD_POS = 6  # offset of the record that stopped the scan
STATE_LEN = 8

DONE_NO = 0
DONE_EOF = 1
DONE_BAD = 2  # corrupt structure: stop reading the file

# Indices into the skip counts array, and their metric labels.
SKIP_EMPTY = 0
SKIP_TRUNCATED = 1
SKIP_BAD_LENGTH = 2
SKIP_UNKNOWN_IF = 3
SKIP_BAD_SECTION = 4
READER_SKIP_NAMES = (
    "empty_record",
    "truncated_record",
    "bad_record_length",
    "unknown_interface",
    "bad_section_header",
)

MAGIC_US = 0xA1B2C3D4
MAGIC_NS = 0xA1B23C4D
MAGIC_MODIFIED = 0xA1B2CD34


class CaptureError(Exception):
    """A capture file cannot be read at all (the message names the file and the problem)."""


class PcapHeader:
    """What the classic pcap file header says, as the scan needs it."""

    __slots__ = ("linktype", "rec_hdr_len", "swap", "ts_mult")

    def __init__(self, *, swap: bool, ts_mult: int, linktype: int, rec_hdr_len: int) -> None:
        self.swap = swap
        self.ts_mult = ts_mult  # fraction units to nanoseconds: 1000 (us) or 1 (ns)
        self.linktype = linktype
        self.rec_hdr_len = rec_hdr_len


def parse_pcap_header(head: bytes, *, path: str) -> PcapHeader:
    """Check a classic pcap file header and return its fields.

    Args:
        head: the first 24 (or more) bytes of the file.
        path: file name, for error messages.

    Raises:
        CaptureError: short header, unknown magic or unsupported version.

    >>> import struct
    >>> h = parse_pcap_header(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1), path="x")
    >>> (h.swap, h.ts_mult, h.linktype)
    (False, 1000, 1)
    """
    if len(head) < 24:
        raise CaptureError(f"{path}: truncated pcap file header ({len(head)} of 24 bytes)")
    le = int.from_bytes(head[:4], "little")
    be = int.from_bytes(head[:4], "big")
    order: Literal["little", "big"]
    if le in (MAGIC_US, MAGIC_NS, MAGIC_MODIFIED):
        magic, order = le, "little"
    elif be in (MAGIC_US, MAGIC_NS, MAGIC_MODIFIED):
        magic, order = be, "big"
    else:
        raise CaptureError(f"{path}: not a pcap or pcapng file (magic 0x{be:08x})")
    major = int.from_bytes(head[4:6], order)
    minor = int.from_bytes(head[6:8], order)
    if major != 2:
        raise CaptureError(f"{path}: unsupported pcap version {major}.{minor}")
    # The link type is the low 16 bits; the top bits may carry FCS-length flags.
    linktype = int.from_bytes(head[20:24], order) & 0xFFFF
    return PcapHeader(
        swap=(order == "big"),
        ts_mult=1 if magic == MAGIC_NS else 1000,
        linktype=linktype,
        rec_hdr_len=24 if magic == MAGIC_MODIFIED else 16,
    )


@njit(cache=True, inline="always")
def rd32(buf, p, swap):  # type: ignore[no-untyped-def]
    """Unsigned 32-bit value at ``buf[p]`` (as int64): little-endian, big-endian if ``swap``."""
    if swap:
        return (
            (np.int64(buf[p]) << 24)
            | (np.int64(buf[p + 1]) << 16)
            | (np.int64(buf[p + 2]) << 8)
            | np.int64(buf[p + 3])
        )
    return (
        np.int64(buf[p])
        | (np.int64(buf[p + 1]) << 8)
        | (np.int64(buf[p + 2]) << 16)
        | (np.int64(buf[p + 3]) << 24)
    )


@njit(cache=True, nogil=True)
def scan_pcap(buf, state, skips, hdr, limits, out):  # type: ignore[no-untyped-def]
    """Find up to ``limits[0]`` records from ``state[ST_POS]``; return how many were stored.

    Args:
        buf: the whole file (uint8).
        state: int64 scan state (ST_* indices), updated in place.
        skips: int64 skip counts (SKIP_* indices), updated in place.
        hdr: int64 tuple ``(swap, ts_mult, linktype, rec_hdr_len)``.
        limits: int64 tuple ``(max_frames, max_span_bytes)``.
        out: tuple of arrays ``(offsets, caplen, wirelen, ts_ns, linktype, seq)``.
    """
    swap, ts_mult, linktype, rec_hdr_len = hdr
    max_frames, max_span = limits
    offsets, caplen, wirelen, ts_ns, lt, seq = out
    size = buf.shape[0]
    pos = state[ST_POS]
    start = pos
    n = 0
    while n < max_frames and pos - start < max_span:
        if pos >= size:
            state[ST_DONE] = DONE_EOF
            break
        if pos + rec_hdr_len > size:
            skips[SKIP_TRUNCATED] += 1
            state[ST_DONE] = DONE_EOF
            break
        incl = rd32(buf, pos + 8, swap != 0)
        if incl > MAX_CAPLEN:
            skips[SKIP_BAD_LENGTH] += 1
            state[ST_DONE] = DONE_BAD
            state[ST_BAD_POS] = pos
            break
        data = pos + rec_hdr_len
        if data + incl > size:
            skips[SKIP_TRUNCATED] += 1
            state[ST_DONE] = DONE_EOF
            break
        rec = pos
        pos = data + incl
        state[ST_NREC] += 1
        if incl == 0:
            skips[SKIP_EMPTY] += 1
            continue
        offsets[n] = data
        caplen[n] = incl
        wirelen[n] = rd32(buf, rec + 12, swap != 0)
        sec = rd32(buf, rec, swap != 0)
        ts_ns[n] = sec * 1_000_000_000 + rd32(buf, rec + 4, swap != 0) * ts_mult
        lt[n] = linktype
        seq[n] = state[ST_NREC] - 1
        n += 1
    state[ST_POS] = pos
    return n
