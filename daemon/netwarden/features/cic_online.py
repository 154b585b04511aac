"""Online update of the ``cicflowmeter-v1`` state: one call per packet, constant memory.

``cic_init`` starts a flow's state from its first packet, ``cic_add`` folds in every later
packet (the flow table's ``on_init`` / ``on_update`` hooks).  Both are numba ``njit`` functions
working on one flow's row of the state matrices (see :mod:`.cic_state`), called from inside the
flow table's packet loop.  The order of operations follows CICFlowMeter's ``BasicFlow`` and
``FlowGenerator`` (active/idle split before the packet is added, bulk state per direction).
"""

from __future__ import annotations

from typing import Any

import numba as nb
import numpy as np

from .cic_state import (
    ACT_DATA,
    ACT_M2,
    ACT_MAX,
    ACT_MEAN,
    ACT_MIN,
    ACT_N,
    B_DUR,
    B_LAST,
    B_PKT_H,
    B_PKTS,
    B_PSH,
    B_RST,
    B_SIZE,
    B_SIZE_H,
    B_START_H,
    B_STATES,
    B_URG,
    BIAT_M2,
    BIAT_MAX,
    BIAT_MEAN,
    BIAT_MIN,
    BULK_B,
    BULK_F,
    BWD_FIRST,
    BWD_HDR,
    BWD_LAST,
    BWD_M2,
    BWD_MEAN,
    BWD_N,
    BWD_PL,
    BWD_PL_MAX,
    BWD_PL_MIN,
    BWD_WIN,
    CONN_START,
    END_ACT,
    F_PSH,
    F_RST,
    F_URG,
    FIAT_M2,
    FIAT_MAX,
    FIAT_MEAN,
    FIAT_MIN,
    FIRST_TS,
    FL_FIN,
    FWD_HDR,
    FWD_LAST,
    FWD_M2,
    FWD_MEAN,
    FWD_N,
    FWD_PL,
    FWD_PL_MAX,
    FWD_PL_MIN,
    FWD_WIN,
    IAT_M2,
    IAT_MAX,
    IAT_MEAN,
    IAT_MIN,
    ICMP_CODE,
    ICMP_TYPE,
    IDLE_M2,
    IDLE_MAX,
    IDLE_MEAN,
    IDLE_MIN,
    IDLE_N,
    LAST_TS,
    SEG_MIN,
    START_ACT,
)

Num = Any  # a Python or numpy scalar; numba types it at compile time
Rec = Any  # one PACKET_DTYPE record inside a numba kernel

BULK_GAP_NS = 1_000_000_000  # CICFlowMeter: a gap over 1 s ends a bulk
BULK_MIN_PKTS = 4  # CICFlowMeter: 4 payload packets in a row make a bulk
_FLAG_BITS = (0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x80, 0x40)  # FIN SYN RST PSH ACK URG CWR ECE
_ICMP = (1, 58)


@nb.njit(cache=True, inline="always", error_model="numpy")
def _welford(cf: np.ndarray, mean_col: Num, m2_col: Num, n: Num, x: float) -> None:
    """Fold ``x`` into the running mean/M2 of a series that now has ``n`` values."""
    d = x - cf[mean_col]
    cf[mean_col] += d / n
    cf[m2_col] += d * (x - cf[mean_col])


@nb.njit(cache=True, inline="always", error_model="numpy")
def _minmax(ci: np.ndarray, lo: Num, hi: Num, n: Num, x: Num) -> None:
    if n == 1 or x < ci[lo]:
        ci[lo] = x
    if n == 1 or x > ci[hi]:
        ci[hi] = x


@nb.njit(cache=True, inline="always", error_model="numpy")
def _bulk(ci: np.ndarray, b: Num, other: Num, ts: Num, size: Num) -> None:
    """CICFlowMeter's updateForwardBulk/updateBackwardBulk for the block at column ``b``."""
    if ci[other + B_LAST] > ci[b + B_START_H]:
        ci[b + B_START_H] = -1
    if size <= 0:
        return
    if ci[b + B_START_H] == -1 or ts - ci[b + B_LAST] > BULK_GAP_NS:
        ci[b + B_START_H] = ts
        ci[b + B_LAST] = ts
        ci[b + B_PKT_H] = 1
        ci[b + B_SIZE_H] = size
        return
    ci[b + B_PKT_H] += 1
    ci[b + B_SIZE_H] += size
    if ci[b + B_PKT_H] == BULK_MIN_PKTS:
        ci[b + B_STATES] += 1
        ci[b + B_PKTS] += ci[b + B_PKT_H]
        ci[b + B_SIZE] += ci[b + B_SIZE_H]
        ci[b + B_DUR] += ts - ci[b + B_START_H]
    elif ci[b + B_PKT_H] > BULK_MIN_PKTS:
        ci[b + B_PKTS] += 1
        ci[b + B_SIZE] += size
        ci[b + B_DUR] += ts - ci[b + B_LAST]
    ci[b + B_LAST] = ts


@nb.njit(cache=True, inline="always", error_model="numpy")
def _activity(ci: np.ndarray, cf: np.ndarray, ts: Num, activity_ns: Num) -> None:
    """CICFlowMeter's updateActiveIdleTime: a gap over ``activity_ns`` closes an active period."""
    gap = ts - ci[END_ACT]
    if gap > activity_ns:
        active = ci[END_ACT] - ci[START_ACT]
        if active > 0:
            ci[ACT_N] += 1
            _minmax(ci, ACT_MIN, ACT_MAX, ci[ACT_N], active)
            _welford(cf, ACT_MEAN, ACT_M2, ci[ACT_N], float(active))
        ci[IDLE_N] += 1
        _minmax(ci, IDLE_MIN, IDLE_MAX, ci[IDLE_N], gap)
        _welford(cf, IDLE_MEAN, IDLE_M2, ci[IDLE_N], float(gap))
        ci[START_ACT] = ts
    ci[END_ACT] = ts


@nb.njit(cache=True, inline="always", error_model="numpy")
def _flags(ci: np.ndarray, flags: Num, fwd: bool) -> None:
    for k in range(8):
        if flags & _FLAG_BITS[k]:
            ci[FL_FIN + k] += 1
    if flags & 0x08:
        ci[F_PSH if fwd else B_PSH] += 1
    if flags & 0x20:
        ci[F_URG if fwd else B_URG] += 1
    if flags & 0x04:
        ci[F_RST if fwd else B_RST] += 1


@nb.njit(cache=True, inline="always", error_model="numpy")
def cic_init(ci: np.ndarray, cf: np.ndarray, p: Rec, conn_start: Num) -> None:
    """Reset one flow's state and fold in its first packet ``p`` (always forward)."""
    ci[:] = 0
    cf[:] = 0.0
    ts = np.int64(p.ts_ns)
    ci[FIRST_TS] = ts
    ci[CONN_START] = conn_start
    ci[BULK_F + B_START_H] = -1
    ci[BULK_B + B_START_H] = -1
    ci[BULK_F + B_LAST] = -1
    ci[BULK_B + B_LAST] = -1
    ci[START_ACT] = ts
    ci[END_ACT] = ts
    ci[FWD_WIN] = p.tcp_window
    ci[SEG_MIN] = p.l4_hdr_len
    is_icmp = p.proto == _ICMP[0] or p.proto == _ICMP[1]
    ci[ICMP_CODE] = p.icmp_code if is_icmp else -1
    ci[ICMP_TYPE] = p.icmp_type if is_icmp else -1
    _direction(ci, cf, p, True)


@nb.njit(cache=True, inline="always", error_model="numpy")
def cic_add(ci: np.ndarray, cf: np.ndarray, p: Rec, fwd: bool, activity_ns: Num) -> None:
    """Fold a later packet ``p`` of the flow into its state (``fwd``: sent by the initiator)."""
    ts = np.int64(p.ts_ns)
    _activity(ci, cf, ts, activity_ns)
    n = ci[FWD_N] + ci[BWD_N]  # IATs so far + 1
    iat = ts - ci[LAST_TS]
    _minmax(ci, IAT_MIN, IAT_MAX, n, iat)
    _welford(cf, IAT_MEAN, IAT_M2, n, float(iat))
    _direction(ci, cf, p, fwd)


@nb.njit(cache=True, inline="always", error_model="numpy")
def _direction(ci: np.ndarray, cf: np.ndarray, p: Rec, fwd: bool) -> None:
    """Per-direction counters, payload and IAT statistics, bulk and flags of one packet."""
    ts = np.int64(p.ts_ns)
    pl = np.int64(p.payload_len)
    hdr = np.int64(p.l4_hdr_len)
    if fwd:
        _bulk(ci, BULK_F, BULK_B, ts, pl)
        ci[FWD_N] += 1
        n = ci[FWD_N]
        if n > 1:
            iat = ts - ci[FWD_LAST]
            _minmax(ci, FIAT_MIN, FIAT_MAX, n - 1, iat)
            _welford(cf, FIAT_MEAN, FIAT_M2, n - 1, float(iat))
        ci[FWD_LAST] = ts
        ci[FWD_PL] += pl
        _minmax(ci, FWD_PL_MIN, FWD_PL_MAX, n, pl)
        _welford(cf, FWD_MEAN, FWD_M2, n, float(pl))
        ci[FWD_HDR] += hdr
        if pl >= 1:
            ci[ACT_DATA] += 1
        if hdr < ci[SEG_MIN]:
            ci[SEG_MIN] = hdr
    else:
        _bulk(ci, BULK_B, BULK_F, ts, pl)
        ci[BWD_N] += 1
        n = ci[BWD_N]
        if n == 1:
            ci[BWD_FIRST] = ts
        else:
            iat = ts - ci[BWD_LAST]
            _minmax(ci, BIAT_MIN, BIAT_MAX, n - 1, iat)
            _welford(cf, BIAT_MEAN, BIAT_M2, n - 1, float(iat))
        ci[BWD_LAST] = ts
        ci[BWD_PL] += pl
        _minmax(ci, BWD_PL_MIN, BWD_PL_MAX, n, pl)
        _welford(cf, BWD_MEAN, BWD_M2, n, float(pl))
        ci[BWD_HDR] += hdr
        ci[BWD_WIN] = p.tcp_window  # CICFlowMeter keeps the LAST backward window (see docs)
    _flags(ci, np.int64(p.tcp_flags), fwd)
    ci[LAST_TS] = ts
