"""Build a :class:`~netwarden.app.Pipeline` from a validated :class:`~netwarden.config.Config`.

Order matters for the user: the source is opened first (a typo in a capture path fails before
the model loads), then the model, then the sinks.  Whatever was opened is closed again when a
later step fails.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import IO
from urllib.parse import unquote, urlsplit

from .alerts import AlertPolicy
from .app import Clock, Hooks, Pipeline, Stages
from .app_assembly import AHEAD_DEPTH
from .app_sources import SourceContext, open_source
from .config import Config, ConfigError
from .decode import SKIP_REASON_NAMES, decode
from .exitcodes import MODEL_ERROR, UserError
from .flows.table import FlowTable
from .metrics import Metrics
from .scoring import MicroBatcher, Model, load_model
from .sinks import SinkError, encode_lines, open_sink
from .stages import Document, Sink, Source

log = logging.getLogger(__name__)

PREFERRED_MODEL = "netwarden-cic"
_PACKAGE_DIR = Path(__file__).resolve().parent
_REPO_DIR = _PACKAGE_DIR.parent.parent  # daemon/netwarden -> repo root (editable installs)


def model_search_dirs() -> list[Path]:
    """Where the default model is looked for: ``<repo>/models``, then the packaged copy."""
    return [_REPO_DIR / "models", _PACKAGE_DIR / "data" / "models"]


def find_default_model_dir() -> Path | None:
    """The default model directory: one holding ``manifest.json`` under a search dir,
    ``netwarden-cic`` preferred, else the first by name; None when there is none."""
    for root in model_search_dirs():
        found = sorted(p.parent for p in root.glob("*/manifest.json"))
        if found:
            preferred = [p for p in found if p.name == PREFERRED_MODEL]
            return (preferred or found)[0]
    return None


def resolve_model_dir(configured: Path | None) -> Path:
    """The configured model directory, else the default one.

    Raises:
        UserError: (MODEL_ERROR) no model configured and none found, with how to get one.
    """
    if configured is not None:
        return configured
    found = find_default_model_dir()
    if found is None:
        looked = ", ".join(str(d) for d in model_search_dirs())
        raise UserError(
            f"no model found (looked for */manifest.json in {looked}): pass --model DIR, set "
            "[model] dir in the config, or train one with 'netwarden train' "
            "(see README, 'Models')", MODEL_ERROR)
    return found


def load_scoring(cfg: Config, metrics: Metrics) -> tuple[Model, AlertPolicy]:
    """Load the model and build the alert policy for it (also the SIGHUP reload step)."""
    model = load_model(resolve_model_dir(cfg.model.dir), providers=cfg.model.providers,
                       threshold_override=cfg.model.threshold_file, metrics=metrics)
    threshold = cfg.model.threshold if cfg.model.threshold is not None else model.threshold
    policy = AlertPolicy(model.manifest, threshold=threshold,
                         allowlist_cidrs=list(cfg.alerts.allowlist),
                         emit_flows=bool(cfg.alerts.flow_log),
                         community_id_seed=cfg.alerts.community_id_seed, metrics=metrics,
                         gate=cfg.alerts.gate())
    return model, policy


def _frozen() -> float:
    return 0.0


def _batch_clock(source: Source, realtime: bool) -> Callable[[], float]:
    """The batcher's clock: wall time for live sources and paced replays.  A file replayed as
    fast as it goes batches by size alone (a frozen clock: no deadline ever passes), so every
    run cuts the same batches and the alert gate, which sees flows batch by batch, decides
    the same: a replay gives the same alerts."""
    return time.monotonic if (source.live or realtime) else _frozen


def build_pipeline(cfg: Config, metrics: Metrics, *, source: Source | None = None,
                   realtime: bool = False, hooks: Hooks | None = None,
                   clock: Clock | None = None,
                   reread: Callable[[], Config] | None = None,
                   assemble_ahead: int = AHEAD_DEPTH) -> Pipeline:
    """Open every stage the config describes and wire them into a pipeline.

    Args:
        cfg: validated config (``source.url`` is used unless ``source`` is given).
        metrics: the process's metrics.
        source: an already opened source (replay passes a :class:`PcapSource`).
        realtime: pace at capture speed.
        hooks: callbacks for other subsystems.
        clock: injected time (tests).
        reread: called on SIGHUP for the config in force then (the daemon re-reads its file
            and applies its flags again), so the model, threshold and allow-list reload
            together; a config that no longer validates refuses the reload.  Default: ``cfg``.
        assemble_ahead: batches the flow table may run ahead of scoring on its worker thread
            (0: none, on the pipeline's thread; :mod:`netwarden.app_assembly`).

    Raises:
        ConfigError, UserError, CaptureError, ModelError, SinkError: one-line user errors.
    """
    if uses_kafka(cfg):
        install_kafka(cfg)
    with ExitStack() as stack:
        if source is None:
            if cfg.source.url is None:
                raise ConfigError("source.url: required (set [source] url in the config or "
                                  "pass --source URL)")
            source = open_source(cfg.source.url, SourceContext(metrics, cfg))
        stack.callback(source.close)
        model, policy = load_scoring(cfg, metrics)
        params = cfg.flows.apply(model.manifest.flow)
        sinks = [_sink(stack, url, cfg, metrics) for url in cfg.alerts.sinks]
        flow_sinks = ([_sink(stack, cfg.alerts.flow_log, cfg, metrics)] if cfg.alerts.flow_log
                      else [])
        stages = Stages(
            source=source, decode=decode, skip_names=SKIP_REASON_NAMES,
            table=FlowTable(params),
            batcher=MicroBatcher(cfg.batching.max_batch, cfg.batching.max_batch_delay_ms,
                                 metrics=metrics, clock=_batch_clock(source, realtime)),
            model=model, policy=policy, sinks=sinks, flow_sinks=flow_sinks,
            reloader=lambda: load_scoring(reread() if reread else cfg, metrics))
        metrics.up.set(0)
        stack.pop_all()  # success: the pipeline owns and closes everything now
    commit_s = float(getattr(source, "commit_interval_s", 1.0))  # a Kafka source may say
    pipe = Pipeline(stages, metrics, realtime=realtime, commit_interval_s=commit_s, hooks=hooks,
                    clock=clock, assemble_ahead=assemble_ahead)
    on_revoke = getattr(source, "on_revoke", None)
    if on_revoke is not None:  # Kafka rebalance: end the partitions' flows and commit them
        on_revoke(pipe.revoke_partitions)
    return pipe


def _sink(stack: ExitStack, url: str, cfg: Config, metrics: Metrics) -> Sink:
    sink = open_alert_sink(url, cfg, metrics)
    stack.callback(sink.close)
    return sink


def uses_kafka(cfg: Config) -> bool:
    """True when the source or a sink of ``cfg`` is a ``kafka://`` URL."""
    urls = (cfg.source.url or "", *cfg.alerts.sinks, cfg.alerts.flow_log)
    return any(u.lower().startswith("kafka://") for u in urls)


def install_kafka(cfg: Config) -> None:
    """Register the ``kafka`` sink scheme with the ``[kafka]`` table (imports kafka-python;
    called only when a URL needs it).  The ``kafka://`` source reads the table itself.

    Raises:
        ConfigError: the ``[kafka]`` table is invalid.
    """
    from . import kafka

    kafka.install(cfg.kafka)


def open_alert_sink(url: str, cfg: Config, metrics: Metrics) -> Sink:
    """Open an alert or flow-log sink the way ``run`` and ``replay`` do.

    ``kafka://`` URLs use the ``[kafka]`` table; a path naming a character device or a FIFO
    (``/dev/null`` in benchmarks, a named pipe) gets a :class:`DeviceSink`, because the file
    sink's fsync fails on those (EINVAL).

    Raises:
        SinkError, ConfigError: the sink cannot be opened.
    """
    if url.lower().startswith("kafka://"):
        install_kafka(cfg)
    device = _device_path(url)
    return DeviceSink(device, metrics=metrics) if device else open_sink(url, metrics=metrics)


def _device_path(url: str) -> str | None:
    """The path of a file-sink URL when it names a character device or FIFO, else None."""
    if url == "-" or ("://" in url and not url.lower().startswith("file://")):
        return None
    path = unquote(urlsplit(url).path) if "://" in url else url
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None  # not there yet: the file sink creates it (or says why it cannot)
    return path if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) else None


class DeviceSink:
    """JSON lines written to a character device or FIFO; :meth:`flush` flushes, no fsync."""

    kind = "device"

    def __init__(self, path: str, *, metrics: Metrics | None = None) -> None:
        self.path = path
        self._metrics = metrics
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        except OSError as e:
            raise SinkError(f"device sink: cannot open {path}: {e.strerror}") from None
        self._f: IO[bytes] | None = os.fdopen(fd, "ab", buffering=1 << 16)

    def write(self, docs: Sequence[Document]) -> None:
        data = encode_lines(docs, metrics=self._metrics)
        if data:
            self._call(self._live().write, data)
            if self._metrics is not None:
                self._metrics.sink_records.labels(sink=self.kind).inc(data.count(b"\n"))

    def flush(self) -> None:
        self._call(self._live().flush)

    def reopen(self) -> None:
        """Nothing to reopen: logrotate does not move devices."""

    def close(self) -> None:
        if self._f is not None:
            try:
                self.flush()
            finally:
                self._f.close()
                self._f = None

    def _live(self) -> IO[bytes]:
        if self._f is None:
            raise SinkError(f"device sink {self.path} is closed")
        return self._f

    def _call(self, fn: Callable[..., object], *args: object) -> None:
        try:
            fn(*args)
        except OSError as e:
            raise SinkError(f"device sink: cannot write {self.path}: {e.strerror}") from None
