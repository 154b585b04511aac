"""Build a :class:`~netwarden.app.Pipeline` from a validated :class:`~netwarden.config.Config`.

Order matters for the user: the source is opened first (a typo in a capture path fails before
the model loads), then the model, then the sinks.  Whatever was opened is closed again when a
later step fails.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from pathlib import Path

from .alerts import AlertPolicy
from .app import Clock, Hooks, Pipeline, Stages
from .app_sources import SourceContext, open_source
from .config import Config, ConfigError
from .decode import SKIP_REASON_NAMES, decode
from .exitcodes import MODEL_ERROR, UserError
from .flows.table import FlowTable
from .metrics import Metrics
from .scoring import MicroBatcher, Model, load_model
from .sinks import open_sink
from .stages import Sink, Source

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
                       metrics=metrics)
    threshold = cfg.model.threshold if cfg.model.threshold is not None else model.threshold
    policy = AlertPolicy(model.manifest, threshold=threshold,
                         allowlist_cidrs=list(cfg.alerts.allowlist),
                         emit_flows=bool(cfg.alerts.flow_log),
                         community_id_seed=cfg.alerts.community_id_seed, metrics=metrics)
    return model, policy


def build_pipeline(cfg: Config, metrics: Metrics, *, source: Source | None = None,
                   realtime: bool = False, hooks: Hooks | None = None,
                   clock: Clock | None = None) -> Pipeline:
    """Open every stage the config describes and wire them into a pipeline.

    Args:
        cfg: validated config (``source.url`` is used unless ``source`` is given).
        metrics: the process's metrics.
        source: an already opened source (replay passes a :class:`PcapSource`).
        realtime: pace at capture speed.
        hooks: callbacks for other subsystems.
        clock: injected time (tests).

    Raises:
        ConfigError, UserError, CaptureError, ModelError, SinkError: one-line user errors.
    """
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
                                 metrics=metrics),
            model=model, policy=policy, sinks=sinks, flow_sinks=flow_sinks,
            reloader=lambda: load_scoring(cfg, metrics))
        metrics.up.set(0)
        stack.pop_all()  # success: the pipeline owns and closes everything now
    commit_s = float(getattr(source, "commit_interval_s", 1.0))  # a Kafka source may say
    pipe = Pipeline(stages, metrics, realtime=realtime, commit_interval_s=commit_s, hooks=hooks,
                    clock=clock)
    on_revoke = getattr(source, "on_revoke", None)
    if on_revoke is not None:  # Kafka rebalance: end the partitions' flows and commit them
        on_revoke(pipe.revoke_partitions)
    return pipe


def _sink(stack: ExitStack, url: str, cfg: Config, metrics: Metrics) -> Sink:
    if url.lower().startswith("kafka://"):  # needs the [kafka] table: built here, not by URL
        from .kafka.sink import open_kafka_sink

        sink: Sink = open_kafka_sink(url, metrics=metrics, settings=cfg.kafka)
    else:
        sink = open_sink(url, metrics=metrics)
    stack.callback(sink.close)
    return sink
