"""Aggregation of floods: per window, the first alerts of each (label, address, side) go out
one by one, later flows fold into one summary per (label, address, side).

Used by :mod:`netwarden.alerts_gate` (rules and the gate's clock there); the summary's
document is built by :mod:`netwarden.alerts_summary`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from .alerts_window import WindowCounts, address_keys
from .flows.params import EndedFlows
from .scoring.model import Scores

AggRef = tuple[npt.NDArray[np.intp], str]  # rows of a batch and the summary they went to


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


def aggregate_id(side: str, hi: int, lo: int, label_idx: int, start_ns: int) -> str:
    """Deterministic id of a summary alert: a replay gives the same ids."""
    text = f"{side}|{hi:x}|{lo:x}|{label_idx}|{start_ns}".encode()
    return hashlib.blake2b(text, digest_size=8).hexdigest()


class Aggregator:
    """Alert budgets per (label, address, side) and window, and the open summaries.

    A row counts against its destination's budget first; once that is spent the row goes to
    the destination's summary and spends nothing of its source's.
    """

    def __init__(self, after: int, window_ns: int) -> None:
        self.after = after
        self.window_ns = window_ns
        self._budget = WindowCounts(window_ns)
        self._open_aggs: dict[tuple[str, int], Aggregate] = {}  # (side, key) -> aggregate
        self._closed: list[Aggregate] = []  # rolled over, not yet emitted

    @property
    def open(self) -> bool:
        """Summaries not yet emitted."""
        return bool(self._open_aggs or self._closed)

    def fold(self, flows: EndedFlows, scores: Scores, rows: npt.NDArray[np.intp],
             ts: npt.NDArray[np.int64]) -> tuple[npt.NDArray[np.bool_], list[AggRef]]:
        """Spend the budgets of the alerting ``rows`` (at clock ``ts``); per row, whether it
        was folded into a summary, and the folded rows with their summary's id."""
        m = flows.meta[rows]
        label = scores.attack_idx[rows].astype(np.uint64) * np.uint64(2)
        k_dst = address_keys(m["dst_hi"], m["dst_lo"], label + np.uint64(1))
        k_src = address_keys(m["src_hi"], m["src_lo"], label)
        r_dst, s_dst = self._budget.add(k_dst, ts)
        by_dst = r_dst > self.after
        rest = np.flatnonzero(~by_dst)
        r_src, s_src = np.zeros(rows.size, np.int64), np.zeros(rows.size, np.int64)
        r_src[rest], s_src[rest] = self._budget.add(k_src[rest], ts[rest])
        by_src = r_src > self.after
        refs: list[AggRef] = []
        for side, sel, keys, starts in (("destination", by_dst, k_dst, s_dst),
                                         ("source", by_src, k_src, s_src)):
            if sel.any():
                refs += self._fold(side, rows[sel], keys[sel], starts[sel], flows, scores)
        return by_dst | by_src, refs

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
        agg = self._open_aggs.get((side, key))
        if agg is not None and agg.window_start_ns != start:  # its window rolled over
            self._closed.append(self._open_aggs.pop((side, key)))
            agg = None
        if agg is None:
            agg = Aggregate(aggregate_id(side, hi, lo, label, start), label, side, hi, lo,
                            start, first_ns=1 << 62, last_ns=-(1 << 62))
            self._open_aggs[(side, key)] = agg
        return agg

    def due(self, now: int) -> bool:
        """A summary is ready (its window ended by ``now``, or rolled over)."""
        return bool(self._closed) or any(
            now - a.window_start_ns >= self.window_ns for a in self._open_aggs.values())

    def close(self, now: int, *, final: bool) -> list[Aggregate]:
        """The summaries whose window ended by ``now`` (every one when ``final``)."""
        done, self._closed = self._closed, []
        for key, agg in list(self._open_aggs.items()):
            if final or now - agg.window_start_ns >= self.window_ns:
                done.append(self._open_aggs.pop(key))
        return done

    def min_seqs(self, part: int) -> list[int]:
        """Per open summary holding flows of partition ``part``, their lowest first_seq."""
        return [a.min_seq[part] for a in self._open_aggs.values() if part in a.min_seq]

    def prune(self, now: int) -> None:
        """Forget budgets whose window ended by ``now``."""
        self._budget.prune(now)


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
