"""Kafka source: a consumer-group member that yields raw frames as :class:`FrameBatch` objects.

Offsets are committed only by :meth:`KafkaSource.commit`, with the per-partition low
watermarks the application computes over its open flows (at-least-once delivery).  Each batch
is one ``poll``: frames carry the partition in ``part`` and the message offset in ``seq``.

An unreachable broker never stops the process: connecting is retried with exponential backoff,
``kafka_connected`` reads 0 and one log line says so; empty batches keep flowing meanwhile so
the application can expire idle flows on the wall clock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import CommitFailedError, KafkaError
from kafka.structs import OffsetAndMetadata

from ..metrics import Metrics

if TYPE_CHECKING:
    from ..app_sources import SourceContext
    from ..config import Url
from ..packets import FrameBatch
from .config import KafkaSettings, TopicUrl
from .formats import BAD_REASONS, OK, Decoded, decode_netwarden, decode_pycapa, empty_frames
from .rebalance import RebalanceListener

log = logging.getLogger(__name__)

PartitionsCallback = Callable[[frozenset[int]], None]
_BAD_LOG_EVERY_S = 10.0  # sampled log line for bad messages: at most one per 10 s


class KafkaSource:
    """Consume one topic in a consumer group; see the module docstring.

    Args:
        url: the validated ``kafka://`` URL.
        settings: the ``[kafka]`` table.
        metrics: where to count; a private registry when None.
    """

    name = "kafka"
    live = True

    def __init__(self, url: TopicUrl, *, settings: KafkaSettings | None = None,
                 metrics: Metrics | None = None) -> None:
        self.url = url
        self.settings = settings or KafkaSettings()
        self.metrics = metrics or Metrics()
        self.commit_interval_s = self.settings.commit_interval_s  # read by app_build
        self._consumer: KafkaConsumer | None = None
        self._closed = False
        self._assigned: frozenset[int] = frozenset()
        self._next: dict[int, int] = {}  # partition -> offset after the last yielded message
        self._committed: dict[int, int] = {}
        self._revoke_cbs: list[PartitionsCallback] = []
        self._assign_cbs: list[PartitionsCallback] = []
        self._connected: bool | None = None
        self._last_bad_log = 0.0
        self._lag_parts: set[int] = set()
        self._in_hooks = False  # True while revoke hooks run: their commits are deferred
        self._deferred: dict[int, int] = {}
        self._lost: frozenset[int] = frozenset()
        self._joining = False
        self.metrics.kafka_connected.set(0)

    # ------------------------------------------------------------------ application interface

    def on_revoke(self, callback: PartitionsCallback) -> None:
        """Call ``callback(partitions)`` before partitions are given up (rebalance, close).

        It never runs concurrently with the loop that iterates the source: in a rebalance it
        runs on kafka-python's I/O thread while that loop is blocked in ``poll``; on close and
        for lost partitions, on the iterating thread.  So it may end flows, flush sinks and
        call :meth:`commit` for those partitions (in a rebalance that commit is sent when the
        callback returns, before the partitions are released).  No frame of a revoked
        partition is yielded after it.
        """
        self._revoke_cbs.append(callback)

    def on_assign(self, callback: PartitionsCallback) -> None:
        """Call ``callback(partitions)`` after a rebalance with the new full assignment."""
        self._assign_cbs.append(callback)

    def assigned_partitions(self) -> frozenset[int]:
        """Partitions this member owns now."""
        return self._assigned

    def next_offsets(self) -> dict[int, int]:
        """Per assigned partition, the offset after the last message yielded so far."""
        return {p: o for p, o in self._next.items() if p in self._assigned}

    def low_watermarks(self, min_open_seq: Callable[[int], int | None]) -> dict[int, int]:
        """Commit positions: per partition, the first open flow's first offset, else the next.

        Args:
            min_open_seq: the flow table's ``min_open_seq(part)``.
        """
        out = {}
        for part, nxt in self.next_offsets().items():
            low = min_open_seq(part)
            out[part] = nxt if low is None else min(low, nxt)
        return out

    def commit(self, watermarks: Mapping[int, int]) -> bool:
        """Commit ``watermarks[part]`` (the lowest offset to re-read after a restart).

        Partitions not assigned any more and unchanged offsets are skipped.  Returns False
        when the commit failed (counted in ``errors{stage="kafka_commit"}``, logged); the next
        commit carries the same or later watermarks, so nothing is lost.
        """
        todo = {p: int(o) for p, o in watermarks.items()
                if p in self._assigned and self._committed.get(p) != int(o)}
        if not todo or self._consumer is None:
            return True
        if self._in_hooks:  # inside a rebalance listener: committed when the hooks return
            self._deferred.update(todo)
            return True
        offsets = self._offsets(todo)
        t0 = time.perf_counter()
        try:
            self._consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as e:
            self.metrics.errors.labels(stage="kafka_commit").inc()
            log.warning("kafka: commit of %s on %s failed: %s", todo, self.url.topic, e)
            return False
        self.metrics.kafka_commit_latency.observe(time.perf_counter() - t0)
        self._committed.update(todo)
        return True

    def _offsets(self, todo: Mapping[int, int]) -> dict[TopicPartition, OffsetAndMetadata]:
        return {TopicPartition(self.url.topic, p): OffsetAndMetadata(o, "", -1)
                for p, o in todo.items()}

    # ------------------------------------------------------------------ Source protocol

    def __iter__(self) -> Iterator[FrameBatch]:
        backoff = 0.5
        while not self._closed:
            if self._consumer is None and not self._connect():
                yield from self._wait(backoff)
                backoff = min(backoff * 2, self.settings.connect_retry_max_s)
                continue
            backoff = 0.5
            yield self._poll_once()

    def close(self) -> None:
        """Leave the group (without committing: only :meth:`commit` commits) and stop."""
        self._closed = True
        if self._consumer is not None:
            self._hand_over_all()
            self._consumer.close(autocommit=False)
            self._consumer = None
        self.metrics.kafka_connected.set(0)

    # ------------------------------------------------------------------ internals

    def _connect(self) -> bool:
        s = self.settings
        try:
            self._consumer = KafkaConsumer(
                bootstrap_servers=list(self.url.brokers), group_id=self.url.group,
                enable_auto_commit=False, auto_offset_reset=self.url.offset_reset,
                session_timeout_ms=s.session_timeout_ms,
                heartbeat_interval_ms=s.heartbeat_interval_ms,
                max_poll_interval_ms=s.max_poll_interval_ms, max_poll_records=s.max_poll_records,
                fetch_max_bytes=s.fetch_max_bytes, check_crcs=s.check_crcs,
                max_partition_fetch_bytes=s.max_partition_fetch_bytes, **s.client_options())
        except (KafkaError, OSError) as e:
            self._set_connected(False, str(e))
            return False
        self._consumer.subscribe([self.url.topic], listener=RebalanceListener(self))
        self._set_connected(True)
        return True

    def _wait(self, seconds: float) -> Iterator[FrameBatch]:
        """Back off before reconnecting, yielding empty batches so the app keeps ticking."""
        end = time.monotonic() + seconds
        while not self._closed and time.monotonic() < end:
            time.sleep(min(self.settings.poll_timeout_ms / 1000, end - time.monotonic()))
            yield empty_frames()

    def _poll_once(self) -> FrameBatch:
        assert self._consumer is not None
        # kafka-python 3.0.12 drops a JoinGroup/SyncGroup result that completes between two
        # polls and joins again (join_group_async replaces a finished join task), so a member
        # with short polls can rejoin forever on a busy machine.  While joining (nothing
        # assigned), poll long enough to see the whole join through.
        timeout = (self.settings.poll_timeout_ms if self._assigned and not self._joining
                   else max(self.settings.poll_timeout_ms, self.settings.join_poll_timeout_ms))
        try:
            records = self._consumer.poll(timeout_ms=timeout)
            revoked = self._serve_lost()
        except KafkaError as e:  # e.g. authorization, unknown topic: keep running, retry
            self.metrics.errors.labels(stage="kafka_poll").inc()
            log.error("kafka: poll of %s failed: %s; retrying", self.url.topic, e)
            time.sleep(min(1.0, self.settings.connect_retry_max_s))
            return empty_frames()
        if revoked:  # their flows were ended: the next owner re-reads these messages
            records = {tp: m for tp, m in records.items() if tp.partition not in revoked}
        if not records:
            was_up = self._connected
            up = self._broker_reachable()
            self._set_connected(up)
            if up and was_up is False:
                self._rebuild()
            return empty_frames()
        self._set_connected(True)
        decoded = self._decode(records)
        self._update_lag(records)
        return decoded.frames

    def _rebuild(self) -> None:
        """Start a fresh consumer after an outage.

        kafka-python 3.0 can loop on JoinGroup after its coordinator went away and came back
        (seen against tansu: every SyncGroup succeeds, then it rejoins again); a new consumer
        joins cleanly and resumes from the committed offsets.
        """
        assert self._consumer is not None
        log.info("kafka: broker %s is back; rejoining group %s with a fresh consumer",
                 ",".join(self.url.brokers), self.url.group)
        self._hand_over_all()
        consumer, self._consumer = self._consumer, None
        consumer.close(autocommit=False)

    def _hand_over_all(self) -> None:
        """Before closing the consumer, run the revoke hooks here, on the main thread (the
        listener kafka-python calls from close() then finds nothing assigned)."""
        parts = self._assigned
        if parts:
            for cb in self._revoke_cbs:
                self._call_hook(cb, parts, "revoke")
            self.forget(parts)

    def _decode(self, records: Mapping[TopicPartition, list[Any]]) -> Decoded:
        keys: list[bytes | None] = []
        values: list[bytes | None] = []
        parts: list[int] = []
        offsets: list[int] = []
        for tp, msgs in records.items():
            for m in msgs:
                keys.append(m.key)
                values.append(m.value)
                offsets.append(m.offset)
            parts.extend([tp.partition] * len(msgs))
            if msgs:
                self._next[tp.partition] = msgs[-1].offset + 1
        p = np.asarray(parts, dtype=np.int32)
        o = np.asarray(offsets, dtype=np.int64)
        if self.url.format == "pycapa":
            decoded = decode_pycapa(keys, values, parts=p, offsets=o)
        else:
            decoded = decode_netwarden(values, parts=p, offsets=o)
        self._count(decoded, values)
        return decoded

    def _count(self, decoded: Decoded, values: list[bytes | None]) -> None:
        m = self.metrics
        m.kafka_messages.inc(len(values))
        m.kafka_bytes.inc(sum(len(v) for v in values if v))
        bad = {BAD_REASONS[i]: int(n) for i, n in enumerate(decoded.bad) if i != OK and n}
        for reason, n in bad.items():
            m.kafka_bad_messages.labels(reason=reason).inc(n)
        now = time.monotonic()
        if bad and now - self._last_bad_log >= _BAD_LOG_EVERY_S:
            self._last_bad_log = now
            log.warning("kafka: skipped bad messages on topic %s (format %s): %s (log sampled: "
                        "one line per %.0f s; see kafka_bad_messages_total)", self.url.topic,
                        self.url.format, bad, _BAD_LOG_EVERY_S)

    def _update_lag(self, records: Mapping[TopicPartition, list[Any]]) -> None:
        assert self._consumer is not None
        for tp in records:
            high = self._consumer.highwater(tp)
            if high is not None:
                lag = max(0, high - self._next.get(tp.partition, 0))
                self.metrics.kafka_lag.labels(partition=str(tp.partition)).set(lag)
                self._lag_parts.add(tp.partition)

    def _broker_reachable(self) -> bool:
        # kafka-python reconnects by itself and offers no public "connected" query; its client
        # object (3.0: kafka.net.compat) knows each broker connection's state.
        client = getattr(self._consumer, "_client", None)
        try:
            brokers = client.cluster.brokers()  # type: ignore[union-attr]
            return any(client.connected(b.node_id) for b in brokers)  # type: ignore[union-attr]
        except AttributeError:
            return True  # unknown kafka-python internals: do not claim an outage

    def _set_connected(self, up: bool, why: str = "") -> None:
        if up == self._connected:
            return
        self._connected = up
        self.metrics.kafka_connected.set(1 if up else 0)
        if up:
            log.info("kafka: connected to %s, topic %s, group %s", ",".join(self.url.brokers),
                     self.url.topic, self.url.group)
        else:
            log.error("kafka: broker %s unreachable (%s); retrying with backoff, the daemon "
                      "keeps running", ",".join(self.url.brokers), why or "connection lost")

    # ------------------------------------------------------------------ rebalance (I/O thread)

    def post_lost(self, parts: frozenset[int]) -> None:
        """I/O thread: partitions were lost; the main thread ends their flows after poll."""
        self._lost |= parts & self._assigned
        self._joining = True

    def _serve_lost(self) -> frozenset[int]:
        """Main thread: end the lost partitions' flows (no commit: it would fail)."""
        lost, self._lost = self._lost, frozenset()
        if lost:
            log.warning("kafka: partitions %s of %s were lost (group membership expired); "
                        "their new owner re-reads them from the last commit", sorted(lost),
                        self.url.topic)
            self.run_revoke_hooks(lost)
            self._deferred = {}
            self.forget(lost)
        return lost

    def run_revoke_hooks(self, parts: frozenset[int]) -> None:
        """Run the application's revoke hooks; the commits they make are deferred."""
        self._joining = True  # until the new assignment arrives: poll long (see _poll_once)
        self._in_hooks = True
        try:
            for cb in self._revoke_cbs:
                self._call_hook(cb, parts, "revoke")
        finally:
            self._in_hooks = False

    async def commit_deferred(self) -> None:
        """Commit what the revoke hooks asked for, without blocking the I/O loop."""
        todo, self._deferred = self._deferred, {}
        if not todo or self._consumer is None:
            return
        t0 = time.perf_counter()
        try:
            await self._consumer.commit_async(self._offsets(todo))
        except KafkaError as e:
            self.metrics.errors.labels(stage="kafka_commit").inc()
            log.warning("kafka: commit of %s on %s at rebalance failed: %s", todo,
                        self.url.topic, e)
            return
        self.metrics.kafka_commit_latency.observe(time.perf_counter() - t0)
        self._committed.update(todo)

    def forget(self, parts: frozenset[int]) -> None:
        """Drop the state of partitions given up."""
        self._assigned = self._assigned - parts
        for p in parts:
            self._next.pop(p, None)
            self._committed.pop(p, None)
            if p in self._lag_parts:
                self._lag_parts.discard(p)
                self.metrics.kafka_lag.remove(str(p))

    def assigned_now(self, parts: frozenset[int]) -> None:
        self._assigned = parts
        self._joining = False
        self.metrics.kafka_rebalances.inc()
        log.info("kafka: assigned partitions %s of %s", sorted(parts), self.url.topic)
        for cb in self._assign_cbs:
            self._call_hook(cb, parts, "assign")

    def _call_hook(self, cb: PartitionsCallback, parts: frozenset[int], what: str) -> None:
        try:
            cb(parts)
        except Exception:  # a failing hook must not break the group protocol
            self.metrics.errors.labels(stage="kafka_rebalance").inc()
            log.exception("kafka: %s hook failed for partitions %s", what, sorted(parts))


def open_source(url: Url, ctx: SourceContext) -> KafkaSource:
    """Factory the source registry finds (:data:`netwarden.app_sources.KNOWN_PLUGINS`)."""
    from .config import parse_topic_url, settings_from_table

    return KafkaSource(parse_topic_url(url), settings=settings_from_table(ctx.config.kafka),
                       metrics=ctx.metrics)


def open_kafka_source(url: str, *, metrics: Metrics | None = None,
                      settings: KafkaSettings | Mapping[str, Any] | None = None) -> KafkaSource:
    """Factory for the ``kafka`` source scheme: validate the URL and settings, build the source."""
    from .config import parse_topic_url, settings_from_table

    s = settings if isinstance(settings, KafkaSettings) else settings_from_table(settings)
    return KafkaSource(parse_topic_url(url), settings=s, metrics=metrics)
