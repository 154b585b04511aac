"""Source URLs to source objects: a small scheme registry, and the ``pcap://`` file source.

Other subsystems plug their sources in without editing this file, in one of three ways:

1. call :func:`register_source_scheme` (``"kafka"``, factory) before the pipeline is built;
2. declare an entry point in the ``netwarden.sources`` group named after the scheme
   (``kafka = "netwarden.kafka.source:open_source"``);
3. provide a module ``netwarden.<scheme>.source`` with a function ``open_source(url, ctx)``
   (the modules in :data:`KNOWN_PLUGINS` are looked up the same way).

A factory takes the parsed :class:`~netwarden.config.Url` and a :class:`SourceContext` and
returns a :class:`~netwarden.stages.Source`; it raises
:class:`~netwarden.exitcodes.UserError` (or ``CaptureError``) with a one-line message when the
source cannot be opened.
"""

from __future__ import annotations

import glob
import importlib
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from .capture import DEFAULT_MAX_FRAMES, CaptureReader, open_capture
from .config import Config, ConfigError, Url, allow_url_scheme, parse_source_url
from .exitcodes import BAD_INPUT, UserError
from .metrics import Metrics
from .packets import FrameBatch
from .readahead import ReadAhead
from .stages import Source

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SourceContext:
    """What a source factory may use: the metrics, the whole config (its ``[kafka]`` table),
    and the batch bound."""

    metrics: Metrics
    config: Config
    max_frames: int = DEFAULT_MAX_FRAMES


SourceFactory = Callable[[Url, SourceContext], Source]

# Sources that live in other subsystems' modules, each with ``open_source(url, ctx)``.
KNOWN_PLUGINS = {
    "iface": "netwarden.capture.live",
    "tshark": "netwarden.capture.tshark",
    "kafka": "netwarden.kafka.source",
}

def register_source_scheme(scheme: str, factory: SourceFactory) -> None:
    """Make ``scheme://`` source URLs open with ``factory`` (and pass config validation)."""
    _FACTORIES[scheme] = factory
    allow_url_scheme("source", scheme)


def open_source(url: str | Url, ctx: SourceContext) -> Source:
    """Open the source a URL names.

    Raises:
        ConfigError: the URL is invalid or no plug-in provides its scheme.
        UserError: (BAD_INPUT) a capture file is missing; other plug-in errors pass through.
    """
    u = parse_source_url(url) if isinstance(url, str) else url
    factory = _FACTORIES.get(u.scheme) or _find_plugin(u.scheme)
    if factory is None:
        raise ConfigError(f"source.url: no {u.scheme}:// source is installed in this netwarden "
                          f"(got {u.raw!r})")
    return factory(u, ctx)


def _find_plugin(scheme: str) -> SourceFactory | None:
    for ep in metadata.entry_points(group="netwarden.sources"):
        if ep.name == scheme:
            factory: SourceFactory = ep.load()
            register_source_scheme(scheme, factory)
            return factory
    name = KNOWN_PLUGINS.get(scheme, f"netwarden.{scheme}.source")
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name is not None and name.startswith(e.name):  # the plug-in itself is missing
            return None
        raise
    if scheme in _FACTORIES:  # the module registered itself on import
        return _FACTORIES[scheme]
    found: SourceFactory | None = getattr(module, "open_source", None)
    if found is not None:
        register_source_scheme(scheme, found)
    return found


# ---------------------------------------------------------------------------------------------
# pcap:// (and plain paths)


def capture_paths(pattern: str) -> list[Path]:
    """The files a pcap URL path names: one path, or a glob pattern (sorted matches).

    Raises:
        UserError: (BAD_INPUT) a named file does not exist or the pattern matches nothing.
    """
    if glob.has_magic(pattern):
        paths = sorted(Path(p) for p in glob.glob(pattern))
        if not paths:
            raise UserError(f"{pattern}: no capture file matches", BAD_INPUT)
        return paths
    p = Path(pattern)
    if not p.exists():
        raise UserError(f"{p}: no such capture file", BAD_INPUT)
    if not p.is_file():
        raise UserError(f"{p}: not a file", BAD_INPUT)
    return [p]


class PcapSource:
    """Frames of one or several capture files, in order; ``FrameBatch.part`` is the file
    index.  Capture-reader skips are counted in ``frames_skipped{reason}``.

    Every file is opened (header checked) when the source is built, so a bad file fails fast
    with a one-line ``CaptureError``; frames are read lazily, one batch ahead on a worker
    thread (:class:`~netwarden.readahead.ReadAhead`): the next batch is read while the
    pipeline decodes this one.  ``frames_per_file`` counts the batches handed out.
    """

    name = "pcap"
    live = False

    def __init__(self, paths: Sequence[Path], *, metrics: Metrics | None = None,
                 max_frames: int = DEFAULT_MAX_FRAMES) -> None:
        self.paths = list(paths)
        self.frames_per_file: dict[str, int] = {str(p): 0 for p in self.paths}
        self._metrics = metrics
        self._max_frames = max_frames
        self._reader: CaptureReader | None = None
        self._ahead: ReadAhead[FrameBatch] | None = None
        for p in self.paths:  # fail fast: every header is checked before any frame is read
            open_capture(p, max_frames=1).close()

    def __iter__(self) -> Iterator[FrameBatch]:
        for i, path in enumerate(self.paths):
            with (open_capture(path, part=i, max_frames=self._max_frames) as reader,
                  ReadAhead(iter(reader), "netwarden-pcap") as ahead):
                self._reader, self._ahead = reader, ahead
                for batch in ahead:
                    self.frames_per_file[str(path)] += len(batch)
                    yield batch
                self._count_skips(reader.skips)
            self._reader = self._ahead = None
            log.info("%s: %d frames", path, self.frames_per_file[str(path)])

    def _count_skips(self, skips: dict[str, int]) -> None:
        if self._metrics is None:
            return
        for reason, n in skips.items():
            if n:
                self._metrics.frames_skipped.labels(reason=reason).inc(n)

    def close(self) -> None:
        if self._ahead is not None:  # first: the worker may be reading from the mapping
            self._ahead.close()
            self._ahead = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None


def _open_pcap(url: Url, ctx: SourceContext) -> Source:
    return PcapSource(capture_paths(url.path), metrics=ctx.metrics, max_frames=ctx.max_frames)


_FACTORIES: dict[str, SourceFactory] = {"pcap": _open_pcap}
