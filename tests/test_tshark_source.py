"""The tshark:// source (pyshark) against the native reader, and alert enrichment."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from netwarden.capture import open_capture
from netwarden.capture.tshark import enrich, open_tshark_source
from netwarden.exitcodes import UserError

pytestmark = pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")


def _concat(batches: list) -> tuple[list[bytes], np.ndarray, np.ndarray, np.ndarray]:
    frames = [
        bytes(b.data[o : o + c]) for b in batches for o, c in zip(b.offsets, b.caplen, strict=True)
    ]
    cat = lambda f: np.concatenate([getattr(b, f) for b in batches])  # noqa: E731
    return frames, cat("ts_ns"), cat("wirelen"), cat("linktype")


@pytest.mark.parametrize(
    "name",
    ["attack/tunnel/dns2tcp-small.pcap", "benign/rdp-null-linktype.pcap", "benign/dns-lab.pcapng"],
)
def test_same_frames_as_the_native_reader(shared_data: Path, name: str) -> None:
    path = shared_data / "pcaps" / name
    src = open_tshark_source(f"tshark://{path}", max_frames=16)
    try:
        got = list(src)
    finally:
        src.close()
    assert not src.live and all(len(b) <= 16 for b in got)
    with open_capture(path) as reader:
        want = list(reader)
    g, w = _concat(got), _concat(want)
    assert g[0] == w[0]
    for a, b in zip(g[1:], w[1:], strict=True):
        np.testing.assert_array_equal(a, b)
    assert np.array_equal(np.concatenate([b.seq for b in got]), np.arange(len(g[0])))


def test_bad_urls() -> None:
    with pytest.raises(UserError, match="no such file"):
        open_tshark_source("tshark:///nonexistent.pcapng")
    with pytest.raises(UserError, match="unknown"):
        open_tshark_source("tshark://eth0?snaplen=5")


def _alert(src: str, sport: int, dst: str, dport: int, proto: str) -> dict:
    return {
        "source": {"ip": src, "port": sport},
        "destination": {"ip": dst, "port": dport},
        "network": {"transport": proto},
        "netwarden": {"label": "x"},
    }


def test_enrich_alerted_flows(shared_data: Path, tmp_path: Path) -> None:
    p = shared_data / "pcaps"
    http = _alert("65.208.228.223", 80, "145.254.160.237", 3372, "tcp")  # reversed direction
    other = _alert("145.254.160.237", 3371, "216.239.59.99", 80, "tcp")
    absent = _alert("10.9.9.9", 1, "10.9.9.8", 2, "tcp")
    no_ports = {"source": {"ip": "145.254.160.237"}, "network": {"transport": "icmp"}}
    out = enrich([http, other, absent, no_ports], p / "benign" / "http.pcap")
    assert out[0]["url"] == {"domain": "www.ethereal.com"}
    assert out[1]["url"] == {"domain": "pagead2.googlesyndication.com"}
    assert out[2] == absent and out[3] == no_ports
    assert "url" not in http  # the inputs are not modified
    dns = enrich(
        [_alert("192.168.0.114", 1060, "205.152.37.23", 53, "udp")], p / "benign" / "dns-mixed.pcap"
    )
    assert dns[0]["dns"] == {"question": {"name": "chrissanders.org"}}
    tls = enrich(
        [_alert("147.32.80.37", 53110, "141.193.213.20", 443, "tcp")],
        p / "attack" / "c2" / "beacon-curl-2-3s.pcap",
    )
    assert tls[0]["tls"] == {"client": {"server_name": "testing.com"}}


@pytest.mark.skipif(os.geteuid() != 0, reason="live capture needs CAP_NET_RAW")
def test_live_capture_on_loopback_ticks_and_stops_tshark() -> None:
    port = 47000 + os.getpid() % 1000
    src = open_tshark_source(f"tshark://lo?filter=udp%20port%20{port}&tick_ms=200")
    got: list[int] = []
    pids: list[int] = []

    def traffic() -> None:
        time.sleep(4)  # tshark needs a moment to start capturing
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(5):
                s.sendto(b"x" * 100, ("127.0.0.1", port))
        time.sleep(2)
        pids.extend(p.pid for p in src._cap._running_processes)
        src.close()

    t = threading.Thread(target=traffic)
    t.start()
    for batch in src:
        got.append(len(batch))
        assert len(batch) == 0 or set(batch.linktype.tolist()) == {1}
    t.join()
    assert got.count(0) >= 5  # quiet-link ticks
    assert sum(got) >= 4
    assert pids  # tshark was running at close()
    deadline = time.monotonic() + 10
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False
