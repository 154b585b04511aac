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
per-address evidence is not counted.  Counting runs in numba (:mod:`netwarden.alerts_window`);
the gate's clock is the latest flow end time it has seen, so windows measure when flows reach
the gate (a scan's lone flows end by idle timeout, long after its answered probes: the
default window is longer than the default idle timeout).
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from .alerts_window import WindowCounts, address_keys
from .flows.params import EndedFlows
from .scoring.model import Scores

NS = 1_000_000_000
_ANY_TAG = 1 << 20  # evidence keys: address alone (label tags are small class indices)


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
class Aggregate:
    """The flows of one (label, address, side) folded into a summary during one window."""

    agg_id: str
    label_idx: int
    side: str  # "source" or "destination"
    addr_hi: int
    addr_lo: int
    window_start_ns: int
    first_ns: int
    last_ns: int
    flows: int = 0
    packets: int = 0
    bytes: int = 0
    max_score: float = 0.0
    protos: set[int] = field(default_factory=set)
    min_seq: dict[int, int] = field(default_factory=dict)  # partition -> lowest first_seq


@dataclass
class Gated:
    """The rows decided by one gate call: the batch (plus released or dropped held rows)
    with a decision per row, the aggregate id of each AGGREGATED row, and closed summaries."""

    flows: EndedFlows
    scores: Scores
    decision: npt.NDArray[np.uint8]
    agg_refs: list[tuple[npt.NDArray[np.intp], str]]  # AGGREGATED rows and their summary's id

    def agg_ids(self) -> dict[int, str]:
        """Row -> aggregate id of the AGGREGATED rows (built on demand: the flow log)."""
        out: dict[int, str] = {}
        for rows, agg_id in self.agg_refs:
            out.update(dict.fromkeys(rows.tolist(), agg_id))
        return out
    summaries: list[Aggregate]


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


def concat_flows(parts: list[EndedFlows]) -> EndedFlows:
    """Rows of several EndedFlows one after the other."""
    return EndedFlows(np.concatenate([p.meta for p in parts]),
                      np.concatenate([p.features for p in parts]))


def _take_flows(f: EndedFlows, idx: npt.NDArray[np.intp]) -> EndedFlows:
    return EndedFlows(f.meta[idx], f.features[idx])


def aggregate_id(side: str, hi: int, lo: int, label_idx: int, start_ns: int) -> str:
    """Deterministic id of a summary alert: a replay gives the same ids."""
    text = f"{side}|{hi:x}|{lo:x}|{label_idx}|{start_ns}".encode()
    return hashlib.blake2b(text, digest_size=8).hexdigest()


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
            self.flows = concat_flows([self.flows, flows])
            self.scores = concat_scores([self.scores, scores])
        self.since = np.concatenate([self.since, since])

    def split(self, out: npt.NDArray[np.bool_]) -> tuple[EndedFlows, Scores]:
        """Remove and return the rows where ``out`` is True."""
        assert self.flows is not None and self.scores is not None
        idx, keep = np.flatnonzero(out), np.flatnonzero(~out)
        taken = (_take_flows(self.flows, idx), take_scores(self.scores, idx))
        self.since = self.since[keep]
        if keep.size:
            self.flows, self.scores = _take_flows(self.flows, keep), take_scores(self.scores, keep)
        else:
            self.flows = self.scores = None
        return taken


class AlertGate:
    """Corroboration and aggregation state for one pipeline.  Not thread-safe."""

    def __init__(self, cfg: GateConfig) -> None:
        self.cfg = cfg
        self.window_ns = int(cfg.window_s * NS)
        self._evidence = WindowCounts(self.window_ns)
        self._budget = WindowCounts(self.window_ns)
        self._lone_recent: deque[tuple[int, int]] = deque()  # (time, lone alerting flows)
        self._held = _Held()
        self._aggs: dict[tuple[str, int], Aggregate] = {}  # (side, key) -> open aggregate
        self._closed: list[Aggregate] = []  # rolled over, not yet emitted
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
        if out is None and self._due():
            return Gated(EndedFlows.empty(0), _no_scores(), np.zeros(0, np.uint8), [],
                         self._close(final=False))
        return out

    def flush(self) -> Gated | None:
        """End of input (or a model swap): drop every held flow, close every aggregate."""
        self._clock = np.zeros(0, np.int64)
        if len(self._held):
            f, s = self._held.split(np.ones(len(self._held), bool))
            return self._finish([(f, s, np.full(len(f), Decision.UNCORROBORATED, np.uint8))],
                                closing=True)
        if self._aggs or self._closed:
            return Gated(EndedFlows.empty(0), _no_scores(), np.zeros(0, np.uint8), [],
                         self._close(final=True))
        return None

    def min_pending_seq(self, part: int) -> int | None:
        """The lowest first_seq of partition ``part`` among flows not yet in an emitted
        document (held flows, open aggregates); None when there is none."""
        lows = [a.min_seq[part] for a in self._aggs.values() if part in a.min_seq]
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
                self._held.add(_take_flows(flows, waiting), take_scores(scores, waiting),
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
            flows = concat_flows([p[0] for p in parts])
            scores = concat_scores([p[1] for p in parts])
            decision = np.concatenate([p[2] for p in parts])
        agg_refs: list[tuple[npt.NDArray[np.intp], str]] = []
        if self.cfg.aggregate_after > 0:
            agg_refs = self._aggregate(flows, scores, decision)
        summaries = self._close(final=closing) if (closing or self._due()) else []
        self._maybe_prune()
        return Gated(flows, scores, decision, agg_refs, summaries)

    def _aggregate(self, flows: EndedFlows, scores: Scores,
                   decision: npt.NDArray[np.uint8]) -> list[tuple[npt.NDArray[np.intp], str]]:
        rows = np.flatnonzero(decision == Decision.EMIT)
        if not rows.size:
            return []
        m = flows.meta[rows]
        label = scores.attack_idx[rows].astype(np.uint64) * np.uint64(2)
        # windows run on the gate's clock: the batch's rows their own, decided held rows now
        clock = np.concatenate([self._clock, np.full(decision.size - self._clock.size,
                                                     self._now, np.int64)])
        ts = clock[rows]
        k_dst = address_keys(m["dst_hi"], m["dst_lo"], label + np.uint64(1))
        k_src = address_keys(m["src_hi"], m["src_lo"], label)
        r_dst, s_dst = self._budget.add(k_dst, ts)
        after = self.cfg.aggregate_after
        by_dst = r_dst > after
        rest = np.flatnonzero(~by_dst)  # a flow in its destination's summary spends no more
        r_src, s_src = np.zeros(rows.size, np.int64), np.zeros(rows.size, np.int64)
        r_src[rest], s_src[rest] = self._budget.add(k_src[rest], ts[rest])
        by_src = r_src > after
        out: list[tuple[npt.NDArray[np.intp], str]] = []
        for side, sel, keys, starts in (("destination", by_dst, k_dst, s_dst),
                                         ("source", by_src, k_src, s_src)):
            if sel.any():
                out += self._fold(side, rows[sel], keys[sel], starts[sel], flows, scores)
        decision[rows[by_dst | by_src]] = Decision.AGGREGATED
        return out

    def _fold(self, side: str, rows: npt.NDArray[np.intp], keys: npt.NDArray[np.uint64],
              starts: npt.NDArray[np.int64], flows: EndedFlows,
              scores: Scores) -> list[tuple[npt.NDArray[np.intp], str]]:
        """Add the rows to their aggregates, grouped by (key, window start), vectorised."""
        order = np.lexsort((starts, keys))
        rows, keys, starts = rows[order], keys[order], starts[order]
        m = flows.meta[rows]
        cut = np.flatnonzero((keys[1:] != keys[:-1]) | (starts[1:] != starts[:-1])) + 1
        lo = np.concatenate(([0], cut))
        hi = np.append(cut, rows.size)
        packets = np.add.reduceat(m["fwd_packets"] + m["bwd_packets"], lo).tolist()
        nbytes = np.add.reduceat(m["fwd_bytes"] + m["bwd_bytes"], lo).tolist()
        first = np.minimum.reduceat(m["first_ts_ns"], lo).tolist()
        last = np.maximum.reduceat(m["last_ts_ns"], lo).tolist()
        score = np.fmax.reduceat(scores.attack_score[rows], lo).tolist()  # NaN-blind
        group = np.repeat(np.arange(lo.size), hi - lo)
        protos = _pairs(group, m["proto"].astype(np.int64))
        seqs = _pairs(group, m["src_part"].astype(np.int64), m["first_seq"])
        addr = "dst" if side == "destination" else "src"
        a_hi, a_lo = m[f"{addr}_hi"][lo].tolist(), m[f"{addr}_lo"][lo].tolist()
        labels = scores.attack_idx[rows[lo]].tolist()
        out = []
        for g, (i, j) in enumerate(zip(lo.tolist(), hi.tolist(), strict=True)):
            agg = self._open(side, int(keys[i]), int(starts[i]), labels[g], a_hi[g], a_lo[g])
            agg.flows += j - i
            agg.packets += int(packets[g])
            agg.bytes += int(nbytes[g])
            agg.first_ns, agg.last_ns = min(agg.first_ns, first[g]), max(agg.last_ns, last[g])
            if score[g] == score[g]:
                agg.max_score = max(agg.max_score, score[g])
            agg.protos.update(protos.get(g, {}))
            for part, low in seqs.get(g, {}).items():
                if part >= 0:
                    agg.min_seq[part] = min(low, agg.min_seq.get(part, low))
            out.append((rows[i:j], agg.agg_id))
        return out

    def _open(self, side: str, key: int, start: int, label: int, hi: int, lo: int) -> Aggregate:
        agg = self._aggs.get((side, key))
        if agg is not None and agg.window_start_ns != start:  # its window rolled over
            self._closed.append(self._aggs.pop((side, key)))
            agg = None
        if agg is None:
            agg = Aggregate(aggregate_id(side, hi, lo, label, start), label, side, hi, lo,
                            start, first_ns=1 << 62, last_ns=-(1 << 62))
            self._aggs[(side, key)] = agg
        return agg

    def _due(self) -> bool:
        return bool(self._closed) or any(
            self._now - a.window_start_ns >= self.window_ns for a in self._aggs.values())

    def _close(self, final: bool) -> list[Aggregate]:
        done, self._closed = self._closed, []
        for key, agg in list(self._aggs.items()):
            if final or self._now - agg.window_start_ns >= self.window_ns:
                done.append(self._aggs.pop(key))
        return done

    def _maybe_prune(self) -> None:
        if self._now - self._last_prune >= self.window_ns:
            self._last_prune = self._now
            self._evidence.prune(self._now)
            self._budget.prune(self._now)


def _pairs(group: npt.NDArray[np.intp], key: npt.NDArray[np.int64],
           value: npt.NDArray[np.int64] | None = None) -> dict[int, dict[int, int]]:
    """Per group, its distinct keys, each with the lowest of its values (or the key itself)."""
    val = key if value is None else value
    order = np.lexsort((val, key, group))
    g, k, v = group[order], key[order], val[order]
    head = np.ones(g.size, bool)
    head[1:] = (g[1:] != g[:-1]) | (k[1:] != k[:-1])
    out: dict[int, dict[int, int]] = {}
    for gg, kk, vv in zip(g[head].tolist(), k[head].tolist(), v[head].tolist(), strict=True):
        out.setdefault(gg, {})[kk] = vv
    return out


def _no_scores() -> Scores:
    z = np.zeros(0, np.float32)
    i = np.zeros(0, np.intp)
    return Scores(np.zeros((0, 0), np.float32), z, i, i, None)


__all__ = ["Aggregate", "AlertGate", "Decision", "GateConfig", "Gated", "aggregate_id",
           "concat_flows", "concat_scores", "take_scores"]
