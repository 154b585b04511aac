"""What ``netwarden replay`` alerts on labelled captures: the daemon's alert path, gate included.

``evaluate`` scores flows one by one; a sensor alerts through the alert policy and its gate
(lone flows need corroboration, floods fold into summaries).  This replays each capture of a
label-rule file the way ``netwarden replay`` does (the daemon's extractor, the default model
threshold, batches of ``REPLAY_MAX_BATCH`` in flow order, a fresh policy per capture, a flush
at the end) and counts, per capture, the attack flows (labelled by the rules) and the benign
flows that alerted, alone or in a summary alert.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from netwarden.alerts import AlertPolicy, Decided
from netwarden.alerts_ecs import flow_ids
from netwarden.app_commands import REPLAY_MAX_BATCH
from netwarden.config import AlertsConfig
from netwarden.flows.params import EndedFlows
from netwarden.scoring.model import Model, load_model

from .captures import extract
from .rules import DROP, label_flows, load_rules

BENIGN = "BENIGN"


def _alerted_ids(outs: list[Decided | None]) -> set[str]:
    ids: set[str] = set()
    for out in outs:
        if out is not None and out.alerted.any():
            ids.update(flow_ids(out.flows.meta[out.alerted]))
    return ids


def _replay(model: Model, policy: AlertPolicy, flows: EndedFlows) -> set[str]:
    outs: list[Decided | None] = []
    for i in range(0, len(flows), REPLAY_MAX_BATCH):
        part = flows.take(np.arange(i, min(i + REPLAY_MAX_BATCH, len(flows))))
        outs.append(policy.decide(part, model.score(part.features), model.explain))
    outs.append(policy.flush())
    return _alerted_ids(outs)


def replay_alerts(model_dir: Path, rules_paths: list[Path], *,
                  gate: bool = True) -> dict[str, Any]:
    """Per capture and per family folder (``attack/scan``, ``benign``, ...): flows, attack
    flows and benign flows alerted.  ``gate=False``: every flow over the threshold alerts."""
    model = load_model(model_dir, providers="cpu")
    gate_cfg = AlertsConfig().gate() if gate else None
    per: dict[str, Any] = {}
    fam: dict[str, Counter[str]] = {}
    for rp in rules_paths:
        caps = {c.path: c for c in load_rules(rp)}
        for path, flows in extract(list(caps), model.manifest.flow):
            cap = caps[Path(path)]
            if len(flows) == 0:
                continue
            labels = np.array(label_flows(flows.meta, cap, int(flows.meta["first_ts_ns"].min())))
            policy = AlertPolicy(model.manifest, threshold=model.threshold, gate=gate_cfg)
            hit = np.isin(flow_ids(flows.meta), list(_replay(model, policy, flows)))
            attack = (labels != BENIGN) & (labels != DROP)
            row = Counter(flows=len(flows), alerted=int(hit.sum()),
                          attack=int(attack.sum()), attack_alerted=int((hit & attack).sum()),
                          benign=int((labels == BENIGN).sum()),
                          benign_alerted=int((hit & (labels == BENIGN)).sum()))
            group = str(Path(path).parent.relative_to(Path(path).parents[1])
                        if Path(path).parent.name != "benign" else "benign")
            per[Path(path).name] = {"family": group, **row}
            fam.setdefault(group, Counter()).update(row)
    return {"model": str(model_dir), "threshold": model.threshold, "gate": gate,
            "per_capture": per, "per_family": {k: dict(v) for k, v in sorted(fam.items())}}
