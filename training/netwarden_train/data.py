"""Assemble the training table from a config: CSV rows, labelled capture flows, cleaning."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .clean import CleanReport, clean
from .config import DataConfig
from .csvdata import expand, read_csvs
from .labels import BENIGN
from .manifest import sha256_file
from .table import FlowTable

log = logging.getLogger(__name__)


@dataclass
class DataBundle:
    table: FlowTable
    classes: list[str]
    y: np.ndarray
    report: CleanReport
    label_drops: Counter[str]
    files: dict[str, str] = field(default_factory=dict)  # path -> sha256
    capture_summary: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        fam_counts = Counter(self.table.family.tolist())
        by_origin = {
            o: dict(Counter(self.table.family[self.table.origin == o].tolist()))
            for o in np.unique(self.table.origin).tolist()
        }
        return {
            "rows": len(self.table),
            "classes": self.classes,
            "rows_per_class": {c: fam_counts.get(c, 0) for c in self.classes},
            "rows_per_origin": by_origin,
            "raw_labels": dict(Counter(self.table.raw_label.tolist())),
            "label_drops": dict(self.label_drops),
            "cleaning": self.report.to_dict(),
            "captures": self.capture_summary,
            "files_sha256": self.files,
        }


def class_list(families: np.ndarray) -> list[str]:
    """BENIGN first, then the attack families alphabetically."""
    rest = sorted(set(families.tolist()) - {BENIGN})
    return [BENIGN, *rest]


def load(cfg: DataConfig) -> DataBundle:
    """Read every configured source, clean, and encode labels."""
    paths = expand([Path(p) for p in cfg.csv])
    csv_t, drops = read_csvs(paths, group_by=cfg.group_by, window_s=cfg.window_s)
    files = {str(p): sha256_file(p) for p in paths}
    tables = [csv_t]
    cap_summary: dict[str, Any] = {}
    if cfg.captures:
        from .captures import load_captures

        cap_t, cap_summary, cap_files = load_captures(Path(cfg.captures))
        tables.append(cap_t)
        files.update(cap_files)
    if cfg.synth_seeds > 0:
        from .synth_traffic import load_synth

        tables.append(load_synth(cfg.synth_seeds))
    t, rep = clean(
        FlowTable.concat(tables),
        dedupe=cfg.dedupe,
        max_copies={"csv": 1, "capture": cfg.capture_max_copies},
    )
    if cfg.max_rows_per_class > 0:
        t = _cap_rows(t, cfg.max_rows_per_class)
    classes = class_list(t.family)
    y = np.array([classes.index(f) for f in t.family.tolist()], dtype=np.int64)
    return DataBundle(t, classes, y, rep, drops, files, cap_summary)


def _cap_rows(t: FlowTable, cap: int) -> FlowTable:
    rng = np.random.default_rng(0)
    keep = []
    for fam in np.unique(t.family):
        idx = np.flatnonzero(t.family == fam)
        keep.append(idx if len(idx) <= cap else rng.choice(idx, cap, replace=False))
    return t.take(np.sort(np.concatenate(keep)))
