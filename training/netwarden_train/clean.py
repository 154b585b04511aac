"""Cleaning: infinities, NaN, negative durations, duplicates, constant columns; with a report.

Every dropped row is counted under a reason, so the run's data summary says exactly what
went and why.  Constant columns are reported, not removed: the schema is fixed (the daemon
feeds all 81 features), so a column constant in training simply gets unit scale.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from netwarden.features.cic_schema import CIC_SCHEMA

from .table import FlowTable

# Duration-like features that cannot be negative; CICFlowMeter emits negative durations and
# IATs when packets arrive out of timestamp order (a known bug of the original release).
_DURATIONS = (
    "Flow Duration",
    "Flow IAT Min",
    "Fwd IAT Min",
    "Bwd IAT Min",
    "Fwd IAT Total",
    "Bwd IAT Total",
)


@dataclass
class CleanReport:
    """What cleaning did: rows in/out, drops by reason, repaired cells, constant columns."""

    rows_in: int = 0
    rows_out: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    dropped_by_family: dict[str, Counter[str]] = field(default_factory=dict)
    constant_columns: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "dropped": dict(self.dropped),
            "dropped_by_family": {k: dict(v) for k, v in self.dropped_by_family.items()},
            "constant_columns": self.constant_columns,
        }


def _drop(t: FlowTable, bad: np.ndarray, reason: str, rep: CleanReport) -> FlowTable:
    if bad.any():
        rep.dropped[reason] += int(bad.sum())
        for fam, n in Counter(t.family[bad].tolist()).items():
            rep.dropped_by_family.setdefault(fam, Counter())[reason] += n
    return t.take(~bad)


def clean(
    t: FlowTable, *, dedupe: bool = True, max_copies: dict[str, int] | None = None
) -> tuple[FlowTable, CleanReport]:
    """Drop rows with NaN, infinities or negative durations, then resolve duplicates.

    Rows with identical features but different families are conflicting: the family with
    the most rows keeps them and the others are dropped (a tie drops all).  Then at most
    ``max_copies[origin]`` identical rows per family and source are kept (default 1: plain
    dedupe).  Captures keep some copies: a flood is thousands of identical flows, and that
    multiplicity is what tells the model the pattern matters.
    """
    rep = CleanReport(rows_in=len(t))
    t = _drop(t, np.isnan(t.x).any(axis=1), "nan", rep)
    t = _drop(t, np.isinf(t.x).any(axis=1), "inf", rep)
    dur = [CIC_SCHEMA.index(n) for n in _DURATIONS]
    t = _drop(t, (t.x[:, dur] < 0).any(axis=1), "negative_duration", rep)
    if dedupe and len(t):
        t = _drop(t, _conflicts(t), "conflicting_label", rep)
        caps = np.array([(max_copies or {}).get(o, 1) for o in t.origin.tolist()], dtype=int)
        t = _drop(t, _copies_over(t, caps), "duplicate", rep)
    const = np.ptp(t.x, axis=0) == 0 if len(t) else np.ones(t.x.shape[1], bool)
    rep.constant_columns = [CIC_SCHEMA.names[i] for i in np.flatnonzero(const)]
    rep.rows_out = len(t)
    return t, rep


def _keys(t: FlowTable) -> np.ndarray:
    row = np.dtype((np.void, t.x.dtype.itemsize * t.x.shape[1]))
    _, inverse = np.unique(np.ascontiguousarray(t.x).view(row).ravel(), return_inverse=True)
    return inverse.ravel()


def _conflicts(t: FlowTable) -> np.ndarray:
    """Rows whose feature vector also appears, more often, under another family."""
    keys = _keys(t)
    votes: dict[int, Counter[str]] = {}
    for k, fam in zip(keys.tolist(), t.family.tolist(), strict=True):
        votes.setdefault(k, Counter())[fam] += 1
    winner: dict[int, str] = {}
    for k, c in votes.items():
        (top, n), *rest = c.most_common()
        winner[k] = "" if rest and rest[0][1] == n else top
    return np.array(
        [winner[k] != f for k, f in zip(keys.tolist(), t.family.tolist(), strict=True)], dtype=bool
    )


def _copies_over(t: FlowTable, max_copies: np.ndarray) -> np.ndarray:
    """Rows beyond the first ``max_copies`` with the same features, family and source."""
    keys = _keys(t)
    seen: Counter[tuple[int, str, str]] = Counter()
    over = np.zeros(len(t), dtype=bool)
    for i, key in enumerate(zip(keys.tolist(), t.family.tolist(), t.source.tolist(), strict=True)):
        seen[key] += 1
        over[i] = seen[key] > max_copies[i]
    return over
