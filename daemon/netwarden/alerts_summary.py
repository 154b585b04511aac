"""The summary alert of an aggregate: the flows of one (label, address, side) that the gate
folded together during one window (:mod:`netwarden.alerts_gate`).  Format: docs/alerts.md."""

from __future__ import annotations

from typing import Any

from .alerts_aggregate import Aggregate
from .alerts_ecs import ECS_VERSION, format_addr, is_v4_mapped, rfc3339_us, transport_name


def summary_doc(agg: Aggregate, *, classes: tuple[str, ...], threshold: float,
                model: dict[str, str], window_s: float, after: int) -> dict[str, Any]:
    """The ECS alert document of a closed aggregate.

    The aggregated address is ``source.ip`` or ``destination.ip`` (``netwarden.aggregate.by``
    says which); the other side is absent, since it is many hosts.
    """
    label = classes[agg.label_idx]
    addr = format_addr(agg.addr_hi, agg.addr_lo)
    protos = sorted(agg.protos)
    network: dict[str, Any] = {
        "type": "ipv4" if is_v4_mapped(agg.addr_hi, agg.addr_lo) else "ipv6",
        "packets": agg.packets,
        "bytes": agg.bytes,
    }
    if len(protos) == 1:
        network["transport"] = transport_name(protos[0])
    to = "to" if agg.side == "destination" else "from"
    return {
        "@timestamp": rfc3339_us(agg.last_ns),
        "ecs": {"version": ECS_VERSION},
        "event": {
            "kind": "alert",
            "category": ["network", "intrusion_detection"],
            "type": ["info"],
            "module": "netwarden",
            "dataset": "netwarden.alert_summary",
            "id": agg.agg_id,
            "start": rfc3339_us(agg.first_ns),
            "end": rfc3339_us(agg.last_ns),
            "duration": agg.last_ns - agg.first_ns,
        },
        agg.side: {"ip": addr},
        "network": network,
        "netwarden": {
            "label": label,
            "score": round(agg.max_score, 6),
            "threshold": threshold,
            "model": dict(model),
            "aggregate": {
                "id": agg.agg_id,
                "by": f"{agg.side}.ip",
                "flows": agg.flows,
                "packets": agg.packets,
                "bytes": agg.bytes,
                "transports": [transport_name(p) for p in protos],
                "window_s": window_s,
                "alerted_individually": after,
            },
        },
        "message": (f"{label}: {agg.flows:,} more flows {to} {addr} aggregated (the first "
                    f"{after} in this {window_s:g} s window alerted one by one; highest "
                    f"score {agg.max_score:.2f})"),
    }
