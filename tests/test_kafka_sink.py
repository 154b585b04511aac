"""Kafka alert sink against a real broker: JSON with the flow id as key, flush = acked, a lost
broker makes flush fail (so nothing is committed) without blocking for long, and the parked
alerts go out once the broker is back."""

from __future__ import annotations

import json
import time

import pytest
from kafka import KafkaConsumer
from kafkabroker import Broker, broker  # noqa: F401
from netwarden.kafka.config import KafkaSettings, parse_topic_url
from netwarden.kafka.sink import KafkaAlertSink, KafkaSinkError
from netwarden.metrics import Metrics

pytestmark = pytest.mark.kafka


def alert(i: int) -> dict[str, object]:
    return {"@timestamp": f"2026-01-01T00:00:{i:02d}Z", "event": {"kind": "alert", "id": f"a{i}"},
            "flow": {"id": f"1:flow{i}"}, "netwarden": {"label": "scan", "score": 0.9}}


def read_topic(b: Broker, topic: str, n: int, timeout_s: float = 15) -> list[tuple[bytes, dict]]:  # type: ignore[type-arg]
    c = KafkaConsumer(topic, bootstrap_servers=b.bootstrap, auto_offset_reset="earliest",
                      enable_auto_commit=False, group_id=None)
    out: list[tuple[bytes, dict]] = []  # type: ignore[type-arg]
    end = time.monotonic() + timeout_s
    try:
        while len(out) < n and time.monotonic() < end:
            for msgs in c.poll(500).values():
                out.extend((m.key, json.loads(m.value)) for m in msgs)
    finally:
        c.close()
    return out


def sink(b: Broker, topic: str, m: Metrics, **kw: object) -> KafkaAlertSink:
    settings = KafkaSettings(**{"flush_timeout_s": 3.0, "delivery_timeout_ms": 2500,
                                "request_timeout_ms": 1000, "max_block_ms": 500, **kw})  # type: ignore[arg-type]
    return KafkaAlertSink(parse_topic_url(f"kafka://{b.bootstrap}/{topic}", sink=True),
                          settings=settings, metrics=m)


def test_alerts_reach_topic_keyed_by_flow(broker: Broker) -> None:  # noqa: F811
    broker.create_topic("alerts", 2)
    m = Metrics()
    s = sink(broker, "alerts", m)
    s.write([alert(i) for i in range(20)])
    s.write([alert(3)])  # scored again after a replay: same deterministic id
    s.flush()
    assert m.kafka_alerts_produced._value.get() == 20  # flush returned: all acked
    s.close()
    got = read_topic(broker, "alerts", 20)
    assert sorted(k for k, _ in got) == sorted(f"1:flow{i}".encode() for i in range(20))
    assert all(doc["flow"]["id"].encode() == k for k, doc in got)
    assert m.kafka_produce_errors._value.get() == 0
    assert m.alerts_suppressed.labels(reason="duplicate")._value.get() == 1


def test_broker_down_flush_fails_bounded_then_recovers(broker: Broker) -> None:  # noqa: F811
    broker.create_topic("al2", 1)
    m = Metrics()
    s = sink(broker, "al2", m)
    s.write([alert(0)])
    s.flush()
    broker.stop()
    t0 = time.monotonic()
    s.write([alert(i) for i in range(1, 6)])  # the capture path: must not block for long
    assert time.monotonic() - t0 < 3
    with pytest.raises(KafkaSinkError):
        s.flush()
    assert time.monotonic() - t0 < 15
    assert m.kafka_produce_errors._value.get() >= 1
    broker.start()
    broker.create_topic("al2", 1)  # in-memory broker: the topic is gone with the restart
    deadline = time.monotonic() + 30
    while True:  # the app retries flush on its next commit tick
        try:
            s.flush()
            break
        except KafkaSinkError:
            assert time.monotonic() < deadline
            time.sleep(0.5)
    s.close()
    got = read_topic(broker, "al2", 5)
    assert {k for k, _ in got} >= {f"1:flow{i}".encode() for i in range(1, 6)}
