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
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import captures
import report
from runners import NW_PY, cicflowmeter, nfstream, nw_worker, replay, run_json

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SECTIONS = ("decode", "flows", "replay", "memory", "nfstream", "cicflowmeter", "families")
TARGETS = {"decode": 2e6, "flows": 1e6, "replay": 5e5}


def measure(
    name: str, tool: str, label: str, pcaps: list[Path], raw: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    """A measurement row: the worker's figures plus what was measured on which input."""
    packets = sum(captures.count_packets(p) for p in pcaps)
    m = {"name": name, "tool": tool, "input": label, "packets": packets, **raw, **extra}
    if not m.get("error") and "flows" in m and m["flows"] == 0 and tool != "netwarden":
        m["error"] = f"{tool} produced no flows (broken install?)"
    return report.summarize(m)


def bench_capture_rows(
    big: Path, small: Path, tiny: Path, a: argparse.Namespace
) -> list[dict[str, Any]]:
    """Throughput rows on the bench capture (and the small one for cicflowmeter), in order.

    Each plan entry: sections it belongs to (skipped if any is in ``--skip``), row name, tool,
    input, the measurement (called only when not skipped) and its packets/s target.
    """
    nw = "netwarden"
    no_alerts = ("--threshold", "1.0")
    gate_off_cfg = a.out_dir / "gate-off.toml"
    gate_off_cfg.write_text("[alerts]\ncorroborate_max_packets = 0\naggregate_after = 0\n")
    gate_off = ("--config", str(gate_off_cfg))
    # fmt: off
    plan: list[tuple[tuple[str, ...], str, str, Path, Callable[[], dict[str, Any]], float]] = [
        (("decode",), "decode (read + decode)", nw, big,
         lambda: nw_worker("decode", [big], a, a.runs), TARGETS["decode"]),
        (("flows",), "decode+flows+features", nw, big,
         lambda: nw_worker("flows", [big], a, a.runs), TARGETS["flows"]),
        (("replay",), "replay end to end (scoring, alerts to /dev/null)", nw, big,
         lambda: replay([big], a, a.runs), TARGETS["replay"]),
        (("replay",), "replay, alert gate off (one alert document per alerting flow)", nw, big,
         lambda: replay([big], a, a.runs, gate_off), 0),
        (("replay",), "replay --threshold 1.0 (scoring, alerts only at score 1.0)", nw, big,
         lambda: replay([big], a, a.runs, no_alerts), 0),
        (("replay",), "replay start-up (fixed cost)", nw, tiny,
         lambda: replay([tiny], a, a.runs), 0),
        (("nfstream",), "flows+features (statistical_analysis=True)", "nfstream", big,
         lambda: nfstream([big], a, a.runs), 0),
        (("cicflowmeter",), "flows+features (CSV out)", "cicflowmeter", small,
         lambda: cicflowmeter([small], a), 0),
        (("cicflowmeter", "flows"), "decode+flows+features", nw, small,
         lambda: nw_worker("flows", [small], a, a.runs), 0),
    ]
    # fmt: on
    rows = []
    for sections, name, tool, pcap, fn, target in plan:
        if not set(sections) & set(a.skip):
            print(f"  {tool}: {name} on {pcap.name}", file=sys.stderr)
            rows.append(measure(name, tool, pcap.name, [pcap], fn(), target_pps=target or None))
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
    out: list[dict[str, Any]] = []
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
    total: dict[str, Any] = {
        "family": "**all**",
        "files": sum(r["files"] for r in out),
        "packets": total_pk,
        "stages": {},
    }
    for s in out[0]["stages"] if out else ():
        secs = [r["stages"][s].get("median_s") for r in out]
        ok = all(x is not None for x in secs)
        total["stages"][s] = {"pps_median": total_pk / sum(secs) if ok else None}
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
    # start-up counts in the replay rows: compile the package's bytecode first, as an install
    # does (an editable install under PYTHONDONTWRITEBYTECODE would compile it on every run)
    subprocess.run([str(NW_PY), "-m", "compileall", "-q", str(BENCH.parent / "daemon")],
                   check=True, stdout=subprocess.DEVNULL)
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
    start: dict[str, Any] = next((m for m in rows if m["name"].startswith("replay start-up")), {})
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
