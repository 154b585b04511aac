"""Bounded bidirectional flow table with online CICFlowMeter features.

:class:`FlowTable` consumes ``PACKET_DTYPE`` arrays and returns the flows that ended while
consuming them as :class:`~netwarden.flows.params.EndedFlows` (identity rows plus the float32
feature matrix in schema order).  The per-packet work is compiled (:mod:`.kernel`); this class
owns the arrays, grows them by doubling up to ``FlowParams.max_flows`` and counts ended flows
by reason.  Time is the packet clock (``ts_ns``): a replay gives identical flows.
"""

from __future__ import annotations

import logging
import secrets

import numba as nb
import numpy as np

from ..features.cic import N_FEATURES
from ..features.cic_schema import CIC_SCHEMA
from ..features.cic_state import BYTES_PER_FLOW, N_FCOLS, N_ICOLS
from ..features.schema import FeatureSchema
from ..packets import PACKET_DTYPE, PacketArray
from . import kernel as K
from .hashtab import N_KCOLS, rebuild
from .params import FLOW_META_DTYPE, EndedFlows, EndReason, FlowParams

log = logging.getLogger(__name__)

_NS = 1_000_000_000
SWEEP_INTERVAL_NS = _NS  # timeouts are checked once per second of packet time
_INITIAL_CAPACITY = 1024


def check_params(params: FlowParams) -> None:
    """Raise ValueError naming the first ``flow.<key>`` a flow table cannot work with.

    >>> check_params(FlowParams(idle_timeout_s=0))
    Traceback (most recent call last):
    ValueError: flow.idle_timeout_s: must be > 0, got 0
    """
    for key in ("idle_timeout_s", "active_timeout_s", "activity_timeout_s"):
        if not getattr(params, key) > 0:
            raise ValueError(f"flow.{key}: must be > 0, got {getattr(params, key)}")
    if params.tcp_close_grace_s < 0:
        raise ValueError(f"flow.tcp_close_grace_s: must be >= 0, got {params.tcp_close_grace_s}")
    if not 1 <= params.max_flows <= 2**30:
        raise ValueError(f"flow.max_flows: must be in [1, 2**30], got {params.max_flows}")


def _validate(params: FlowParams, schema: FeatureSchema) -> None:
    if schema.hash != CIC_SCHEMA.hash:
        raise ValueError(f"schema: only {CIC_SCHEMA.id} is implemented, got {schema.id}")
    check_params(params)


class FlowTable:
    """Flows keyed by the canonical 5-tuple + VLAN; forward = the first packet's sender.

    Args:
        params: timeouts and bound of the table.
        schema: the feature schema (only ``cicflowmeter-v1``).
        hash_seed: seed of the key hash (default: random per table). It only places keys in
            the index; the flows, their features and their order do not depend on it.
    """

    def __init__(
        self,
        params: FlowParams,
        *,
        schema: FeatureSchema = CIC_SCHEMA,
        hash_seed: int | None = None,
    ) -> None:
        _validate(params, schema)
        self.params = params
        self.schema = schema
        self._prm = np.array(
            [
                int(params.idle_timeout_s * _NS),
                int(params.active_timeout_s * _NS),
                int(params.activity_timeout_s * _NS),
                int(params.tcp_close_grace_s * _NS),
                params.max_flows,
                SWEEP_INTERVAL_NS,
                secrets.randbits(63) if hash_seed is None else hash_seed & (2**63 - 1),
            ],
            dtype=np.int64,
        )
        self._ctrl = np.array([0, -1, -1, 0, np.iinfo(np.int64).min, 0], dtype=np.int64)
        self.ended_by_reason: dict[EndReason, int] = {r: 0 for r in EndReason}
        self._keys = np.zeros((0, N_KCOLS), dtype=np.uint64)
        self._ti = np.zeros((0, K.N_TCOLS), dtype=np.int64)
        self._ci = np.zeros((0, N_ICOLS), dtype=np.int64)
        self._cf = np.zeros((0, N_FCOLS), dtype=np.float64)
        self._free = np.zeros(0, dtype=np.int32)
        self._due = np.zeros(0, dtype=np.int64)
        self._index = np.full(2, -1, dtype=np.int32)
        self._alloc(min(params.max_flows, _INITIAL_CAPACITY))
        self._out_meta = np.zeros(1024, dtype=FLOW_META_DTYPE)
        self._out_feat = np.zeros((1024, N_FEATURES), dtype=np.float32)

    # ---- storage ------------------------------------------------------------------------
    def _alloc(self, cap: int) -> None:
        n_old = self._ti.shape[0]
        keys = np.zeros((cap, N_KCOLS), dtype=np.uint64)
        ti = np.zeros((cap, K.N_TCOLS), dtype=np.int64)
        ci = np.zeros((cap, N_ICOLS), dtype=np.int64)
        cf = np.zeros((cap, N_FCOLS), dtype=np.float64)
        free = np.zeros(cap, dtype=np.int32)
        due = np.full(cap, K.NEVER, dtype=np.int64)
        keys[:n_old], ti[:n_old] = self._keys, self._ti
        ci[:n_old], cf[:n_old], due[:n_old] = self._ci, self._cf, self._due
        # new slots on the free stack, lowest slot on top (popped first)
        top = int(self._ctrl[K.C_FREE_TOP])
        free[:top] = self._free[:top]
        new_slots = np.arange(cap - 1, n_old - 1, -1, dtype=np.int32)
        free[top : top + new_slots.size] = new_slots
        self._ctrl[K.C_FREE_TOP] = top + new_slots.size
        size = 1 << max(1, int(2 * cap - 1).bit_length())  # power of two >= 2 * cap
        index = np.full(size, -1, dtype=np.int32)
        rebuild(index, keys, ti[:, K.T_STATE])
        self._keys, self._ti, self._ci, self._cf = keys, ti, ci, cf
        self._free, self._index, self._due = free, index, due
        if n_old:
            log.debug("flow table grown from %d to %d slots", n_old, cap)

    def _grow_out(self, need: int) -> None:
        """Make room for ``need`` output rows (doubling; a no-op when there is room)."""
        if need <= self._out_meta.shape[0]:
            return  # expire() ticks every 0.5 s: growing per call doubled to 40 GiB
        cap = max(need, 2 * self._out_meta.shape[0])
        meta = np.empty(cap, dtype=FLOW_META_DTYPE)
        feat = np.empty((cap, N_FEATURES), dtype=np.float32)
        n = int(self._ctrl[K.C_OUT_N])
        meta[:n], feat[:n] = self._out_meta[:n], self._out_feat[:n]
        self._out_meta, self._out_feat = meta, feat

    def _state(self) -> tuple[np.ndarray, ...]:
        return (
            self._keys,
            self._ti,
            self._ci,
            self._cf,
            self._index,
            self._free,
            self._ctrl,
            self._due,
        )

    def _take(self) -> EndedFlows:
        n = int(self._ctrl[K.C_OUT_N])
        self._ctrl[K.C_OUT_N] = 0
        meta, feat = self._out_meta[:n].copy(), self._out_feat[:n].copy()
        for reason, count in enumerate(np.bincount(meta["end_reason"], minlength=len(EndReason))):
            self.ended_by_reason[EndReason(reason)] += int(count)
        return EndedFlows(meta, feat)

    # ---- public API ---------------------------------------------------------------------
    def update(self, packets: PacketArray) -> EndedFlows:
        """Consume a packet array; return the flows that ended (FIN/RST/IDLE/ACTIVE/EVICTED)."""
        if packets.dtype != PACKET_DTYPE:
            raise TypeError(f"packets: dtype must be PACKET_DTYPE, got {packets.dtype}")
        i = 0
        while True:
            i, status = K.update(
                packets,
                i,
                *self._state(),
                self._prm,
                self._out_meta,
                self._out_feat,  # type: ignore[call-arg]
            )
            if status == K.ST_DONE:
                return self._take()
            if status == K.ST_NEED_GROW:
                self._alloc(min(2 * self._ti.shape[0], self.params.max_flows))
            else:
                self._grow_out(int(self._ctrl[K.C_OUT_N] + self._ctrl[K.C_ACTIVE] + 4))

    def expire(self, now_ns: int) -> EndedFlows:
        """End the flows that are idle, over their active time or closed at clock ``now_ns``."""
        self._grow_out(int(self._ctrl[K.C_OUT_N] + self._ctrl[K.C_ACTIVE] + 4))
        state, out = self._state(), (self._out_meta, self._out_feat)
        K.sweep(np.int64(now_ns), *state, self._prm, *out)  # type: ignore[call-arg]
        return self._take()

    def flush(self, reason: EndReason = EndReason.END_OF_INPUT) -> EndedFlows:
        """End every open flow with ``reason``."""
        return self._flush(-2, reason)

    def flush_partition(self, part: int, reason: EndReason = EndReason.REVOKED) -> EndedFlows:
        """End every open flow whose first packet came from source partition ``part``."""
        return self._flush(part, reason)

    def _flush(self, part: int, reason: EndReason) -> EndedFlows:
        self._grow_out(int(self._ctrl[K.C_OUT_N] + self._ctrl[K.C_ACTIVE] + 4))
        _flush_kernel(part, int(reason), *self._state(), self._out_meta, self._out_feat)  # type: ignore[call-arg]
        return self._take()

    def min_open_seq(self, part: int) -> int | None:
        """Lowest ``src_seq`` of the first packet of any open flow of partition ``part``."""
        v = _min_seq(self._ti, part)
        return None if v == np.iinfo(np.int64).max else int(v)

    @property
    def active(self) -> int:
        """Open flows."""
        return int(self._ctrl[K.C_ACTIVE])

    @property
    def capacity(self) -> int:
        """Slots allocated now (grows by doubling up to ``max_flows``)."""
        return int(self._ti.shape[0])

    @property
    def bytes_per_flow(self) -> int:
        """State bytes per slot: keys, bookkeeping, feature state, index share, free stack,
        deadline."""
        index_share = self._index.nbytes // self._ti.shape[0]
        return N_KCOLS * 8 + K.N_TCOLS * 8 + BYTES_PER_FLOW + index_share + 4 + 8


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _flush_kernel(part, reason, keys, ti, ci, cf, index, free, ctrl, due, out_meta, out_feat):  # type: ignore[no-untyped-def]
    for s in range(ti.shape[0]):
        if ti[s, K.T_STATE] != K.S_FREE and (part == -2 or ti[s, K.T_PART] == part):
            K.emit(s, reason, keys, ti, ci, cf, index, free, ctrl, due, out_meta, out_feat)


@nb.njit(cache=True, error_model="numpy")
def _min_seq(ti: np.ndarray, part: int) -> int:
    best = np.iinfo(np.int64).max
    for s in range(ti.shape[0]):
        if ti[s, K.T_STATE] != K.S_FREE and ti[s, K.T_PART] == part:
            best = min(best, ti[s, K.T_FIRST_SEQ])
    return best
