#!/usr/bin/env python3
"""netwarden benchmark: packets/s of decode, decode+flows+features and replay, against peers.

    .venv/bin/python bench/run.py [--runs 5] [--skip nfstream,families,...]

Builds bench/out/bench-1m.pcap from ../shared when missing, times each stage in its own
subprocess (netwarden stages with .venv, peers with their venvs from bench/setup_peers.sh),
prints a Markdown report and writes it to bench/out/results.md, with the raw figures in
bench/out/results.json.  Not part of the test suite.  See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import captures
import report

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
NW_PY = ROOT / ".venv" / "bin" / "python"
NW_CLI = ROOT / ".venv" / "bin" / "netwarden"
VENVS = BENCH / "venvs"
SECTIONS = ("decode", "flows", "replay", "memory", "nfstream", "cicflowmeter", "families")
TARGETS = {"decode": 2e6, "flows": 1e6, "replay": 5e5}


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


def measure(
    name: str, tool: str, label: str, pcaps: list[Path], raw: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """A measurement row: the worker's figures plus what was measured on which input."""
    packets = sum(captures.count_packets(p) for p in pcaps)
    m = {"name": name, "tool": tool, "input": label, "packets": packets, **raw, **extra}
    if not m.get("error") and "flows" in m and m["flows"] == 0 and tool != "netwarden":
        m["error"] = f"{tool} produced no flows (broken install?)"
    return report.summarize(m)


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


def replay(pcaps: list[Path], a: argparse.Namespace, runs: int) -> dict[str, Any]:
    """Time ``netwarden replay PCAP... --alerts-out -`` (stdout to /dev/null) as processes.

    The warm-up runs replay the 100-packet capture ``a.tiny``: enough to load (or, after a code
    change, compile and cache) the numba kernels, without a full extra pass.
    ``--summary-json`` gives the flow and alert counts; an app error counted there fails the
    measurement even when the exit code is 0.
    """
    summary = a.out_dir / "replay-summary.json"
    opts = ["--alerts-out", "-", "--summary-json", str(summary)]
    opts += ["--model", str(a.model)] if a.model else []
    cmd = [str(NW_CLI), "replay", *map(str, pcaps), *opts]
    warm = [str(NW_CLI), "replay", str(a.tiny), *opts]
    times, rss, doc = [], 0, {}
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


def bench_capture_rows(
    big: Path, small: Path, tiny: Path, a: argparse.Namespace
) -> list[dict[str, Any]]:
    """Throughput rows on the bench capture (and the small one for cicflowmeter)."""
    skip, rows = set(a.skip), []
    bl, sl = f"{big.name}", f"{small.name}"
    if "decode" not in skip:
        rows.append(
            measure(
                "decode (read + decode)",
                "netwarden",
                bl,
                [big],
                nw_worker("decode", [big], a, a.runs),
                target_pps=TARGETS["decode"],
            )
        )
    if "flows" not in skip:
        rows.append(
            measure(
                "decode+flows+features",
                "netwarden",
                bl,
                [big],
                nw_worker("flows", [big], a, a.runs),
                target_pps=TARGETS["flows"],
            )
        )
    if "replay" not in skip:
        rows.append(
            measure(
                "replay end to end (scoring, alerts to /dev/null)",
                "netwarden",
                bl,
                [big],
                replay([big], a, a.runs),
                target_pps=TARGETS["replay"],
            )
        )
        rows.append(
            measure(
                "replay start-up (fixed cost)",
                "netwarden",
                tiny.name,
                [tiny],
                replay([tiny], a, a.runs),
            )
        )
    if "nfstream" not in skip:
        rows.append(
            measure(
                "flows+features (statistical_analysis=True)",
                "nfstream",
                bl,
                [big],
                nfstream([big], a, a.runs),
            )
        )
    if "cicflowmeter" not in skip:
        rows.append(
            measure(
                "flows+features (CSV out)", "cicflowmeter", sl, [small], cicflowmeter([small], a)
            )
        )
        if "flows" not in skip:
            rows.append(
                measure(
                    "decode+flows+features",
                    "netwarden",
                    sl,
                    [small],
                    nw_worker("flows", [small], a, a.runs),
                )
            )
    return rows


def _find(rows: list[dict[str, Any]], tool: str, name_start: str, label: str) -> dict[str, Any]:
    for m in rows:
        if m["tool"] == tool and m["name"].startswith(name_start) and m["input"] == label:
            return m
    return {}


def ratios(rows: list[dict[str, Any]], big: Path, small: Path) -> list[dict[str, Any]]:
    """netwarden decode+flows+features packets/s over each peer's, same input, same run."""
    out = []
    for peer, label, target in (("nfstream", big.name, 2.0), ("cicflowmeter", small.name, None)):
        nw = _find(rows, "netwarden", "decode+flows+features", label)
        pm = _find(rows, peer, "flows+features", label)
        r: dict[str, Any] = {
            "what": f"netwarden decode+flows+features / {peer} on {label}",
            "target": target,
        }
        if nw.get("pps_median") and pm.get("pps_median"):
            r["ratio"] = nw["pps_median"] / pm["pps_median"]
        else:
            r["why"] = "netwarden failed" if not nw.get("pps_median") else f"{peer} failed"
        out.append(r)
    return out


def families(a: argparse.Namespace) -> list[dict[str, Any]]:
    """Packets/s per capture family of ../shared/data/pcaps (all files of a family per run)."""
    fams = captures.shared_captures_by_family()
    out = []
    for fam, paths in fams.items():
        packets = sum(captures.count_packets(p) for p in paths)
        raws = {
            "decode": nw_worker("decode", paths, a, a.family_runs),
            "decode+flows+features": nw_worker("flows", paths, a, a.family_runs),
            "replay": replay(paths, a, a.family_runs),
            "nfstream": nfstream(paths, a, a.family_runs),
        }
        stages = {s: report.summarize({"packets": packets, **raw}) for s, raw in raws.items()}
        out.append({"family": fam, "files": len(paths), "packets": packets, "stages": stages})
        print(f"  family {fam}: {len(paths)} files, {packets} packets", file=sys.stderr)
    total_pk = sum(r["packets"] for r in out)
    total = {
        "family": "**all**",
        "files": sum(r["files"] for r in out),
        "packets": total_pk,
        "stages": {},
    }
    for s in out[0]["stages"] if out else ():
        secs = [r["stages"][s].get("median_s") for r in out]
        ok = all(x is not None for x in secs)
        total["stages"][s] = {"pps_median": total_pk / sum(secs) if ok else None}  # type: ignore[arg-type]
    return [*out, total]


def environment() -> dict[str, Any]:
    """Machine, date and versions, for the report header."""
    code = (
        "import sys, importlib.metadata as m\n"
        "v = lambda n: m.version(n) if n else ''\n"
        "out = [f'python {sys.version.split()[0]}']\n"
        "for n in ('netwarden', 'numpy', 'numba', 'onnxruntime-gpu', 'onnxruntime'):\n"
        "    try: out.append(f'{n} {m.version(n)}')\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(', '.join(out))"
    )
    vers = subprocess.run([str(NW_PY), "-c", code], capture_output=True, text=True).stdout
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "log", "-1", "--format=%h %cI"], capture_output=True, text=True
    ).stdout.strip()
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "date_utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "platform": platform.platform(),
        "loadavg_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "versions": f"{vers.strip()}; git {commit}",
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="timed runs per measurement")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs first")
    ap.add_argument("--pcap", type=Path, help="use this capture instead of the 1M bench one")
    ap.add_argument("--packets", type=int, default=1_000_000, help="size of the bench capture")
    ap.add_argument(
        "--small-packets", type=int, default=20_000, help="size of the capture cut for cicflowmeter"
    )
    ap.add_argument("--cic-runs", type=int, default=None, help="cicflowmeter runs (default --runs)")
    ap.add_argument("--family-runs", type=int, default=3, help="runs per capture family")
    ap.add_argument(
        "--nfstream-warmup", type=int, default=0, help="nfstream untimed runs (nothing to compile)"
    )
    ap.add_argument("--nfstream-meters", type=int, default=1, help="nfstream n_meters (0 = auto)")
    ap.add_argument("--memory-flows", type=int, default=262_144)
    ap.add_argument("--model", type=Path, help="model dir for replay (default: the CLI's)")
    ap.add_argument(
        "--skip",
        type=lambda s: [x for x in s.split(",") if x],
        default=[],
        help=f"comma-separated sections to skip: {','.join(SECTIONS)}",
    )
    ap.add_argument("--out-dir", type=Path, default=BENCH / "out")
    ap.add_argument("--timeout", type=float, default=1800.0, help="per worker process, s")
    a = ap.parse_args(argv)
    a.cic_runs = a.cic_runs or a.runs
    if bad := set(a.skip) - set(SECTIONS):
        ap.error(f"--skip: unknown section(s) {sorted(bad)}; known: {', '.join(SECTIONS)}")
    return a


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    a.out_dir.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {
        "command": shlex.join([".venv/bin/python", "bench/run.py", *(argv or sys.argv[1:])]),
        "environment": environment(),
        "runs": a.runs,
        "warmup": a.warmup,
        "protocol": f"{a.runs} timed per measurement ({a.family_runs} per family), after "
        f"{a.warmup} warm-up: a full untimed pass for the in-process netwarden stages, a "
        f"100-packet replay for replay; {a.nfstream_warmup} for nfstream, none for "
        f"cicflowmeter ({a.cic_runs} runs), which have nothing to compile",
    }
    name = "bench-1m.pcap" if a.packets == 1_000_000 else f"bench-{a.packets}.pcap"
    big = a.pcap or captures.ensure_bench_pcap(a.out_dir / name, a.packets, str(NW_PY))
    small = captures.cut_pcap(
        big, a.out_dir / f"{big.stem}-first{a.small_packets}.pcap", a.small_packets
    )
    a.tiny = tiny = captures.cut_pcap(big, a.out_dir / f"{big.stem}-first100.pcap", 100)
    print(f"bench capture {big}: {captures.count_packets(big):,} packets", file=sys.stderr)
    res["throughput"] = bench_capture_rows(big, small, tiny, a)
    res["ratios"] = ratios(res["throughput"], big, small)
    if "memory" not in a.skip:
        cmd = [str(NW_PY), str(BENCH / "nwbench.py"), "memory", "--flows", str(a.memory_flows)]
        res["memory"] = run_json(cmd, a.timeout)
    if "families" not in a.skip:
        res["families"] = families(a)
        res["family_notes"] = [
            "Each family: all its files in one timed run (fresh flow table per file); replay is "
            "one `netwarden replay FILES...` process per run, start-up included; nfstream is "
            "one NFStreamer per file, its start-up included. These files are small, so fixed "
            "costs dominate."
        ]
    res["environment"]["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    res["notes"] = notes(res)
    md = report.render(res)
    (a.out_dir / "results.md").write_text(md + "\n")
    (a.out_dir / "results.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
    print(md)
    return 0


def notes(res: dict[str, Any]) -> list[str]:
    """Derived figures and caveats worth a line in the report."""
    rows, out = res["throughput"], []
    full = _find(rows, "netwarden", "replay end to end", rows[0]["input"] if rows else "")
    start = next((m for m in rows if m["name"].startswith("replay start-up")), {})
    if full.get("median_s") and start.get("median_s") and full["median_s"] > start["median_s"]:
        pps = full["packets"] / (full["median_s"] - start["median_s"])
        out.append(f"replay with its start-up subtracted: {report.fmt_rate(pps)} packets/s")
    if full.get("app_packets_per_s"):
        out.append(
            f"replay's own summary (its pipeline timer, last run): "
            f"{report.fmt_rate(full['app_packets_per_s'])} packets/s"
        )
    for m in rows:
        if m["tool"] != "netwarden" and m.get("version"):
            out.append(f"{m['tool']}: {m['version']}; {m.get('settings', '')}")
    return out


if __name__ == "__main__":
    sys.exit(main())
