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


def clean(t: FlowTable, *, dedupe: bool = True) -> tuple[FlowTable, CleanReport]:
    """Drop rows with NaN, infinities or negative durations, then exact duplicates.

    Duplicates are rows with identical features *and* family (the same flow twice); rows with
    identical features but different families are conflicting and all are dropped.
    """
    rep = CleanReport(rows_in=len(t))
    t = _drop(t, np.isnan(t.x).any(axis=1), "nan", rep)
    t = _drop(t, np.isinf(t.x).any(axis=1), "inf", rep)
    dur = [CIC_SCHEMA.index(n) for n in _DURATIONS]
    t = _drop(t, (t.x[:, dur] < 0).any(axis=1), "negative_duration", rep)
    if dedupe and len(t):
        t = _dedupe(t, rep)
    const = np.ptp(t.x, axis=0) == 0 if len(t) else np.ones(t.x.shape[1], bool)
    rep.constant_columns = [CIC_SCHEMA.names[i] for i in np.flatnonzero(const)]
    rep.rows_out = len(t)
    return t, rep


def _dedupe(t: FlowTable, rep: CleanReport) -> FlowTable:
    view = np.ascontiguousarray(t.x).view(np.dtype((np.void, t.x.dtype.itemsize * t.x.shape[1])))
    keys = view.ravel()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    fams_per_key: dict[int, set[str]] = {}
    for k, fam in zip(inverse.tolist(), t.family.tolist(), strict=True):
        fams_per_key.setdefault(k, set()).add(fam)
    conflict = np.array([len(fams_per_key[k]) > 1 for k in inverse.tolist()])
    is_first = np.zeros(len(t), bool)
    is_first[first] = True
    t2 = _drop(t, conflict, "conflicting_label", rep)
    return _drop(t2, ~is_first[~conflict], "duplicate", rep)
