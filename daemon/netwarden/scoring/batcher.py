"""Micro-batching of ended flows in front of the scorer.

Flows end a few at a time; inference is cheaper per flow in big batches.  The batcher holds
ended flows until ``max_batch`` are waiting (a full batch goes out at once) or the oldest
waiting flow has waited ``max_batch_delay_ms`` (a partial batch goes out), so a lone flow on a
quiet link is scored within the delay and a busy link gets full batches.  The wall clock is
injected so tests drive it.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

from ..flows.params import EndedFlows
from ..metrics import Metrics


class MicroBatcher:
    """Accumulates :class:`EndedFlows` and releases batches by size or by deadline.

    Every released batch holds between 1 and ``max_batch`` flows, in arrival order.

    >>> import numpy as np
    >>> from netwarden.flows.params import FLOW_META_DTYPE
    >>> def flows(n): return EndedFlows(np.zeros(n, FLOW_META_DTYPE), np.zeros((n, 2), np.float32))
    >>> t = [0.0]
    >>> b = MicroBatcher(4, 10.0, clock=lambda: t[0])
    >>> [len(x) for x in b.add(flows(6))], b.pending
    ([4], 2)
    >>> b.poll(), b.pending
    ([], 2)
    >>> t[0] = 0.010
    >>> [len(x) for x in b.poll()], b.pending
    ([2], 0)
    """

    def __init__(
        self,
        max_batch: int,
        max_batch_delay_ms: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if not max_batch_delay_ms >= 0:
            raise ValueError(f"max_batch_delay_ms must be >= 0, got {max_batch_delay_ms}")
        self.max_batch = max_batch
        self.max_delay_s = max_batch_delay_ms / 1000.0
        self._clock = clock
        self._metrics = metrics
        self._parts: deque[tuple[float, EndedFlows]] = deque()  # (arrival time, flows)
        self._pending = 0

    @property
    def pending(self) -> int:
        """Flows waiting."""
        return self._pending

    @property
    def deadline(self) -> float | None:
        """Clock time at which the oldest waiting flow is due (None when nothing waits)."""
        return self._parts[0][0] + self.max_delay_s if self._parts else None

    def add(self, flows: EndedFlows) -> list[EndedFlows]:
        """Queue ``flows``; return the batches ready now (full ones, then any overdue rest)."""
        now = self._clock()
        if len(flows):
            self._parts.append((now, flows))
            self._pending += len(flows)
        out: list[EndedFlows] = []
        while self._pending >= self.max_batch:
            out.append(self._take(self.max_batch))
        return out + self._due(now)

    def poll(self) -> list[EndedFlows]:
        """Release the waiting flows if the oldest has waited ``max_batch_delay_ms``."""
        return self._due(self._clock())

    def drain(self) -> list[EndedFlows]:
        """Release everything waiting (end of input, shutdown, partition revoked)."""
        out: list[EndedFlows] = []
        while self._pending:
            out.append(self._take(min(self._pending, self.max_batch)))
        return out

    def _due(self, now: float) -> list[EndedFlows]:
        deadline = self.deadline
        if deadline is None or now < deadline:
            return []
        return self.drain()

    def _take(self, n: int) -> EndedFlows:
        """Pop the oldest ``n`` flows (n <= pending) as one batch."""
        parts: list[EndedFlows] = []
        need = n
        while need:
            t, head = self._parts[0]
            if len(head) <= need:
                parts.append(head)
                self._parts.popleft()
                need -= len(head)
            else:  # split: the rest keeps its arrival time
                parts.append(EndedFlows(head.meta[:need], head.features[:need]))
                self._parts[0] = (t, EndedFlows(head.meta[need:], head.features[need:]))
                need = 0
        self._pending -= n
        batch = EndedFlows.concat(parts)
        if self._metrics is not None:
            self._metrics.batch_size.observe(len(batch))
        return batch
