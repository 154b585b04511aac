"""Kafka alert sink: JSON documents to a topic, key = the alert's flow id.

Bounded everywhere: at most ``max_pending_alerts`` alerts wait for acks, and ``write`` waits at
most ``max_block_ms`` for room before parking an alert; records the broker rejected after
kafka-python's own retries wait in a retry buffer of ``retry_buffer`` records and are sent
again on the next flush.
:meth:`KafkaAlertSink.flush` returns only when every written document is acknowledged by the
broker, and raises :class:`KafkaSinkError` when that did not happen within
``flush_timeout_s``, so the application does not commit offsets past unacknowledged alerts.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError, KafkaTimeoutError

from ..metrics import Metrics
from ..sinks.jsonl import SinkError, json_line
from ..stages import Document
from .config import KafkaSettings, TopicUrl

log = logging.getLogger(__name__)

# Where the flow id is looked up in an alert document, first match wins.
KEY_FIELDS = ("netwarden.flow_id", "flow.id", "event.id", "network.community_id")
_LOG_EVERY_S = 10.0


class KafkaSinkError(SinkError):
    """Alerts were not acknowledged by the broker in time; do not commit source offsets."""


def flow_key(doc: Document) -> bytes | None:
    """The message key of an alert: its flow id (see :data:`KEY_FIELDS`).

    >>> flow_key({"flow": {"id": "1:abc"}})
    b'1:abc'
    >>> flow_key({"event": {"kind": "alert"}}) is None
    True
    """
    for path in KEY_FIELDS:
        node: Any = doc
        for part in path.split("."):
            node = node.get(part) if isinstance(node, Mapping) else None
        if node is not None:
            return str(node).encode()
    return None


class KafkaAlertSink:
    """Produce alerts to one topic; see the module docstring."""

    kind = "kafka"

    def __init__(self, url: TopicUrl, *, settings: KafkaSettings | None = None,
                 metrics: Metrics | None = None) -> None:
        self.url = url
        self.settings = settings or KafkaSettings()
        self.metrics = metrics or Metrics()
        self._producer: KafkaProducer | None = None
        self._retry: deque[tuple[bytes | None, bytes]] = deque()
        self._unacked = 0
        self._failures = 0  # sends that failed since the last flush
        self._last_log = 0.0
        self._recent: OrderedDict[str, None] = OrderedDict()  # ids sent, oldest first
        self._lock = threading.Lock()  # ack callbacks run on kafka-python's I/O thread

    def write(self, docs: Sequence[Document]) -> None:
        """Queue documents for sending; never waits longer than ``max_block_ms`` per call.

        A document whose ``event.id`` this sink already sent (a flow scored again after a
        Kafka replay inside this process) is suppressed and counted in
        ``alerts_suppressed{reason="duplicate"}``.
        """
        for doc in docs:
            if self._seen_before(doc):
                self.metrics.alerts_suppressed.labels(reason="duplicate").inc()
                continue
            line = json_line(doc)  # the policy's alerts carry their JSON line
            self._send(flow_key(doc), line.encode() if line is not None else
                       json.dumps(doc, separators=(",", ":"), default=str).encode())

    def _seen_before(self, doc: Document) -> bool:
        event = doc.get("event")
        doc_id = event.get("id") if isinstance(event, Mapping) else None
        if doc_id is None or self.settings.dedup_window == 0:
            return False
        if doc_id in self._recent:
            self._recent.move_to_end(doc_id)
            return True
        self._recent[doc_id] = None
        if len(self._recent) > self.settings.dedup_window:
            self._recent.popitem(last=False)
        return False

    def flush(self) -> None:
        """Resend failed alerts, then wait until all are acked (at most ``flush_timeout_s``)."""
        with self._lock:
            again = list(self._retry)
            self._retry.clear()
            failed, self._failures = self._failures, 0
        if failed and self._producer is not None:
            # A producer can be left in a fatal state (e.g. its producer id unknown to a
            # restarted broker); a fresh one costs little next to a stuck alert stream.
            self._producer.close(timeout=0)
            self._producer = None
        for key, value in again:
            self._send(key, value)
        if self._producer is not None:
            try:
                self._producer.flush(timeout=self.settings.flush_timeout_s)
            except KafkaTimeoutError as e:
                raise KafkaSinkError(f"kafka sink: {self._unacked} alerts to "
                                     f"{self.url.topic} not acknowledged: {e}") from e
        if self._retry or self._unacked:
            raise KafkaSinkError(f"kafka sink: {len(self._retry) + self._unacked} alerts to "
                                 f"{self.url.topic} not acknowledged (broker unreachable?)")

    def close(self) -> None:
        """Flush what can be flushed, then close the producer."""
        try:
            self.flush()
        except KafkaSinkError as e:
            log.error("%s; closing anyway", e)
        if self._producer is not None:
            self._producer.close(timeout=self.settings.flush_timeout_s)
            self._producer = None

    # ------------------------------------------------------------------ internals

    def _send(self, key: bytes | None, value: bytes) -> None:
        producer = self._ensure_producer()
        if producer is not None and self._unacked >= self.settings.max_pending_alerts:
            try:  # bounded: wait at most max_block_ms for acks to make room
                producer.flush(timeout=self.settings.max_block_ms / 1000)
            except KafkaTimeoutError:
                producer = None
        if producer is None:
            self._keep(key, value)
            return
        try:
            fut = producer.send(self.url.topic, key=key, value=value)
        except KafkaError as e:  # buffer full for max_block_ms, or metadata unavailable
            with self._lock:
                self._failures += 1
            self._error("send to %s failed: %s", e)
            self._keep(key, value)
            return
        with self._lock:
            self._unacked += 1
        fut.add_callback(self._acked)
        fut.add_errback(self._failed, key, value)

    def _acked(self, _meta: Any) -> None:
        with self._lock:
            self._unacked -= 1
        self.metrics.kafka_alerts_produced.inc()

    def _failed(self, key: bytes | None, value: bytes, exc: BaseException) -> None:
        with self._lock:
            self._unacked -= 1
            self._failures += 1
        self._error("alert to %s failed after retries: %s", exc)
        self._keep(key, value)

    def _error(self, what: str, exc: BaseException) -> None:
        """Count a produce error; log one line per ``_LOG_EVERY_S`` at most."""
        self.metrics.kafka_produce_errors.inc()
        now = time.monotonic()
        if now - self._last_log >= _LOG_EVERY_S:
            self._last_log = now
            log.warning("kafka sink: " + what + " (sampled: one line per %.0f s; see "
                        "kafka_produce_errors_total)", self.url.topic, exc, _LOG_EVERY_S)

    def _keep(self, key: bytes | None, value: bytes) -> None:
        with self._lock:
            full = len(self._retry) >= self.settings.retry_buffer
            if full:
                self._retry.popleft()
            self._retry.append((key, value))
        if full:
            self.metrics.alerts_suppressed.labels(reason="kafka_retry_buffer_full").inc()

    def _ensure_producer(self) -> KafkaProducer | None:
        if self._producer is not None:
            return self._producer
        s = self.settings
        try:
            self._producer = KafkaProducer(
                bootstrap_servers=list(self.url.brokers), acks=_acks(s.acks),
                # alerts carry deterministic ids, so a retried duplicate is recognisable;
                # the idempotent producer's state does not survive a broker that forgot it
                enable_idempotence=s.enable_idempotence,
                linger_ms=s.linger_ms, retries=s.retries,
                max_in_flight_requests_per_connection=s.max_in_flight_requests_per_connection,
                max_block_ms=s.max_block_ms, delivery_timeout_ms=s.delivery_timeout_ms,
                **s.client_options())
        except (KafkaError, OSError) as e:
            self.metrics.kafka_produce_errors.inc()
            log.warning("kafka sink: broker %s unreachable: %s", ",".join(self.url.brokers), e)
            return None
        return self._producer


def _acks(value: str) -> int | str:
    return value if value == "all" else int(value)


def open_kafka_sink(url: str, *, metrics: Metrics | None = None,
                    settings: KafkaSettings | Mapping[str, Any] | None = None) -> KafkaAlertSink:
    """Factory for the ``kafka`` sink scheme: validate the URL and settings, build the sink."""
    from .config import parse_topic_url, settings_from_table

    s = settings if isinstance(settings, KafkaSettings) else settings_from_table(settings)
    return KafkaAlertSink(parse_topic_url(url, key="alerts.sinks", sink=True), settings=s,
                          metrics=metrics)
