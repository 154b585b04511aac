"""What a pipeline run did: counts by reason and label, per-file frames, and the helpers that
derive a flow's or an alert's label.  Plain data: the CLI prints it, tests and benchmarks
read it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .stages import Document


@dataclass
class Summary:
    """What a run did (the replay summary; also returned by :meth:`Pipeline.run`)."""

    packets: int = 0
    bytes: int = 0
    flows: int = 0
    flows_by_reason: Counter[str] = field(default_factory=Counter)
    flows_by_label: Counter[str] = field(default_factory=Counter)
    alerts_by_label: Counter[str] = field(default_factory=Counter)  # alert documents
    flows_alerted_by_label: Counter[str] = field(default_factory=Counter)  # alone or summarised
    skipped: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0
    files: dict[str, int] = field(default_factory=dict)  # frames per input file (file sources)

    @property
    def alerts(self) -> int:
        return sum(self.alerts_by_label.values())

    @property
    def flows_alerted(self) -> int:
        return sum(self.flows_alerted_by_label.values())

    def to_dict(self) -> dict[str, Any]:
        rate = self.packets / self.elapsed_s if self.elapsed_s > 0 else 0.0
        return {"packets": self.packets, "bytes": self.bytes, "flows": self.flows,
                "alerts": self.alerts, "flows_by_reason": dict(self.flows_by_reason),
                "flows_by_label": dict(self.flows_by_label),
                "alerts_by_label": dict(self.alerts_by_label),
                "flows_alerted": self.flows_alerted,
                "flows_alerted_by_label": dict(self.flows_alerted_by_label),
                "skipped": dict(self.skipped),
                "errors": dict(self.errors), "elapsed_s": round(self.elapsed_s, 3),
                "packets_per_s": round(rate, 1), "files": dict(self.files)}

def add_counts(counter: Counter[str], names: Sequence[str], counts: Any,
               metric: Any = None) -> None:
    """Add each non-zero ``counts[i]`` under ``names[i]`` to ``counter`` and, when given, to
    the counter ``metric`` labelled ``reason=names[i]``.

    >>> c = Counter(); add_counts(c, ["fin", "rst", "idle"], np.array([2, 0, 5])); c
    Counter({'idle': 5, 'fin': 2})
    """
    for name, count in zip(names, np.asarray(counts).tolist(), strict=False):
        if count:
            counter[name] += count
            if metric is not None:
                metric.labels(reason=name).inc(count)


def flow_label_index(benign_index: int, scores: Any, threshold: float) -> Any:
    """Per flow, the class index it is counted under: the top attack class when the attack
    score reaches ``threshold`` (the flow alerts, unless allowlisted), else the benign class."""
    attack = np.asarray(scores.attack_score) >= threshold
    return np.where(attack, scores.attack_idx, benign_index)


def alert_label(doc: Document) -> str:
    """The label of an alert document (``netwarden.label``, else ``rule.name``).

    >>> alert_label({"netwarden": {"label": "PortScan"}})
    'PortScan'
    """
    nw = doc.get("netwarden")
    if isinstance(nw, dict) and isinstance(nw.get("label"), str):
        return str(nw["label"])
    rule = doc.get("rule")
    if isinstance(rule, dict) and isinstance(rule.get("name"), str):
        return str(rule["name"])
    return "unknown"
