"""Consumer groups and outages against a real broker: two members share the partitions with
no flow split, a rebalance calls the revoke hook, and a broker that goes away and comes back
(same port) leaves the source retrying, with the metrics showing it, then consuming again."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from kafkabroker import Broker, broker, produce  # noqa: F401
from netwarden.kafka.formats import encode_netwarden, frame_batch_of
from netwarden.kafka.source import KafkaSource
from netwarden.metrics import Metrics
from netwarden.packets import FrameBatch
from test_kafka_ship import CAPTURE, partitions_by_flow, read_all, ship
from test_kafka_source import eth_frames, source

pytestmark = pytest.mark.kafka


class Member(threading.Thread):
    """Iterates one source in a thread, keeping what it got, until stopped."""

    def __init__(self, src: KafkaSource) -> None:
        super().__init__(daemon=True)
        self.src, self.got, self.revoked = src, [], []  # type: ignore[var-annotated]
        self.stop = threading.Event()
        src.on_revoke(self.revoked.append)

    def run(self) -> None:
        for batch in self.src:
            if len(batch):
                self.got.append(batch)
            if self.stop.is_set():
                break
        self.src.close()

    def frames(self) -> int:
        return sum(len(b) for b in self.got)


def wait_for(cond: object, timeout_s: float) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_two_members_share_partitions_without_splitting_flows(
        broker: Broker, shared_data: Path) -> None:  # noqa: F811
    broker.create_topic("grp", 4)
    ma = Metrics()
    a = Member(source(broker, "grp?group=shared", ma))
    b = Member(source(broker, "grp?group=shared"))
    a.start()
    assert wait_for(lambda: len(a.src.assigned_partitions()) == 4, 15)
    b.start()
    # the second member's join revokes partitions from the first, which the hook sees
    assert wait_for(lambda: a.src.assigned_partitions() and b.src.assigned_partitions()
                    and len(a.src.assigned_partitions() | b.src.assigned_partitions()) == 4, 20)
    assert not a.src.assigned_partitions() & b.src.assigned_partitions()
    assert a.revoked and ma.kafka_rebalances._value.get() >= 2
    batches = read_all(shared_data / CAPTURE)
    n = sum(len(x) for x in batches)
    ship(broker, "grp?format=netwarden&max_packets=40", batches)
    assert wait_for(lambda: a.frames() + b.frames() >= n, 20)
    for m in (a, b):
        m.stop.set()
    for m in (a, b):
        m.join(10)
    assert a.frames() + b.frames() == n and a.frames() > 0 and b.frames() > 0
    flows_a, flows_b = partitions_by_flow(a.got), partitions_by_flow(b.got)
    assert not set(flows_a) & set(flows_b)  # no flow seen by both members


def one_message(i: int) -> bytes:
    b = frame_batch_of(eth_frames(2, seed=i), ts_ns=[i, i + 1])
    return encode_netwarden(b, np.arange(2))


def test_broker_loss_and_return(broker: Broker) -> None:  # noqa: F811
    broker.create_topic("up", 1)
    produce(broker.bootstrap, "up", [(None, one_message(0), 0)])
    m = Metrics()
    src = source(broker, "up?group=g", m)
    it = iter(src)
    got: list[FrameBatch] = []
    assert wait_for(lambda: bool(got.append(next(it))) or sum(map(len, got)) == 2, 15)
    assert m.kafka_connected._value.get() == 1

    broker.stop()
    # the source keeps yielding (empty batches) and reports the outage
    t_end = time.monotonic() + 20
    while m.kafka_connected._value.get() == 1 and time.monotonic() < t_end:
        assert len(next(it)) == 0
    assert m.kafka_connected._value.get() == 0

    broker.start()  # same port; storage is in memory, so the topic is created again
    # ... by us, or already by the retrying consumer's metadata request (auto-creation)
    broker.create_topic("up", 1, exist_ok=True)
    produce(broker.bootstrap, "up", [(None, one_message(7), 0)])
    after: list[FrameBatch] = []
    assert wait_for(lambda: bool(after.append(next(it))) or sum(map(len, after)) >= 2, 40)
    ts = np.concatenate([b.ts_ns for b in after if len(b)])
    assert 7 in ts.tolist()
    assert m.kafka_connected._value.get() == 1
    src.close()


def test_unreachable_broker_keeps_source_alive(tmp_path: Path) -> None:
    from kafkabroker import free_port

    m = Metrics()
    from netwarden.kafka.config import KafkaSettings, parse_topic_url

    url = parse_topic_url(f"kafka://127.0.0.1:{free_port()}/none?group=g")
    src = KafkaSource(url, settings=KafkaSettings(bootstrap_timeout_ms=300, poll_timeout_ms=50),
                      metrics=m)
    it = iter(src)
    t0 = time.monotonic()
    batches = [next(it) for _ in range(10)]  # never raises; empty batches while it retries
    assert all(len(b) == 0 for b in batches)
    assert m.kafka_connected._value.get() == 0
    assert time.monotonic() - t0 < 10
    src.close()
