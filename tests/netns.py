"""Shared pieces of the live-capture tests: a veth pair between two network namespaces the
test creates (198.18.0.0/15, the benchmarking range), traffic scripts and process helpers.

The ``pair`` fixture is re-exported by conftest.py; the namespaces are deleted in a ``finally``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
NETWARDEN = Path(PY).parent / "netwarden"
MODEL = REPO / "models" / "netwarden-cic"
A_IP, B_IP = "198.18.0.1", "198.18.0.2"
# Keep only the named capabilities (as the unit does), with no way to regain others: uid 0
# stays (the interpreter lives under /root, mode 0700), but with SECBIT_NOROOT it is a
# plain user for capabilities.
SETPRIV = ["setpriv", "--securebits=+noroot,+noroot_locked,+no_setuid_fixup", "--no-new-privs"]


@dataclass(frozen=True)
class Pair:
    ns_a: str
    ns_b: str
    if_b: str

    def run(self, ns: str, *cmd: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, timeout=timeout
        )

    def popen(self, ns: str, *cmd: str, **kw: object) -> subprocess.Popen[str]:
        return subprocess.Popen(["ip", "netns", "exec", ns, *cmd], text=True, **kw)  # type: ignore[call-overload]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture()
def pair() -> Iterator[Pair]:
    tag = f"{os.getpid() % 100000}"
    p = Pair(f"nwtA{tag}", f"nwtB{tag}", f"nwb{tag}")
    if_a = f"nwa{tag}"
    try:
        _ip("netns", "add", p.ns_a)
        _ip("netns", "add", p.ns_b)
        _ip(
            "link",
            "add",
            if_a,
            "netns",
            p.ns_a,
            "type",
            "veth",
            "peer",
            "name",
            p.if_b,
            "netns",
            p.ns_b,
        )
        for ns, dev, addr in ((p.ns_a, if_a, A_IP), (p.ns_b, p.if_b, B_IP)):
            # No segmentation offload: the capture sees wire-sized frames, as on a SPAN port
            # (a sensor should also turn offloads off: ethtool -K IFACE gro off gso off tso off).
            _ip("-n", ns, "link", "set", "dev", dev, "gso_max_segs", "1", "gso_max_size", "1500")
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        yield p
    finally:
        for ns in (p.ns_a, p.ns_b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)


SEND = textwrap.dedent("""
    import socket, sys, time
    from scapy.all import IP, TCP, UDP, conf, send
    conf.verb = 0
    dst, mode = sys.argv[1], sys.argv[2]
    if mode in ("benign", "both"):
        for i in range(5):  # five small HTTP-like exchanges
            with socket.create_connection((dst, 8080), timeout=5) as s:
                s.sendall(b"GET / HTTP/1.0\\r\\nHost: test\\r\\n\\r\\n")
                while s.recv(65536):
                    pass
            time.sleep(0.1)
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for i in range(20):
            u.sendto(b"ping %d" % i, (dst, 5353))
    if mode in ("scan", "both"):
        send([IP(dst=dst) / TCP(sport=40000 + p, dport=p, flags="S") for p in range(1, 301)],
             inter=0.002)
""")


def _http_server(pair: Pair, tmp: Path) -> subprocess.Popen[str]:
    (tmp / "www").mkdir(exist_ok=True)
    (tmp / "www" / "index.html").write_text("hello " * 2000)
    srv = pair.popen(
        pair.ns_b,
        PY,
        "-m",
        "http.server",
        "8080",
        "--bind",
        B_IP,
        "--directory",
        str(tmp / "www"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while (
        pair.run(
            pair.ns_a,
            PY,
            "-c",
            f"import socket; socket.create_connection(('{B_IP}', 8080), timeout=1)",
        ).returncode
        != 0
    ):
        assert time.monotonic() < deadline, "http server did not start"
        time.sleep(0.2)
    return srv


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _only_caps(caps: str) -> list[str]:
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv (util-linux)")
    return (
        [
            *SETPRIV,
            f"--inh-caps=-all,{caps}",
            f"--ambient-caps=-all,{caps}",
            f"--bounding-set=-all,{caps}",
        ]
        if caps
        else [*SETPRIV, "--inh-caps=-all", "--bounding-set=-all"]
    )
