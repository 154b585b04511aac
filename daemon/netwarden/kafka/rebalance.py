"""Rebalance listener of the Kafka source: runs the revoke hooks, then commits.

kafka-python 3 calls rebalance listeners on its I/O thread.  A revocation is part of the
group join, which only a ``poll`` (or ``close``) on the main thread drives, and that call
blocks until the listener has returned: so the application's revoke hooks may touch the
pipeline from here.  A blocking ``consumer.commit()`` raises on the I/O thread, though, so the
listener is asynchronous: the commits the hooks make are recorded, then awaited as one
asynchronous commit before kafka-python gives the partitions up.

Lost partitions (membership already gone, noticed by the heartbeat) may be reported while the
main thread is busy, so they are only posted; the main thread ends their flows after its next
``poll`` and does not commit them (the commit would fail; their new owner re-reads them).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kafka import AsyncConsumerRebalanceListener

if TYPE_CHECKING:
    from .source import KafkaSource


def _parts(tps: Any) -> frozenset[int]:
    return frozenset(tp.partition for tp in tps)


class RebalanceListener(AsyncConsumerRebalanceListener):  # type: ignore[misc]
    """Bridges kafka-python's group protocol and the source's revoke/assign hooks."""

    def __init__(self, source: KafkaSource) -> None:
        self._source = source

    async def on_partitions_revoked(self, revoked: Any) -> None:
        parts = _parts(revoked) & self._source.assigned_partitions()
        if not parts:  # first join, or already handed over by close()
            return
        self._source.run_revoke_hooks(parts)
        await self._source.commit_deferred()
        self._source.forget(parts)

    async def on_partitions_lost(self, lost: Any) -> None:
        self._source.post_lost(_parts(lost))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self._source.assigned_now(_parts(assigned))
