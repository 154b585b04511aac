"""Live capture from a network interface: ``iface://eth0?filter=BPF&promisc=1&snaplen=N``.

An ``AF_PACKET``/``SOCK_RAW`` socket (needs ``CAP_NET_RAW``, also for promiscuous mode, which is
a packet-socket membership; ``CAP_NET_ADMIN`` only lets ``buffer_mb`` exceed
``net.core.rmem_max``) reads whole link-layer frames of both directions into one preallocated
buffer with ``recvmsg_into``: no Python object per frame beyond the call itself.  A batch ends
after ``batch_ms`` (50 ms) from its first frame, at ``max_frames`` frames, or when the buffer
cannot hold another ``snaplen`` bytes; on a quiet link an empty batch comes every ``tick_ms``
(500 ms) so the application can expire idle flows by the wall clock.

Kernel side:

* the BPF filter is compiled by libpcap (through scapy, no tcpdump needed) for the interface's
  link type and attached with ``SO_ATTACH_FILTER`` *before* the socket is bound, so no
  unfiltered frame is ever queued; the filter's accept length is set to ``snaplen`` so the
  kernel copies only that much;
* on loopback every packet passes twice (outgoing, then incoming): a two-instruction prefix
  to the filter drops the outgoing copy;
* timestamps come from ``SO_TIMESTAMPNS`` (ns), the original length and a VLAN tag stripped by
  the NIC from ``PACKET_AUXDATA`` (the tag is put back, as libpcap does);
* kernel drops are read with ``PACKET_STATISTICS`` after every batch and added to
  ``netwarden_capture_kernel_drops_total``.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, parse_qsl, urlsplit

import numpy as np

from ..exitcodes import BAD_CONFIG, BAD_INPUT, UserError
from ..metrics import Metrics
from ..packets import LINKTYPE_ETHERNET, LINKTYPE_RAW, FrameBatch
from .bpf import attach_filter, bpf_program
from .ring import BLOCK_SIZE, Ring

if TYPE_CHECKING:
    from ..app_sources import SourceContext
    from ..config import Url

log = logging.getLogger(__name__)

ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_STATISTICS = 6
PACKET_AUXDATA = 8
SO_RCVBUFFORCE = 33
SO_TIMESTAMPNS = 35  # == SCM_TIMESTAMPNS on x86-64 and arm64
TP_STATUS_VLAN_VALID = 0x10
TP_STATUS_VLAN_TPID_VALID = 0x40
_AUXDATA = struct.Struct("=IIIHHHH")  # struct tpacket_auxdata
_TIMESPEC = struct.Struct("=qq")
_ANC_SIZE = socket.CMSG_SPACE(_TIMESPEC.size) + socket.CMSG_SPACE(_AUXDATA.size)

# ARPHRD_* types whose SOCK_RAW frames start with an Ethernet header / with the IP header.
_ETHERNET_HW = {1, 6, 772}  # ETHER, IEEE802, LOOPBACK
_RAW_IP_HW = {0xFFFE, 512, 519, 768, 769, 776}  # NONE (tun), PPP, RAWIP, TUNNEL, TUNNEL6, SIT
ARPHRD_LOOPBACK = 772


_INTS = {
    "snaplen": (64, 262144),
    "batch_ms": (1, 10000),
    "tick_ms": (10, 60000),
    "max_frames": (1, 1 << 20),
    "buffer_mb": (1, 1024),
}
_FLAGS = ("promisc", "ring")


class LiveCaptureError(UserError):
    """The interface cannot be captured (missing, not permitted, unsupported link type)."""


@dataclass(frozen=True, slots=True)
class IfaceOptions:
    """Validated ``iface://`` URL.  ``buffer_mb`` is the socket receive buffer."""

    iface: str
    filter: str = ""
    promisc: bool = False
    ring: bool = False  # TPACKET_V3 ring (buffer_mb of 1 MiB blocks) instead of recvmsg
    snaplen: int = 65535
    batch_ms: int = 50
    tick_ms: int = 500
    max_frames: int = 4096
    buffer_mb: int = 8


def parse_iface_url(url: str | SplitResult) -> IfaceOptions:
    """Validate an ``iface://NAME?key=value&...`` URL.

    Raises:
        UserError: (exit code 3) unknown key, bad value, or no interface name.

    >>> o = parse_iface_url("iface://eth0?filter=tcp%20port%2080&promisc=1&snaplen=128")
    >>> o.iface, o.filter, o.promisc, o.ring, o.snaplen, o.batch_ms
    ('eth0', 'tcp port 80', True, False, 128, 50)
    """
    u = urlsplit(url) if isinstance(url, str) else url
    if u.scheme != "iface" or not u.netloc or u.path not in ("", "/"):
        raise UserError(f"source URL {u.geturl()!r}: expected iface://INTERFACE?...", BAD_CONFIG)
    kw: dict[str, object] = {}
    for key, value in parse_qsl(u.query, keep_blank_values=True, strict_parsing=False):
        kw[key] = _option(u.geturl(), key, value)
    return IfaceOptions(iface=u.netloc, **kw)  # type: ignore[arg-type]


def _option(url: str, key: str, value: str) -> object:
    """One query option, checked: the error names the URL, the key, the rule and the value."""
    if key == "filter":
        return value
    if key in _FLAGS:
        if value not in ("0", "1", "true", "false"):
            raise UserError(f"source URL {url!r}: {key} must be 0 or 1, not {value!r}", BAD_CONFIG)
        return value in ("1", "true")
    if key in _INTS:
        lo, hi = _INTS[key]
        if not value.isdigit() or not lo <= int(value) <= hi:
            raise UserError(
                f"source URL {url!r}: {key} must be an integer in [{lo}, {hi}], not {value!r}",
                BAD_CONFIG,
            )
        return int(value)
    known = ", ".join(("filter", *_FLAGS, *_INTS))
    raise UserError(f"source URL {url!r}: unknown option {key!r} (known: {known})", BAD_CONFIG)


def open_iface_source(url: str | SplitResult, metrics: Metrics | None = None) -> IfaceSource:
    """Open a live capture described by an ``iface://`` URL (the source-registry factory)."""
    return IfaceSource(parse_iface_url(url), metrics=metrics)


def open_source(url: Url, ctx: SourceContext) -> IfaceSource:
    """Factory for ``app_sources.register_source_scheme("iface", open_source)``."""
    return open_iface_source(url.raw, ctx.metrics)


class IfaceSource:
    """Live frames of one interface as :class:`FrameBatch` objects (a ``Source``)."""

    name = "iface"
    live = True

    def __init__(self, opts: IfaceOptions, *, metrics: Metrics | None = None) -> None:
        self.opts = opts
        self.metrics = metrics
        self.kernel_packets = 0
        self.kernel_drops = 0
        self._seq = 0
        self._wake = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._closing = False
        self._running = False
        self.link_up = True  # False from an ENETDOWN until the next frame
        self._sock, self.linktype, self._ring = _open_socket(opts)
        self._vlan_ok = self.linktype == LINKTYPE_ETHERNET
        self._bufsize = max(8 << 20, 4 * (opts.snaplen + 4))
        self._buf = np.empty(self._bufsize, np.uint8)
        self._view = memoryview(self._buf)  # type: ignore[arg-type]
        log.info(
            "capturing on %s (link type %d, filter %r, promisc %s, snaplen %d)",
            opts.iface,
            self.linktype,
            opts.filter,
            opts.promisc,
            opts.snaplen,
        )

    def __iter__(self) -> Iterator[FrameBatch]:
        if self._running or self._sock.fileno() < 0:
            return
        self._running = True
        poll = select.poll()
        poll.register(self._sock, select.POLLIN)
        poll.register(self._wake, select.POLLIN)
        try:
            while not self._closing:
                batch = self._fill(poll) if self._ring is None else self._fill_ring(poll)
                self._read_stats()
                yield batch
        finally:
            self._release()

    def _fill(self, poll: select.poll) -> FrameBatch:
        """Read frames until the batch is full, ``batch_ms`` passed, or a quiet ``tick_ms``."""
        o = self.opts
        off = np.empty(o.max_frames, np.int64)
        cap = np.empty(o.max_frames, np.uint32)
        wire = np.empty(o.max_frames, np.uint32)
        ts = np.empty(o.max_frames, np.int64)
        n = used = 0
        deadline = time.monotonic() + o.tick_ms / 1000
        limit = self._bufsize - o.snaplen - 4
        while n < o.max_frames and used <= limit and not self._closing:
            got = self._recv_one(used)
            if got is None:
                wait = deadline - time.monotonic()
                if wait <= 0:
                    break
                self._wait(poll, wait)
                continue
            if n == 0:
                deadline = time.monotonic() + o.batch_ms / 1000
            start, caplen, wirelen, ts_ns = got
            off[n], cap[n], wire[n], ts[n] = start, caplen, wirelen, ts_ns
            n += 1
            used = start + caplen
        return self._batch(n, used, (off, cap, wire, ts))

    def _fill_ring(self, poll: select.poll) -> FrameBatch:
        """Take every ready ring block (the kernel retires one ``batch_ms`` after its first
        frame); an empty batch after a quiet ``tick_ms``."""
        assert self._ring is not None
        m = max(self.opts.max_frames, BLOCK_SIZE // 64)  # a block never holds more frames
        cols = (
            np.empty(m, np.int64),
            np.empty(m, np.uint32),
            np.empty(m, np.uint32),
            np.empty(m, np.int64),
        )
        deadline = time.monotonic() + self.opts.tick_ms / 1000
        n = used = 0
        while not self._closing:
            n, used = self._ring.drain(self._buf, cols, vlan_ok=self._vlan_ok)
            self.link_up = self.link_up or n > 0
            wait = deadline - time.monotonic()
            if n or wait <= 0:
                break
            self._wait(poll, wait)
        return self._batch(n, used, cols)

    def _wait(self, poll: select.poll, wait_s: float) -> None:
        """Sleep until frames (or a ring block) arrive, ``close()``, or ``wait_s``."""
        for fd, events in poll.poll(wait_s * 1000):
            if fd == self._sock.fileno() and events & select.POLLERR:
                # Consume the pending error, or poll would return at once forever (ring mode).
                self._socket_error(self._sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR))

    def _socket_error(self, err: int) -> None:
        """ENETDOWN: the link went down (capture resumes when it is up again) or the
        interface was deleted (the capture cannot resume: raise)."""
        if err != errno.ENETDOWN:
            raise OSError(err, f"capture on {self.opts.iface}: {os.strerror(err)}")
        try:
            socket.if_nametoindex(self.opts.iface)
        except OSError:
            raise LiveCaptureError(
                f"capture: interface {self.opts.iface} disappeared", BAD_INPUT
            ) from None
        if self.link_up:
            log.warning("capture on %s: link down; waiting for it to come back", self.opts.iface)
        self.link_up = False
        if self.metrics is not None:
            self.metrics.errors.labels(stage="capture").inc()

    def _recv_one(self, used: int) -> tuple[int, int, int, int] | None:
        """Receive one frame at ``used`` (+4 spare for a VLAN tag); None when none is queued."""
        try:
            nbytes, anc, _flags, _addr = self._sock.recvmsg_into(
                [self._view[used + 4 : used + 4 + self.opts.snaplen]],
                _ANC_SIZE,
                socket.MSG_DONTWAIT,
            )
        except (BlockingIOError, InterruptedError):
            return None
        except OSError as e:
            self._socket_error(e.errno or 0)
            return None
        self.link_up = True
        ts_ns, wirelen, tci, tpid = 0, nbytes, -1, 0x8100
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = _TIMESPEC.unpack_from(data)
                ts_ns = sec * 1_000_000_000 + nsec
            elif level == SOL_PACKET and kind == PACKET_AUXDATA:
                status, wirelen, _snap, _mac, _net, vtci, vtpid = _AUXDATA.unpack_from(data)
                if status & TP_STATUS_VLAN_VALID:
                    tci = vtci
                    tpid = vtpid if status & TP_STATUS_VLAN_TPID_VALID else 0x8100
        if ts_ns == 0:
            ts_ns = time.time_ns()
        if tci < 0 or not self._vlan_ok or nbytes < 12:
            return used + 4, nbytes, wirelen, ts_ns
        # Put the tag the NIC stripped back between the MAC addresses and the EtherType.
        self._buf[used : used + 12] = self._buf[used + 4 : used + 16]
        self._buf[used + 12 : used + 16] = np.frombuffer(struct.pack("!HH", tpid, tci), np.uint8)
        return used, nbytes + 4, wirelen + 4, ts_ns

    def _batch(self, n: int, used: int, cols: tuple[np.ndarray, ...]) -> FrameBatch:
        off, cap, wire, ts = cols
        seq = np.arange(self._seq, self._seq + n, dtype=np.int64)
        self._seq += n
        return FrameBatch(
            data=self._buf[:used].copy(),
            offsets=off[:n].copy(),
            caplen=cap[:n].copy(),
            wirelen=wire[:n].copy(),
            ts_ns=ts[:n].copy(),
            linktype=np.full(n, self.linktype, np.uint16),
            part=np.zeros(n, np.int32),
            seq=seq,
        )

    def _read_stats(self) -> None:
        """Add the kernel's packet and drop counts since the last read (reading resets them)."""
        if self._sock.fileno() < 0:
            return
        packets, drops = struct.unpack(
            "=II", self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
        )
        self.kernel_packets += packets
        self.kernel_drops += drops
        if drops and self.metrics is not None:
            self.metrics.capture_drops.inc(drops)

    def close(self) -> None:
        """Stop the capture: the iterator ends within one poll; safe from signal handlers."""
        self._closing = True
        if not self._running:
            self._release()
        elif self._wake >= 0:
            os.eventfd_write(self._wake, 1)

    def _release(self) -> None:
        if self._sock.fileno() >= 0:
            self._read_stats()
            if self._ring is not None:
                self._ring.close()
            self._sock.close()
        if self._wake >= 0:
            os.close(self._wake)
            self._wake = -1

    def __del__(self) -> None:
        sock = getattr(self, "_sock", None)
        if sock is not None and sock.fileno() >= 0:
            sock.close()
        if getattr(self, "_wake", -1) >= 0:
            os.close(self._wake)


def _open_socket(o: IfaceOptions) -> tuple[socket.socket, int, Ring | None]:
    """Create, filter, then bind the packet socket (so nothing unfiltered is ever queued)."""
    try:
        ifindex = socket.if_nametoindex(o.iface)
    except OSError:
        raise LiveCaptureError(f"capture: no such interface {o.iface!r}", BAD_INPUT) from None
    try:
        # Protocol 0: the socket receives nothing until bind() names ETH_P_ALL.
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
    except PermissionError:
        raise LiveCaptureError(
            f"capture on {o.iface}: opening a packet socket needs CAP_NET_RAW", BAD_INPUT
        ) from None
    try:
        linktype, ring = _configure(sock, o, ifindex)
        return sock, linktype, ring
    except BaseException:
        sock.close()
        raise


def _configure(sock: socket.socket, o: IfaceOptions, ifindex: int) -> tuple[int, Ring | None]:
    """Filter, options, ring, bind, promiscuous mode; returns the link type and the ring."""
    hatype = _hatype(o.iface)
    linktype = _linktype(o.iface, hatype)
    prog = bpf_program(
        o.filter, linktype=linktype, snaplen=o.snaplen, drop_outgoing=hatype == ARPHRD_LOOPBACK
    )
    attach_filter(sock, prog)
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    sock.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    ring = Ring(sock, size_mb=o.buffer_mb, retire_ms=o.batch_ms) if o.ring else None
    if ring is None:
        _set_rcvbuf(sock, o.buffer_mb << 20)
    sock.bind((o.iface, ETH_P_ALL))
    if o.promisc:
        mreq = struct.pack("=iHH8s", ifindex, PACKET_MR_PROMISC, 0, b"")
        try:
            sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
        except PermissionError:
            raise LiveCaptureError(
                f"capture on {o.iface}: promiscuous mode not permitted", BAD_INPUT
            ) from None
    sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)  # reset the counters
    return linktype, ring


def _hatype(iface: str) -> int:
    """ARPHRD type of an interface (from sysfs of the current network namespace)."""
    try:
        with open(f"/sys/class/net/{iface}/type") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        # /sys may show another namespace (ip netns exec remounts it; a bare setns does not).
        probe = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        try:
            probe.bind((iface, 0))
            return int(probe.getsockname()[3])
        finally:
            probe.close()


def _linktype(iface: str, hatype: int) -> int:
    if hatype in _ETHERNET_HW:
        return LINKTYPE_ETHERNET
    if hatype in _RAW_IP_HW:
        return LINKTYPE_RAW
    raise LiveCaptureError(
        f"capture on {iface}: unsupported link type ARPHRD {hatype} (supported: Ethernet, "
        "loopback, tun/ppp/raw-IP); use tshark://{iface}",
        BAD_INPUT,
    )


def _set_rcvbuf(sock: socket.socket, size: int) -> None:
    """Ask for a large receive buffer; without CAP_NET_ADMIN the kernel caps it at rmem_max."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except OSError as e:
        if e.errno != errno.EPERM:
            raise
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
