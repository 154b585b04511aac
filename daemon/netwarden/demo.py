"""``netwarden demo``: generate benign and attack traffic, replay it, show what was detected.

The capture comes from :mod:`netwarden.demo_traffic` (seeded, so every run is the same); it is
replayed through the full pipeline with the default model, and the command prints the first
alerts, a per-label summary (label, flows, alerts) and a per-family summary (what the
generator made against what the model said).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from .alerts import Decided
from .alerts_ecs import format_addr
from .app import Hooks
from .app_build import build_pipeline, resolve_model_dir
from .app_sources import PcapSource
from .app_summary import Summary, flow_label_index
from .config import Config
from .demo_traffic import family_of, iter_families, write_demo_pcap
from .exitcodes import OK
from .flows.params import EndedFlows
from .metrics import Metrics
from .stages import Document


class DemoReport:
    """Collects alerts and per-family counts from the pipeline's ``on_scored`` (flows, labels)
    and ``on_decided`` (alerted flows, alone or in a summary) hooks."""

    def __init__(self, classes: tuple[str, ...], threshold: float, benign_index: int) -> None:
        self.alerts: list[Document] = []
        self.family_flows: Counter[str] = Counter()
        self.family_alerts: Counter[str] = Counter()
        self.family_labels: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self._classes = classes
        self._threshold = threshold
        self._benign_index = benign_index

    def on_scored(self, flows: EndedFlows, scores: Any, alerts: list[Document]) -> None:
        m = flows.meta
        labels = flow_label_index(self._benign_index, scores, self._threshold).tolist()
        for hi, lo, label in zip(m["src_hi"].tolist(), m["src_lo"].tolist(), labels,
                                 strict=True):
            fam = family_of(format_addr(hi, lo))
            self.family_flows[fam] += 1
            self.family_labels[fam][self._classes[label]] += 1

    def on_decided(self, out: Decided) -> None:
        self.alerts.extend(out.alerts)
        m = out.flows.meta[out.alerted]
        for hi, lo in zip(m["src_hi"].tolist(), m["src_lo"].tolist(), strict=True):
            self.family_alerts[family_of(format_addr(hi, lo))] += 1


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the demo; returns the exit code."""
    model_dir = resolve_model_dir(Path(args.model) if args.model else None)
    cfg = Config().with_overrides(model_dir=model_dir,
                                  alert_sinks=[args.alerts_out] if args.alerts_out else [])
    with tempfile.TemporaryDirectory(prefix="netwarden-demo-") as tmp:
        pcap = Path(args.keep_pcap) if args.keep_pcap else Path(tmp) / "demo.pcap"
        n = write_demo_pcap(pcap, seed=args.seed)
        metrics = Metrics()
        hooks = Hooks()
        with build_pipeline(cfg, metrics, source=PcapSource([pcap], metrics=metrics),
                            hooks=hooks) as pipe:
            manifest = pipe.s.model.manifest
            report = DemoReport(manifest.classes, pipe.threshold, manifest.benign_index)
            hooks.on_scored.append(report.on_scored)
            hooks.on_decided.append(report.on_decided)
            summary = pipe.run()
    out = [f"netwarden demo: {n} packets of generated traffic (seed {args.seed}) scored by "
           f"model {manifest.name} {manifest.version} from {model_dir}"]
    if args.keep_pcap:
        out.append(f"capture saved to {args.keep_pcap}")
    out += _alert_lines(report.alerts, args.max_alerts)
    out += _label_table(summary)
    out += _family_table(report)
    sys.stdout.write("\n".join(out) + "\n")
    return OK


def _alert_lines(alerts: list[Document], limit: int) -> list[str]:
    lines = ["", f"alerts ({len(alerts)}; showing {min(limit, len(alerts))}):"]
    for doc in alerts[:max(limit, 0)]:
        src, dst = doc.get("source", {}), doc.get("destination", {})
        when = str(doc.get("@timestamp", ""))[11:23]
        lines.append(f"  {when}  {src.get('ip')}:{src.get('port', '')} -> "
                     f"{dst.get('ip')}:{dst.get('port', '')}  {doc.get('message', '')}")
    if len(alerts) > limit:
        lines.append(f"  ... {len(alerts) - limit} more (--alerts-out FILE writes them all)")
    return lines


def _label_table(s: Summary) -> list[str]:
    lines = ["", f"{'label':<28}{'flows':>8}{'alerted':>8}{'alerts':>8}"]
    for label in sorted(set(s.flows_by_label) | set(s.alerts_by_label)):
        lines.append(f"{label:<28}{s.flows_by_label[label]:>8}"
                     f"{s.flows_alerted_by_label[label]:>8}{s.alerts_by_label[label]:>8}")
    lines.append(f"{'total':<28}{s.flows:>8}{s.flows_alerted:>8}{s.alerts:>8}")
    return lines


def _family_table(r: DemoReport) -> list[str]:
    lines = ["", f"{'generated family':<20}{'flows':>8}{'alerted':>8}  model's labels"]
    for fam in [*iter_families(), "other"]:
        if not r.family_flows[fam]:
            continue
        labels = ", ".join(f"{k} {v}" for k, v in r.family_labels[fam].most_common(3))
        lines.append(f"{fam:<20}{r.family_flows[fam]:>8}{r.family_alerts[fam]:>8}  {labels}")
    return lines
