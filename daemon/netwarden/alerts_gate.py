"""Alert correlation after the threshold: corroboration of lone flows, aggregation of floods.

Two rules, on the packet clock (flow end times), so a replay gives the same alerts every time.
Both are off in :class:`AlertPolicy` unless a :class:`GateConfig` is given; the daemon's
config turns them on by default (``[alerts]`` in the README).

**Corroboration.**  A flow of at most ``corroborate_max_packets`` packets (a lone DNS answer
whose query is not in the capture, a stray segment of a connection that began before the
capture) carries too little evidence to tell an attack from traffic seen mid-way.  Such a
flow alerts only when, within ``window_s``, at least ``corroborate_min_flows`` alerting flows
involve its source or its destination address (any label, itself included), or at least
``corroborate_min_flows_sensor`` such lone flows alert on the whole sensor (a flood from
spoofed sources to spoofed destinations shares no address).  Until then it is *held*; held
flows are released (they alert, with their own times) as soon as the evidence arrives, and
dropped when ``window_s`` passes without it, counted in ``alerts_suppressed{reason=
"uncorroborated"}``.  At most ``max_held`` flows wait; beyond that the oldest alert at once
(fail open: a flood must not make the gate forget attacks).

**Aggregation.**  Per window, the first ``aggregate_after`` alerting flows of each (label,
destination address) and of each (label, source address) alert one by one; later ones are
folded into one summary alert per (label, address, side) emitted when the window closes
(``netwarden.aggregate``: flows, packets, bytes, first and last time), counted in
``alerts_suppressed{reason="aggregated"}``.  A flow counts against its destination's budget
first; once that is spent it goes to the destination's summary and spends nothing of its
source's (a flood from spoofed sources costs one count per flow, not two).

While the sensor-wide rule holds (a flood of lone flows), every lone flow alerts and the
per-address evidence is not counted.  Counting runs in numba (:mod:`netwarden.alerts_window`),
aggregation lives in :mod:`netwarden.alerts_aggregate`.  The gate's clock, per row, is the
latest flow end time seen up to that row, so windows measure when flows reach the gate (a
scan's lone flows end by idle timeout, long after its answered probes: the default window is
longer than the default idle timeout) and do not depend on where batches were cut.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from .alerts_aggregate import AggRef, Aggregate, Aggregator
from .alerts_window import WindowCounts, address_keys
from .flows.params import EndedFlows
from .scoring.model import Scores

NS = 1_000_000_000
_ANY_TAG = 1 << 20  # evidence keys: address alone (aggregation tags are 2 * class index + side)


_Part = tuple[EndedFlows, Scores, npt.NDArray[np.uint8]]  # rows with a decision each


class Decision(IntEnum):
    """What the gate did with a row."""

    NONE = 0  # under the threshold or allowlisted: no alert
    EMIT = 1  # an alert document of its own
    AGGREGATED = 2  # folded into a summary alert
    HELD = 3  # lone flow waiting for corroboration (decided later)
    UNCORROBORATED = 4  # lone flow whose corroboration never came


@dataclass(frozen=True, slots=True)
class GateConfig:
    """The gate's rules (see the module docstring); 0 turns a rule off."""

    corroborate_max_packets: int = 1
    corroborate_min_flows: int = 5
    corroborate_min_flows_sensor: int = 20
    aggregate_after: int = 100
    window_s: float = 300.0  # longer than the idle timeout: a scan's lone flows end by it
    max_held: int = 65536


@dataclass
class Gated:
    """The rows decided by one gate call: the batch (plus released or dropped held rows)
    with a decision per row, the aggregate id of each AGGREGATED row, and closed summaries."""

    flows: EndedFlows
    scores: Scores
    decision: npt.NDArray[np.uint8]
    agg_refs: list[AggRef]  # AGGREGATED rows and their summary's id
    summaries: list[Aggregate]

    def agg_ids(self) -> dict[int, str]:
        """Row -> aggregate id of the AGGREGATED rows (built on demand: the flow log)."""
        out: dict[int, str] = {}
        for rows, agg_id in self.agg_refs:
            out.update(dict.fromkeys(rows.tolist(), agg_id))
        return out


def take_scores(s: Scores, idx: npt.NDArray[np.intp]) -> Scores:
    """The rows ``idx`` of ``s``."""
    att = s.attributions[idx] if s.attributions is not None else None
    return Scores(s.probs[idx], s.attack_score[idx], s.label_idx[idx], s.attack_idx[idx], att)


def concat_scores(parts: list[Scores]) -> Scores:
    """Rows of several Scores one after the other (attributions kept only if all have them)."""
    atts = [p.attributions for p in parts if p.attributions is not None]
    att = np.concatenate(atts) if len(atts) == len(parts) else None
    return Scores(np.concatenate([p.probs for p in parts]),
                  np.concatenate([p.attack_score for p in parts]),
                  np.concatenate([p.label_idx for p in parts]),
                  np.concatenate([p.attack_idx for p in parts]), att)


class _Held:
    """Lone flows waiting for corroboration, oldest first, with the gate time they came."""

    def __init__(self) -> None:
        self.flows: EndedFlows | None = None
        self.scores: Scores | None = None
        self.since = np.zeros(0, np.int64)

    def __len__(self) -> int:
        return 0 if self.flows is None else len(self.flows)

    def add(self, flows: EndedFlows, scores: Scores, since: npt.NDArray[np.int64]) -> None:
        if self.flows is None or self.scores is None:
            self.flows, self.scores = flows, scores
        else:
            self.flows = EndedFlows.concat([self.flows, flows])
            self.scores = concat_scores([self.scores, scores])
        self.since = np.concatenate([self.since, since])

    def split(self, out: npt.NDArray[np.bool_]) -> tuple[EndedFlows, Scores]:
        """Remove and return the rows where ``out`` is True."""
        assert self.flows is not None and self.scores is not None
        idx, keep = np.flatnonzero(out), np.flatnonzero(~out)
        taken = (self.flows.take(idx), take_scores(self.scores, idx))
        self.since = self.since[keep]
        if keep.size:
            self.flows, self.scores = self.flows.take(keep), take_scores(self.scores, keep)
        else:
            self.flows = self.scores = None
        return taken


class AlertGate:
    """Corroboration and aggregation state for one pipeline.  Not thread-safe."""

    def __init__(self, cfg: GateConfig) -> None:
        self.cfg = cfg
        self.window_ns = int(cfg.window_s * NS)
        self._evidence = WindowCounts(self.window_ns)
        self._agg = Aggregator(cfg.aggregate_after, self.window_ns)
        self._lone_recent: deque[tuple[int, int]] = deque()  # (time, lone alerting flows)
        self._held = _Held()
        self._clock = np.zeros(0, np.int64)  # per row of the batch being admitted
        self._now = -(1 << 62)
        self._last_prune = self._now
        self.overflowed = 0  # held flows released because the hold was full

    @property
    def held(self) -> int:
        """Lone flows waiting for corroboration."""
        return len(self._held)

    # --- entry points ----------------------------------------------------------------------

    def admit(self, flows: EndedFlows, scores: Scores,
              alerting: npt.NDArray[np.bool_]) -> Gated:
        """Decide the rows of a scored batch (``alerting``: over the threshold, not allowlisted)
        and whatever held rows the batch corroborates or times out."""
        # each row's clock: the latest end time up to it, so counts do not depend on where
        # the batches were cut
        self._clock = np.maximum.accumulate(np.maximum(flows.meta["last_ts_ns"], self._now))
        if len(flows):
            self._now = int(self._clock[-1])
        decision = np.where(alerting, Decision.EMIT, Decision.NONE).astype(np.uint8)
        parts = [(flows, scores, decision)]
        if self.cfg.corroborate_max_packets > 0:
            parts += self._corroborate(flows, scores, decision)
        return self._finish(parts, closing=False)

    def tick(self, now_ns: int) -> Gated | None:
        """The clock moved without flows (a quiet live link): time out held flows and close
        windows.  None when nothing was decided."""
        self._now = max(self._now, int(now_ns))
        self._clock = np.zeros(0, np.int64)
        parts = self._recheck(self._lone_sensor()) if len(self._held) else []
        out = self._finish(parts, closing=False) if parts else None
        if out is None and self._agg.due(self._now):
            return Gated(EndedFlows.empty(0), _no_scores(), np.zeros(0, np.uint8), [],
                         self._agg.close(self._now, final=False))
        return out

    def flush(self) -> Gated | None:
        """End of input (or a model swap): drop every held flow, close every aggregate."""
        self._clock = np.zeros(0, np.int64)
        if len(self._held):
            f, s = self._held.split(np.ones(len(self._held), bool))
            return self._finish([(f, s, np.full(len(f), Decision.UNCORROBORATED, np.uint8))],
                                closing=True)
        if self._agg.open:
            return Gated(EndedFlows.empty(0), _no_scores(), np.zeros(0, np.uint8), [],
                         self._agg.close(self._now, final=True))
        return None

    def min_pending_seq(self, part: int) -> int | None:
        """The lowest first_seq of partition ``part`` among flows not yet in an emitted
        document (held flows, open aggregates); None when there is none."""
        lows = self._agg.min_seqs(part)
        if self._held.flows is not None:
            m = self._held.flows.meta
            seqs = m["first_seq"][m["src_part"] == part]
            if seqs.size:
                lows.append(int(seqs.min()))
        return min(lows) if lows else None

    # --- corroboration ---------------------------------------------------------------------

    def _corroborate(self, flows: EndedFlows, scores: Scores,
                     decision: npt.NDArray[np.uint8]) -> list[_Part]:
        m = flows.meta
        alerting = np.flatnonzero(decision == Decision.EMIT)
        packets = m["fwd_packets"] + m["bwd_packets"]
        lone = alerting[packets[alerting] <= self.cfg.corroborate_max_packets]
        if lone.size:
            self._lone_recent.append((self._now, int(lone.size)))
        sensor = self._lone_sensor()
        if self._sensor_busy(sensor):  # every lone flow alerts: per-address counts not needed
            return self._recheck(sensor)
        if alerting.size:
            self._evidence.add(self._evidence_keys(m[alerting]),
                               np.tile(self._clock[alerting], 2))
        if lone.size:
            waiting = lone[~self._corroborated(m[lone], sensor)]
            decision[waiting] = Decision.HELD
            if waiting.size:
                self._held.add(flows.take(waiting), take_scores(scores, waiting),
                               self._clock[waiting])
        return self._recheck(sensor)

    def _evidence_keys(self, meta: npt.NDArray[np.void]) -> npt.NDArray[np.uint64]:
        return np.concatenate([address_keys(meta["src_hi"], meta["src_lo"], _ANY_TAG),
                               address_keys(meta["dst_hi"], meta["dst_lo"], _ANY_TAG)])

    def _lone_sensor(self) -> int:
        while self._lone_recent and self._now - self._lone_recent[0][0] >= self.window_ns:
            self._lone_recent.popleft()
        return sum(n for _, n in self._lone_recent)

    def _sensor_busy(self, sensor: int) -> bool:
        return sensor >= self.cfg.corroborate_min_flows_sensor > 0

    def _corroborated(self, meta: npt.NDArray[np.void], sensor: int) -> npt.NDArray[np.bool_]:
        if self._sensor_busy(sensor):
            return np.ones(meta.shape[0], bool)
        n = meta.shape[0]
        counts = self._evidence.get(self._evidence_keys(meta), self._now)
        return np.maximum(counts[:n], counts[n:]) >= self.cfg.corroborate_min_flows

    def _recheck(self, sensor: int) -> list[_Part]:
        """Release held flows that are corroborated now, drop the ones whose window passed."""
        if not len(self._held):
            return []
        assert self._held.flows is not None
        meta = self._held.flows.meta
        ok = self._corroborated(meta, sensor)
        expired = ~ok & (self._now - self._held.since >= self.window_ns)
        over = len(self._held) - self.cfg.max_held
        if over > 0:  # fail open: the oldest alert now
            self.overflowed += over
            ok[:over] = True
        parts = []
        for mask, what in ((ok, Decision.EMIT), (expired, Decision.UNCORROBORATED)):
            if mask.any():
                f, s = self._held.split(mask)
                parts.append((f, s, np.full(len(f), what, np.uint8)))
                ok, expired = ok[~mask], expired[~mask]  # index the rows still held
        return parts

    # --- aggregation -----------------------------------------------------------------------

    def _finish(self, parts: list[_Part], closing: bool) -> Gated:
        if len(parts) == 1:
            flows, scores, decision = parts[0]
        else:
            flows = EndedFlows.concat([p[0] for p in parts])
            scores = concat_scores([p[1] for p in parts])
            decision = np.concatenate([p[2] for p in parts])
        agg_refs: list[AggRef] = []
        if self.cfg.aggregate_after > 0:
            agg_refs = self._aggregate(flows, scores, decision)
        summaries = self._agg.close(self._now, final=closing)
        self._maybe_prune()
        return Gated(flows, scores, decision, agg_refs, summaries)

    def _aggregate(self, flows: EndedFlows, scores: Scores,
                   decision: npt.NDArray[np.uint8]) -> list[AggRef]:
        rows = np.flatnonzero(decision == Decision.EMIT)
        if not rows.size:
            return []
        # windows run on the gate's clock: the batch's rows their own, decided held rows now
        clock = np.concatenate([self._clock, np.full(decision.size - self._clock.size,
                                                     self._now, np.int64)])
        folded, refs = self._agg.fold(flows, scores, rows, clock[rows])
        decision[rows[folded]] = Decision.AGGREGATED
        return refs

    def _maybe_prune(self) -> None:
        if self._now - self._last_prune >= self.window_ns:
            self._last_prune = self._now
            self._evidence.prune(self._now)
            self._agg.prune(self._now)


def _no_scores() -> Scores:
    z = np.zeros(0, np.float32)
    i = np.zeros(0, np.intp)
    return Scores(np.zeros((0, 0), np.float32), z, i, i, None)


__all__ = ["Aggregate", "AlertGate", "Decision", "GateConfig", "Gated", "concat_scores",
           "take_scores"]
