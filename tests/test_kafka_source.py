"""Kafka source against a real tansu broker: both formats round trip, bad messages are counted,
the lag metric, and commits."""

from __future__ import annotations

import time

import numpy as np
import pytest
from kafkabroker import FAST_GROUP, Broker, broker, produce  # noqa: F401
from netwarden.kafka.config import KafkaSettings, parse_topic_url
from netwarden.kafka.formats import encode_netwarden, encode_pycapa, frame_batch_of
from netwarden.kafka.source import KafkaSource
from netwarden.metrics import Metrics
from netwarden.packets import FrameBatch

pytestmark = pytest.mark.kafka


def eth_frames(n: int, *, seed: int = 0) -> list[bytes]:
    """Frames with an Ethernet/IPv4 header prefix and random bodies of varied length."""
    rng = np.random.default_rng(seed)
    return [bytes(12) + b"\x08\x00" + rng.integers(0, 256, int(rng.integers(20, 1500)),
                                                   dtype=np.uint8).tobytes() for _ in range(n)]


def collect(src: KafkaSource, n_frames: int, timeout_s: float = 20.0) -> list[FrameBatch]:
    """Iterate the source until ``n_frames`` frames arrived (or the timeout)."""
    out, got, end = [], 0, time.monotonic() + timeout_s
    for batch in src:
        if len(batch):
            out.append(batch)
            got += len(batch)
        if got >= n_frames or time.monotonic() > end:
            break
    return out


def frames_of(batches: list[FrameBatch]) -> list[tuple[int, int, int, bytes]]:
    rows = []
    for b in batches:
        for i in range(len(b)):
            o = int(b.offsets[i])
            rows.append((int(b.part[i]), int(b.seq[i]), int(b.ts_ns[i]),
                         b.data[o:o + int(b.caplen[i])].tobytes()))
    return rows


def source(b: Broker, query: str, metrics: Metrics | None = None) -> KafkaSource:
    url = parse_topic_url(f"kafka://{b.bootstrap}/{query}")
    return KafkaSource(url, settings=KafkaSettings(**FAST_GROUP), metrics=metrics)  # type: ignore[arg-type]


def test_pycapa_round_trip(broker: Broker) -> None:  # noqa: F811
    broker.create_topic("pc", 2)
    frames = eth_frames(50)
    ts = [1_700_000_000_000_000_000 + i * 1000 for i in range(50)]
    produce(broker.bootstrap, "pc", [(*encode_pycapa(t, f), i % 2)
                                     for i, (t, f) in enumerate(zip(ts, frames, strict=True))])
    m = Metrics()
    src = source(broker, "pc?group=g&format=pycapa", m)
    try:
        rows = frames_of(collect(src, 50))
    finally:
        src.close()
    assert len(rows) == 50
    by_ts = {r[2]: r for r in rows}
    for i, (t, f) in enumerate(zip(ts, frames, strict=True)):
        part, seq, _, data = by_ts[t]
        assert (part, seq, data) == (i % 2, i // 2, f)
    assert m.kafka_messages._value.get() == 50


def test_netwarden_round_trip_many_per_message(broker: Broker) -> None:  # noqa: F811
    broker.create_topic("nw", 3)
    frames = eth_frames(300, seed=1)
    batch = frame_batch_of(frames, ts_ns=list(range(10**18, 10**18 + 300)), linktype=1)
    # 3 partitions x 4 messages of 25 frames each
    msgs = [(b"k", encode_netwarden(batch, np.arange(k * 25, k * 25 + 25)), k % 3)
            for k in range(12)]
    produce(broker.bootstrap, "nw", msgs)
    m = Metrics()
    src = source(broker, "nw?group=g", m)
    try:
        rows = frames_of(collect(src, 300))
        assert src.assigned_partitions() == frozenset({0, 1, 2})
        assert src.next_offsets() == {0: 4, 1: 4, 2: 4}
    finally:
        src.close()
    assert len(rows) == 300
    for part, seq, ts, data in rows:
        i = ts - 10**18
        k = i // 25
        assert (part, seq, data) == (k % 3, k // 3, frames[i])
    assert m.kafka_bad_messages.labels(reason="truncated")._value.get() == 0
    assert m.kafka_lag.labels(partition="0")._value.get() == 0


def test_bad_messages_counted_not_fatal(broker: Broker) -> None:  # noqa: F811
    broker.create_topic("bad", 1)
    good = frame_batch_of(eth_frames(3), ts_ns=[1, 2, 3])
    ok_msg = encode_netwarden(good, np.arange(3))
    huge = frame_batch_of([bytes(12) + b"\x08\x00" + bytes(300_000)], ts_ns=[1])
    msgs = [
        (None, b"", 0),  # empty value
        (None, b"garbage!" * 5, 0),  # bad magic... but long: not Ethernet-like
        (None, ok_msg[:-5], 0),  # truncated
        (None, encode_netwarden(huge, np.arange(1)), 0),  # oversize frame
        (None, ok_msg[:4] + b"\x09" + ok_msg[5:], 0),  # bad version
        (*encode_pycapa(10**18, eth_frames(1)[0]), 0),  # a pycapa message: wrong format
        (None, ok_msg, 0),
    ]
    produce(broker.bootstrap, "bad", msgs)
    m = Metrics()
    src = source(broker, "bad?group=g", m)
    try:
        rows = frames_of(collect(src, 3, timeout_s=15))
    finally:
        src.close()
    assert [r[1] for r in rows] == [6, 6, 6]  # only the good message, its offset on each frame
    reasons = {r: m.kafka_bad_messages.labels(reason=r)._value.get()
               for r in ("empty_value", "bad_magic", "truncated", "oversize_frame",
                         "bad_version", "wrong_format")}
    assert reasons == dict.fromkeys(reasons, 1.0)


def test_pycapa_bad_keys(broker: Broker) -> None:  # noqa: F811
    broker.create_topic("pbad", 1)
    f = eth_frames(1)[0]
    produce(broker.bootstrap, "pbad", [(None, f, 0), (b"1234", f, 0), (bytes(8), b"", 0),
                                       (bytes(8), f, 0)])
    m = Metrics()
    src = source(broker, "pbad?group=g&format=pycapa", m)
    try:
        rows = frames_of(collect(src, 1, timeout_s=15))
    finally:
        src.close()
    assert [r[1] for r in rows] == [3]
    for reason in ("missing_key", "short_key", "empty_value"):
        assert m.kafka_bad_messages.labels(reason=reason)._value.get() == 1


def test_commit_resumes_from_watermark(broker: Broker) -> None:  # noqa: F811
    broker.create_topic("cm", 1)
    frames = eth_frames(10, seed=3)
    produce(broker.bootstrap, "cm", [(*encode_pycapa(10**18 + i, f), 0)
                                     for i, f in enumerate(frames)])
    m = Metrics()
    src = source(broker, "cm?group=g&format=pycapa", m)
    try:
        assert len(frames_of(collect(src, 10))) == 10
        # a flow that started at offset 4 is still open: the watermark is 4, not 10
        marks = src.low_watermarks(lambda part: 4 if part == 0 else None)
        assert marks == {0: 4}
        assert src.commit(marks)
    finally:
        src.close()
    assert m.kafka_commit_latency._sum.get() > 0
    again = source(broker, "cm?group=g&format=pycapa")
    try:
        rows = frames_of(collect(again, 6))
    finally:
        again.close()
    assert [r[1] for r in rows] == [4, 5, 6, 7, 8, 9]
