"""Micro-batcher: size and deadline release with a fake clock, order, bounds, metrics."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from netwarden.flows.params import FLOW_META_DTYPE, EndedFlows
from netwarden.metrics import Metrics
from netwarden.scoring import MicroBatcher
from prometheus_client import CollectorRegistry

W = 3  # feature width


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


_next = [0]


def flows(n: int) -> EndedFlows:
    """n flows numbered consecutively (first_seq carries the number)."""
    meta = np.zeros(n, FLOW_META_DTYPE)
    meta["first_seq"] = np.arange(_next[0], _next[0] + n)
    feats = np.repeat(meta["first_seq"][:, None], W, axis=1).astype(np.float32)
    _next[0] += n
    return EndedFlows(meta, feats)


def seqs(batches: list[EndedFlows]) -> list[list[int]]:
    return [b.meta["first_seq"].tolist() for b in batches]


def test_full_batch_goes_out_at_once() -> None:
    clock = FakeClock()
    b = MicroBatcher(4, 50.0, clock=clock)
    f = flows(10)
    first = int(f.meta["first_seq"][0])
    out = b.add(f)
    assert seqs(out) == [list(range(first, first + 4)), list(range(first + 4, first + 8))]
    assert b.pending == 2
    for batch in out:  # features travel with their rows
        np.testing.assert_array_equal(batch.features[:, 0], batch.meta["first_seq"])


def test_lone_flow_waits_for_the_deadline() -> None:
    clock = FakeClock()
    b = MicroBatcher(100, 20.0, clock=clock)
    assert b.add(flows(1)) == []
    assert b.deadline == pytest.approx(100.020)
    clock.t += 0.019
    assert b.poll() == []
    clock.t += 0.001
    out = b.poll()
    assert [len(x) for x in out] == [1] and b.pending == 0 and b.deadline is None


def test_deadline_counts_from_the_oldest_flow() -> None:
    clock = FakeClock()
    b = MicroBatcher(100, 20.0, clock=clock)
    b.add(flows(1))
    clock.t += 0.015
    assert b.add(flows(2)) == []  # the new flows do not reset the deadline
    clock.t += 0.005
    assert [len(x) for x in b.poll()] == [3]


def test_overdue_rest_leaves_with_add() -> None:
    clock = FakeClock()
    b = MicroBatcher(4, 10.0, clock=clock)
    assert [len(x) for x in b.add(flows(6))] == [4]  # 2 old flows remain
    clock.t += 0.5
    out = b.add(flows(1))  # not a full batch, but the old flows are overdue: all 3 leave
    assert [len(x) for x in out] == [3] and b.pending == 0


def test_split_rest_keeps_its_arrival_time() -> None:
    # Steps of 1/8 s and a 1/4 s delay: exact in binary floating point.
    clock = FakeClock()
    b = MicroBatcher(4, 250.0, clock=clock)
    assert b.add(flows(3)) == []
    clock.t += 0.125
    out = b.add(flows(3))  # 4 go out; 2 of the second part remain, arrived at +0.125 s
    assert [len(x) for x in out] == [4]
    clock.t += 0.125  # the first part's deadline: it is gone already
    assert b.poll() == []
    clock.t += 0.125  # the second part's deadline
    assert [len(x) for x in b.poll()] == [2]


def test_zero_delay_releases_immediately_and_empty_add() -> None:
    b = MicroBatcher(8, 0.0, clock=FakeClock())
    assert [len(x) for x in b.add(flows(3))] == [3]
    assert b.add(EndedFlows.empty(W)) == [] and b.pending == 0


def test_drain_respects_max_batch() -> None:
    b = MicroBatcher(4, 1e9, clock=FakeClock())
    b.add(flows(3))
    b.add(flows(2))  # 5 -> one full batch out
    b.add(flows(3))  # 4 -> another
    assert b.pending == 0
    b.add(flows(3))
    assert [len(x) for x in b.drain()] == [3] and b.drain() == []


def test_metrics_observe_batch_sizes() -> None:
    reg = CollectorRegistry()
    b = MicroBatcher(4, 1e9, clock=FakeClock(), metrics=Metrics(reg))
    b.add(flows(9))
    b.drain()
    assert reg.get_sample_value("netwarden_inference_batch_size_count") == 3
    assert reg.get_sample_value("netwarden_inference_batch_size_sum") == 9


def test_bad_parameters() -> None:
    with pytest.raises(ValueError, match="max_batch must be >= 1"):
        MicroBatcher(0, 5.0)
    with pytest.raises(ValueError, match="max_batch_delay_ms must be >= 0"):
        MicroBatcher(1, -1.0)


@given(st.integers(1, 16), st.lists(st.tuples(st.integers(0, 20), st.integers(0, 30)), max_size=30))
def test_order_and_bounds(max_batch: int, steps: list[tuple[int, int]]) -> None:
    """Every flow comes out exactly once, in order, in batches of 1..max_batch."""
    clock = FakeClock()
    b = MicroBatcher(max_batch, 10.0, clock=clock)
    sent: list[int] = []
    got: list[EndedFlows] = []
    for n, dt_ms in steps:
        f = flows(n)
        sent += f.meta["first_seq"].tolist()
        got += b.add(f)
        clock.t += dt_ms / 1000
        got += b.poll()
        assert b.pending < max_batch or b.pending == 0
    got += b.drain()
    assert [s for batch in seqs(got) for s in batch] == sent
    assert all(1 <= len(x) <= max_batch for x in got)
