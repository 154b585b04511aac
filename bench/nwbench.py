"""Benchmark worker for netwarden's in-process stages; bench/run.py starts it in a subprocess.

    .venv/bin/python bench/nwbench.py decode PCAP... [--runs 5] [--warmup 1]
    .venv/bin/python bench/nwbench.py flows PCAP... [--runs 5] [--warmup 1]
    .venv/bin/python bench/nwbench.py memory [--flows 200000]

Prints one JSON object on the last line of stdout.  Each run reads every PCAP in turn (a fresh
flow table per file) and is timed from opening the first file to the last flush; ``times_s``
holds one total per run.  The warm-up runs load (or compile) the numba kernels and warm the
page cache; they are not in ``times_s``.  ``maxrss_kib`` is this process's peak RSS.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import os
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def _import_stages() -> dict[str, Any]:
    from netwarden.capture import open_capture
    from netwarden.decode import decode

    return {"open_capture": open_capture, "decode": decode}


def _import_flows() -> dict[str, Any]:
    from netwarden.flows.params import FlowParams
    from netwarden.flows.table import FlowTable

    return {"FlowTable": FlowTable, "FlowParams": FlowParams}


def _n_flows(ended: Any) -> int:
    """Number of flows in whatever ``FlowTable.update``/``flush`` returns (None counts 0)."""
    if ended is None:
        return 0
    if isinstance(ended, (list, tuple)):
        return sum(_n_flows(e) for e in ended)
    return len(ended)


def run_decode(paths: list[Path]) -> dict[str, int]:
    """Read and decode every file; return frame, packet and skip counts."""
    st = _import_stages()
    frames = packets = skipped = 0
    for i, path in enumerate(paths):
        with st["open_capture"](path, part=i) as reader:
            for batch in reader:
                pk, skips = st["decode"](batch)
                frames += len(batch)
                packets += len(pk)
                skipped += int(np.sum(skips))
    return {"frames": frames, "packets": packets, "skipped": skipped}


def run_flows(paths: list[Path]) -> dict[str, int]:
    """Read, decode and assemble flows with features; return frame, packet and flow counts."""
    st = {**_import_stages(), **_import_flows()}
    frames = packets = flows = 0
    for i, path in enumerate(paths):
        table = st["FlowTable"](st["FlowParams"]())
        with st["open_capture"](path, part=i) as reader:
            for batch in reader:
                pk, _ = st["decode"](batch)
                frames += len(batch)
                packets += len(pk)
                flows += _n_flows(table.update(pk))
        flows += _n_flows(table.flush())
    return {"frames": frames, "packets": packets, "flows": flows}


def timed_runs(fn: Callable[[], dict[str, int]], runs: int, warmup: int) -> dict[str, Any]:
    """Call ``fn`` ``warmup`` times untimed, then ``runs`` times timed."""
    counts: dict[str, int] = {}
    for _ in range(warmup):
        counts = fn()
    times = []
    for _ in range(runs):
        gc.collect()
        t0 = time.perf_counter()
        counts = fn()
        times.append(time.perf_counter() - t0)
    return {"times_s": times, **counts}


def _rss_bytes() -> int:
    """Resident bytes now, after returning freed heap pages to the OS (glibc keeps the freed
    temporaries of the table's growth by doubling otherwise, which is not live memory)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def distinct_flow_packets(n: int, *, t0_ns: int = 1_600_000_000 * 10**9) -> np.ndarray:
    """One TCP SYN per flow, ``n`` distinct 5-tuples, 1 µs apart (all stay active)."""
    from netwarden.packets import IPV4_MAPPED_PREFIX, PACKET_DTYPE, TCP_SYN

    pk = np.zeros(n, dtype=PACKET_DTYPE)
    i = np.arange(n, dtype=np.uint64)
    pk["ts_ns"] = t0_ns + np.arange(n, dtype=np.int64) * 1000
    pk["src_lo"] = IPV4_MAPPED_PREFIX | (np.uint64(0x0A00_0000) + i // np.uint64(50_000))
    pk["dst_lo"] = IPV4_MAPPED_PREFIX | np.uint64(0xC0A8_0001)
    pk["sport"] = (1024 + i % np.uint64(50_000)).astype(np.uint16)
    pk["dport"] = 80
    pk["proto"], pk["ip_version"], pk["ttl"] = 6, 4, 64
    pk["wire_len"], pk["ip_len"], pk["ip_hdr_len"], pk["l4_hdr_len"] = 74, 60, 20, 40
    pk["tcp_flags"], pk["tcp_window"] = TCP_SYN, 64240
    pk["src_part"], pk["src_seq"] = 0, np.arange(n)
    return pk


def run_memory(n_flows: int) -> dict[str, Any]:
    """Bytes per active flow: RSS growth of a table of ``n_flows`` open flows, per flow."""
    fl = _import_flows()
    pk = distinct_flow_packets(n_flows)
    warm = fl["FlowTable"](fl["FlowParams"](max_flows=1024))
    warm.update(pk[:8])  # load/compile kernels before the baseline is taken
    del warm
    gc.collect()
    base = _rss_bytes()
    table = fl["FlowTable"](fl["FlowParams"](max_flows=n_flows))
    ended = _n_flows(table.update(pk))
    gc.collect()
    grown = _rss_bytes() - base
    return {
        "flows_opened": n_flows,
        "flows_ended_early": ended,
        "active_reported": _maybe_call(getattr(table, "active", None)),
        "rss_growth_bytes": grown,
        "bytes_per_flow_rss": grown / max(n_flows - ended, 1),
        "bytes_per_flow_attr": _maybe_call(getattr(table, "bytes_per_flow", None)),
    }


def _maybe_call(v: Any) -> float | None:
    """A property's value or a method's result, as a float (None when absent)."""
    if v is None:
        return None
    return float(v() if callable(v) else v)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["decode", "flows", "memory"])
    ap.add_argument("pcaps", nargs="*", type=Path)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--flows", type=int, default=262_144, help="open flows for 'memory'")
    a = ap.parse_args(argv)
    if a.what == "memory":
        out: dict[str, Any] = run_memory(a.flows)
    else:
        fn = run_decode if a.what == "decode" else run_flows
        out = timed_runs(lambda: fn(a.pcaps), a.runs, a.warmup)
    out["maxrss_kib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
