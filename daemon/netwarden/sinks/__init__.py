"""Sinks: where alert and flow-log documents go, chosen by URL.

``-`` is standard output, ``file:///abs/path`` or a plain path appends to a file; other
schemes come from a small registry that other modules extend with
:func:`register_sink_scheme` (e.g. ``kafka``).  Every sink follows
:class:`netwarden.stages.Sink` and also has ``reopen()`` (SIGHUP, logrotate).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from urllib.parse import unquote, urlsplit

from ..metrics import Metrics
from ..stages import Document, Sink
from .jsonl import FileSink, SinkError, StdoutSink, encode_lines

SinkFactory = Callable[[str, Metrics | None], Sink]
"""Builds a sink from its full URL (``kafka://broker:9092/topic``) and optional metrics."""


def _file_from_url(url: str, metrics: Metrics | None) -> Sink:
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
        raise SinkError(
            f"sink URL {url!r}: a file URL needs an absolute path, "
            "e.g. file:///var/log/netwarden/alerts.jsonl"
        )
    return FileSink(unquote(parts.path), metrics=metrics)


_SCHEMES: dict[str, SinkFactory] = {"file": _file_from_url}


def register_sink_scheme(scheme: str, factory: SinkFactory, *, replace: bool = False) -> None:
    """Make ``open_sink("<scheme>://...")`` call ``factory(url, metrics)``."""
    key = scheme.lower()
    if key in _SCHEMES and not replace:
        raise ValueError(f"sink scheme {key!r} is already registered")
    _SCHEMES[key] = factory


def supported_schemes() -> list[str]:
    """URL forms :func:`open_sink` accepts, for messages and ``--help``."""
    return ["-", "PATH", *(f"{s}://" for s in sorted(_SCHEMES))]


def open_sink(url: str, *, metrics: Metrics | None = None) -> Sink:
    """Open the sink ``url`` names.

    Args:
        url: ``-`` (stdout), a file path, ``file:///abs/path``, or ``<scheme>://...`` for a
            registered scheme.
        metrics: counts written records (``sink_records{sink=kind}``) and skipped documents.

    Raises:
        SinkError: unknown scheme (the message lists the supported ones) or unusable target.
    """
    if url == "-":
        return StdoutSink(metrics=metrics)
    if not url:
        raise SinkError("sink URL is empty; use '-' for stdout or a file path")
    if "://" not in url:
        return FileSink(os.path.abspath(url), metrics=metrics)
    scheme = url.split("://", 1)[0].lower()
    factory = _SCHEMES.get(scheme)
    if factory is None:
        raise SinkError(
            f"sink URL {url!r}: unknown scheme {scheme!r}; supported: "
            f"{', '.join(supported_schemes())}"
        )
    return factory(url, metrics)


def reopen_sink(sink: Sink) -> None:
    """Reopen a sink's output after SIGHUP (files, for logrotate); no-op for others."""
    reopen = getattr(sink, "reopen", None)
    if callable(reopen):
        reopen()


__all__ = [
    "Document",
    "FileSink",
    "SinkError",
    "SinkFactory",
    "StdoutSink",
    "encode_lines",
    "open_sink",
    "register_sink_scheme",
    "reopen_sink",
    "supported_schemes",
]
