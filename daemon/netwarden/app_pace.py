"""Frame-batch helpers for the pipeline: realtime pacing and per-partition progress marks.

``--realtime`` replays a capture at the speed it was recorded: the pipeline cuts each frame
batch into slices of at most :data:`PACE_STEP_NS` of capture time and sleeps until each slice
is due (capture time since the first frame == wall time since the replay started).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from .packets import FrameBatch

PACE_STEP_NS = 10_000_000  # 10 ms slices: finer than any flow timeout, coarse enough to be cheap
MAX_SLEEP_SLICE_S = 0.1  # wake up this often while waiting, to score due flows and see stop()


def slice_frames(batch: FrameBatch, start: int, end: int) -> FrameBatch:
    """Frames ``start:end`` of ``batch`` (a view: the frame bytes are not copied)."""
    return FrameBatch(batch.data, batch.offsets[start:end], batch.caplen[start:end],
                      batch.wirelen[start:end], batch.ts_ns[start:end],
                      batch.linktype[start:end], batch.part[start:end], batch.seq[start:end])


def frame_seq_marks(batch: FrameBatch) -> dict[int, int]:
    """Per partition, one past the highest frame sequence number in ``batch``.

    >>> import numpy as np
    >>> z = np.zeros(3, np.int64)
    >>> b = FrameBatch(np.zeros(0, np.uint8), z, z.astype(np.uint32), z.astype(np.uint32), z,
    ...                z.astype(np.uint16), np.array([0, 1, 0], np.int32), np.array([5, 9, 7]))
    >>> frame_seq_marks(b)
    {0: 8, 1: 10}
    """
    if len(batch) == 0:
        return {}
    part, seq = batch.part, batch.seq
    if part[0] == part[-1] and (part == part[0]).all():
        return {int(part[0]): int(seq.max()) + 1}
    return {int(p): int(seq[part == p].max()) + 1 for p in np.unique(part)}


class Pacer:
    """Cuts batches into due-time slices and sleeps until each is due.

    Args:
        monotonic: the clock.
        sleep_slice: sleeps up to the given seconds; returns False to abandon waiting (stop).
    """

    def __init__(self, monotonic: Callable[[], float],
                 sleep_slice: Callable[[float], bool]) -> None:
        self._monotonic = monotonic
        self._sleep_slice = sleep_slice
        self._anchor: tuple[int, float] | None = None  # (first capture ts_ns, clock at start)

    def chunks(self, batch: FrameBatch) -> Iterator[FrameBatch]:
        """Yield ``batch`` in slices, each once its capture time has come; stop early (the rest
        unread) when ``sleep_slice`` says the pipeline is stopping."""
        ts = batch.ts_ns
        n = len(batch)
        start = 0
        while start < n:
            first = int(ts[start])
            # searchsorted assumes sorted times; on a reordered capture it still advances by >= 1
            end = max(int(np.searchsorted(ts, first + PACE_STEP_NS, side="left")), start + 1)
            if not self._wait_until(first):
                return  # stopping: frames not due yet are not read (nor committed)
            yield slice_frames(batch, start, end)
            start = end

    def _wait_until(self, ts_ns: int) -> bool:
        if self._anchor is None:
            self._anchor = (ts_ns, self._monotonic())
        first_ts, t0 = self._anchor
        while True:
            delay = (ts_ns - first_ts) / 1e9 - (self._monotonic() - t0)
            if delay <= 0:
                return True
            if not self._sleep_slice(min(delay, MAX_SLEEP_SLICE_S)):
                return False
