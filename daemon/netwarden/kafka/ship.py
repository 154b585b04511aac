"""``netwarden ship``: publish capture files (or a live interface) to a Kafka topic.

Partitioning (``keying`` URL parameter):

* ``flow`` (default): every frame goes to the partition of its symmetric flow hash
  (:mod:`.partitioning`), so both directions of a flow land in one partition and one group
  member sees the whole flow.  Frames the decoder gives no flow key (ARP, ...) go to
  partition 0.
* ``pycapa``: like Apache Metron's pycapa, the key is the capture time and Kafka's default
  partitioner hashes it: a flow's packets scatter over the partitions (``format=pycapa`` only;
  kept for comparison, see docs/kafka.md).

With ``format=netwarden`` the frames of one partition are packed into messages of at most
``max_packets`` packets and ``max_bytes`` bytes.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from kafka import KafkaProducer
from kafka.errors import KafkaError, TopicAlreadyExistsError

from ..config import ConfigError
from ..packets import FrameBatch
from .config import KafkaSettings, TopicUrl, parse_topic_url, settings_from_table
from .formats import HEADER_LEN, RECORD_LEN, encode_netwarden, encode_pycapa
from .partitioning import flow_hash, partition_of

log = logging.getLogger(__name__)


@dataclass
class ShipStats:
    """What a shipper sent."""

    frames: int = 0
    messages: int = 0
    bytes: int = 0
    errors: int = 0
    frames_per_partition: dict[int, int] = field(default_factory=dict)


class Shipper:
    """Publish frame batches to one topic; see the module docstring."""

    def __init__(self, url: TopicUrl, *, settings: KafkaSettings | None = None) -> None:
        if url.keying == "pycapa" and url.format != "pycapa":
            raise ConfigError(f"--to: keying=pycapa needs format=pycapa, got {url.format!r}")
        self.url = url
        self.settings = settings or KafkaSettings()
        self.stats = ShipStats()
        opts = self.settings.client_options()
        self.n_partitions = _ensure_topic(url, opts)
        self._producer = KafkaProducer(
            bootstrap_servers=list(url.brokers), acks=_acks(self.settings.acks),
            linger_ms=max(self.settings.linger_ms, 20), batch_size=1 << 20,
            max_request_size=max(url.max_bytes + 4096, 1 << 20), **opts)

    def ship(self, batches: Iterable[FrameBatch]) -> ShipStats:
        """Send every frame of ``batches``, then wait for the broker's acks."""
        for batch in batches:
            if len(batch):
                self._send_batch(batch)
        self.flush()
        return self.stats

    def flush(self) -> None:
        self._producer.flush(timeout=self.settings.flush_timeout_s * 6)

    def close(self) -> None:
        self._producer.close(timeout=self.settings.flush_timeout_s)

    def partitions_of(self, batch: FrameBatch) -> npt.NDArray[np.int32]:
        """Partition of every frame (flow keying); 0 for frames without a flow key."""
        from ..decode import decode

        indexed = dataclasses.replace(batch, seq=np.arange(len(batch), dtype=np.int64))
        packets, _skips = decode(indexed)
        parts = np.zeros(len(batch), dtype=np.int32)
        parts[packets["src_seq"]] = partition_of(flow_hash(packets), self.n_partitions)
        return parts

    def _send_batch(self, batch: FrameBatch) -> None:
        if self.url.keying == "pycapa":
            self._send_pycapa(batch, None)
            return
        parts = self.partitions_of(batch)
        order = np.argsort(parts, kind="stable")  # frames keep capture order per partition
        bounds = np.searchsorted(parts[order], np.arange(self.n_partitions + 1))
        for p in range(self.n_partitions):
            idx = order[bounds[p]:bounds[p + 1]]
            if idx.shape[0] == 0:
                continue
            self.stats.frames_per_partition[p] = (self.stats.frames_per_partition.get(p, 0)
                                                  + int(idx.shape[0]))
            if self.url.format == "pycapa":
                self._send_pycapa(batch, (p, idx))
            else:
                self._send_netwarden(batch, p, idx)

    def _send_netwarden(self, batch: FrameBatch, part: int, idx: npt.NDArray[np.int64]) -> None:
        sizes = batch.caplen[idx].astype(np.int64) + RECORD_LEN
        cum = np.cumsum(sizes)
        start = 0
        while start < idx.shape[0]:
            base = cum[start - 1] if start else 0
            by_bytes = int(np.searchsorted(cum, base + self.url.max_bytes - HEADER_LEN, "right"))
            end = max(start + 1, min(start + self.url.max_packets, by_bytes))
            self._send(encode_netwarden(batch, idx[start:end]), None, part, end - start)
            start = end

    def _send_pycapa(self, batch: FrameBatch, which: tuple[int, Any] | None) -> None:
        part, idx = which if which is not None else (None, np.arange(len(batch)))
        for i in idx:  # pycapa is one message per packet by definition
            o = int(batch.offsets[i])
            key, value = encode_pycapa(int(batch.ts_ns[i]),
                                       batch.data[o:o + int(batch.caplen[i])].tobytes())
            self._send(value, key, part, 1)

    def _send(self, value: bytes, key: bytes | None, part: int | None, frames: int) -> None:
        try:
            fut = self._producer.send(self.url.topic, value=value, key=key, partition=part)
        except KafkaError as e:
            self.stats.errors += 1
            log.warning("ship: send failed: %s", e)
            return
        fut.add_errback(self._failed)
        self.stats.frames += frames
        self.stats.messages += 1
        self.stats.bytes += len(value)

    def _failed(self, exc: BaseException) -> None:
        self.stats.errors += 1
        log.warning("ship: message not acknowledged: %s", exc)


def _acks(value: str) -> int | str:
    return value if value == "all" else int(value)


def _ensure_topic(url: TopicUrl, opts: Mapping[str, Any]) -> int:
    """Create the topic with ``partitions`` when asked; return its partition count."""
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=list(url.brokers), **opts)
    try:
        if url.partitions:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics([NewTopic(url.topic, url.partitions, 1)])
        for _ in range(50):  # metadata of a new topic may take a moment
            desc = admin.describe_topics([url.topic])
            parts = desc[0].get("partitions") if desc else None
            if parts:
                return len(parts)
            time.sleep(0.1)
    finally:
        admin.close()
    raise ConfigError(f"--to: topic {url.topic!r} does not exist; add ?partitions=N to create it")


# ---------------------------------------------------------------------------------- CLI


def cmd_ship(args: argparse.Namespace) -> int:
    """Run ``netwarden ship``; returns the exit code."""
    if bool(args.pcaps) == bool(args.interface):
        raise ConfigError("ship: give capture files or --interface IF (one of the two)")
    table: Mapping[str, Any] = {}
    if args.config:
        from ..config import load_config

        table = load_config(args.config).kafka
    shipper = Shipper(parse_topic_url(args.to, key="--to", sink=True),
                      settings=settings_from_table(table))
    try:
        stats = shipper.ship(_batches(args))
    finally:
        shipper.close()
    log.info("ship: %d frames in %d messages (%d bytes) to %s; per partition %s; %d errors",
             stats.frames, stats.messages, stats.bytes, args.to,
             dict(sorted(stats.frames_per_partition.items())), stats.errors)
    return 0 if stats.errors == 0 else 1


def _batches(args: argparse.Namespace) -> Iterable[FrameBatch]:
    if args.interface:
        from ..capture.live import open_iface_source

        src = open_iface_source(f"iface://{args.interface}")
        end = time.monotonic() + args.duration_s if args.duration_s else float("inf")
        try:
            for batch in src:
                yield batch
                if time.monotonic() >= end:
                    break
        finally:
            src.close()
        return
    from ..capture import open_capture

    for i, path in enumerate(args.pcaps):
        with open_capture(path, part=i) as reader:
            yield from reader
