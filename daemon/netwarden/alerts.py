"""The alert policy: scores in, ECS alert documents (and optionally a flow log) out.

A flow alerts when ``1 - P(benign) >= threshold`` and neither endpoint is in an allowlisted
CIDR (allowlisted would-be alerts are counted in ``alerts_suppressed{reason="allowlist"}``).
With a :class:`~netwarden.alerts_gate.GateConfig` the alerting flows then pass the alert gate
(corroboration of lone flows, aggregation of floods: :mod:`netwarden.alerts_gate`).
Thresholding and the allowlist are vectorised over the batch; Python dicts are built only for
the rows that become documents.  The document format is described in docs/alerts.md.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from .alerts_batch import BatchAlerts
from .alerts_ecs import as_flow_log, flow_fields
from .alerts_gate import AlertGate, Decision, GateConfig, Gated, take_scores
from .alerts_reasons import Explainer, message
from .alerts_summary import summary_doc
from .features.cic_schema import CIC_SCHEMA
from .features.schema import FeatureSchema
from .flows.params import EndedFlows
from .metrics import Metrics
from .packets import IPV4_MAPPED_PREFIX
from .scoring.manifest import Manifest
from .scoring.model import Scores


def _halves(x: int) -> tuple[np.uint64, np.uint64]:
    return np.uint64(x >> 64), np.uint64(x & 0xFFFF_FFFF_FFFF_FFFF)


_MAPPED_NET = ipaddress.IPv6Network("::ffff:0:0/96")
_S32, _MAPPED_TOP = np.uint64(32), IPV4_MAPPED_PREFIX >> np.uint64(32)

Cidr = tuple[np.uint64, np.uint64, np.uint64, np.uint64, bool]
Explain = Callable[[npt.NDArray[np.float32]], "npt.NDArray[np.float32] | None"]


@dataclass
class Decided:
    """What the policy made of scored flows: documents, and per decided row whether it
    alerted (alone or in a summary).  ``flows``/``scores`` are the decided rows: the batch
    (minus nothing) plus held lone flows decided now; rows still held are in neither list."""

    alerts: list[dict[str, Any]]
    flow_log: list[dict[str, Any]]
    flows: EndedFlows
    scores: Scores
    alerted: npt.NDArray[np.bool_]


def parse_cidr(cidr: str) -> Cidr:
    """(net_hi, net_lo, mask_hi, mask_lo, v6_only) of a CIDR in the IPv4-mapped 128-bit space.

    ``v6_only``: an IPv6 network that is not inside ``::ffff:0:0/96`` (``::/0``, say) matches
    IPv6 addresses only, never the IPv4 addresses stored in that range.

    >>> [hex(int(v)) for v in parse_cidr("10.0.0.0/8")[:4]]
    ['0x0', '0xffff0a000000', '0xffffffffffffffff', '0xffffffffff000000']
    """
    try:
        net = ipaddress.ip_network(cidr, strict=False)
    except ValueError as e:
        raise ValueError(f"allowlist CIDR {cidr!r} is not valid: {e}") from None
    if net.version == 4:
        addr, plen = int(IPV4_MAPPED_PREFIX) | int(net.network_address), 96 + net.prefixlen
        v6_only = False
    else:
        addr, plen = int(net.network_address), net.prefixlen
        v6_only = not net.subnet_of(_MAPPED_NET)
    mask = ((1 << 128) - 1) ^ ((1 << (128 - plen)) - 1)
    return (*_halves(addr), *_halves(mask), v6_only)


class AlertPolicy:
    """Turns scored flows into alert documents (and flow-log documents when asked).

    Args:
        manifest: the model's manifest (classes, benign class, benign statistics, name).
        threshold: alert when ``1 - P(benign) >= threshold`` (the model's threshold in force).
        allowlist_cidrs: flows with either endpoint in one of these never alert.
        emit_flows: also return one flow-log document per flow.
        community_id_seed: Community ID seed (0 is the spec's default).
        schema: the running feature schema (feature names and units for reasons).
        metrics: counts alerts by label and suppressed alerts by reason.
        top_k: reasons per alert.
        gate: corroboration and aggregation rules (None: every alerting flow alerts alone).
    """

    def __init__(
        self,
        manifest: Manifest,
        *,
        threshold: float,
        allowlist_cidrs: Sequence[str] = (),
        emit_flows: bool = False,
        community_id_seed: int = 0,
        schema: FeatureSchema = CIC_SCHEMA,
        metrics: Metrics | None = None,
        top_k: int = 3,
        gate: GateConfig | None = None,
    ) -> None:
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        if not 0 <= community_id_seed <= 0xFFFF:
            raise ValueError(f"community_id_seed must be in [0, 65535], got {community_id_seed}")
        self.manifest = manifest
        self.threshold = threshold
        self.emit_flows = emit_flows
        self.seed = community_id_seed
        self.top_k = top_k
        self._metrics = metrics
        self._allow = [parse_cidr(c) for c in allowlist_cidrs]
        self.gate = AlertGate(gate) if gate is not None else None
        self._explainer = Explainer.build(manifest, schema)
        self._model = {"name": manifest.name, "version": manifest.version}
        self._batch = BatchAlerts(
            manifest.classes,
            threshold=threshold,
            model=self._model,
            explainer=self._explainer,
            seed=community_id_seed,
            top_k=top_k,
        )

    def allowlisted(self, meta: npt.NDArray[np.void]) -> npt.NDArray[np.bool_]:
        """Rows whose source or destination lies in an allowlisted CIDR."""
        hit = np.zeros(meta.shape[0], dtype=bool)
        for net_hi, net_lo, m_hi, m_lo, v6_only in self._allow:
            for side in ("src", "dst"):
                hi, lo = meta[f"{side}_hi"], meta[f"{side}_lo"]
                inside = ((hi & m_hi) == net_hi) & ((lo & m_lo) == net_lo)
                if v6_only:
                    inside &= ~((hi == 0) & ((lo >> _S32) == _MAPPED_TOP))  # not IPv4
                hit |= inside
        return hit

    def documents(
        self, flows: EndedFlows, scores: Scores
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Alert documents and flow-log documents (empty unless ``emit_flows``): the lists of
        :meth:`decide`."""
        out = self.decide(flows, scores)
        return out.alerts, out.flow_log

    def decide(self, flows: EndedFlows, scores: Scores, explain: Explain | None = None) -> Decided:
        """Threshold, allowlist and gate a scored batch; build the documents.

        The alerts are :class:`~netwarden.sinks.jsonl.EncodedDoc` dicts that carry their JSON
        line, built for the whole batch at once (:mod:`netwarden.alerts_batch`).  ``explain``
        gives the attributions of the rows that alert when ``scores`` has none (a model with
        a score-only graph computes them only for those).
        """
        _, allow, idx = self._select(flows, scores)
        if self._metrics is not None and allow.any():
            self._metrics.alerts_suppressed.labels(reason="allowlist").inc(int(allow.sum()))
        if self.gate is None:
            decision = np.zeros(len(flows), np.uint8)
            decision[idx] = Decision.EMIT
            return self._render(Gated(flows, scores, decision, [], []), explain)
        alerting = np.zeros(len(flows), bool)
        alerting[idx] = True
        return self._render(self.gate.admit(flows, scores, alerting), explain)

    def tick(self, now_ns: int) -> Decided | None:
        """Time passed without flows (live): held flows time out, aggregate windows close."""
        g = self.gate.tick(now_ns) if self.gate is not None else None
        return self._render(g, None) if g is not None else None

    def flush(self) -> Decided | None:
        """End of input or a model swap: decide every held flow, emit every open summary."""
        g = self.gate.flush() if self.gate is not None else None
        return self._render(g, None) if g is not None else None

    def adopt(self, old: AlertPolicy) -> bool:
        """Take over ``old``'s gate state (held flows, open summaries) on a reload, when both
        gates have the same rules and the models the same classes; False when it cannot (the
        caller then flushes ``old``)."""
        if (self.gate is None or old.gate is None or self.gate.cfg != old.gate.cfg
                or self.manifest.classes != old.manifest.classes):
            return False
        self.gate = old.gate
        return True

    def min_pending_seq(self, part: int) -> int | None:
        """Lowest first frame sequence of partition ``part`` among flows the gate still
        holds (held, or in an open aggregate): the Kafka commit must not pass it."""
        return self.gate.min_pending_seq(part) if self.gate is not None else None

    def _render(self, g: Gated, explain: Explain | None) -> Decided:
        emit = np.flatnonzero(g.decision == Decision.EMIT)
        alerts = self._alert_docs(g.flows, g.scores, emit, explain)
        by_row = dict(zip(emit.tolist(), alerts, strict=True))
        if self.gate is not None:
            cfg = self.gate.cfg
            alerts += [summary_doc(a, classes=self.manifest.classes, threshold=self.threshold,
                                   model=self._model, window_s=cfg.window_s,
                                   after=cfg.aggregate_after) for a in g.summaries]
        self._count(g, emit)
        flow_log = self._flow_log(g, by_row) if self.emit_flows else []
        alerted = (g.decision == Decision.EMIT) | (g.decision == Decision.AGGREGATED)
        return Decided(alerts, flow_log, g.flows, g.scores, alerted)

    def _alert_docs(self, flows: EndedFlows, scores: Scores, emit: npt.NDArray[np.intp],
                    explain: Explain | None) -> list[dict[str, Any]]:
        if emit.size == 0:
            return []
        if scores.attributions is not None or explain is None:
            return list(self._batch.documents(flows, scores, emit))
        sub = EndedFlows(flows.meta[emit], flows.features[emit])
        sub_scores = replace(take_scores(scores, emit), attributions=explain(sub.features))
        return list(self._batch.documents(sub, sub_scores, np.arange(emit.size)))

    def documents_per_row(self, flows: EndedFlows, scores: Scores) -> list[dict[str, Any]]:
        """The alert documents built row by row from plain dicts: the straightforward
        reference that :meth:`documents` must equal (tests compare them); counts nothing."""
        _, _, idx = self._select(flows, scores)
        reasons, method = self._explainer.reasons(
            flows.features[idx],
            scores.attributions[idx] if scores.attributions is not None else None,
            k=self.top_k,
        )
        rows = flows.meta[idx].tolist()  # plain ints: only the rows that become docs
        return [
            self._alert_doc(row, scores, i, reasons[j], method)
            for j, (i, row) in enumerate(zip(idx.tolist(), rows, strict=True))
        ]

    def _select(
        self, flows: EndedFlows, scores: Scores
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_], npt.NDArray[np.intp]]:
        """(over the threshold, allowlisted among those, indices of the rows that alert)."""
        over = scores.attack_score >= self.threshold  # NaN scores never alert
        allow = self.allowlisted(flows.meta) & over if self._allow else np.zeros_like(over)
        return over, allow, np.flatnonzero(over & ~allow)

    def _flow_log(self, g: Gated, by_row: dict[int, dict[str, Any]]) -> list[dict[str, Any]]:
        over = g.scores.attack_score >= self.threshold
        agg_ids = g.agg_ids()
        return [
            self._flow_doc(row, g.scores, i, by_row.get(i), bool(over[i]), int(g.decision[i]),
                           agg_ids.get(i))
            for i, row in enumerate(g.flows.meta.tolist())
            if g.decision[i] != Decision.HELD
        ]

    def _label(self, scores: Scores, i: int, over: bool) -> str:
        """Over the threshold: the most probable attack class; else the most probable class."""
        idx = scores.attack_idx[i] if over else scores.label_idx[i]
        return self.manifest.classes[int(idx)]

    def _scoring(self, scores: Scores, i: int, label: str) -> dict[str, Any]:
        s = float(scores.attack_score[i])
        return {
            "label": label,
            "score": round(s, 6) if s == s else None,
            "threshold": self.threshold,
            "model": dict(self._model),
        }

    def _alert_doc(
        self,
        row: tuple[Any, ...],
        scores: Scores,
        i: int,
        reasons: list[dict[str, Any]],
        method: str,
    ) -> dict[str, Any]:
        doc = flow_fields(row, kind="alert", dataset="netwarden.alert", seed=self.seed)
        label = self._label(scores, i, True)
        doc["netwarden"].update(
            self._scoring(scores, i, label), reasons=reasons, explanation_method=method
        )
        doc["message"] = message(label, float(scores.attack_score[i]), reasons)
        return doc

    def _flow_doc(
        self,
        row: tuple[Any, ...],
        scores: Scores,
        i: int,
        alert_doc: dict[str, Any] | None,
        over: bool,
        decision: int,
        agg_id: str | None,
    ) -> dict[str, Any]:
        if alert_doc is not None:  # same fields as the alert, reasons included
            doc = as_flow_log(alert_doc)
            doc["netwarden"]["alert"] = True
            return doc
        doc = flow_fields(row, kind="event", dataset="netwarden.flow", seed=self.seed)
        alerted = decision == Decision.AGGREGATED
        doc["netwarden"].update(self._scoring(scores, i, self._label(scores, i, over)),
                                alert=alerted)
        if agg_id is not None:
            doc["netwarden"]["aggregate_id"] = agg_id
        elif decision == Decision.UNCORROBORATED:
            doc["netwarden"]["suppressed"] = "uncorroborated"
        elif over:
            doc["netwarden"]["suppressed"] = "allowlist"
        return doc

    def _count(self, g: Gated, emit: npt.NDArray[np.intp]) -> None:
        m = self._metrics
        if m is None:
            return
        labels = g.scores.attack_idx[emit].tolist() + [a.label_idx for a in g.summaries]
        counts = np.bincount(np.asarray(labels, np.intp), minlength=len(self.manifest.classes))
        for label, n in zip(self.manifest.classes, counts.tolist(), strict=True):
            if n:
                m.alerts.labels(label=label).inc(n)
        for reason, d in (("aggregated", Decision.AGGREGATED),
                          ("uncorroborated", Decision.UNCORROBORATED)):
            n = int(np.count_nonzero(g.decision == d))
            if n:
                m.alerts_suppressed.labels(reason=reason).inc(n)
        if self.gate is not None:
            m.alerts_held.set(self.gate.held)
