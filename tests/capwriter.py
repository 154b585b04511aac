"""Write small synthetic captures (classic pcap and pcapng) for the capture and decode tests,
and read them back.

A frame is ``(ts_ns, data)`` or ``(ts_ns, data, wire_len)``.  Nothing here validates input: tests
use it to build broken files on purpose.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from netwarden.capture import CaptureReader, open_capture
from netwarden.packets import FrameBatch

Frame = tuple[int, bytes] | tuple[int, bytes, int]


def _wire(frame: Frame) -> int:
    return frame[2] if len(frame) == 3 else len(frame[1])


def pcap_bytes(
    frames: Iterable[Frame],
    *,
    linktype: int = 1,
    ns: bool = False,
    big_endian: bool = False,
    modified: bool = False,
    version: tuple[int, int] = (2, 4),
) -> bytes:
    """A classic pcap file (``modified``: Kuznetzov format with 24-byte record headers)."""
    e = ">" if big_endian else "<"
    magic = 0xA1B2CD34 if modified else (0xA1B23C4D if ns else 0xA1B2C3D4)
    out = [struct.pack(e + "IHHiIII", magic, version[0], version[1], 0, 0, 262144, linktype)]
    for fr in frames:
        ts, data = fr[0], fr[1]
        sec, frac = divmod(ts, 1_000_000_000)
        if not ns:
            frac //= 1000
        out.append(struct.pack(e + "IIII", sec, frac, len(data), _wire(fr)))
        if modified:
            out.append(struct.pack(e + "IHBB", 0, 0, 0, 0))
        out.append(data)
    return b"".join(out)


def write_pcap(path: Path, frames: Iterable[Frame], **kw: object) -> Path:
    """Write :func:`pcap_bytes` to ``path`` and return ``path``."""
    path.write_bytes(pcap_bytes(frames, **kw))  # type: ignore[arg-type]
    return path


def _pad4(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 4)


class PcapngBuilder:
    """Builds a pcapng file block by block; call :meth:`shb` first (and again for a new section).

    >>> b = PcapngBuilder().shb().idb(1).epb(0, 10**6, b"abc")
    >>> len(b.bytes()) % 4
    0
    """

    def __init__(self) -> None:
        self._blocks: list[bytes] = []
        self._e = "<"
        self._tsresol: list[int] = []  # per interface: timestamp units per second

    def block(self, btype: int, body: bytes) -> PcapngBuilder:
        """Append any block (type and unpadded body)."""
        body = _pad4(body)
        n = 12 + len(body)
        self._blocks.append(
            struct.pack(self._e + "II", btype, n) + body + struct.pack(self._e + "I", n)
        )
        return self

    def shb(self, *, big_endian: bool = False, version: tuple[int, int] = (1, 0)) -> PcapngBuilder:
        """Start a section (interface table starts empty)."""
        self._e = ">" if big_endian else "<"
        self._tsresol = []
        body = struct.pack(self._e + "IHHq", 0x1A2B3C4D, version[0], version[1], -1)
        return self.block(0x0A0D0D0A, body)

    def idb(
        self,
        linktype: int,
        *,
        snaplen: int = 0,
        tsresol: int | None = None,
        tsoffset: int | None = None,
    ) -> PcapngBuilder:
        """Describe the next interface (``tsresol``: the raw option byte)."""
        opts = b""
        if tsresol is not None:
            opts += struct.pack(self._e + "HH", 9, 1) + _pad4(bytes([tsresol]))
        if tsoffset is not None:
            opts += struct.pack(self._e + "HHq", 14, 8, tsoffset)
        if opts:
            opts += struct.pack(self._e + "HH", 0, 0)
        r = 6 if tsresol is None else tsresol
        self._tsresol.append((2 ** (r & 0x7F)) if r & 0x80 else 10**r)
        return self.block(1, struct.pack(self._e + "HHI", linktype, 0, snaplen) + opts)

    def epb(
        self,
        ifid: int,
        ts_ns: int,
        data: bytes,
        wire_len: int | None = None,
        *,
        caplen: int | None = None,
    ) -> PcapngBuilder:
        """Enhanced packet block; ``ts_ns`` is converted to the interface's resolution."""
        units = self._tsresol[ifid] if ifid < len(self._tsresol) else 10**6
        ts = ts_ns * units // 1_000_000_000
        cap = len(data) if caplen is None else caplen
        wire = len(data) if wire_len is None else wire_len
        hdr = struct.pack(self._e + "IIIII", ifid, ts >> 32, ts & 0xFFFFFFFF, cap, wire)
        return self.block(6, hdr + data)

    def opb(self, ifid: int, ts_ns: int, data: bytes) -> PcapngBuilder:
        """Obsolete packet block (16-bit interface id), microsecond interface assumed."""
        ts = ts_ns // 1000
        hdr = struct.pack(
            self._e + "HHIIII", ifid, 0, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data)
        )
        return self.block(2, hdr + data)

    def spb(self, data: bytes, wire_len: int | None = None) -> PcapngBuilder:
        """Simple packet block (``wire_len`` defaults to ``len(data)``)."""
        wire = len(data) if wire_len is None else wire_len
        return self.block(3, struct.pack(self._e + "I", wire) + data)

    def bytes(self) -> bytes:
        """The file so far."""
        return b"".join(self._blocks)

    def write(self, path: Path) -> Path:
        """Write the file to ``path`` and return ``path``."""
        path.write_bytes(self.bytes())
        return path


def make_batch(
    frames: Sequence[bytes], linktype: int | Sequence[int] = 1, *, part: int = 0
) -> FrameBatch:
    """A :class:`FrameBatch` of ``frames`` (wire length = captured length) built in memory."""
    n = len(frames)
    lens = np.array([len(f) for f in frames], dtype=np.int64)
    offsets = (
        np.concatenate([[0], np.cumsum(lens)[:-1]]).astype(np.int64) if n else np.zeros(0, np.int64)
    )
    lts = [linktype] * n if isinstance(linktype, int) else list(linktype)
    return FrameBatch(
        data=np.frombuffer(b"".join(frames), dtype=np.uint8).copy(),
        offsets=offsets,
        caplen=lens.astype(np.uint32),
        wirelen=lens.astype(np.uint32),
        ts_ns=np.arange(n, dtype=np.int64) * 1000,
        linktype=np.array(lts, dtype=np.uint16),
        part=np.full(n, part, dtype=np.int32),
        seq=np.arange(n, dtype=np.int64),
    )


def read_all(path: Path, **kw: int) -> tuple[list[FrameBatch], CaptureReader]:
    """Every batch of a capture, and the (closed) reader for its counters."""
    with open_capture(path, **kw) as r:
        return list(r), r
