"""``TPACKET_V3`` receive ring for the live source (``iface://eth0?ring=1``).

The kernel writes frames into blocks of a memory-mapped ring and hands over a whole block
when it is full or ``retire_ms`` after its first frame, so one ``poll`` wakes the reader for
thousands of frames and no system call is made per frame.  A numba kernel walks the ready
blocks, copies each frame into the batch buffer (putting back a VLAN tag the NIC stripped)
and returns the block to the kernel.

Ordering: the kernel publishes a block by setting ``TP_STATUS_USER`` after writing it, and the
reader hands it back by clearing the status after copying; x86-64 keeps loads and stores in
program order for this pattern (on weakly ordered CPUs a fence would be needed; the
``recvmsg`` path has no such concern).
"""

from __future__ import annotations

import logging
import mmap
import socket
import struct

import numpy as np
import numpy.typing as npt
from numba import njit

log = logging.getLogger(__name__)

SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_VERSION = 10
TPACKET_V3 = 2
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_VLAN_TPID_VALID = 0x40
BLOCK_SIZE = 1 << 20  # 1 MiB blocks: a whole block always fits in an empty batch buffer
FRAME_SIZE = 2048  # only sizes the ring's bookkeeping in V3 (frames are packed)

# Offsets in struct tpacket_block_desc / tpacket_hdr_v1.
_BLK_STATUS = 8
_BLK_NUM_PKTS = 12
_BLK_FIRST = 16
_BLK_LEN = 20
# Offsets in struct tpacket3_hdr.
_P_NEXT = 0
_P_SEC = 4
_P_NSEC = 8
_P_SNAPLEN = 12
_P_LEN = 16
_P_STATUS = 20
_P_MAC = 24
_P_VLAN_TCI = 32
_P_VLAN_TPID = 36


@njit(cache=True, nogil=True)
def _u32(b: npt.NDArray[np.uint8], i: int) -> np.int64:
    return (
        np.int64(b[i])
        | (np.int64(b[i + 1]) << 8)
        | (np.int64(b[i + 2]) << 16)
        | (np.int64(b[i + 3]) << 24)
    )


@njit(cache=True, nogil=True)
def _u16(b: npt.NDArray[np.uint8], i: int) -> np.int64:
    return np.int64(b[i]) | (np.int64(b[i + 1]) << 8)


@njit(cache=True, nogil=True)
def drain_blocks(ring, nblocks, block_size, state, data, off, cap, wire, ts, vlan_ok):  # type: ignore[no-untyped-def]
    """Copy the frames of every ready block (in ring order) that fits into the outputs.

    ``state[0]`` is the next block to read and is advanced; returns (frames, bytes used).
    """
    n = 0
    used = 0
    while True:
        blk = state[0] * block_size
        if (_u32(ring, blk + _BLK_STATUS) & TP_STATUS_USER) == 0:
            break
        npk = _u32(ring, blk + _BLK_NUM_PKTS)
        if n + npk > off.shape[0] or used + _u32(ring, blk + _BLK_LEN) + 4 * npk > data.shape[0]:
            break  # the next batch takes this block
        p = blk + _u32(ring, blk + _BLK_FIRST)
        for _ in range(npk):
            used = _copy_frame(ring, p, data, used, n, off, cap, wire, ts, vlan_ok)
            n += 1
            p += _u32(ring, p + _P_NEXT)
        for k in range(4):  # hand the block back: tp_status = TP_STATUS_KERNEL
            ring[blk + _BLK_STATUS + k] = 0
        state[0] = (state[0] + 1) % nblocks
    return n, used


@njit(cache=True, nogil=True)
def _copy_frame(ring, p, data, used, n, off, cap, wire, ts, vlan_ok):  # type: ignore[no-untyped-def]
    snap = _u32(ring, p + _P_SNAPLEN)
    mac = p + _u16(ring, p + _P_MAC)
    status = _u32(ring, p + _P_STATUS)
    ts[n] = _u32(ring, p + _P_SEC) * 1_000_000_000 + _u32(ring, p + _P_NSEC)
    wire[n] = _u32(ring, p + _P_LEN)
    off[n] = used
    if vlan_ok and (status & TP_STATUS_VLAN_VALID) and snap >= 12:
        tpid = np.int64(0x8100)
        if status & TP_STATUS_VLAN_TPID_VALID:
            tpid = _u16(ring, p + _P_VLAN_TPID)
        tci = _u32(ring, p + _P_VLAN_TCI)
        data[used : used + 12] = ring[mac : mac + 12]
        data[used + 12] = (tpid >> 8) & 0xFF
        data[used + 13] = tpid & 0xFF
        data[used + 14] = (tci >> 8) & 0xFF
        data[used + 15] = tci & 0xFF
        data[used + 16 : used + 4 + snap] = ring[mac + 12 : mac + snap]
        cap[n] = snap + 4
        wire[n] += 4
        return used + snap + 4
    data[used : used + snap] = ring[mac : mac + snap]
    cap[n] = snap
    return used + snap


class Ring:
    """A ``TPACKET_V3`` ring on a packet socket (set up before the socket is bound).

    Args:
        sock: the packet socket.
        size_mb: ring size; one block per MiB.
        retire_ms: a partly filled block goes to the reader this long after its first frame.
    """

    def __init__(self, sock: socket.socket, *, size_mb: int, retire_ms: int) -> None:
        self.nblocks = max(2, size_mb)
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
        req = struct.pack(
            "=7I",
            BLOCK_SIZE,
            self.nblocks,
            FRAME_SIZE,
            BLOCK_SIZE // FRAME_SIZE * self.nblocks,
            retire_ms,
            0,
            0,
        )
        sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
        self._mm = mmap.mmap(
            sock.fileno(),
            BLOCK_SIZE * self.nblocks,
            mmap.MAP_SHARED,
            mmap.PROT_READ | mmap.PROT_WRITE,
        )
        self.view: npt.NDArray[np.uint8] = np.frombuffer(self._mm, np.uint8)
        self.state = np.zeros(1, np.int64)
        # Compile (or load from numba's cache) now, not when the first frames are waiting.
        z = np.zeros(0, np.int64)
        self.drain(
            np.zeros(0, np.uint8), (z, z.astype(np.uint32), z.astype(np.uint32), z), vlan_ok=True
        )

    def drain(
        self, data: npt.NDArray[np.uint8], cols: tuple[np.ndarray, ...], *, vlan_ok: bool
    ) -> tuple[int, int]:
        """Copy ready blocks into ``data`` and ``cols`` (offsets, caplen, wirelen, ts)."""
        off, cap, wire, ts = cols
        n, used = drain_blocks(
            self.view, self.nblocks, BLOCK_SIZE, self.state, data, off, cap, wire, ts, vlan_ok
        )
        return int(n), int(used)

    def close(self) -> None:
        """Unmap the ring (before the socket is closed)."""
        self.view = np.zeros(0, np.uint8)
        try:
            self._mm.close()
        except BufferError:
            # numba may still hold the array from its first compilation: the mapping goes
            # when the garbage collector drops that reference.
            log.debug("ring mapping still referenced; unmapped later")
