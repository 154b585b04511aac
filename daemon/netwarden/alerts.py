"""The alert policy: scores in, ECS alert documents (and optionally a flow log) out.

A flow alerts when ``1 - P(benign) >= threshold`` and neither endpoint is in an allowlisted
CIDR (allowlisted would-be alerts are counted in ``alerts_suppressed{reason="allowlist"}``).
Thresholding and the allowlist are vectorised over the batch; Python dicts are built only for
the rows that become documents.  The document format is described in docs/alerts.md.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from .alerts_batch import BatchAlerts
from .alerts_ecs import as_flow_log, flow_fields
from .alerts_reasons import Explainer, message
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
        """Alert documents and flow-log documents (empty unless ``emit_flows``).

        The alerts are :class:`~netwarden.sinks.jsonl.EncodedDoc` dicts that carry their JSON
        line, built for the whole batch at once (:mod:`netwarden.alerts_batch`).
        """
        over, allow, idx = self._select(flows, scores)
        alerts: list[dict[str, Any]] = list(self._batch.documents(flows, scores, idx))
        self._count(scores.attack_idx[idx], int(allow.sum()))
        return alerts, self._flow_log(flows, scores, idx, alerts, over, allow)

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

    def _flow_log(
        self,
        flows: EndedFlows,
        scores: Scores,
        idx: npt.NDArray[np.intp],
        alerts: list[dict[str, Any]],
        over: npt.NDArray[np.bool_],
        allow: npt.NDArray[np.bool_],
    ) -> list[dict[str, Any]]:
        if not self.emit_flows:
            return []
        by_row = dict(zip(idx.tolist(), alerts, strict=True))
        return [
            self._flow_doc(row, scores, i, by_row.get(i), bool(over[i]), bool(allow[i]))
            for i, row in enumerate(flows.meta.tolist())
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
        suppressed: bool,
    ) -> dict[str, Any]:
        if alert_doc is not None:  # same fields as the alert, reasons included
            doc = as_flow_log(alert_doc)
            doc["netwarden"]["alert"] = True
            return doc
        doc = flow_fields(row, kind="event", dataset="netwarden.flow", seed=self.seed)
        doc["netwarden"].update(self._scoring(scores, i, self._label(scores, i, over)), alert=False)
        if suppressed:
            doc["netwarden"]["suppressed"] = "allowlist"
        return doc

    def _count(self, label_idx: npt.NDArray[np.intp], suppressed: int) -> None:
        if self._metrics is None:
            return
        counts = np.bincount(label_idx, minlength=len(self.manifest.classes)).tolist()
        for label, n in zip(self.manifest.classes, counts, strict=True):
            if n:
                self._metrics.alerts.labels(label=label).inc(n)
        if suppressed:
            self._metrics.alerts_suppressed.labels(reason="allowlist").inc(suppressed)
