"""Liveness and readiness of the running pipeline, and the watchdog that depends on them.

The application owns one :class:`Health` object and updates it from its main loop: the source
opened or failed, a model loaded, a loop iteration finished (:meth:`Health.beat`), frames
arrived (:meth:`Health.saw_packets`).  Time is data: every method takes ``now`` (wall-clock
seconds) as an argument.  :meth:`Health.report` derives:

* **live** (``/healthz``, the systemd watchdog): the source is connected, a model is loaded and
  the main loop made progress within ``stall_after_s``.  A quiet link is still live (live
  sources yield an empty batch every ~0.5 s), a hung loop or a lost interface is not.
* **ready** (``/readyz``, ``netwarden_ready``): live, and when ``max_packet_age_s`` is set,
  a packet arrived within that many seconds.

:class:`Watchdog` sends ``WATCHDOG=1`` only while the report says live, at half the interval
systemd asked for, so a stalled pipeline is restarted by ``WatchdogSec`` + ``Restart``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..exitcodes import BAD_CONFIG, UserError
from ..metrics import Metrics
from .notify import Notifier


@dataclass(frozen=True, slots=True)
class HealthReport:
    """One snapshot of :class:`Health`; ``problems`` says why it is not live or not ready."""

    live: bool
    ready: bool
    source: str
    source_connected: bool
    model: str
    model_loaded: bool
    loop_age_s: float | None
    last_packet_age_s: float | None
    problems: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form (ages rounded to milliseconds)."""
        return {
            "status": "ok" if self.ready else ("live" if self.live else "fail"),
            "live": self.live,
            "ready": self.ready,
            "source": {"name": self.source, "connected": self.source_connected},
            "model": {"name": self.model, "loaded": self.model_loaded},
            "loop_age_s": _round(self.loop_age_s),
            "last_packet_age_s": _round(self.last_packet_age_s),
            "problems": list(self.problems),
        }


class Health:
    """Mutable pipeline state that the HTTP endpoints and the watchdog read.

    Updates are single attribute assignments, so the HTTP thread may read while the main loop
    writes without a lock.

    Args:
        stall_after_s: a loop iteration older than this makes the process not live.
        max_packet_age_s: when set, no packet for this long makes the process not ready.

    >>> h = Health(stall_after_s=5)
    >>> h.set_source("iface", connected=True); h.set_model("cic", loaded=True); h.beat(100.0)
    >>> h.report(102.0).live, h.report(106.0).live
    (True, False)
    """

    def __init__(self, *, stall_after_s: float = 30.0, max_packet_age_s: float | None = None):
        if not stall_after_s > 0:
            raise ValueError(f"stall_after_s must be > 0, not {stall_after_s}")
        if max_packet_age_s is not None and not max_packet_age_s > 0:
            raise ValueError(f"max_packet_age_s must be > 0 or None, not {max_packet_age_s}")
        self.stall_after_s = float(stall_after_s)
        self.max_packet_age_s = max_packet_age_s
        self._source = ("", False)
        self._model = ("", False)
        self._last_beat = math.nan
        self._last_packet = math.nan

    def set_source(self, name: str, *, connected: bool) -> None:
        """Record that the source opened (``connected=True``) or failed/closed."""
        self._source = (name, connected)

    def set_model(self, name: str, *, loaded: bool) -> None:
        """Record the model in use (name and version in one string) and whether it loaded."""
        self._model = (name, loaded)

    def beat(self, now: float) -> None:
        """The main loop finished one iteration (a batch, empty or not) at ``now``."""
        self._last_beat = now

    def saw_packets(self, now: float) -> None:
        """Frames arrived at wall-clock time ``now``."""
        self._last_packet = now

    def report(self, now: float) -> HealthReport:
        """Evaluate liveness and readiness at ``now``."""
        src, connected = self._source
        model, loaded = self._model
        loop_age = _age(now, self._last_beat)
        pkt_age = _age(now, self._last_packet)
        problems = []
        if not connected:
            problems.append("source not connected")
        if not loaded:
            problems.append("no model loaded")
        if loop_age is None or loop_age > self.stall_after_s:
            problems.append(f"main loop stalled (no progress for > {self.stall_after_s:g} s)")
        live = not problems
        limit = self.max_packet_age_s
        if limit is not None and (pkt_age is None or pkt_age > limit):
            problems.append(f"no packet for > {limit:g} s")
        return HealthReport(
            live=live,
            ready=not problems,
            source=src,
            source_connected=connected,
            model=model,
            model_loaded=loaded,
            loop_age_s=loop_age,
            last_packet_age_s=pkt_age,
            problems=tuple(problems),
        )

    def export_ready(self, metrics: Metrics, clock: Any) -> None:
        """Make ``netwarden_ready`` read :meth:`report` (with ``clock()``) at scrape time."""
        metrics.up.set_function(lambda: float(self.report(clock()).ready))


class Watchdog:
    """Pets the systemd watchdog from the main loop, but only while :class:`Health` is live.

    Args:
        notifier: where ``WATCHDOG=1`` goes; without a watchdog interval, :meth:`tick` is a no-op.
        health: the state that decides.
    """

    def __init__(self, notifier: Notifier, health: Health) -> None:
        self.notifier = notifier
        self.health = health
        wd = notifier.watchdog_s
        # Half the interval, as sd_watchdog_enabled(3) advises, so one late tick is harmless.
        self.period_s = wd / 2 if wd else None
        self._last = -math.inf

    def tick(self, now: float) -> bool:
        """Call once per loop iteration, after :meth:`Health.beat`; True when it petted."""
        if self.period_s is None:
            return False
        if now < self._last:  # the wall clock stepped back: restart the period
            self._last = -math.inf
        if now - self._last < self.period_s:
            return False
        if not self.health.report(now).live:
            return False
        self._last = now
        return self.notifier.watchdog()


def _age(now: float, then: float) -> float | None:
    """Seconds since ``then``, None when it never happened (NaN); never negative."""
    return None if math.isnan(then) else max(0.0, now - then)


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 3)


def health_from_settings(service: Mapping[str, Any]) -> Health:
    """Build :class:`Health` from the config's ``[service]`` table (validated here).

    Keys: ``stall_after_s`` (default 30), ``max_packet_age_s`` (0 or absent: not required).

    Raises:
        UserError: (exit code 3) an unknown key or a value that is not a positive number.

    >>> health_from_settings({"stall_after_s": 10, "max_packet_age_s": 0}).stall_after_s
    10.0
    """
    known = ("stall_after_s", "max_packet_age_s")
    for key in service:
        if key not in known:
            raise UserError(f"service.{key}: unknown key (known: {', '.join(known)})", BAD_CONFIG)
    values = {k: service.get(k, d) for k, d in zip(known, (30.0, 0.0), strict=True)}
    for key, v in values.items():
        if isinstance(v, bool) or not isinstance(v, int | float) or v < 0 or v > 86400:
            raise UserError(f"service.{key}: must be a number in 0..86400, got {v!r}", BAD_CONFIG)
    if values["stall_after_s"] == 0:
        raise UserError("service.stall_after_s: must be > 0, got 0", BAD_CONFIG)
    return Health(
        stall_after_s=float(values["stall_after_s"]),
        max_packet_age_s=float(values["max_packet_age_s"]) or None,
    )


def loop_tick(health: Health, watchdog: Watchdog, metrics: Metrics) -> Callable[[float], None]:
    """The per-loop callback for the pipeline (``Hooks.on_tick``): beat, packet age, watchdog.

    The time of the last packet is read from ``netwarden_last_packet_timestamp_seconds``,
    which the pipeline sets whenever frames arrive.
    """
    gauge = metrics.last_packet_ts

    def tick(now: float) -> None:
        health.beat(now)
        last = next(iter(gauge.collect())).samples[0].value
        if last > 0:
            health.saw_packets(last)
        watchdog.tick(now)

    return tick
