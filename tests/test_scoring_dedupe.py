"""Identical rows are scored once: the outputs equal scoring every row, every row counts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from netwarden.metrics import Metrics
from netwarden.scoring import load_model
from netwarden.scoring.dedupe import distinct_rows
from prometheus_client import CollectorRegistry

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "models" / "netwarden-cic"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=80), st.integers(1, 6))
def test_distinct_rows_rebuild_the_batch_bit_for_bit(picks: list[int], width: int) -> None:
    palette = np.array([0.0, -0.0, np.nan, np.inf, 1.5, 1e-30], np.float32)
    rows = np.stack([np.roll(palette, p)[:width] for p in picks]).astype(np.float32)
    got = distinct_rows(rows)
    n_distinct = len({r.tobytes() for r in rows})
    if got is None:
        assert n_distinct == len(rows)
        return
    first, inverse = got
    assert len(first) == n_distinct  # -0.0 and 0.0 differ, NaN equals NaN (bit patterns)
    assert rows[first][inverse].tobytes() == rows.tobytes()


def test_a_flood_batch_scores_as_its_rows_do_alone() -> None:
    reg = CollectorRegistry()
    model = load_model(SHIPPED, providers="cpu", metrics=Metrics(registry=reg))
    rng = np.random.default_rng(3)
    distinct = (rng.random((8, model.n_features)) * 1000).astype(np.float32)
    batch = distinct[rng.integers(0, 8, 1000)]
    s = model.score(batch)
    assert reg.get_sample_value("netwarden_flows_scored_total") == 1000
    for i in range(8):
        alone = model.score(distinct[i:i + 1])
        rows = np.flatnonzero((batch == distinct[i]).all(axis=1))
        assert np.abs(s.probs[rows] - alone.probs).max() <= 1e-5
        assert (s.attack_idx[rows] == alone.attack_idx[0]).all()
