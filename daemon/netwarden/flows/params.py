"""Flow-assembly parameters and the record of an ended flow.

The parameters a model was trained with travel in its manifest (``flow`` section) and the
daemon uses them, so served flows are cut exactly like the training flows.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt


class EndReason(enum.IntEnum):
    """Why a flow left the flow table (the ``reason`` label of ``flows_ended_total``)."""

    FIN = 0  # FIN seen from both sides, then the last ACK
    RST = 1
    IDLE = 2  # no packet for idle_timeout_s (packet clock, or wall clock on a quiet link)
    ACTIVE = 3  # flow lasted active_timeout_s: cut, a new flow starts with the next packet
    EVICTED = 4  # table full: the least recently seen flow made room
    END_OF_INPUT = 5  # the source ended (end of file, shutdown)
    REVOKED = 6  # Kafka partition revoked in a rebalance

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True, slots=True)
class FlowParams:
    """Bounds and timeouts of the flow table (units in the names)."""

    # CIC-IDS2017 was cut with CICFlowMeter's 120 s flow timeout, counted from the flow's
    # first packet: that is our active timeout.  Matching it keeps served flows like the
    # training flows.
    idle_timeout_s: float = 120.0
    active_timeout_s: float = 120.0
    activity_timeout_s: float = 5.0  # CICFlowMeter's active/idle split (Active*/Idle* features)
    max_flows: int = 262_144
    # Late packets (duplicate ACKs, repeated FINs) still join a closed TCP flow for this long;
    # with 0 a duplicate ACK 0.5 ms after the close became a 1-packet flow on the CIC SQLi
    # capture, which CICFlowMeter does not produce (docs/features.md, parity).
    tcp_close_grace_s: float = 1.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FlowParams:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)


# Identity and bookkeeping of an ended flow: never model inputs.
FLOW_META_DTYPE = np.dtype(
    [
        ("src_hi", np.uint64),  # forward = the first packet's sender
        ("src_lo", np.uint64),
        ("dst_hi", np.uint64),
        ("dst_lo", np.uint64),
        ("sport", np.uint16),
        ("dport", np.uint16),
        ("proto", np.uint8),
        ("ip_version", np.uint8),
        ("vlan", np.uint16),
        ("icmp_type", np.uint8),  # of the first packet (Community ID needs it)
        ("icmp_code", np.uint8),
        ("end_reason", np.uint8),  # EndReason
        ("first_ts_ns", np.int64),
        ("last_ts_ns", np.int64),
        ("fwd_packets", np.int64),
        ("bwd_packets", np.int64),
        ("fwd_bytes", np.int64),  # IP-layer bytes
        ("bwd_bytes", np.int64),
        ("src_part", np.int32),  # partition of the first packet, -1 if none
        ("first_seq", np.int64),  # src_seq of the first packet
        ("last_seq", np.int64),  # src_seq of the last packet
    ]
)


@dataclass(frozen=True, slots=True)
class EndedFlows:
    """A batch of flows that left the table: identity rows and their feature matrix."""

    meta: npt.NDArray[np.void]  # FLOW_META_DTYPE, shape (n,)
    features: npt.NDArray[np.float32]  # shape (n, n_features), schema order

    def __len__(self) -> int:
        return int(self.meta.shape[0])

    def take(self, idx: npt.NDArray[np.intp]) -> EndedFlows:
        """The rows ``idx``."""
        return EndedFlows(self.meta[idx], self.features[idx])

    @staticmethod
    def concat(parts: list[EndedFlows]) -> EndedFlows:
        """Rows of several batches one after the other (the one batch itself when alone)."""
        if len(parts) == 1:
            return parts[0]
        return EndedFlows(np.concatenate([p.meta for p in parts]),
                          np.concatenate([p.features for p in parts]))

    @staticmethod
    def empty(n_features: int) -> EndedFlows:
        return EndedFlows(
            np.zeros(0, dtype=FLOW_META_DTYPE), np.zeros((0, n_features), dtype=np.float32)
        )
