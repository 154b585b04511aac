"""Typed boundaries between pipeline stages.

A source yields :class:`~netwarden.packets.FrameBatch` objects; a sink takes ECS documents.
``app`` is the only module that knows all stages.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from .packets import FrameBatch

Document = Mapping[str, Any]


class Source(Protocol):
    """Yields frame batches until the input ends (files) or :meth:`close` is called (live).

    A live source yields an empty batch now and then while the link is quiet, so the
    application can expire idle flows on the wall clock.
    """

    name: str  # short kind for logs and labels: "pcap", "iface", "kafka", "tshark"
    live: bool

    def __iter__(self) -> Iterator[FrameBatch]: ...

    def close(self) -> None: ...


class Sink(Protocol):
    """Takes JSON-serialisable documents.  After :meth:`flush` returns, all written documents
    are acknowledged (written to the file, or acked by the broker)."""

    kind: str  # "stdout", "file", "kafka": the ``sink`` label

    def write(self, docs: Sequence[Document]) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...
