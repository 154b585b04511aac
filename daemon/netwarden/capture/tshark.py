"""tshark as a source (``tshark://eth0``, ``tshark:///path/file.pcapng``) and alert enrichment.

**Source.**  For inputs the native readers do not handle (capture formats other than pcap and
pcapng, interfaces of unusual link types), pyshark runs tshark with JSON output and the raw
frame bytes; the raw bytes go to the native decoder like any other frames, so flows and
features are identical to a pcap replay.  pyshark builds one Python object per packet, so this
source is for low rates (a few thousand packets per second), not for a busy link:
use ``iface://`` there.  A live source yields an empty batch every ``tick_ms`` of silence.

**Enrichment.**  :func:`enrich` adds what tshark's dissectors see in an alerted flow (DNS query
name, TLS SNI, HTTP host) to the alert documents, running tshark once over a capture of the
same traffic with a display filter that selects the alerted flows only.
"""

from __future__ import annotations

import contextlib
import copy
import ipaddress
import logging
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np

from ..exitcodes import BAD_CONFIG, BAD_INPUT, UserError
from ..packets import (
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    FrameBatch,
)

if TYPE_CHECKING:
    from ..app_sources import SourceContext
    from ..config import Url

log = logging.getLogger(__name__)

# Wiretap encapsulation numbers (frame.encap_type) to pcap link types.
_WTAP_TO_LINKTYPE = {
    1: LINKTYPE_ETHERNET,
    7: LINKTYPE_RAW,
    15: LINKTYPE_NULL,
    25: LINKTYPE_LINUX_SLL,
    210: LINKTYPE_LINUX_SLL2,
}
UNKNOWN_LINKTYPE = 0xFFFF  # the decoder counts these frames as skipped
_END = object()

Frame = tuple[bytes, int, int, int]  # raw bytes, ts_ns, wire length, link type


def _epoch_ns(text: str) -> int:
    """``frame.time_epoch`` text to integer nanoseconds, without float rounding.

    >>> _epoch_ns("1585754662.417775000")
    1585754662417775000
    >>> _epoch_ns("12.5")
    12500000000
    """
    sec, _, frac = text.partition(".")
    return int(sec) * 1_000_000_000 + int((frac + "000000000")[:9])


def _frame(pkt: Any) -> Frame:
    fi = pkt.frame_info
    raw = pkt.get_raw_packet()
    lt = _WTAP_TO_LINKTYPE.get(int(fi.encap_type), UNKNOWN_LINKTYPE)
    return raw, _epoch_ns(str(fi.time_epoch)), int(fi.len), lt


def frames_to_batch(frames: Sequence[Frame], *, first_seq: int) -> FrameBatch:
    """Pack ``(raw, ts_ns, wirelen, linktype)`` frames into one :class:`FrameBatch`."""
    n = len(frames)
    caplen = np.fromiter((len(f[0]) for f in frames), np.uint32, n)
    offsets = np.zeros(n, np.int64)
    if n > 1:
        np.cumsum(caplen[:-1], out=offsets[1:])
    return FrameBatch(
        data=np.frombuffer(b"".join(f[0] for f in frames), np.uint8).copy(),
        offsets=offsets,
        caplen=caplen,
        wirelen=np.fromiter((f[2] for f in frames), np.uint32, n),
        ts_ns=np.fromiter((f[1] for f in frames), np.int64, n),
        linktype=np.fromiter((f[3] for f in frames), np.uint16, n),
        part=np.zeros(n, np.int32),
        seq=np.arange(first_seq, first_seq + n, dtype=np.int64),
    )


class TsharkSource:
    """Frames read by tshark through pyshark (a ``Source``).

    Args:
        target: an interface name (live) or a capture file path.
        live: True for an interface.
        bpf: capture filter for an interface (tcpdump syntax).
        max_frames: most frames per batch.
        tick_ms: a live source yields an empty batch after this much silence.
    """

    name = "tshark"

    def __init__(
        self, target: str, *, live: bool, bpf: str = "", max_frames: int = 1024, tick_ms: int = 500
    ) -> None:
        if shutil.which("tshark") is None:
            raise UserError("tshark:// source: the tshark program is not installed", BAD_INPUT)
        try:
            import pyshark
        except ImportError:
            raise UserError(
                "tshark:// source needs pyshark: pip install 'netwarden[tshark]'", BAD_INPUT
            ) from None
        if not live and not Path(target).is_file():
            raise UserError(f"tshark:// source: no such file {target}", BAD_INPUT)
        self.live = live
        self.target = target
        self._max_frames = max_frames
        self._tick_s = tick_ms / 1000
        self._seq = 0
        self._closing = threading.Event()
        kw: dict[str, Any] = {"use_json": True, "include_raw": True}
        if live:
            self._cap = pyshark.LiveCapture(interface=target, bpf_filter=bpf or None, **kw)
        else:
            self._cap = pyshark.FileCapture(target, keep_packets=False, **kw)

    def __iter__(self) -> Iterator[FrameBatch]:
        frames = self._live_frames() if self.live else (_frame(p) for p in self._cap)
        pending: list[Frame] = []
        for fr in frames:
            if fr is None or len(pending) >= self._max_frames:
                yield frames_to_batch(pending, first_seq=self._seq)
                self._seq += len(pending)
                pending = []
            if fr is not None:
                pending.append(fr)
            if self._closing.is_set():
                break
        if pending:
            yield frames_to_batch(pending, first_seq=self._seq)
            self._seq += len(pending)

    def _live_frames(self) -> Iterator[Frame | None]:
        """Frames from a reader thread; None when a batch should be handed over."""
        q: queue.Queue[Any] = queue.Queue(maxsize=65536)
        t = threading.Thread(target=self._read_live, args=(q,), name="tshark-reader", daemon=True)
        t.start()
        deadline = time.monotonic() + self._tick_s
        while not self._closing.is_set():
            try:
                item = q.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                deadline = time.monotonic() + self._tick_s
                yield None
                continue
            if item is _END:
                return
            yield item

    def _read_live(self, q: queue.Queue[Any]) -> None:
        import asyncio

        asyncio.set_event_loop(asyncio.new_event_loop())
        try:
            for pkt in self._cap.sniff_continuously():
                if self._closing.is_set():
                    break
                q.put(_frame(pkt))
        except Exception:  # tshark died: end the stream (logged here)
            log.exception("tshark capture on %s failed", self.target)
        finally:
            q.put(_END)

    def close(self) -> None:
        """Stop reading; the iterator ends at the next frame or tick, tshark is terminated."""
        self._closing.set()
        if not self.live:
            self._cap.close()
            return
        # The reader thread owns pyshark's event loop: end its processes by PID instead.
        for proc in list(getattr(self._cap, "_running_processes", ())):
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)


def open_tshark_source(url: str, *, max_frames: int = 1024) -> TsharkSource:
    """``tshark://IFACE?filter=BPF`` (live) or ``tshark:///path/file`` (a capture file).

    Raises:
        UserError: bad URL (exit code 3), tshark or pyshark missing, no such file (4).
    """
    u = urlsplit(url)
    opts = dict(parse_qsl(u.query))
    unknown = set(opts) - {"filter", "tick_ms"}
    if u.scheme != "tshark" or unknown or (u.netloc and u.path) or not (u.netloc or u.path):
        raise UserError(
            f"source URL {url!r}: expected tshark://IFACE?filter=... or "
            f"tshark:///path/file" + (f" (unknown {sorted(unknown)})" if unknown else ""),
            BAD_CONFIG,
        )
    tick = opts.get("tick_ms", "500")
    if not tick.isdigit() or not 10 <= int(tick) <= 60000:
        raise UserError(f"source URL {url!r}: tick_ms must be in [10, 60000]", BAD_CONFIG)
    live = bool(u.netloc)
    return TsharkSource(
        u.netloc or u.path,
        live=live,
        bpf=opts.get("filter", ""),
        max_frames=max_frames,
        tick_ms=int(tick),
    )


def open_source(url: Url, ctx: SourceContext) -> TsharkSource:
    """Factory for ``app_sources.register_source_scheme("tshark", open_source)``."""
    return open_tshark_source(url.raw, max_frames=min(ctx.max_frames, 4096))


# --- enrichment --------------------------------------------------------------------------------

_FIELDS = (
    "ip.src",
    "ip.dst",
    "ipv6.src",
    "ipv6.dst",
    "tcp.srcport",
    "tcp.dstport",
    "udp.srcport",
    "udp.dstport",
    "dns.qry.name",
    "tls.handshake.extensions_server_name",
    "http.host",
)
# tshark field -> ECS field set on the alert
ENRICHED = {
    "dns.qry.name": "dns.question.name",
    "tls.handshake.extensions_server_name": "tls.client.server_name",
    "http.host": "url.domain",
}
_CHUNK = 100  # flows per display filter (tshark handles long filters, but slowly)

FlowKey = tuple[frozenset[tuple[str, int]], str]


def _get(doc: Mapping[str, Any], dotted: str) -> Any:
    cur: Any = doc
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            return doc.get(dotted)
        cur = cur[part]
    return cur


def _key(doc: Mapping[str, Any]) -> FlowKey | None:
    """Direction-free flow key of an alert document, None without addresses and ports."""
    try:
        a = (str(ipaddress.ip_address(_get(doc, "source.ip"))), int(_get(doc, "source.port")))
        b = (
            str(ipaddress.ip_address(_get(doc, "destination.ip"))),
            int(_get(doc, "destination.port")),
        )
    except (TypeError, ValueError):
        return None
    proto = str(_get(doc, "network.transport") or "").lower()
    return (frozenset((a, b)), proto) if proto in ("tcp", "udp") else None


def _filter(keys: Sequence[FlowKey]) -> str:
    parts = []
    for ends, proto in keys:
        (ip1, p1), (ip2, p2) = (list(ends) * 2)[:2]
        fam = "ipv6" if ":" in ip1 else "ip"
        parts.append(
            f"({fam}.addr=={ip1} && {fam}.addr=={ip2} && {proto}.port=={p1} && {proto}.port=={p2})"
        )
    return " || ".join(parts)


def _tshark_fields(pcap: Path, display_filter: str) -> list[list[str]]:
    cmd = [
        "tshark",
        "-n",
        "-r",
        str(pcap),
        "-Y",
        display_filter,
        "-T",
        "fields",
        "-E",
        "separator=\t",
        "-E",
        "occurrence=f",
    ]
    for f in _FIELDS:
        cmd += ["-e", f]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    if r.returncode != 0:
        raise UserError(f"enrich: tshark failed on {pcap}: {r.stderr.strip()[-300:]}", BAD_INPUT)
    return [line.split("\t") for line in r.stdout.splitlines()]


def _row_key(row: list[str]) -> FlowKey | None:
    v = dict(zip(_FIELDS, row, strict=False))
    src, dst = v.get("ip.src") or v.get("ipv6.src"), v.get("ip.dst") or v.get("ipv6.dst")
    for proto in ("tcp", "udp"):
        sp, dp = v.get(f"{proto}.srcport"), v.get(f"{proto}.dstport")
        if src and dst and sp and dp:
            return frozenset(((src, int(sp)), (dst, int(dp)))), proto
    return None


def _found(pcap: Path, keys: Sequence[FlowKey]) -> dict[FlowKey, dict[str, str]]:
    """Per flow key, the first value of each enriched field tshark saw."""
    out: dict[FlowKey, dict[str, str]] = {}
    for i in range(0, len(keys), _CHUNK):
        for row in _tshark_fields(pcap, _filter(keys[i : i + _CHUNK])):
            key = _row_key(row)
            if key is None:
                continue
            got = out.setdefault(key, {})
            for tfield, value in zip(_FIELDS, row, strict=False):
                if tfield in ENRICHED and value and ENRICHED[tfield] not in got:
                    got[ENRICHED[tfield]] = value
    return out


def enrich(alert_docs: Sequence[Mapping[str, Any]], pcap_path: str | Path) -> list[dict[str, Any]]:
    """Copies of ``alert_docs`` with ``dns.question.name``, ``tls.client.server_name`` and
    ``url.domain`` added where tshark finds them in the alerted flow's packets.

    Documents without a TCP/UDP five-tuple, or whose flow tshark does not see, come back
    unchanged.  Only the alerted flows are dissected (a display filter over their tuples).

    Raises:
        UserError: tshark is missing or cannot read the capture.
    """
    if shutil.which("tshark") is None:
        raise UserError("enrich: the tshark program is not installed", BAD_INPUT)
    docs = [copy.deepcopy(dict(d)) for d in alert_docs]
    keys = [_key(d) for d in docs]
    wanted = sorted({k for k in keys if k is not None}, key=repr)
    found = _found(Path(pcap_path), wanted) if wanted else {}
    for doc, key in zip(docs, keys, strict=True):
        for dotted, value in found.get(key, {}).items() if key is not None else ():
            _set(doc, dotted, value)
    return docs


def _set(doc: dict[str, Any], dotted: str, value: str) -> None:
    *parents, leaf = dotted.split(".")
    cur = doc
    for p in parents:
        nxt = cur.get(p)
        if not isinstance(nxt, dict):
            nxt = cur[p] = {}
        cur = nxt
    cur[leaf] = value
