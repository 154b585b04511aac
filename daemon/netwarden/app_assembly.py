"""Flow assembly ahead of scoring: the flow table works on a worker thread while the pipeline
scores, and writes the alerts of, the flows that earlier batches ended.

The flow-table kernels are numba functions compiled with ``nogil=True`` and ONNX Runtime
releases the GIL while it runs a model, so on two cores the assembly of one batch and the
scoring of an earlier one run at the same time (decoding stays on the pipeline's thread,
which balances the two).  Flows end in bursts (a sweep of idle flows ends thousands at once)
while assembly costs about the same for every batch, so the worker may run up to
``depth`` batches ahead: a burst's scoring overlaps the assembly of the batches after it.

Nothing else changes: batches go through the table in order, on one worker, and their ended
flows reach the batcher, the scorer and the alert policy in the same order as they would
without the worker, so a replay writes the same bytes either way.  Batches whose assembly is
already done are handed back at once (a quiet live link adds no delay).

The flow table is handed over, never shared: the worker owns it while any batch is pending;
the pipeline takes every pending batch back (:meth:`Assembler.drain`) before it calls the
table itself (expiry, flushes, watermarks, reload, the end).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from .flows.params import EndedFlows

__all__ = ["AHEAD_DEPTH", "Assembler", "Job"]

AHEAD_DEPTH = 8  # batches the worker may run ahead of scoring

Job = Future[tuple[EndedFlows, int]]  # a batch's (flows it ended, open flows after it)


class Assembler:
    """Feeds decoded packets to the flow table on one worker thread, in order.

    Args:
        table: the flow table (``update(packets) -> EndedFlows`` and ``active``).
        depth: how many batches may be pending before :meth:`ready` waits for the oldest;
            0 runs the table on the caller's thread (no worker; the same results).
    """

    def __init__(self, table: Any, depth: int = AHEAD_DEPTH) -> None:
        if depth < 0:
            raise ValueError(f"depth: must be >= 0, got {depth}")
        self.table = table
        self.depth = depth
        self._pool: ThreadPoolExecutor | None = None
        self._pending: deque[Job] = deque()

    def submit(self, packets: Any) -> None:
        """Queue a batch of decoded packets for the flow table."""
        if self.depth == 0:
            job: Job = Future()
            try:
                job.set_result(self._update(packets))
            except Exception as e:  # handed back like the worker's: the caller counts it
                job.set_exception(e)
            self._pending.append(job)
            return
        if self._pool is None:  # started on first use: most pipelines in tests never run
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="netwarden-flows")
        self._pending.append(self._pool.submit(self._update, packets))

    def ready(self) -> Iterator[Job]:
        """The oldest pending batches, in order: those already assembled, and as many more
        (waited for) as keep at most ``depth`` pending."""
        while self._pending and (self._pending[0].done() or len(self._pending) > self.depth):
            yield self._pending.popleft()

    def drain(self) -> Iterator[Job]:
        """Every pending batch, in order; after the last the table is the caller's again
        (once that batch's result is in)."""
        while self._pending:
            yield self._pending.popleft()

    @property
    def pending(self) -> int:
        """Batches submitted and not yet handed back."""
        return len(self._pending)

    def close(self) -> None:
        """Stop the worker (after the batches it was given)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def _update(self, packets: Any) -> tuple[EndedFlows, int]:
        return self.table.update(packets), self.table.active
