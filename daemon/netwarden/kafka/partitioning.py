"""Flow-affine partitioning: a symmetric hash of the flow key picks each packet's partition.

The two endpoints (address, port) are put in a fixed order before hashing, so both directions
of a flow land in the same partition and one consumer sees the whole flow.  Fragments after
the first carry no ports, so every fragment hashes with ports 0 (all fragments of a datagram
stay together; a fragmented flow may differ in partition from its unfragmented packets).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

from ..packets import FRAG_NONE, PacketArray

NO_FLOW = -1  # partition of a frame the decoder gave no flow key (ARP, garbage)


def flow_hash(packets: PacketArray) -> npt.NDArray[np.uint64]:
    """Return a 64-bit hash of each packet's flow key, equal for both directions.

    >>> from netwarden.packets import empty_packets
    >>> p = empty_packets(2)
    >>> p["src_lo"], p["dst_lo"], p["sport"], p["dport"], p["proto"] = [1, 2], [2, 1], \\
    ...     [80, 5000], [5000, 80], 6
    >>> h = flow_hash(p)
    >>> bool(h[0] == h[1])
    True
    """
    whole = packets["frag"] == FRAG_NONE  # fragments: ports 0, so all fragments hash alike
    sport = np.where(whole, packets["sport"], 0).astype(np.uint64)
    dport = np.where(whole, packets["dport"], 0).astype(np.uint64)
    out: npt.NDArray[np.uint64] = _hash(
        packets["src_hi"], packets["src_lo"], sport, packets["dst_hi"], packets["dst_lo"], dport,
        packets["proto"].astype(np.uint64), packets["vlan"].astype(np.uint64))
    return out


def partition_of(hashes: npt.NDArray[np.uint64], n_partitions: int) -> npt.NDArray[np.int32]:
    """Map flow hashes onto ``n_partitions`` partitions.

    >>> partition_of(np.array([7, 8, 9], np.uint64), 4).tolist()
    [3, 0, 1]
    """
    return (hashes % np.uint64(n_partitions)).astype(np.int32)


@njit(cache=True, inline="always")
def _mix(x):  # type: ignore[no-untyped-def]
    # splitmix64 finaliser: every input bit moves every output bit
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


@njit(cache=True)
def _hash(shi, slo, sp, dhi, dlo, dp, proto, vlan):  # type: ignore[no-untyped-def]
    n = shi.shape[0]
    out = np.empty(n, dtype=np.uint64)
    for i in range(n):
        a = (shi[i], slo[i], sp[i])
        b = (dhi[i], dlo[i], dp[i])
        if b < a:  # order the endpoints: the hash no longer depends on direction
            a, b = b, a
        h = _mix(proto[i] ^ (vlan[i] << np.uint64(8)))
        for v in (a[0], a[1], a[2], b[0], b[1], b[2]):
            h = _mix(h ^ v)
        out[i] = h
    return out
