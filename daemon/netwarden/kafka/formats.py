"""Kafka message formats for raw packets: ``pycapa`` and ``netwarden``, encoders and decoders.

``pycapa`` (Apache Metron's capture agent): key = 8-byte big-endian capture time in
microseconds since the epoch, value = one Ethernet frame.

``netwarden`` (many packets per message, all integers little-endian)::

    message header, 16 bytes
      0  4  magic  b"NWPK"
      4  1  version (1)
      5  1  flags (0; reserved)
      6  2  reserved (0)
      8  4  packet count (uint32)
     12  4  reserved (0)
    then ``count`` records, each a 20-byte header and the frame, no padding
      0  8  timestamp, ns since the epoch (int64)
      8  4  original length on the wire (uint32)
     12  4  captured length = bytes of frame that follow (uint32, <= 256 KiB)
     16  2  link type (pcap LINKTYPE_*, uint16)
     18  2  reserved (0)
     20  caplen bytes of frame

The message key is free (the shipper puts the partition's flow hash there).  Decoding walks the
record headers of a whole poll batch in one compiled kernel: no Python code runs per packet.
A message that fails validation is skipped whole and counted under one reason of
:data:`BAD_REASONS`.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit

from ..packets import LINKTYPE_ETHERNET, FrameBatch

MAGIC = b"NWPK"
VERSION = 1
HEADER_LEN = 16
RECORD_LEN = 20
MAX_FRAME = 256 * 1024  # a frame claiming more than this is corrupt
FORMATS = ("netwarden", "pycapa")

# Reasons a message is skipped (``reason`` label of kafka_bad_messages_total), by code.
OK = 0
MISSING_KEY = 1
SHORT_KEY = 2
EMPTY_VALUE = 3
BAD_MAGIC = 4
BAD_VERSION = 5
TRUNCATED = 6
OVERSIZE_FRAME = 7
WRONG_FORMAT = 8
BAD_LENGTH = 9
BAD_REASONS = ("ok", "missing_key", "short_key", "empty_value", "bad_magic", "bad_version",
               "truncated", "oversize_frame", "wrong_format", "bad_length")

_MAGIC_U32 = int.from_bytes(MAGIC, "little")
_HEADER = struct.Struct("<4sBBHII")


@dataclass(frozen=True, slots=True)
class Decoded:
    """Frames decoded from a batch of messages, and the skipped messages by reason code."""

    frames: FrameBatch
    bad: npt.NDArray[np.int64]  # count per reason code, len(BAD_REASONS); bad[OK] = good msgs


# ---------------------------------------------------------------------------------- encoders


def encode_pycapa(ts_ns: int, frame: bytes) -> tuple[bytes, bytes]:
    """Return the (key, value) of a pycapa message.

    >>> key, value = encode_pycapa(1_000_000_000, b"frame")
    >>> key.hex(), value
    ('00000000000f4240', b'frame')
    """
    return struct.pack(">Q", ts_ns // 1000), frame


def encode_netwarden(frames: FrameBatch, index: npt.NDArray[np.int64]) -> bytes:
    """Pack the frames ``index`` of a batch into one ``netwarden`` message.

    >>> b = frame_batch_of([b"abc", b"de"], ts_ns=[5, 6])
    >>> msg = encode_netwarden(b, np.arange(2))
    >>> len(msg), msg[:4]
    (61, b'NWPK')
    """
    idx = np.ascontiguousarray(index, dtype=np.int64)
    total = HEADER_LEN + RECORD_LEN * idx.shape[0] + int(frames.caplen[idx].sum())
    out = np.zeros(total, dtype=np.uint8)
    out[:HEADER_LEN] = np.frombuffer(_HEADER.pack(MAGIC, VERSION, 0, 0, idx.shape[0], 0),
                                     dtype=np.uint8)
    _pack_records(out, frames.data, frames.offsets, frames.caplen, frames.wirelen,
                  frames.ts_ns, frames.linktype, idx)
    return out.tobytes()


@njit(cache=True)
def _pack_records(out, data, offsets, caplen, wirelen, ts_ns, linktype, idx):  # type: ignore[no-untyped-def]
    pos = HEADER_LEN
    for j in range(idx.shape[0]):
        i = idx[j]
        _put(out, pos, np.uint64(ts_ns[i]), 8)
        _put(out, pos + 8, np.uint64(wirelen[i]), 4)
        _put(out, pos + 12, np.uint64(caplen[i]), 4)
        _put(out, pos + 16, np.uint64(linktype[i]), 2)
        pos += RECORD_LEN
        n = caplen[i]
        out[pos:pos + n] = data[offsets[i]:offsets[i] + n]
        pos += n


@njit(cache=True, inline="always")
def _put(out, pos, value, nbytes):  # type: ignore[no-untyped-def]
    for k in range(nbytes):
        out[pos + k] = np.uint8((value >> np.uint64(8 * k)) & np.uint64(0xFF))


@njit(cache=True, inline="always")
def _get(buf, pos, nbytes):  # type: ignore[no-untyped-def]
    v = np.uint64(0)
    for k in range(nbytes):
        v |= np.uint64(buf[pos + k]) << np.uint64(8 * k)
    return v


def frame_batch_of(frames: Sequence[bytes], *, ts_ns: Sequence[int],
                   linktype: int = LINKTYPE_ETHERNET, part: int = -1) -> FrameBatch:
    """Build a FrameBatch from separate frames (tests, small producers).

    >>> len(frame_batch_of([b"ab", b"c"], ts_ns=[1, 2]))
    2
    """
    caplen = np.array([len(f) for f in frames], dtype=np.uint32)
    offsets = np.zeros(len(frames), dtype=np.int64)
    if len(frames):
        offsets[1:] = np.cumsum(caplen[:-1], dtype=np.int64)
    return FrameBatch(
        data=np.frombuffer(b"".join(frames), dtype=np.uint8).copy(), offsets=offsets,
        caplen=caplen, wirelen=caplen.copy(), ts_ns=np.asarray(ts_ns, dtype=np.int64),
        linktype=np.full(len(frames), linktype, dtype=np.uint16),
        part=np.full(len(frames), part, dtype=np.int32),
        seq=np.arange(len(frames), dtype=np.int64))


# ---------------------------------------------------------------------------------- decoders


def _join(values: Sequence[bytes | None]) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int64],
                                                   npt.NDArray[np.int64]]:
    """Concatenate message values into one buffer; return it, starts and lengths."""
    lens = np.fromiter((0 if v is None else len(v) for v in values), dtype=np.int64,
                       count=len(values))
    starts = np.zeros(len(values), dtype=np.int64)
    if len(values):
        starts[1:] = np.cumsum(lens[:-1])
    data = np.frombuffer(b"".join(v for v in values if v), dtype=np.uint8)
    return data, starts, lens


def decode_netwarden(values: Sequence[bytes | None], *, parts: npt.NDArray[np.int32],
                     offsets: npt.NDArray[np.int64]) -> Decoded:
    """Decode ``netwarden`` messages (one Kafka poll) into one FrameBatch.

    Args:
        values: message values, in consumption order.
        parts: Kafka partition of each message.
        offsets: Kafka offset of each message; every frame of a message gets its offset as seq.

    >>> b = frame_batch_of([b"abc", b"de"], ts_ns=[5, 6])
    >>> eth = bytes(12) + b"\\x08\\x00" + bytes(30)  # a raw IPv4 frame: a pycapa value
    >>> d = decode_netwarden([encode_netwarden(b, np.arange(2)), b"junk" * 9, eth],
    ...                      parts=np.full(3, 3, np.int32), offsets=np.array([7, 8, 9]))
    >>> reasons = [BAD_REASONS[i] for i in np.flatnonzero(d.bad)]
    >>> d.frames.seq.tolist(), d.frames.part.tolist(), reasons
    ([7, 7], [3, 3], ['ok', 'bad_magic', 'wrong_format'])
    """
    data, starts, lens = _join(values)
    n_frames, codes = _scan_netwarden(data, starts, lens)
    total = int(n_frames.sum())
    out = _alloc(data, total)
    _fill_netwarden(data, starts, codes, n_frames, parts, offsets, out)
    return Decoded(_batch(data, out), _tally(codes))


def decode_pycapa(keys: Sequence[bytes | None], values: Sequence[bytes | None], *,
                  parts: npt.NDArray[np.int32], offsets: npt.NDArray[np.int64]) -> Decoded:
    """Decode pycapa messages (one Ethernet frame each, key = big-endian µs) into a FrameBatch.

    >>> k, v = encode_pycapa(2_000_000_000, bytes(60))
    >>> d = decode_pycapa([k, None, b"x"], [v, v, v], parts=np.zeros(3, np.int32),
    ...                   offsets=np.arange(3))
    >>> d.frames.ts_ns.tolist(), int(d.bad[MISSING_KEY]), int(d.bad[SHORT_KEY])
    ([2000000000], 1, 1)
    """
    data, starts, lens = _join(values)
    codes = np.zeros(len(values), dtype=np.uint8)
    key_ts = np.zeros(len(values), dtype=np.int64)
    for i, key in enumerate(keys):  # one check per message; the key bytes are tiny
        if key is None:
            codes[i] = MISSING_KEY
        elif len(key) != 8:
            codes[i] = SHORT_KEY
        else:
            key_ts[i] = int.from_bytes(key, "big")
    _check_pycapa_values(data, starts, lens, codes)
    good = np.flatnonzero(codes == OK)
    frames = FrameBatch(
        data=data, offsets=starts[good], caplen=lens[good].astype(np.uint32),
        wirelen=lens[good].astype(np.uint32), ts_ns=key_ts[good] * 1000,
        linktype=np.full(good.shape[0], LINKTYPE_ETHERNET, dtype=np.uint16),
        part=np.asarray(parts, dtype=np.int32)[good],
        seq=np.asarray(offsets, dtype=np.int64)[good])
    return Decoded(frames, _tally(codes))


@njit(cache=True)
def _check_pycapa_values(data, starts, lens, codes):  # type: ignore[no-untyped-def]
    for i in range(starts.shape[0]):
        if codes[i] != OK:
            continue
        if lens[i] == 0:
            codes[i] = EMPTY_VALUE
        elif lens[i] > MAX_FRAME:
            codes[i] = OVERSIZE_FRAME
        elif lens[i] >= 4 and _get(data, starts[i], 4) == _MAGIC_U32:
            codes[i] = WRONG_FORMAT  # a netwarden message on a pycapa topic
        elif lens[i] < 14:
            codes[i] = TRUNCATED  # shorter than an Ethernet header


@njit(cache=True, inline="always")
def _looks_ethernet(data, start, length):  # type: ignore[no-untyped-def]
    if length < 14:
        return False
    etype = (np.int64(data[start + 12]) << 8) | np.int64(data[start + 13])
    # IPv4, ARP, 802.1Q, IPv6, 802.1ad
    return etype == 0x0800 or etype == 0x0806 or etype == 0x8100 or etype == 0x86DD \
        or etype == 0x88A8


@njit(cache=True)
def _scan_netwarden(data, starts, lens):  # type: ignore[no-untyped-def]
    """Validate every message; return frames per message and a reason code per message."""
    m = starts.shape[0]
    n_frames = np.zeros(m, dtype=np.int64)
    codes = np.zeros(m, dtype=np.uint8)
    for i in range(m):
        codes[i], n_frames[i] = _check_message(data, starts[i], lens[i])
        if codes[i] != OK:
            n_frames[i] = 0
    return n_frames, codes


@njit(cache=True)
def _check_message(data, start, length):  # type: ignore[no-untyped-def]
    if length == 0:
        return EMPTY_VALUE, 0
    if length < HEADER_LEN:
        return TRUNCATED, 0
    if _get(data, start, 4) != _MAGIC_U32:
        if length <= MAX_FRAME and _looks_ethernet(data, start, length):
            return WRONG_FORMAT, 0  # one raw Ethernet frame: a pycapa topic
        return BAD_MAGIC, 0
    if data[start + 4] != VERSION:
        return BAD_VERSION, 0
    count = np.int64(_get(data, start + 8, 4))
    pos = start + HEADER_LEN
    end = start + length
    for _ in range(count):
        if pos + RECORD_LEN > end:
            return TRUNCATED, 0
        cap = np.int64(_get(data, pos + 12, 4))
        if cap > MAX_FRAME:
            return OVERSIZE_FRAME, 0
        if cap > np.int64(_get(data, pos + 8, 4)):
            return BAD_LENGTH, 0  # captured more than the original length
        pos += RECORD_LEN + cap
        if pos > end:
            return TRUNCATED, 0
    if pos != end:
        return BAD_LENGTH, 0  # trailing bytes after the last record
    return OK, count


def _alloc(data: npt.NDArray[np.uint8], n: int) -> dict[str, Any]:
    return {
        "offsets": np.empty(n, np.int64), "caplen": np.empty(n, np.uint32),
        "wirelen": np.empty(n, np.uint32), "ts_ns": np.empty(n, np.int64),
        "linktype": np.empty(n, np.uint16), "part": np.empty(n, np.int32),
        "seq": np.empty(n, np.int64)}


def _fill_netwarden(data: npt.NDArray[np.uint8], starts: npt.NDArray[np.int64],
                    codes: npt.NDArray[np.uint8], n_frames: npt.NDArray[np.int64],
                    parts: npt.NDArray[np.int32], offsets: npt.NDArray[np.int64],
                    out: dict[str, Any]) -> None:
    _fill_kernel(data, starts, codes, n_frames, np.asarray(parts, np.int32),
                 np.asarray(offsets, np.int64), out["offsets"], out["caplen"], out["wirelen"],
                 out["ts_ns"], out["linktype"], out["part"], out["seq"])


@njit(cache=True)
def _fill_kernel(data, starts, codes, n_frames, parts, moffs,  # type: ignore[no-untyped-def]
                 offsets, caplen, wirelen, ts_ns, linktype, part, seq):
    j = 0
    for i in range(starts.shape[0]):
        if codes[i] != OK:
            continue
        pos = starts[i] + HEADER_LEN
        for _ in range(n_frames[i]):
            ts_ns[j] = np.int64(_get(data, pos, 8))
            wirelen[j] = np.uint32(_get(data, pos + 8, 4))
            caplen[j] = np.uint32(_get(data, pos + 12, 4))
            linktype[j] = np.uint16(_get(data, pos + 16, 2))
            offsets[j] = pos + RECORD_LEN
            part[j] = parts[i]
            seq[j] = moffs[i]
            pos += RECORD_LEN + caplen[j]
            j += 1


def _batch(data: npt.NDArray[np.uint8], a: dict[str, Any]) -> FrameBatch:
    return FrameBatch(data=data, offsets=a["offsets"], caplen=a["caplen"],
                      wirelen=a["wirelen"], ts_ns=a["ts_ns"], linktype=a["linktype"],
                      part=a["part"], seq=a["seq"])


def _tally(codes: npt.NDArray[np.uint8]) -> npt.NDArray[np.int64]:
    return np.bincount(codes, minlength=len(BAD_REASONS)).astype(np.int64)


def empty_frames() -> FrameBatch:
    """A batch of no frames (what a quiet live source yields).

    >>> len(empty_frames())
    0
    """
    return frame_batch_of([], ts_ns=[])
