"""The shipper against a real broker: flow-affine partitioning keeps every flow (both
directions) in one partition; pycapa keying scatters flows; every frame arrives once."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from kafkabroker import Broker, broker  # noqa: F401
from netwarden.capture import open_capture
from netwarden.decode import decode
from netwarden.kafka.config import KafkaSettings, parse_topic_url
from netwarden.kafka.partitioning import flow_hash
from netwarden.kafka.ship import Shipper
from netwarden.packets import FrameBatch, PacketArray
from test_kafka_source import collect, source

pytestmark = pytest.mark.kafka

CAPTURE = "pcaps/attack/c2/slips-test7-malicious.pcap"  # 2,000 frames, ~320 flows


def read_all(path: Path) -> list[FrameBatch]:
    with open_capture(path) as reader:
        return list(reader)


def flow_keys(p: PacketArray) -> list[tuple[int, ...]]:
    """Direction-free flow keys (sorted endpoints), as plain tuples: the test's own oracle."""
    keys = []
    for r in p:
        a = (int(r["src_hi"]), int(r["src_lo"]), int(r["sport"]))
        b = (int(r["dst_hi"]), int(r["dst_lo"]), int(r["dport"]))
        keys.append((int(r["proto"]), int(r["vlan"]), *min(a, b), *max(a, b)))
    return keys


def partitions_by_flow(batches: list[FrameBatch]) -> dict[tuple[int, ...], set[int]]:
    seen: dict[tuple[int, ...], set[int]] = defaultdict(set)
    for b in batches:
        packets, _ = decode(b)
        for key, part in zip(flow_keys(packets), packets["src_part"].tolist(), strict=True):
            seen[key].add(part)
    return seen


def ship(b: Broker, query: str, batches: list[FrameBatch]) -> Shipper:
    shipper = Shipper(parse_topic_url(f"kafka://{b.bootstrap}/{query}", sink=True),
                      settings=KafkaSettings())
    try:
        shipper.ship(batches)
    finally:
        shipper.close()
    return shipper


@pytest.mark.parametrize("fmt", ["netwarden", "pycapa"])
def test_flow_keying_keeps_flows_whole(broker: Broker, shared_data: Path, fmt: str) -> None:  # noqa: F811
    batches = read_all(shared_data / CAPTURE)
    n = sum(len(b) for b in batches)
    shipper = ship(broker, f"fl?format={fmt}&partitions=4&max_packets=50", batches)
    assert shipper.stats.errors == 0 and shipper.stats.frames == n
    assert len(shipper.stats.frames_per_partition) == 4  # the hash spreads flows
    src = source(broker, f"fl?group=g&format={fmt}")
    try:
        got = collect(src, n)
    finally:
        src.close()
    assert sum(len(b) for b in got) == n
    by_flow = partitions_by_flow(got)
    assert len(by_flow) > 200
    assert all(len(parts) == 1 for parts in by_flow.values())
    if fmt == "netwarden":
        assert shipper.stats.messages < n / 10  # many packets per message


def test_pycapa_keying_scatters_flows(broker: Broker, shared_data: Path) -> None:  # noqa: F811
    batches = read_all(shared_data / CAPTURE)
    n = sum(len(b) for b in batches)
    ship(broker, "pk?format=pycapa&keying=pycapa&partitions=4", batches)
    src = source(broker, "pk?group=g&format=pycapa")
    try:
        got = collect(src, n)
    finally:
        src.close()
    by_flow = partitions_by_flow(got)
    split = sum(len(p) > 1 for p in by_flow.values())
    assert sum(len(b) for b in got) == n
    assert split > len(by_flow) // 4  # timestamp keys scatter a large share of the flows


def test_flow_hash_is_symmetric_on_real_packets(shared_data: Path) -> None:
    batches = read_all(shared_data / CAPTURE)
    packets, _ = decode(batches[0])
    swapped = packets.copy()
    for a, b in (("src_hi", "dst_hi"), ("src_lo", "dst_lo"), ("sport", "dport")):
        swapped[a], swapped[b] = packets[b], packets[a]
    assert np.array_equal(flow_hash(packets), flow_hash(swapped))
    assert len(np.unique(flow_hash(packets))) > 200


def test_ship_command_publishes_capture_files(broker: Broker, shared_data: Path) -> None:  # noqa: F811
    import argparse

    from netwarden.kafka import ship_cli as ship_cmd

    parser = argparse.ArgumentParser()
    ship_cmd.add_parser(parser.add_subparsers())
    path = shared_data / CAPTURE
    args = parser.parse_args(["ship", "--to", f"kafka://{broker.bootstrap}/cli?partitions=2",
                              str(path), str(path)])
    assert args.func(args) == 0
    n = 2 * sum(len(b) for b in read_all(path))
    src = source(broker, "cli?group=g")
    try:
        assert sum(len(b) for b in collect(src, n)) == n
    finally:
        src.close()
