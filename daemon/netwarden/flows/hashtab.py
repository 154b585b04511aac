"""Open-addressing hash index from a flow key to its state slot (numba, no Python per packet).

The index is an ``int32`` array of a power-of-two size (at least twice the state capacity, so
the load factor stays at or under 0.5); an entry is a state slot or -1.  Collisions probe
linearly; deletion shifts later entries back (no tombstones, so lookups never slow down as
flows come and go).  The key hash is symmetric in the two endpoints, so A->B and B->A find the
same slot; the stored key keeps the flow's orientation (forward = first sender).
"""

from __future__ import annotations

from typing import Any

import numba as nb
import numpy as np

Num = Any  # a Python or numpy scalar; numba types it at compile time
Rec = Any  # one PACKET_DTYPE record inside a numba kernel

# columns of the uint64 key matrix
K_SRC_HI, K_SRC_LO, K_DST_HI, K_DST_LO, K_HASH = 0, 1, 2, 3, 4
N_KCOLS = 5

_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)
_S16 = np.uint64(16)
_S32 = np.uint64(32)


@nb.njit(cache=True, inline="always", error_model="numpy")
def _mix(x: np.uint64) -> np.uint64:
    """MurmurHash3's 64-bit finaliser."""
    x ^= x >> _S33
    x *= _M1
    x ^= x >> _S33
    x *= _M2
    x ^= x >> _S33
    return x


@nb.njit(cache=True, inline="always", error_model="numpy")
def key_hash(
    src_hi: np.uint64,
    src_lo: np.uint64,
    dst_hi: np.uint64,
    dst_lo: np.uint64,
    sport: Num,
    dport: Num,
    proto: Num,
    vlan: Num,
    seed: np.uint64,
) -> np.uint64:
    """Hash of a flow key, equal for both directions (endpoint hashes are added).

    ``seed`` is secret per table, so spoofed traffic cannot aim many keys at one probe
    cluster (the finaliser is invertible: without a seed, collisions can be computed).
    """
    a = _mix(src_lo ^ _mix(src_hi + np.uint64(sport) + seed))
    b = _mix(dst_lo ^ _mix(dst_hi + np.uint64(dport) + seed))
    tag = (np.uint64(proto) << _S16) | np.uint64(vlan) | (np.uint64(1) << _S32)
    return _mix((a + b) ^ tag ^ seed)


@nb.njit(cache=True, inline="always", error_model="numpy")
def find(
    index: np.ndarray, keys: np.ndarray, ports: np.ndarray, p: Rec, h: Num
) -> tuple[int, bool]:
    """Return (slot, forward) of packet ``p``'s flow, or (-1, True) when it has none.

    ``ports`` holds per slot (sport, dport, proto, vlan) of the stored orientation.
    """
    mask = np.uint64(index.shape[0] - 1)
    i = np.int64(h & mask)
    while True:
        s = index[i]
        if s < 0:
            return -1, True
        if keys[s, K_HASH] == h and ports[s, 2] == p.proto and ports[s, 3] == p.vlan:
            if (
                keys[s, K_SRC_LO] == p.src_lo
                and keys[s, K_SRC_HI] == p.src_hi
                and keys[s, K_DST_LO] == p.dst_lo
                and keys[s, K_DST_HI] == p.dst_hi
                and ports[s, 0] == p.sport
                and ports[s, 1] == p.dport
            ):
                return s, True
            if (
                keys[s, K_SRC_LO] == p.dst_lo
                and keys[s, K_SRC_HI] == p.dst_hi
                and keys[s, K_DST_LO] == p.src_lo
                and keys[s, K_DST_HI] == p.src_hi
                and ports[s, 0] == p.dport
                and ports[s, 1] == p.sport
            ):
                return s, False
        i = (i + 1) & np.int64(mask)


@nb.njit(cache=True, inline="always", error_model="numpy")
def insert(index: np.ndarray, h: Num, slot: Num) -> None:
    """Place ``slot`` at the first free position of its probe sequence."""
    mask = index.shape[0] - 1
    i = np.int64(h & np.uint64(mask))
    while index[i] >= 0:
        i = (i + 1) & mask
    index[i] = slot


@nb.njit(cache=True, error_model="numpy")
def remove(index: np.ndarray, keys: np.ndarray, slot: Num) -> None:
    """Delete ``slot`` from the index, shifting later entries of its cluster back."""
    mask = index.shape[0] - 1
    i = np.int64(keys[slot, K_HASH] & np.uint64(mask))
    while index[i] != slot:
        i = (i + 1) & mask
    j = i
    while True:
        j = (j + 1) & mask
        s = index[j]
        if s < 0:
            break
        home = np.int64(keys[s, K_HASH] & np.uint64(mask))
        # keep s where it is when its home lies cyclically in (i, j]
        if (i < j and i < home <= j) or (j < i and (home > i or home <= j)):
            continue
        index[i] = s
        i = j
    index[i] = -1


@nb.njit(cache=True, error_model="numpy")
def rebuild(index: np.ndarray, keys: np.ndarray, alive: np.ndarray) -> None:
    """Fill an empty (all -1) index with every slot whose ``alive`` entry is non-zero."""
    for s in range(alive.shape[0]):
        if alive[s] != 0:
            insert(index, keys[s, K_HASH], s)
