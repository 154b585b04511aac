"""The pipeline's plumbing types: the stage objects it drives, the hooks other subsystems
register, and the injected clock.  Re-exported by :mod:`netwarden.app`."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .exitcodes import user_error_code
from .flows.params import EndedFlows
from .packets import FrameBatch
from .stages import Document, Sink, Source

__all__ = ["FAILED", "Clock", "Guard", "Hooks", "Stages"]

FAILED: Any = object()  # what a :class:`Guard` returns when the step raised


@dataclass
class Stages:
    """The stage objects a pipeline drives (built by :func:`netwarden.app_build.build_pipeline`).

    ``model``, ``table``, ``batcher`` and ``policy`` follow the scoring, flows and alerts
    modules' APIs; ``decode`` is :func:`netwarden.decode.decode`.
    """

    source: Source
    decode: Callable[[FrameBatch], tuple[Any, Any]]
    skip_names: Sequence[str]
    table: Any  # netwarden.flows.table.FlowTable
    batcher: Any  # netwarden.scoring.MicroBatcher
    model: Any  # netwarden.scoring.Model
    policy: Any  # netwarden.alerts.AlertPolicy
    sinks: Sequence[Sink]
    flow_sinks: Sequence[Sink] = ()
    reloader: Callable[[], tuple[Any, Any]] | None = None  # -> (model, policy) for SIGHUP


@dataclass
class Hooks:
    """Callbacks for other subsystems (service health, demo, tests); all optional."""

    on_tick: list[Callable[[float], None]] = field(default_factory=list)  # wall time, per loop
    on_scored: list[Callable[[EndedFlows, Any, list[Document]], None]] = field(
        default_factory=list)
    # what the alert policy decided (netwarden.alerts.Decided): alerted flows, documents
    on_decided: list[Callable[[Any], None]] = field(default_factory=list)
    on_commit: list[Callable[[dict[int, int]], None]] = field(default_factory=list)
    on_reload: list[Callable[[Any], None]] = field(default_factory=list)  # the new model
    # Service state (sd_notify): a reload began / ended (True: swapped, False: kept the old
    # model); a stop was requested (called once, at once: from the signal handler).
    on_reload_start: list[Callable[[], None]] = field(default_factory=list)
    on_reload_done: list[Callable[[bool], None]] = field(default_factory=list)
    on_stop: list[Callable[[], None]] = field(default_factory=list)


@dataclass(frozen=True)
class Clock:
    """Injected time (tests pass fakes): wall seconds, monotonic seconds, sleep."""

    wall: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


class Guard:
    """Runs one step of a stage; an exception is counted in ``errors{stage}`` (the metric and
    the run's summary) and logged, and :data:`FAILED` comes back, so the loop goes on.  A bug
    (not a user error) is logged with its traceback the first time per stage.

    Args:
        errors: the ``errors`` counter metric (label ``stage``).
        summary_errors: the run summary's errors by stage.
        log: the logger to write to.
    """

    def __init__(self, errors: Any, summary_errors: Counter[str], log: logging.Logger) -> None:
        self._errors, self._summary, self._log = errors, summary_errors, log
        self._traced: set[str] = set()

    def __call__(self, stage: str, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)``, or :data:`FAILED` when it raised."""
        try:
            return fn(*args)
        except Exception as e:  # a stage failure must not stop the loop; counted and logged
            self._errors.labels(stage=stage).inc()
            self._summary[stage] += 1
            if stage not in self._traced and user_error_code(e) is None:
                self._traced.add(stage)
                self._log.exception("error in stage %s", stage)
            else:
                self._log.error("error in stage %s: %s", stage, e)
            return FAILED
