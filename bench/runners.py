"""Run one benchmark measurement in a subprocess and collect its figures.

Each function returns a dict with ``times_s`` (one entry per timed run) and counts, or with
``error`` (one line: the exit code and the last line of stderr, a timeout, an app error).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
NW_PY = ROOT / ".venv" / "bin" / "python"
NW_CLI = ROOT / ".venv" / "bin" / "netwarden"
VENVS = BENCH / "venvs"


def last_error_line(text: str) -> str:
    """The last non-empty line of a traceback or log, made safe for a Markdown table cell."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else "no output")[:240].replace("|", "\\|")


def run_json(cmd: list[str], timeout_s: float) -> dict[str, Any]:
    """Run a worker and parse the JSON object on its last stdout line, or return ``error``."""
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:.0f} s"}
    except OSError as e:
        return {"error": f"cannot start {cmd[0]}: {e.strerror}"}
    if p.returncode != 0:
        return {"error": f"exit {p.returncode}: {last_error_line(p.stderr or p.stdout)}"}
    try:
        return dict(json.loads(p.stdout.strip().splitlines()[-1]))
    except (IndexError, ValueError):
        return {"error": f"no JSON result: {last_error_line(p.stdout + p.stderr)}"}


def nw_worker(what: str, pcaps: list[Path], a: argparse.Namespace, runs: int) -> dict[str, Any]:
    cmd = [
        str(NW_PY),
        str(BENCH / "nwbench.py"),
        what,
        *map(str, pcaps),
        "--runs",
        str(runs),
        "--warmup",
        str(a.warmup),
    ]
    raw = run_json(cmd, a.timeout)
    if "packets" in raw:  # the worker's "packets" counts decoded packets, not records
        raw["decoded_packets"] = raw.pop("packets")
    return raw


def timed_process(cmd: list[str], timeout_s: float) -> tuple[float, int, str | None]:
    """Run ``cmd`` once: wall seconds, peak RSS (KiB) of the child, error or None."""
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        try:
            p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, cwd=ROOT)
        except OSError as e:
            return 0.0, 0, f"cannot start {cmd[0]}: {e.strerror}"
        try:
            _, status, ru = _wait4(p.pid, t0 + timeout_s)
        except TimeoutError:
            p.kill()
            p.wait()
            return 0.0, 0, f"timed out after {timeout_s:.0f} s"
        dt = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode != 0:
            err.seek(0)
            msg = last_error_line(err.read().decode(errors="replace"))
            return dt, ru.ru_maxrss, f"exit {p.returncode}: {msg}"
    return dt, ru.ru_maxrss, None


def _wait4(pid: int, deadline: float) -> tuple[int, int, Any]:
    while True:
        wpid, status, ru = os.wait4(pid, os.WNOHANG)
        if wpid == pid:
            return wpid, status, ru
        if time.perf_counter() > deadline:
            raise TimeoutError
        time.sleep(0.002)


def replay(
    pcaps: list[Path], a: argparse.Namespace, runs: int, extra: tuple[str, ...] = ()
) -> dict[str, Any]:
    """Time ``netwarden replay PCAP... --alerts-out /dev/null`` as separate processes.

    The warm-up runs replay the 100-packet capture ``a.tiny``: enough to load (or, after a code
    change, compile and cache) the numba kernels, without a full extra pass.
    ``--summary-json`` gives the flow and alert counts; an app error counted there fails the
    measurement even when the exit code is 0.
    """
    summary = a.out_dir / "replay-summary.json"
    opts = ["--alerts-out", "/dev/null", "--summary-json", str(summary)]
    opts += ["--model", str(a.model)] if a.model else []
    opts += extra
    cmd = [str(NW_CLI), "replay", *map(str, pcaps), *opts]
    warm = [str(NW_CLI), "replay", str(a.tiny), *opts]
    times: list[float] = []
    doc: dict[str, Any] = {}
    rss = 0
    for i in range(a.warmup + runs):
        summary.unlink(missing_ok=True)
        dt, maxrss, error = timed_process(warm if i < a.warmup else cmd, a.timeout)
        doc = json.loads(summary.read_text()) if summary.exists() else {}
        if not error and doc.get("errors"):
            error = f"app errors {doc['errors']}"
        if error:
            return {"error": error, "command": shlex.join(cmd)}
        rss = max(rss, maxrss)
        if i >= a.warmup:
            times.append(dt)
    return {
        "times_s": times,
        "maxrss_kib": rss,
        "command": shlex.join(cmd),
        "flows": doc.get("flows"),
        "alerts": doc.get("alerts"),
        "flows_alerted": doc.get("flows_alerted"),
        "app_packets_per_s": doc.get("packets_per_s"),
    }


def nfstream(pcaps: list[Path], a: argparse.Namespace, runs: int) -> dict[str, Any]:
    py = VENVS / "nfstream" / "bin" / "python"
    if not py.exists():
        return {"error": "not installed: run bench/setup_peers.sh (see bench/venvs/nfstream.log)"}
    cmd = [
        str(py),
        str(BENCH / "peers" / "nfstream_run.py"),
        *map(str, pcaps),
        "--runs",
        str(runs),
        "--warmup",
        str(a.nfstream_warmup),
        "--meters",
        str(a.nfstream_meters),
    ]
    raw = run_json(cmd, a.timeout)
    if "maxrss_children_kib" in raw:  # nfstream meters run in child processes
        raw["maxrss_kib"] = max(raw["maxrss_kib"], raw.pop("maxrss_children_kib"))
    return raw


def cicflowmeter(pcaps: list[Path], a: argparse.Namespace) -> dict[str, Any]:
    py = VENVS / "cicflowmeter" / "bin" / "python"
    if not py.exists():
        return {
            "error": "not installed: run bench/setup_peers.sh (see bench/venvs/cicflowmeter.log)"
        }
    cmd = [
        str(py),
        str(BENCH / "peers" / "cicflowmeter_run.py"),
        str(a.out_dir / "cic"),
        *map(str, pcaps),
        "--runs",
        str(a.cic_runs),
        "--warmup",
        "0",
    ]
    return run_json(cmd, a.timeout)
