"""Per-key counts in tumbling windows on the packet clock (numba, no Python per row).

The alert gate (:mod:`netwarden.alerts_gate`) counts alerting flows per address and per
(label, address, side).  A flood brings a new key with nearly every flow (spoofed sources),
so the counting runs inside numba over an open-addressing table (linear probing, load at most
1/2, grown and pruned by rehashing).

A key's window opens with its first row and lasts ``window_ns``; the first row at or after
its end opens the next one.  Keys are 64-bit hashes (:func:`address_keys`): two keys collide
with a probability of about ``n**2 / 2**65``, negligible for counting.
"""

from __future__ import annotations

from typing import Any

import numba as nb
import numpy as np
import numpy.typing as npt

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xC2B2AE3D27D4EB4F)
_S29, _S32 = np.uint64(29), np.uint64(32)

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]


def address_keys(hi: U64, lo: U64, tag: npt.ArrayLike) -> U64:
    """A 64-bit key per (address, tag): ``hi``/``lo`` are the 128-bit address halves as stored
    in the flow meta; ``tag`` (an int or an array) separates key spaces (label, side)."""
    with np.errstate(over="ignore"):  # multiplication modulo 2**64 is the point
        h = (np.asarray(hi, np.uint64) * _M1) ^ np.asarray(lo, np.uint64)
        h = h ^ ((np.asarray(tag, np.uint64) + np.uint64(1)) * _M2)
        h = h ^ (h >> _S29)
        h = h * _M1
        return np.asarray(h ^ (h >> _S32), np.uint64)


# One row per slot: key (0 = empty), window start, count; a probe touches one cache line.
_KEY, _START, _COUNT = 0, 1, 2


@nb.njit(cache=True, inline="always")
def _slot(tab: Any, k: Any) -> int:  # pragma: no cover - compiled
    mask = tab.shape[0] - 1
    i = (k ^ (k >> 31)) & mask
    while tab[i, 0] != 0 and tab[i, 0] != k:
        i = (i + 1) & mask
    return int(i)


@nb.njit(cache=True, inline="always")
def _nonzero(k: Any) -> Any:  # pragma: no cover - compiled
    return k if k != 0 else 1  # 0 marks an empty slot (key 0 shares key 1's count)


@nb.njit(cache=True)
def _add(tab: Any, rows: Any, ts: Any, window: int, rank: Any,
         start: Any) -> int:  # pragma: no cover - compiled
    """Count rows; returns how many new keys were stored (the caller keeps load <= 1/2)."""
    new = 0
    for r in range(rows.shape[0]):
        k = _nonzero(rows[r])
        t = ts[r]
        i = _slot(tab, k)
        if tab[i, 0] == 0:
            tab[i, 0], tab[i, 1], tab[i, 2] = k, t, 0
            new += 1
        elif t - tab[i, 1] >= window:
            tab[i, 1], tab[i, 2] = t, 0
        tab[i, 2] += 1
        rank[r] = tab[i, 2]
        start[r] = tab[i, 1]
    return new


@nb.njit(cache=True)
def _get(tab: Any, rows: Any, now: int, window: int, out: Any) -> None:  # pragma: no cover
    for r in range(rows.shape[0]):
        i = _slot(tab, _nonzero(rows[r]))
        out[r] = tab[i, 2] if tab[i, 0] != 0 and now - tab[i, 1] < window else 0


@nb.njit(cache=True)
def _rehash(tab: Any, new: Any, now: int, window: int) -> int:  # pragma: no cover - compiled
    """Copy the keys whose window is open at ``now`` into ``new``; returns how many."""
    n = 0
    for i in range(tab.shape[0]):
        if tab[i, 0] != 0 and now - tab[i, 1] < window:
            j = _slot(new, tab[i, 0])
            new[j, 0], new[j, 1], new[j, 2] = tab[i, 0], tab[i, 1], tab[i, 2]
            n += 1
    return n


class WindowCounts:
    """Counts of rows per key in tumbling windows of ``window_ns`` nanoseconds.

    >>> w = WindowCounts(10)
    >>> w.add(np.array([7, 7, 8], np.uint64), np.array([0, 5, 5], np.int64))[0].tolist()
    [1, 2, 1]
    >>> w.get(np.array([7, 8, 9], np.uint64), now=9).tolist()
    [2, 1, 0]
    >>> w.get(np.array([7], np.uint64), now=10).tolist()  # its window ended
    [0]
    """

    def __init__(self, window_ns: int, capacity: int = 1 << 12) -> None:
        if window_ns <= 0:
            raise ValueError(f"window must be positive, got {window_ns} ns")
        self.window_ns = int(window_ns)
        self._alloc(max(16, 1 << (int(capacity) - 1).bit_length()))
        self._n = 0

    def _alloc(self, size: int) -> None:
        self._tab = np.zeros((size, 3), np.int64)

    def __len__(self) -> int:
        return self._n

    def add(self, keys: U64, ts: I64) -> tuple[I64, I64]:
        """Count one row per key at time ``ts``; per row, (its rank in its key's window, counting
        from 1, the window's start)."""
        n = keys.shape[0]
        rank, start = np.empty(n, np.int64), np.empty(n, np.int64)
        if n:
            if 2 * (self._n + n) > self._tab.shape[0]:
                self._resize(self._n + n, now=None)
            self._n += _add(self._tab, _as_i64(keys), np.ascontiguousarray(ts, np.int64),
                            self.window_ns, rank, start)
        return rank, start

    def get(self, keys: U64, now: int) -> I64:
        """Per key, the count of its window that is still open at ``now`` (else 0)."""
        out = np.zeros(keys.shape[0], np.int64)
        if keys.shape[0]:
            _get(self._tab, _as_i64(keys), int(now), self.window_ns, out)
        return out

    def prune(self, now: int) -> int:
        """Forget keys whose window ended by ``now``; returns how many."""
        before = self._n
        if before:
            self._resize(before, now=int(now))
        return before - self._n

    def _resize(self, need: int, now: int | None) -> None:
        """Rehash into a table with room for ``need`` keys (load <= 1/2), dropping the keys
        whose window ended by ``now`` (None: keep all)."""
        old = self._tab
        self._alloc(max(16, 1 << (2 * need - 1).bit_length()))
        if now is None:  # keep every key
            self._n = int(_rehash(old, self._tab, int(old[:, _START].max()), 1 << 62))
        else:
            self._n = int(_rehash(old, self._tab, now, self.window_ns))


def _as_i64(keys: U64) -> I64:
    """The keys' bit patterns as int64 (the table's dtype)."""
    return np.ascontiguousarray(keys, np.uint64).view(np.int64)
