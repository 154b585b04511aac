"""JSON-lines sinks: standard output and append-only files (with logrotate support).

One compact JSON document per line, UTF-8.  An :class:`EncodedDoc` (what the alert policy
produces) already carries its line and is written as is; other documents are encoded here.
A document that cannot be encoded (NaN, a
non-JSON type) is skipped and counted in ``errors{stage="sink"}``; the others are written.
:meth:`FileSink.flush` flushes and fsyncs: after it returns, the documents are on disk (the
acknowledgement point for at-least-once delivery).
"""

from __future__ import annotations

import copy
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from ..metrics import Metrics
from ..stages import Document

log = logging.getLogger(__name__)

FILE_MODE = 0o640  # alerts name hosts: not world-readable
_BUFFER_BYTES = 1 << 16


class SinkError(Exception):
    """A sink that cannot be opened or written (one-line message naming the URL or path)."""


class EncodedDoc(dict[str, Any]):
    """A document (a plain nested dict) that carries its compact JSON line, ``json_line``.

    Build it like a dict, then set ``json_line`` (no ``__init__`` of its own: a Python-level
    constructor would cost as much as a tenth of an alert); one without it is encoded afresh.

    The producer builds both from the same values, so sinks need not encode the nested dict
    again (that was most of the cost of an alert).  Treat it as read-only: copies
    (``copy.copy``, ``copy.deepcopy``, ``dict(doc)``, pickling) are plain dicts, encoded afresh,
    so change a copy, never the document itself.
    """

    __slots__ = ("json_line",)

    json_line: str

    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return copy.deepcopy(dict(self), memo)

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (dict(self),))


def json_line(doc: Document) -> str | None:
    """The pre-encoded line of an :class:`EncodedDoc` (no newline), else None."""
    return getattr(doc, "json_line", None) if type(doc) is EncodedDoc else None


def _default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"{type(o).__name__} is not JSON serialisable")


def encode_lines(docs: Sequence[Document], *, metrics: Metrics | None = None) -> bytes:
    """Documents as compact JSON lines; unencodable ones are skipped and counted.

    >>> encode_lines([{"a": 1, "b": [True, None]}, {"x": float("nan")}])
    b'{"a":1,"b":[true,null]}\\n'
    """
    lines: list[str] = []
    bad = 0
    for d in docs:
        line = json_line(d)
        if line is not None:
            lines.append(line)
            continue
        try:
            lines.append(
                json.dumps(
                    d, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_default
                )
            )
        except (TypeError, ValueError) as e:
            bad += 1
            log.warning("sink: document skipped, not JSON-encodable: %s", e)
    if bad and metrics is not None:
        metrics.errors.labels(stage="sink").inc(bad)
    return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""


class _StreamSink:
    """Shared write/count logic over a binary stream."""

    kind = "stream"

    def __init__(self, stream: IO[bytes], *, metrics: Metrics | None) -> None:
        self._stream: IO[bytes] | None = stream
        self._metrics = metrics

    def _live(self) -> IO[bytes]:
        if self._stream is None:
            raise SinkError(f"{self.kind} sink is closed")
        return self._stream

    def write(self, docs: Sequence[Document]) -> None:
        data = encode_lines(docs, metrics=self._metrics)
        if not data:
            return
        try:
            self._live().write(data)
        except OSError as e:
            raise SinkError(f"{self.kind} sink write failed: {e.strerror or e}") from None
        if self._metrics is not None:
            self._metrics.sink_records.labels(sink=self.kind).inc(data.count(b"\n"))

    def reopen(self) -> None:
        """Reopen the output (after logrotate moved it); a no-op for streams."""


class StdoutSink(_StreamSink):
    """JSON lines on standard output; :meth:`flush` flushes the stream."""

    kind = "stdout"

    def __init__(self, *, metrics: Metrics | None = None, stream: IO[bytes] | None = None) -> None:
        super().__init__(stream if stream is not None else sys.stdout.buffer, metrics=metrics)

    def flush(self) -> None:
        try:
            self._live().flush()
        except OSError as e:  # BrokenPipeError when the reader went away
            raise SinkError(f"stdout sink flush failed: {e.strerror or e}") from None

    def close(self) -> None:
        if self._stream is not None:
            self.flush()
            self._stream = None  # never close the process's stdout


class FileSink(_StreamSink):
    """Appends JSON lines to a file; :meth:`flush` is flush + fsync.

    :meth:`reopen` closes and reopens the path (call it from the main loop after SIGHUP, not
    from the signal handler), so logrotate's rename-then-HUP works.
    """

    kind = "file"

    def __init__(self, path: Path | str, *, metrics: Metrics | None = None) -> None:
        self.path = Path(os.path.abspath(path))
        super().__init__(self._open(), metrics=metrics)

    def _open(self) -> IO[bytes]:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags, FILE_MODE)
        except OSError as e:
            raise SinkError(f"file sink: cannot open {self.path}: {e.strerror}") from None
        return os.fdopen(fd, "ab", buffering=_BUFFER_BYTES)

    def flush(self) -> None:
        f = self._live()
        try:
            f.flush()
            os.fsync(f.fileno())
        except OSError as e:
            raise SinkError(f"file sink: cannot write {self.path}: {e.strerror}") from None

    def reopen(self) -> None:
        self.close()
        self._stream = self._open()
        log.info("file sink reopened %s", self.path)

    def close(self) -> None:
        if self._stream is not None:
            try:
                self.flush()
            finally:
                self._stream.close()
                self._stream = None
