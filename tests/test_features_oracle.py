"""Oracle tests: every online feature equals a plain numpy recomputation from the flow's packets.

``reference`` below recomputes the 81 ``cicflowmeter-v1`` features of one flow from all its
packets at once (numpy over arrays, plus CICFlowMeter's bulk state machine as a loop), with the
definitions written in docs/features.md; the flow table computes them online in constant
memory.  They must agree to float32 precision.
"""

from __future__ import annotations

import numpy as np
import pytest
from netwarden.features.cic_schema import CIC_SCHEMA
from netwarden.flows.params import FlowParams
from netwarden.flows.synth import random_packets
from netwarden.flows.table import FlowTable
from netwarden.packets import PacketArray

ACTIVITY_S = 2.0
US = 1000.0


def _s4(x: np.ndarray, order: str) -> list[float]:
    """max/min/mean/std ('MMMS') or mean/std/max/min ('MSMM') with sample std; zeros if empty."""
    if x.size == 0:
        return [0.0] * 4
    sd = float(np.std(x, ddof=1)) if x.size > 1 else 0.0
    mx, mn, mean = float(x.max()), float(x.min()), float(x.mean())
    return [mx, mn, mean, sd] if order == "MMMS" else [mean, sd, mx, mn]


def _bulk(ts: np.ndarray, size: np.ndarray, fwd: np.ndarray, side: bool) -> list[float]:
    """CICFlowMeter's bulk state machine for one direction, replayed over the packets."""
    st = {True: [-1, -1, 0, 0], False: [-1, -1, 0, 0]}  # start, last, pkt helper, size helper
    tot = {True: [0, 0, 0, 0], False: [0, 0, 0, 0]}  # states, packets, bytes, duration
    for t, n, d in zip(ts.tolist(), size.tolist(), fwd.tolist(), strict=True):
        me, other = st[d], st[not d]
        if other[1] > me[0]:
            me[0] = -1
        if n <= 0:
            continue
        if me[0] == -1 or t - me[1] > 1e9:
            me[:] = [t, t, 1, n]
            continue
        me[2] += 1
        me[3] += n
        if me[2] == 4:
            tot[d][0] += 1
            tot[d][1] += 4
            tot[d][2] += me[3]
            tot[d][3] += t - me[0]
        elif me[2] > 4:
            tot[d][1] += 1
            tot[d][2] += n
            tot[d][3] += t - me[1]
        me[1] = t
    states, pkts, nbytes, dur = tot[side]
    rate = np.floor(nbytes / (dur / 1e9)) if dur else 0.0
    return [nbytes // states if states else 0, pkts // states if states else 0, rate]


def _activity(ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Active periods (closed by a gap over the activity timeout) and idle gaps."""
    gaps = np.diff(ts)
    cut = np.flatnonzero(gaps > ACTIVITY_S * 1e9)
    starts = np.concatenate([[0], cut + 1])[:-1]
    active = ts[cut] - ts[starts]
    return active[active > 0], gaps[cut]


def reference(f: PacketArray) -> np.ndarray:
    """The 81 features of one flow's packets ``f`` (time order, f[0] is forward)."""
    ts = f["ts_ns"].astype(np.int64)
    fwd = (f["src_lo"] == f["src_lo"][0]) & (f["sport"] == f["sport"][0])
    pl, hdr, fl = f["payload_len"].astype(float), f["l4_hdr_len"].astype(float), f["tcp_flags"]
    n, nf, nb = len(f), int(fwd.sum()), int((~fwd).sum())
    dur = (ts[-1] - ts[0]) / 1e9

    def rate(x: float) -> float:
        return float(x / dur) if dur else 0.0

    fiat, biat, iat = np.diff(ts[fwd]) / US, np.diff(ts[~fwd]) / US, np.diff(ts) / US

    def bit(b: int, m: np.ndarray | slice = slice(None)) -> float:
        return float(((fl[m] & b) != 0).sum())

    active, idle = _activity(ts)
    out = [dur * 1e6, nf, nb, pl[fwd].sum(), pl[~fwd].sum()]
    out += _s4(pl[fwd], "MMMS") + _s4(pl[~fwd], "MMMS")
    out += [rate(pl.sum()), rate(n), *_s4(iat, "MSMM")]
    out += [fiat.sum(), *_s4(fiat, "MSMM"), biat.sum(), *_s4(biat, "MSMM")]
    out += [bit(8, fwd), bit(8, ~fwd), bit(32, fwd), bit(32, ~fwd), bit(4, fwd), bit(4, ~fwd)]
    out += [hdr[fwd].sum(), hdr[~fwd].sum(), rate(nf), rate(nb)]
    var = float(np.var(pl, ddof=1)) if n > 1 else 0.0
    out += [pl.min(), pl.max(), pl.mean(), np.sqrt(var), var]
    out += [bit(b) for b in (1, 2, 4, 8, 16, 32, 128, 64)]
    out += [nb / nf, pl.sum() / n, pl[fwd].mean(), pl[~fwd].mean() if nb else 0.0]
    out += _bulk(ts, pl.astype(int), fwd, True) + _bulk(ts, pl.astype(int), fwd, False)
    out += [nf // n, pl[fwd].sum() // n, nb // n, pl[~fwd].sum() // n]
    out += [f["tcp_window"][0], f["tcp_window"][~fwd][-1] if nb else 0, (pl[fwd] > 0).sum()]
    out += [hdr[fwd].min(), *_s4(active / US, "MSMM"), *_s4(idle / US, "MSMM")]
    icmp = f["proto"][0] in (1, 58)
    out += [f["icmp_code"][0] if icmp else -1, f["icmp_type"][0] if icmp else -1]
    out += [dur * 1e6 if f["proto"][0] == 6 else 0.0]
    return np.array(out, dtype=np.float64)


def _traffic(seed: int) -> PacketArray:
    pk = random_packets(4000, n_flows=25, seed=seed, mean_gap_us=40_000.0)
    rng = np.random.default_rng(seed)
    # any flag but FIN/RST (those end flows): PSH URG ACK SYN CWR ECE
    pk["tcp_flags"] = np.where(pk["proto"] == 6, rng.integers(0, 256, len(pk)) & 0xFA, 0)
    pk["l4_hdr_len"] = np.where(pk["proto"] == 6, rng.choice([20, 32, 40], len(pk)), 8)
    small = rng.random(len(pk)) < 0.5
    pk["payload_len"][small] = rng.integers(0, 60, int(small.sum()))
    return pk


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_online_features_equal_numpy_reference(seed: int) -> None:
    pk = _traffic(seed)
    table = FlowTable(
        FlowParams(idle_timeout_s=1e4, active_timeout_s=1e5, activity_timeout_s=ACTIVITY_S)
    )
    assert len(table.update(pk)) == 0
    out = table.flush()
    assert len(out) == 25
    lo = np.minimum(pk["src_lo"], pk["dst_lo"]) ^ np.maximum(pk["src_lo"], pk["dst_lo"])
    for m, got in zip(out.meta, out.features, strict=True):
        key = min(m["src_lo"], m["dst_lo"]) ^ max(m["src_lo"], m["dst_lo"])
        ref = reference(pk[lo == key])
        bad = ~np.isclose(got, ref, rtol=2e-6, atol=1e-3)
        names = [CIC_SCHEMA.names[j] for j in np.flatnonzero(bad)]
        assert not names, f"{names}: got {got[bad]} want {ref[bad]}"


def test_reference_sees_bulks_and_idle_periods() -> None:
    """The oracle traffic exercises the sequential features (else the test proves little)."""
    pk = _traffic(0)
    table = FlowTable(FlowParams(activity_timeout_s=ACTIVITY_S, idle_timeout_s=1e4))
    table.update(pk)
    out = table.flush()
    for name in ("Fwd Bytes/Bulk Avg", "Bwd Packet/Bulk Avg", "Idle Mean", "Active Std"):
        assert (out.features[:, CIC_SCHEMA.index(name)] > 0).any(), name
