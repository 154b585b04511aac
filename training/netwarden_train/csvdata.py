"""Read flow CSVs (CICFlowMeter / CIC-IDS2017, any known header variant) into a FlowTable."""

from __future__ import annotations

import csv
import logging
from collections import Counter
from pathlib import Path

import numpy as np
from netwarden.features.cic_schema import CIC_SCHEMA

from .columns import MISSING_DEFAULTS, HeaderMap, check_required, map_header
from .labels import family, is_attempted
from .table import FlowTable

log = logging.getLogger(__name__)


def _to_float(s: str) -> float:
    try:
        return float(s)
    except ValueError:  # "Infinity", "NaN" parse; empty or junk cells become NaN
        return float("nan")


def _group_key(row: list[str], hm: HeaderMap, group_by: str, window_s: float) -> str:
    ts = row[hm.id_cols["timestamp"]] if "timestamp" in hm.id_cols else ""
    day = ts[:10]
    if group_by == "day":
        return day
    src = row[hm.id_cols["src"]] if "src" in hm.id_cols else ""
    dst = row[hm.id_cols["dst"]] if "dst" in hm.id_cols else ""
    if group_by == "host":
        return f"{src}>{dst}"
    # time_window: same hosts within the same window of the same day (an attack burst)
    minutes = _minutes(ts[11:])
    return f"{day}|{src}>{dst}|{int(minutes * 60 // window_s)}"


def _minutes(hms: str) -> float:
    parts = hms.split(":")
    try:
        return int(parts[0]) * 60 + int(parts[1]) + (float(parts[2]) / 60 if len(parts) > 2 else 0)
    except (ValueError, IndexError):
        return 0.0


def read_csv(
    path: Path, *, group_by: str = "time_window", window_s: float = 600.0, counts: Counter[str]
) -> FlowTable:
    """Read one flow CSV; unknown or "attempted" labels are dropped and counted in ``counts``.

    Raises:
        ValueError: the header is not a CICFlowMeter flow header.
    """
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        hm = map_header(header)
        check_required(hm)
        rows = list(reader)
    if hm.missing:
        log.info("%s: features filled with defaults: %s", path.name, ", ".join(hm.missing))
    x = np.empty((len(rows), len(CIC_SCHEMA)))
    for j, col in enumerate(hm.feature_cols):
        if col is None:
            x[:, j] = MISSING_DEFAULTS.get(CIC_SCHEMA.names[j], 0.0)
        else:
            x[:, j] = [_to_float(r[col]) if col < len(r) else float("nan") for r in rows]
    raw = np.array([r[hm.label_col].strip() if hm.label_col < len(r) else "" for r in rows])
    fam = np.array([family(lbl) or "" for lbl in raw])
    keep = fam != ""
    for lbl in raw[~keep]:
        counts["attempted_label" if is_attempted(lbl) else "unknown_label"] += 1
    groups = np.array([_group_key(r, hm, group_by, window_s) for r in rows])
    n = int(keep.sum())
    table = FlowTable(
        x[keep], raw[keep], fam[keep], np.full(n, path.name), groups[keep], np.full(n, "csv")
    )
    return table


def read_csvs(
    paths: list[Path], *, group_by: str = "time_window", window_s: float = 600.0
) -> tuple[FlowTable, Counter[str]]:
    """Read several CSVs (a directory expands to its ``*.csv``, reference headers skipped)."""
    counts: Counter[str] = Counter()
    tables = []
    for p in expand(paths):
        tables.append(read_csv(p, group_by=group_by, window_s=window_s, counts=counts))
    return FlowTable.concat(tables), counts


def expand(paths: list[Path]) -> list[Path]:
    """Directories become their sorted ``*.csv`` files, minus header-only reference files."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(q for q in sorted(p.glob("*.csv")) if "header_reference" not in q.name)
        else:
            out.append(p)
    return out
