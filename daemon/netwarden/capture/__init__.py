"""Capture-file source: classic pcap and pcapng files read as :class:`FrameBatch` streams.

The file is memory-mapped; a numba kernel (:mod:`.pcapfile`, :mod:`.pcapng`) finds the record
boundaries of a whole batch at a time, and the batch's byte range is copied out once, so a
batch outlives the reader.  Problems that make a file unreadable raise :class:`CaptureError`
at open time; damage inside a file is counted in :attr:`CaptureReader.skips`:

* ``truncated_record``: the last record runs past the end of the file (normal for a capture
  cut short); reading stops there.
* ``bad_record_length``: a record or block length that cannot be right (captured length over
  256 KiB or over its block): reading of the file stops with one warning, since nothing after
  it can be trusted.
* ``empty_record``: a record with no captured bytes, skipped.
* ``unknown_interface``: a pcapng packet for an interface that no IDB described, skipped.
* ``bad_section_header``: a pcapng section header with a bad byte-order magic: reading stops.

Unknown link types are not an error here; the decoder counts those frames.
"""

from __future__ import annotations

import logging
import mmap
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Literal

import numpy as np
import numpy.typing as npt

from ..packets import FrameBatch
from . import pcapng
from .pcapfile import (
    DONE_BAD,
    DONE_NO,
    READER_SKIP_NAMES,
    ST_BAD_POS,
    ST_DONE,
    ST_NIF,
    ST_NREC,
    ST_POS,
    STATE_LEN,
    CaptureError,
    parse_pcap_header,
    scan_pcap,
)

__all__ = ["READER_SKIP_NAMES", "CaptureError", "CaptureReader", "open_capture"]

log = logging.getLogger(__name__)

DEFAULT_MAX_FRAMES = 65536
DEFAULT_MAX_BYTES = 32 * 1024 * 1024  # span of file bytes per batch
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"


def open_capture(
    path: str | Path,
    *,
    part: int = 0,
    max_frames: int = DEFAULT_MAX_FRAMES,
    max_bytes: int = DEFAULT_MAX_BYTES,
) -> CaptureReader:
    """Open a classic pcap or pcapng file for reading in frame batches.

    Args:
        path: the capture file.
        part: file index, stored in every frame's ``FrameBatch.part``.
        max_frames: most frames per batch.
        max_bytes: most file bytes spanned by one batch.

    Raises:
        CaptureError: the file cannot be read, is empty, or is not a supported capture.
    """
    return CaptureReader(path, part=part, max_frames=max_frames, max_bytes=max_bytes)


class CaptureReader:
    """Iterates over the frames of one capture file as :class:`FrameBatch` objects."""

    name = "pcap"
    live = False

    def __init__(self, path: str | Path, *, part: int, max_frames: int, max_bytes: int) -> None:
        if max_frames < 1 or max_bytes < 1:
            raise ValueError(
                f"max_frames and max_bytes must be >= 1, not {max_frames}, {max_bytes}"
            )
        self.path = str(path)
        self.part = part
        self._limits = (np.int64(max_frames), np.int64(max_bytes))
        self._state = np.zeros(STATE_LEN, dtype=np.int64)
        self._skips = np.zeros(len(READER_SKIP_NAMES), dtype=np.int64)
        self._linktypes: set[int] = set()
        self._mm = _map_file(self.path)
        self._buf: npt.NDArray[np.uint8] | None = np.frombuffer(self._mm, dtype=np.uint8)
        try:
            self._init_format(bytes(self._mm[:64]))
        except CaptureError:
            self.close()
            raise

    def _init_format(self, head: bytes) -> None:
        self._ifaces: npt.NDArray[np.int64] | None = None
        if head[:4] == PCAPNG_MAGIC:
            pcapng.check_pcapng_header(head, size=len(self._mm), path=self.path)
            self._ifaces = pcapng.new_iface_table()
            self._linktypes.update(_leading_idb_linktypes(self._mm))
            return
        h = parse_pcap_header(head, path=self.path)
        self._hdr = (
            np.int64(h.swap),
            np.int64(h.ts_mult),
            np.int64(h.linktype),
            np.int64(h.rec_hdr_len),
        )
        self._state[ST_POS] = 24
        self._linktypes.add(h.linktype)

    @property
    def linktypes(self) -> tuple[int, ...]:
        """Link types of the file (pcapng: of the interfaces described so far), sorted."""
        return tuple(sorted(self._linktypes))

    @property
    def skips(self) -> dict[str, int]:
        """Records skipped so far, by reason (every reason present, zero or not)."""
        return {name: int(v) for name, v in zip(READER_SKIP_NAMES, self._skips, strict=True)}

    @property
    def records(self) -> int:
        """Packet records seen so far, skipped ones included."""
        return int(self._state[ST_NREC])

    def __iter__(self) -> Iterator[FrameBatch]:
        while self._buf is not None and self._state[ST_DONE] == DONE_NO:
            batch = self._next_batch(self._buf)
            if len(batch):
                yield batch
        if self._state[ST_DONE] == DONE_BAD:
            self._state[ST_DONE] = -1  # warn once
            log.warning(
                "%s: corrupt record at byte %d (after %d records): stopped reading this file",
                self.path,
                int(self._state[ST_BAD_POS]),
                int(self._state[ST_NREC]),
            )

    def _next_batch(self, buf: npt.NDArray[np.uint8]) -> FrameBatch:
        m = int(self._limits[0])
        offsets = np.empty(m, np.int64)
        caplen = np.empty(m, np.uint32)
        wirelen = np.empty(m, np.uint32)
        ts_ns = np.empty(m, np.int64)
        linktype = np.empty(m, np.uint16)
        seq = np.empty(m, np.int64)
        out = (offsets, caplen, wirelen, ts_ns, linktype, seq)
        if self._ifaces is None:
            n = scan_pcap(buf, self._state, self._skips, self._hdr, self._limits, out)
        else:
            n = pcapng.scan_pcapng(buf, self._state, self._skips, self._ifaces, self._limits, out)
            nif = int(self._state[ST_NIF])
            self._linktypes.update(int(v) for v in np.unique(self._ifaces[:nif, 0]))
        lo = int(offsets[0]) if n else 0
        hi = int(offsets[n - 1]) + int(caplen[n - 1]) if n else 0
        return FrameBatch(
            data=buf[lo:hi].copy(),
            offsets=offsets[:n] - lo,
            caplen=caplen[:n],
            wirelen=wirelen[:n],
            ts_ns=ts_ns[:n],
            linktype=linktype[:n],
            part=np.full(n, self.part, dtype=np.int32),
            seq=seq[:n],
        )

    def close(self) -> None:
        """Release the file mapping (idempotent)."""
        self._buf = None
        if not self._mm.closed:
            self._mm.close()

    def __enter__(self) -> CaptureReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _map_file(path: str) -> mmap.mmap:
    """Memory-map a regular, non-empty file read-only, or raise :class:`CaptureError`."""
    try:
        st = os.stat(path)  # before open(): opening a FIFO would block
        if not stat.S_ISREG(st.st_mode):
            raise CaptureError(f"{path}: not a regular file")
        if st.st_size == 0:
            raise CaptureError(f"{path}: empty file")
        if st.st_size < 4:
            raise CaptureError(f"{path}: too short for a capture file ({st.st_size} bytes)")
        with open(path, "rb") as f:
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except OSError as e:
        raise CaptureError(f"{path}: cannot read file: {e.strerror or e}") from e


def _leading_idb_linktypes(mm: mmap.mmap) -> list[int]:
    """Link types of the IDBs that directly follow the first section header (a cheap peek)."""
    order: Literal["little", "big"] = "little" if mm[8:12] == b"\x4d\x3c\x2b\x1a" else "big"
    pos, found = int.from_bytes(mm[4:8], order), list[int]()
    while pos + 12 <= len(mm) and len(found) < 64:
        btype = int.from_bytes(mm[pos : pos + 4], order)
        blen = int.from_bytes(mm[pos + 4 : pos + 8], order)
        if btype != pcapng.IDB or blen < 20 or pos + blen > len(mm):
            break
        found.append(int.from_bytes(mm[pos + 8 : pos + 10], order))
        pos += blen
    return found
