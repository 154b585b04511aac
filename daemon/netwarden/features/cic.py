"""Finalise the ``cicflowmeter-v1`` features of an ended flow from its online state.

``cic_finalize`` turns one flow's state row (built by :mod:`.cic_online`) into the 81 features
of :data:`~netwarden.features.cic_schema.CIC_SCHEMA`, in schema order, with CICFlowMeter's
definitions as they appear in the CIC-IDS2017 "improved" CSVs (docs/features.md lists every
feature, how it is computed and where it deliberately departs from CICFlowMeter).
Times are kept in ns internally and reported in microseconds.
"""

from __future__ import annotations

import math
from typing import Any

import numba as nb
import numpy as np

from .cic_schema import CIC_SCHEMA
from .cic_state import (
    ACT_DATA,
    ACT_M2,
    ACT_MAX,
    ACT_MEAN,
    ACT_MIN,
    ACT_N,
    B_DUR,
    B_PKTS,
    B_PSH,
    B_RST,
    B_SIZE,
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
)

Num = Any  # a Python or numpy scalar; numba types it at compile time

N_FEATURES = len(CIC_SCHEMA)
_US = 1000.0  # ns per microsecond


@nb.njit(cache=True, inline="always", error_model="numpy")
def _std(m2: float, n: Num) -> float:
    """Sample standard deviation (n - 1), as Apache SummaryStatistics; 0 for n < 2."""
    return math.sqrt(max(m2, 0.0) / (n - 1)) if n > 1 else 0.0


@nb.njit(cache=True, inline="always", error_model="numpy")
def _div(a: float, b: float) -> float:
    return a / b if b != 0 else 0.0


@nb.njit(cache=True, error_model="numpy")
def _stats4(o: np.ndarray, k: int, mx: float, mn: float, mean: float, sd: float, n: Num) -> int:
    """Write max, min, mean, std (or zeros when the series is empty); return the next index."""
    if n > 0:
        o[k], o[k + 1], o[k + 2], o[k + 3] = mx, mn, mean, sd
    else:
        o[k : k + 4] = 0.0
    return k + 4


@nb.njit(cache=True, error_model="numpy")
def _mean_std_max_min(
    o: np.ndarray, k: int, mean: float, m2: float, mx: float, mn: float, n: Num, scale: float
) -> int:
    if n > 0:
        o[k] = mean / scale
        o[k + 1] = _std(m2, n) / scale
        o[k + 2] = mx / scale
        o[k + 3] = mn / scale
    else:
        o[k : k + 4] = 0.0
    return k + 4


@nb.njit(cache=True, error_model="numpy")
def _combined_len(ci: np.ndarray, cf: np.ndarray) -> tuple[float, float, float, float]:
    """Min, max, mean, variance of payload lengths both ways (Chan's parallel combination)."""
    nf, nb_ = ci[FWD_N], ci[BWD_N]
    n = nf + nb_
    if nb_ == 0:
        return float(ci[FWD_PL_MIN]), float(ci[FWD_PL_MAX]), cf[FWD_MEAN], _var(cf[FWD_M2], n)
    if nf == 0:
        return float(ci[BWD_PL_MIN]), float(ci[BWD_PL_MAX]), cf[BWD_MEAN], _var(cf[BWD_M2], n)
    d = cf[BWD_MEAN] - cf[FWD_MEAN]
    mean = (ci[FWD_PL] + ci[BWD_PL]) / n
    m2 = cf[FWD_M2] + cf[BWD_M2] + d * d * nf * nb_ / n
    lo = min(ci[FWD_PL_MIN], ci[BWD_PL_MIN])
    hi = max(ci[FWD_PL_MAX], ci[BWD_PL_MAX])
    return float(lo), float(hi), mean, _var(m2, n)


@nb.njit(cache=True, inline="always", error_model="numpy")
def _var(m2: float, n: Num) -> float:
    return max(m2, 0.0) / (n - 1) if n > 1 else 0.0


@nb.njit(cache=True, error_model="numpy")
def _bulk_out(o: np.ndarray, k: int, ci: np.ndarray, b: Num) -> int:
    """Bytes/bulk, packets/bulk (integer division) and bulk rate (truncated), as CICFlowMeter."""
    states = ci[b + B_STATES]
    o[k] = ci[b + B_SIZE] // states if states else 0
    o[k + 1] = ci[b + B_PKTS] // states if states else 0
    dur_s = ci[b + B_DUR] / 1e9
    o[k + 2] = math.floor(ci[b + B_SIZE] / dur_s) if dur_s != 0 else 0.0
    return k + 3


@nb.njit(cache=True, error_model="numpy")
def cic_finalize(ci: np.ndarray, cf: np.ndarray, is_tcp: bool, o: np.ndarray) -> None:
    """Write the 81 features of one ended flow into ``o`` (float32, schema order)."""
    nf, nb_ = ci[FWD_N], ci[BWD_N]
    n = nf + nb_
    dur_ns = ci[LAST_TS] - ci[FIRST_TS]
    dur_s = dur_ns / 1e9
    pl = ci[FWD_PL] + ci[BWD_PL]
    o[0] = dur_ns / _US
    o[1], o[2], o[3], o[4] = nf, nb_, ci[FWD_PL], ci[BWD_PL]
    k = _stats4(o, 5, ci[FWD_PL_MAX], ci[FWD_PL_MIN], cf[FWD_MEAN], _std(cf[FWD_M2], nf), nf)
    k = _stats4(o, k, ci[BWD_PL_MAX], ci[BWD_PL_MIN], cf[BWD_MEAN], _std(cf[BWD_M2], nb_), nb_)
    o[k], o[k + 1] = _div(pl, dur_s), _div(n, dur_s)
    k = _mean_std_max_min(o, k + 2, cf[IAT_MEAN], cf[IAT_M2], ci[IAT_MAX], ci[IAT_MIN], n - 1, _US)
    o[k] = (ci[FWD_LAST] - ci[FIRST_TS]) / _US if nf > 1 else 0.0
    k = _mean_std_max_min(
        o, k + 1, cf[FIAT_MEAN], cf[FIAT_M2], ci[FIAT_MAX], ci[FIAT_MIN], nf - 1, _US
    )
    o[k] = (ci[BWD_LAST] - ci[BWD_FIRST]) / _US if nb_ > 1 else 0.0
    k = _mean_std_max_min(
        o, k + 1, cf[BIAT_MEAN], cf[BIAT_M2], ci[BIAT_MAX], ci[BIAT_MIN], nb_ - 1, _US
    )
    o[k], o[k + 1], o[k + 2] = ci[F_PSH], ci[B_PSH], ci[F_URG]
    o[k + 3], o[k + 4], o[k + 5] = ci[B_URG], ci[F_RST], ci[B_RST]
    o[k + 6], o[k + 7] = ci[FWD_HDR], ci[BWD_HDR]
    o[k + 8], o[k + 9] = _div(nf, dur_s), _div(nb_, dur_s)
    lo, hi, mean, var = _combined_len(ci, cf)
    o[k + 10], o[k + 11], o[k + 12], o[k + 13], o[k + 14] = lo, hi, mean, math.sqrt(var), var
    k += 15
    for j in range(8):
        o[k + j] = ci[FL_FIN + j]
    k += 8
    o[k], o[k + 1] = _div(nb_, nf), _div(pl, n)
    o[k + 2], o[k + 3] = _div(ci[FWD_PL], nf), _div(ci[BWD_PL], nb_)
    k = _bulk_out(o, k + 4, ci, BULK_F)
    k = _bulk_out(o, k, ci, BULK_B)
    # CICFlowMeter-in-the-CSVs counts one subflow per packet: value // packets (see docs)
    o[k], o[k + 1], o[k + 2], o[k + 3] = nf // n, ci[FWD_PL] // n, nb_ // n, ci[BWD_PL] // n
    o[k + 4], o[k + 5] = ci[FWD_WIN], ci[BWD_WIN]
    o[k + 6], o[k + 7] = ci[ACT_DATA], ci[SEG_MIN]
    k = _mean_std_max_min(
        o, k + 8, cf[ACT_MEAN], cf[ACT_M2], ci[ACT_MAX], ci[ACT_MIN], ci[ACT_N], _US
    )
    k = _mean_std_max_min(
        o, k, cf[IDLE_MEAN], cf[IDLE_M2], ci[IDLE_MAX], ci[IDLE_MIN], ci[IDLE_N], _US
    )
    o[k], o[k + 1] = ci[ICMP_CODE], ci[ICMP_TYPE]
    o[k + 2] = (ci[LAST_TS] - ci[CONN_START]) / _US if is_tcp else 0.0
