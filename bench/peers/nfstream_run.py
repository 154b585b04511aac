"""Time nfstream over capture files; run with bench/venvs/nfstream/bin/python.

    nfstream_run.py PCAP... [--runs 5] [--warmup 1] [--meters 1]

Each run creates one ``NFStreamer(source=PCAP, statistical_analysis=True)`` per file and
consumes every flow; it is timed from creating the first streamer to the last flow yielded, so
nfstream's own start-up (its meter processes) is inside the time, as it is for any user.
Prints one JSON object on the last line of stdout.  ``flows`` must be > 0: a peer that yields
nothing is broken, and the harness shows it.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import time

import nfstream
from nfstream import NFStreamer


def one_pass(paths: list[str], meters: int) -> dict[str, int]:
    flows = packets = 0
    for path in paths:
        streamer = NFStreamer(source=path, statistical_analysis=True, n_meters=meters)
        for flow in streamer:
            flows += 1
            packets += flow.bidirectional_packets
    return {"flows": flows, "packets_in_flows": packets}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("pcaps", nargs="+")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--meters", type=int, default=1, help="nfstream n_meters (0 = auto)")
    a = ap.parse_args()
    counts: dict[str, int] = {}
    for _ in range(a.warmup):
        counts = one_pass(a.pcaps, a.meters)
    times = []
    for _ in range(a.runs):
        gc.collect()
        t0 = time.perf_counter()
        counts = one_pass(a.pcaps, a.meters)
        times.append(time.perf_counter() - t0)
    out = {
        "times_s": times,
        **counts,
        "version": f"nfstream {nfstream.__version__}",
        "settings": f"statistical_analysis=True, n_meters={a.meters}",
        "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "maxrss_children_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    }
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
