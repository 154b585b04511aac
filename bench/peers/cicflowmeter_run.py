"""Time the Python cicflowmeter over capture files; run with bench/venvs/cicflowmeter/bin/python.

    cicflowmeter_run.py OUT_DIR PCAP... [--runs 3] [--warmup 0]

Each file goes through what ``cicflowmeter -f PCAP -c OUT.csv`` does (an ``AsyncSniffer`` over
the file with cicflowmeter's ``FlowSession``, CSV output), timed from starting the sniffer to
the CSV being closed.  One difference: no BPF filter.  The CLI passes
``filter="ip and (tcp or udp)"``, which makes scapy pipe the file through the ``tcpdump``
binary; without tcpdump installed that fails.  ``FlowSession`` drops non-TCP/UDP packets
itself, so the flows are the same; scapy just dissects the frames the filter would have
dropped (a little slower for cicflowmeter, not faster).

Prints one JSON object on the last line of stdout; ``flows`` counts CSV rows (must be > 0:
with scapy other than 2.5.0 or numpy 2 the CSV comes out empty).
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import time
from importlib.metadata import version
from pathlib import Path

from cicflowmeter.flow_session import FlowSession
from scapy.sendrecv import AsyncSniffer


def one_file(pcap: str, csv_path: Path) -> int:
    # The CLI's create_sniffer() configures the session class the same way.
    FlowSession.output_mode, FlowSession.output = "csv", str(csv_path)
    FlowSession.fields, FlowSession.verbose = None, False
    sniffer = AsyncSniffer(offline=pcap, filter=None, prn=None, session=FlowSession, store=False)
    sniffer.start()
    sniffer.join()
    gc.collect()  # the CSV writer closes its file in __del__
    with csv_path.open() as f:
        return max(sum(1 for _ in f) - 1, 0)


def one_pass(paths: list[str], out_dir: Path) -> dict[str, int]:
    flows = 0
    for i, path in enumerate(paths):
        flows += one_file(path, out_dir / f"cicflowmeter-{i}.csv")
    return {"flows": flows}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out_dir", type=Path)
    ap.add_argument("pcaps", nargs="+")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=0)
    a = ap.parse_args()
    a.out_dir.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for _ in range(a.warmup):
        counts = one_pass(a.pcaps, a.out_dir)
    times = []
    for _ in range(a.runs):
        t0 = time.perf_counter()
        counts = one_pass(a.pcaps, a.out_dir)
        times.append(time.perf_counter() - t0)
    out = {
        "times_s": times,
        **counts,
        "version": f"cicflowmeter {version('cicflowmeter')}, scapy {version('scapy')}, "
        f"numpy {version('numpy')}",
        "settings": "AsyncSniffer(offline=PCAP, session=FlowSession), no BPF filter",
        "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
