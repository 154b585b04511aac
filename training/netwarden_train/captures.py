"""Flows from labelled captures, cut and measured by the daemon's own extractor.

``netwarden.extract.extract_flows`` replays each capture through the same decode, flow
table and feature code the daemon serves with, so what is trained on is what is scored.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from netwarden.flows.params import EndedFlows, FlowParams

from .manifest import sha256_file
from .rules import DROP, CaptureRules, label_flows, load_rules
from .table import N_FEATURES, FlowTable

log = logging.getLogger(__name__)


def extract(paths: list[Path], params: FlowParams) -> Iterator[tuple[Path, EndedFlows]]:
    """All ended flows per capture (batches of one capture concatenated)."""
    from netwarden.extract import extract_flows  # the daemon's extractor (no torch there)

    parts: dict[Path, list[EndedFlows]] = {}
    for path, flows in extract_flows(paths, params=params):
        parts.setdefault(Path(path), []).append(flows)
    for p in paths:
        got = parts.get(Path(p), [])
        if not got:
            yield p, EndedFlows.empty(N_FEATURES)
            continue
        yield (
            p,
            EndedFlows(
                np.concatenate([g.meta for g in got]), np.concatenate([g.features for g in got])
            ),
        )


def table_for(cap: CaptureRules, flows: EndedFlows) -> tuple[FlowTable, Counter[str]]:
    """Label one capture's flows; dropped flows are counted, not kept."""
    if len(flows) == 0:
        return FlowTable.empty(), Counter()
    t0 = int(flows.meta["first_ts_ns"].min())
    labels = np.array(label_flows(flows.meta, cap, t0))
    counts = Counter(labels.tolist())
    keep = labels != DROP
    n = int(keep.sum())
    name = cap.path.name
    t = FlowTable(
        flows.features[keep].astype(np.float64),
        labels[keep],
        labels[keep],
        np.full(n, name),
        np.full(n, f"capture:{name}"),
        np.full(n, "capture"),
    )
    return t, counts


def load_captures(
    rules_path: Path, params: FlowParams | None = None
) -> tuple[FlowTable, dict[str, Any], dict[str, str]]:
    """Every capture of a rules file -> one FlowTable, a per-capture summary, file hashes."""
    caps = load_rules(rules_path)
    by_path = {c.path: c for c in caps}
    tables, summary, files = [], {}, {}
    for path, flows in extract([c.path for c in caps], params or FlowParams()):
        cap = by_path[Path(path)]
        t, counts = table_for(cap, flows)
        tables.append(t)
        summary[str(path)] = {"flows": len(flows), "labels": dict(counts)}
        files[str(path)] = sha256_file(path)
        log.info("%s: %d flows %s", path.name, len(flows), dict(counts))
    return FlowTable.concat(tables), summary, files
