"""Reading one item ahead on a worker thread: while the caller works on item ``k``, item
``k + 1`` is being read.

The file source uses it for capture batches: the record scan is a numba kernel compiled with
``nogil=True`` and the batch copy is a numpy copy, both of which run beside the pipeline's
own thread.  Items come out in order; an exception raised while reading comes out of
:meth:`ReadAhead.__next__` where the item would have, and ends the iteration.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

__all__ = ["ReadAhead"]

T = TypeVar("T")

_END = object()


class ReadAhead(Generic[T]):
    """``items``, read one ahead on a worker thread.  Close it (or exhaust it) before
    releasing what ``items`` reads from: :meth:`close` waits for the read in progress.

    Args:
        items: the iterator to read; only the worker calls its ``__next__``.
        name: the worker thread's name (shows in stack dumps).
    """

    def __init__(self, items: Iterator[T], name: str = "netwarden-read") -> None:
        self._items = items
        self._pool: ThreadPoolExecutor | None = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._next: Future[object] | None = self._pool.submit(next, items, _END)

    def __iter__(self) -> ReadAhead[T]:
        return self

    def __next__(self) -> T:
        if self._next is None or self._pool is None:
            raise StopIteration
        try:
            item = self._next.result()
        except BaseException:
            self.close()
            raise
        if item is _END:
            self.close()
            raise StopIteration
        self._next = self._pool.submit(next, self._items, _END)
        return item  # type: ignore[return-value]

    def close(self) -> None:
        """Stop reading ahead: wait for the read in progress, drop its item (idempotent)."""
        self._next = None
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def __enter__(self) -> ReadAhead[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
