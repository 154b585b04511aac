"""The pipeline: the one module that knows every stage and moves data between them.

``source -> decode -> flow table -> batcher -> scorer -> alert policy (and its gate) -> sinks``,
with metrics observing each step.  :class:`Pipeline` runs until the source ends or
:meth:`Pipeline.stop` is called, then flushes the flow table, drains the batcher, flushes the
alert gate (held lone flows are decided, open summaries written) and flushes the sinks.  An error
inside a stage is logged and counted in ``errors{stage}``; the loop goes on with the next
batch.  The flow table runs on a worker thread a few batches ahead of scoring
(:mod:`netwarden.app_assembly`; a file source also reads one batch ahead), with the same
results as on one thread.  Building a pipeline from a config lives in
:mod:`netwarden.app_build`; the stage, hook, clock and error-guard types in
:mod:`netwarden.app_stages`.

Service hooks: ``on_stop`` runs once, as soon as a stop is requested (from the SIGTERM handler,
before the final flush); ``on_reload_start`` / ``on_reload_done(swapped)`` bracket every
SIGHUP reload.  ``run`` sends sd_notify STOPPING / RELOADING / READY from them.

Delivery hooks (Kafka): every ``commit_interval_s`` (and at the end) the pipeline scores what
waits in the batcher, flushes the sinks and, if the source has ``commit(watermarks)``, calls it
with, per partition, the lowest sequence number still needed (every frame below it is fully
processed: its flow ended and its alerts are acknowledged by the sinks).
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Sequence
from types import FrameType
from typing import Any

import numpy as np

from .alerts import Decided
from .app_assembly import AHEAD_DEPTH, Assembler, Job
from .app_pace import Pacer, frame_seq_marks
from .app_stages import FAILED as _FAILED
from .app_stages import Clock, Guard, Hooks, Stages
from .app_summary import Summary, add_counts, alert_label, flow_label_index
from .capture import READER_SKIP_NAMES
from .flows.params import EndedFlows, EndReason
from .metrics import Metrics
from .packets import FrameBatch
from .stages import Document, Sink

__all__ = ["STAGES", "Clock", "Hooks", "Pipeline", "Stages", "Summary", "alert_label",
           "flow_label_index"]

log = logging.getLogger(__name__)

_REASONS = tuple(r.label for r in EndReason)

# Every ``errors{stage}`` value the pipeline counts (plus "capture", the live reader's), so the
# series exist at 0 from start-up for alert rules like ``increase(netwarden_errors_total[5m])``.
STAGES = ("capture", "decode", "flows", "scoring", "alerts", "sink", "commit", "hook", "close")
# Every ``alerts_suppressed{reason}`` value the alert path counts (the Kafka sink adds its own).
SUPPRESS_REASONS = ("allowlist", "aggregated", "uncorroborated")


class Pipeline:
    """Moves frames from the source to the sinks.  Drive it from one thread (not
    thread-safe); it runs the flow table on a worker thread of its own
    (:mod:`netwarden.app_assembly`), up to ``assemble_ahead`` batches ahead of scoring.

    Args:
        stages: the stage objects.
        metrics: where every count goes.
        realtime: pace frames at capture speed (sleep by packet timestamps).
        commit_interval_s: how often a live source's progress is committed.
        hooks: optional callbacks.
        clock: injected time.
        assemble_ahead: batches the flow table may run ahead (0: no worker thread).
    """

    def __init__(self, stages: Stages, metrics: Metrics, *, realtime: bool = False,
                 commit_interval_s: float = 1.0, hooks: Hooks | None = None,
                 clock: Clock | None = None, assemble_ahead: int = AHEAD_DEPTH) -> None:
        self.s = stages
        self.m = metrics
        self.hooks = hooks or Hooks()
        self.clock = clock or Clock()
        self.summary = Summary()
        self._pacer = Pacer(self.clock.monotonic, self._sleep_slice) if realtime else None
        self._commit_interval_s = commit_interval_s
        self._last_commit = self.clock.monotonic()
        self._next_seq: dict[int, int] = {}  # per partition: one past the last frame read
        self._stopping = False
        self._reload_requested = False
        self._finished = False
        self._assembler = Assembler(stages.table, assemble_ahead)
        # every stage call: an exception is counted in errors{stage}, logged, and the loop goes on
        self._guard = Guard(metrics.errors, self.summary.errors, log)
        self._init_series()

    def _init_series(self) -> None:
        """Create the labelled series alert rules rely on, at 0, before the first event."""
        self.m.init_series(self.m.flows_ended, "reason", _REASONS)
        self.m.init_series(self.m.frames_skipped, "reason",
                           (*READER_SKIP_NAMES, *self.s.skip_names))
        self.m.init_series(self.m.errors, "stage", STAGES)
        self.m.init_series(self.m.alerts_suppressed, "reason", SUPPRESS_REASONS)
        self._init_alert_labels()

    def _init_alert_labels(self) -> None:
        manifest = self.s.model.manifest
        self.m.init_series(self.m.alerts, "label",
                           [c for c in manifest.classes if c != manifest.benign_class])

    # --- control (safe to call from a signal handler) --------------------------------------

    def stop(self) -> None:
        """Ask the loop to stop after the current batch; :meth:`run` then flushes and returns.

        The first call runs the ``on_stop`` hooks at once (before the flush), so a service
        manager hears "stopping" as soon as SIGTERM arrives.
        """
        if self._stopping:
            return
        self._stopping = True
        for hook in self.hooks.on_stop:
            self._guard("hook", hook)

    def request_reload(self) -> None:
        """Ask the loop to reload the model before the next batch (SIGHUP)."""
        self._reload_requested = True

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT stop the pipeline, SIGHUP reloads the model (main thread only)."""
        def _stop(signum: int, frame: FrameType | None) -> None:
            log.info("signal %s: stopping", signal.Signals(signum).name)
            self.stop()

        def _reload(signum: int, frame: FrameType | None) -> None:
            self.request_reload()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGHUP, _reload)

    # --- the loop ----------------------------------------------------------------------------

    def run(self) -> Summary:
        """Process the source to its end (or until :meth:`stop`), then flush everything."""
        t0 = self.clock.monotonic()
        self.m.up.set(1)
        try:
            for batch in self.s.source:
                if self._reload_requested:
                    self.reload()
                self._step(batch)
                self._tick()
                if self._stopping:
                    break
        finally:
            self.finish()
            self.m.up.set(0)
            self.summary.elapsed_s = self.clock.monotonic() - t0
            self.summary.files.update(getattr(self.s.source, "frames_per_file", {}))
        return self.summary

    def finish(self) -> None:
        """End of input or shutdown: flush the table, drain the batcher, flush and commit."""
        if self._finished:
            return
        self._finished = True
        self._settle()
        self._ended(self._guard("flows", self.s.table.flush, EndReason.END_OF_INPUT))
        self._release(self.s.batcher.drain())
        self._emit(self._guard("alerts", self.s.policy.flush))
        self._commit()
        self.m.active_flows.set(self.s.table.active)

    def close(self) -> None:
        """Close the source and the sinks (after :meth:`run`)."""
        self._settle()
        self._assembler.close()
        for closer in (self.s.source.close, *(k.close for k in self._all_sinks())):
            self._guard("close", closer)

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _step(self, batch: FrameBatch) -> None:
        if len(batch) == 0:
            self._settle()
            if self.s.source.live:  # a quiet link: idle flows expire on the wall clock
                now_ns = int(self.clock.wall() * 1e9)
                self._ended(self._guard("flows", self.s.table.expire, now_ns))
                self._release(self.s.batcher.poll())
                self._emit(self._guard("alerts", self.s.policy.tick, now_ns))
                return
            self._release(self.s.batcher.poll())
            return
        chunks = self._pacer.chunks(batch) if self._pacer is not None else iter((batch,))
        for chunk in chunks:
            self._frames(chunk)
            if self._stopping:
                return

    def _frames(self, batch: FrameBatch) -> None:
        n = len(batch)
        nbytes = int(batch.wirelen.sum())
        self.m.packets.inc(n)
        self.m.bytes.inc(nbytes)
        self.m.last_packet_ts.set(self.clock.wall())
        self.summary.packets += n
        self.summary.bytes += nbytes
        for part, nxt in frame_seq_marks(batch).items():
            self._next_seq[part] = max(nxt, self._next_seq.get(part, 0))
        decoded = self._guard("decode", self.s.decode, batch)
        if decoded is _FAILED:
            return
        packets, skips = decoded
        self._count_skips(skips)
        self._assembler.submit(packets)  # flows assembled on the worker...
        for job in self._assembler.ready():  # ...while earlier batches' ended flows are scored
            self._assembled(job)

    def _settle(self) -> None:
        """Take the flow table back from the worker: finish every pending batch's flows."""
        for job in self._assembler.drain():
            self._assembled(job)

    def _assembled(self, job: Job) -> None:
        done = self._guard("flows", job.result)
        if done is _FAILED:
            return
        ended, active = done
        self.m.active_flows.set(active)
        self._ended(ended)
        self._release(self.s.batcher.poll())

    def _count_skips(self, skips: Any) -> None:
        add_counts(self.summary.skipped, self.s.skip_names, skips, self.m.frames_skipped)

    def _ended(self, flows: EndedFlows) -> None:
        if flows is _FAILED or len(flows) == 0:
            return
        add_counts(self.summary.flows_by_reason, _REASONS,
                   np.bincount(flows.meta["end_reason"], minlength=len(_REASONS)),
                   self.m.flows_ended)
        self.summary.flows += len(flows)
        self._release(self.s.batcher.add(flows))

    def _release(self, batches: list[EndedFlows]) -> None:
        for flows in batches:
            self._score(flows)

    def _score(self, flows: EndedFlows) -> None:
        scores = self._guard("scoring", self.s.model.score, flows.features)
        if scores is _FAILED:
            return
        explain = getattr(self.s.model, "explain", None)
        out = self._guard("alerts", self.s.policy.decide, flows, scores, explain)
        if out is _FAILED:
            return
        self._count_flow_labels(scores)
        self._emit(out)
        for hook in self.hooks.on_scored:
            self._guard("hook", hook, flows, scores, out.alerts)

    def _emit(self, out: Decided | None) -> None:
        """Write what the policy decided and count it (alerted flows, alert documents)."""
        if out is None or out is _FAILED:
            return
        self._write(self.s.sinks, out.alerts)
        if out.flow_log:
            self._write(self.s.flow_sinks, out.flow_log)
        classes = self.s.model.manifest.classes
        add_counts(self.summary.flows_alerted_by_label, classes,
                   np.bincount(out.scores.attack_idx[out.alerted], minlength=len(classes)))
        for doc in out.alerts:  # the policy counts alerts{label} in the metrics itself
            self.summary.alerts_by_label[alert_label(doc)] += 1
        for hook in self.hooks.on_decided:
            self._guard("hook", hook, out)

    def _count_flow_labels(self, scores: Any) -> None:
        manifest = self.s.model.manifest
        idx = flow_label_index(manifest.benign_index, scores, self.threshold)
        add_counts(self.summary.flows_by_label, manifest.classes,
                   np.bincount(idx, minlength=len(manifest.classes)))

    @property
    def threshold(self) -> float:
        """The alert threshold in force (the policy's)."""
        return float(self.s.policy.threshold)

    def _write(self, sinks: Sequence[Sink], docs: Sequence[Document]) -> None:
        if not docs:
            return
        for sink in sinks:
            self._guard("sink", sink.write, docs)

    def _all_sinks(self) -> list[Sink]:
        return [*self.s.sinks, *self.s.flow_sinks]

    def _tick(self) -> None:
        now = self.clock.monotonic()
        if self.s.source.live and now - self._last_commit >= self._commit_interval_s:
            self._commit()
        for hook in self.hooks.on_tick:
            self._guard("hook", hook, self.clock.wall())

    def _commit(self) -> None:
        """Score what waits, flush the sinks, then tell the source what is safe to commit."""
        self._last_commit = self.clock.monotonic()
        self._settle()
        self._release(self.s.batcher.drain())
        # every sink is flushed even when an earlier one failed (each failure is counted)
        flushed = [self._guard("sink", sink.flush) is not _FAILED for sink in self._all_sinks()]
        ok = all(flushed)
        marks = self.watermarks() if ok else {}
        if not marks:
            return
        commit = getattr(self.s.source, "commit", None)
        if commit is not None:
            self._guard("commit", commit, marks)
        for hook in self.hooks.on_commit:
            self._guard("hook", hook, marks)

    def watermarks(self) -> dict[int, int]:
        """Per partition, the lowest frame sequence number still needed by an open flow (or
        one past the last frame read when no open flow holds frames of the partition).

        A source with ``low_watermarks(min_open_seq)`` (Kafka: it also knows the offsets of
        messages that gave no frames) computes them itself.
        """
        self._settle()
        own = getattr(self.s.source, "low_watermarks", None)
        if own is not None:
            return dict(own(self._min_open_seq))
        marks: dict[int, int] = {}
        for part, nxt in self._next_seq.items():
            low = self._min_open_seq(part)
            marks[part] = nxt if low is None or low < 0 else min(nxt, int(low))
        return marks

    def _min_open_seq(self, part: int) -> int | None:
        """The lowest frame sequence of ``part`` still needed: by an open flow, or by a flow
        the alert gate holds (a lone flow awaiting corroboration, an open aggregate)."""
        lows = [int(v) for v in (self.s.table.min_open_seq(part),
                                 self.s.policy.min_pending_seq(part))
                if v is not None and v >= 0]
        return min(lows) if lows else None

    def revoke_partitions(self, parts: Sequence[int]) -> None:
        """A Kafka rebalance took ``parts`` away: end their flows, score, flush, commit."""
        self._settle()
        for part in parts:
            self._ended(self._guard("flows", self.s.table.flush_partition, part))
        self._commit()
        for part in parts:
            self._next_seq.pop(part, None)

    # --- reload ------------------------------------------------------------------------------

    def reload(self) -> bool:
        """SIGHUP: reopen file sinks (logrotate), load the model again and swap it in; when
        the new model fails to load, keep the running one.  ``on_reload_start`` hooks run
        first and ``on_reload_done(swapped)`` hooks last, whatever happened."""
        self._reload_requested = False
        self._settle()
        for hook in self.hooks.on_reload_start:
            self._guard("hook", hook)
        swapped = False
        try:
            swapped = self._reload()
        finally:
            for done in self.hooks.on_reload_done:
                self._guard("hook", done, swapped)
        return swapped

    def _reload(self) -> bool:
        for sink in self._all_sinks():
            reopen = getattr(sink, "reopen", None)
            if reopen is not None:
                self._guard("sink", reopen)
        if self.s.reloader is None:
            log.warning("reload requested but this pipeline has no model loader")
            self.m.reloads.labels(result="error").inc()
            return False
        try:
            model, policy = self.s.reloader()
        except Exception as e:  # a broken model must never stop detection: keep the old one
            log.error("reload failed, keeping model %s: %s", self.s.model.manifest.name, e)
            self.m.reloads.labels(result="error").inc()
            return False
        self._release(self.s.batcher.drain())  # flows queued so far: scored by the old model
        if not policy.adopt(self.s.policy):  # a logrotate SIGHUP keeps held flows waiting
            self._emit(self._guard("alerts", self.s.policy.flush))
        if model.manifest.flow != self.s.model.manifest.flow:
            log.warning("the new model was trained with other flow parameters (%s); the "
                        "running flow table keeps its parameters until restart",
                        model.manifest.flow)
        self.s.model, self.s.policy = model, policy
        self._init_alert_labels()
        self.m.reloads.labels(result="ok").inc()
        log.info("reloaded model %s %s", model.manifest.name, model.manifest.version)
        for hook in self.hooks.on_reload:
            self._guard("hook", hook, model)
        return True

    def _sleep_slice(self, seconds: float) -> bool:
        """Sleep up to ``seconds`` (realtime pacing) while flows keep being scored on time;
        returns False when the pipeline is stopping."""
        self.clock.sleep(seconds)
        self._settle()
        if self._reload_requested:  # realtime: pacing one batch may take minutes
            self.reload()
        self._release(self.s.batcher.poll())
        return not self._stopping

