"""Turn benchmark measurements into the Markdown report (bench/out/results.md).

A measurement is a dict: ``name``, ``tool``, ``input``, ``packets`` (records in the input),
and either ``times_s`` (one per timed run) or ``error``; optional ``flows``, ``maxrss_kib``,
``target_pps``, ``note``.
"""

from __future__ import annotations

import statistics
from typing import Any

KIB = 1024


def summarize(m: dict[str, Any]) -> dict[str, Any]:
    """Add median/min/max seconds and packets/s to a measurement that has ``times_s``."""
    times = m.get("times_s") or []
    if not times or m.get("error"):
        return m
    med, lo, hi = statistics.median(times), min(times), max(times)
    pk = m["packets"]
    return {
        **m,
        "median_s": med,
        "min_s": lo,
        "max_s": hi,
        "pps_median": pk / med if med > 0 else None,
        "pps_best": pk / lo if lo > 0 else None,
        "pps_worst": pk / hi if hi > 0 else None,
    }


def fmt_rate(pps: float | None) -> str:
    """Packets per second, short form.

    >>> fmt_rate(1_234_567.0), fmt_rate(176_000.0), fmt_rate(1750.0), fmt_rate(None)
    ('1.23M', '176k', '1.75k', '—')
    """
    if pps is None:
        return "—"
    if pps >= 1e6:
        return f"{pps / 1e6:.2f}M"
    if pps >= 1e4:
        return f"{pps / 1e3:.0f}k"
    if pps >= 1e3:
        return f"{pps / 1e3:.2f}k"
    return f"{pps:.0f}"


def _fmt_s(s: float | None) -> str:
    return "—" if s is None else f"{s:.3f}"


def _fmt_rss(kib: int | None) -> str:
    return "—" if not kib else f"{kib / KIB:.0f} MiB"


def _verdict(m: dict[str, Any]) -> str:
    target, pps = m.get("target_pps"), m.get("pps_median")
    if not target:
        return ""
    if pps is None:
        return f"≥ {fmt_rate(target)}: not measured"
    return f"≥ {fmt_rate(target)}: {'met' if pps >= target else 'NOT met'}"


def throughput_table(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown rows for throughput measurements (one line each, errors spelled out)."""
    out = [
        "| measurement | tool | input | packets | flows | runs | median s (min..max) "
        "| packets/s median (range) | target | peak RSS |",
        "|---|---|---|---:|---:|---:|---|---|---|---:|",
    ]
    for m in rows:
        head = f"| {m['name']} | {m['tool']} | {m['input']} | {m['packets']:,} "
        if m.get("error"):
            out.append(head + f"| — | — | **failed**: {m['error']} | — | {_verdict(m)} | — |")
            continue
        flows = m.get("flows")
        alerts = "" if m.get("alerts") is None else f" ({m['alerts']:,} alerts"
        if m.get("alerts") is not None:
            fa = m.get("flows_alerted")
            alerts += f" for {fa:,} flows)" if fa is not None and fa != m["alerts"] else ")"
        rng = f"{fmt_rate(m['pps_worst'])}..{fmt_rate(m['pps_best'])}"
        out.append(
            head + f"| {'—' if flows is None else f'{flows:,}{alerts}'} | {len(m['times_s'])} "
            f"| {_fmt_s(m['median_s'])} ({_fmt_s(m['min_s'])}..{_fmt_s(m['max_s'])}) "
            f"| **{fmt_rate(m['pps_median'])}** ({rng}) | {_verdict(m)} "
            f"| {_fmt_rss(m.get('maxrss_kib'))} |"
        )
    return out


def ratio_lines(ratios: list[dict[str, Any]]) -> list[str]:
    """Bullet lines for netwarden/peer ratios measured in the same run."""
    out = []
    for r in ratios:
        if r.get("ratio") is None:
            out.append(f"- {r['what']}: not available ({r.get('why', 'a side failed')})")
            continue
        target = r.get("target")
        verdict = (
            f" (target ≥ {target:g}x: {'met' if r['ratio'] >= target else 'NOT met'})"
            if target
            else ""
        )
        out.append(f"- {r['what']}: **{r['ratio']:.1f}x**{verdict}")
    return out


def memory_lines(mem: dict[str, Any]) -> list[str]:
    """Bullet lines for the bytes-per-active-flow measurement."""
    if mem.get("error"):
        return [f"- bytes per active flow: **failed**: {mem['error']}"]
    rss = mem["bytes_per_flow_rss"]
    lines = [
        f"- bytes per active flow (RSS growth with {mem['flows_opened']:,} open flows / open "
        f"flows): **{rss:.0f} B** (target ≤ 1024 B: {'met' if rss <= 1024 else 'NOT met'}); "
        f"RSS grew {mem['rss_growth_bytes'] / KIB / KIB:.1f} MiB, "
        f"{mem['flows_ended_early']:,} flows ended while filling",
    ]
    if mem.get("bytes_per_flow_attr") is not None:
        lines.append(
            f"- `FlowTable.bytes_per_flow` (the table's own figure): "
            f"{mem['bytes_per_flow_attr']:.0f} B"
        )
    return lines


def family_table(rows: list[dict[str, Any]]) -> list[str]:
    """Markdown table of packets/s per capture family (one column per tool/stage)."""
    stages = sorted({s for r in rows for s in r["stages"]}, key=_stage_order)
    out = [
        "| family | files | packets | " + " | ".join(stages) + " |",
        "|---|---:|---:|" + "---:|" * len(stages),
    ]
    for r in rows:
        cells = []
        for s in stages:
            m = r["stages"].get(s)
            cells.append(
                "—" if m is None else "failed" if m.get("error") else fmt_rate(m.get("pps_median"))
            )
        out.append(
            f"| {r['family']} | {r['files']} | {r['packets']:,} | " + " | ".join(cells) + " |"
        )
    return out


_ORDER = ["decode", "decode+flows+features", "replay", "nfstream"]


def _stage_order(s: str) -> int:
    return _ORDER.index(s) if s in _ORDER else len(_ORDER)


def render(res: dict[str, Any]) -> str:
    """The whole Markdown report."""
    env = res["environment"]
    lines = [
        f"# netwarden benchmark, {env['date_utc']}",
        "",
        f"- command: `{res['command']}`",
        f"- machine: {env['cpu_model']}, nproc {env['nproc']}, "
        f"load average at start {env['loadavg_start']} / end {env.get('loadavg_end', '?')}",
        f"- versions: {env['versions']}",
        f"- runs: {res['protocol']}",
        "- figures: median, min and max over the timed runs; "
        "packets/s = records in the input / wall seconds",
        "",
        "## Bench capture",
        "",
        *throughput_table(res["throughput"]),
        "",
        "## Same-run ratios",
        "",
        *ratio_lines(res["ratios"]),
        "",
        "## Memory",
        "",
        *(memory_lines(res["memory"]) if res.get("memory") else ["- not measured"]),
        "",
    ]
    if res.get("families"):
        lines += [
            "## Shared captures by family (packets/s, median)",
            "",
            *family_table(res["families"]),
            "",
            *res.get("family_notes", []),
            "",
        ]
    if res.get("notes"):
        lines += ["## Notes", "", *[f"- {n}" for n in res["notes"]], ""]
    return "\n".join(lines)
