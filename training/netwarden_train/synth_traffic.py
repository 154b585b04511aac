"""Synthetic labelled captures: varied scans, floods, brute force and benign traffic.

Packet-level augmentation built from the demo generator's TCP conversation model
(``netwarden.demo_traffic``): every scenario kind is written to its own capture, so each flow
is labelled by construction (one label per capture), then cut into flows by the daemon's own
extractor. Seeds, rates, timings, payload sizes, ports and tool behaviours vary per scenario,
so the model sees families, not one capture's exact numbers.
"""

from __future__ import annotations

import logging
import random
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from netwarden.demo_traffic import (
    START_TS,
    _dns_query,
    _eph,
    _ssh_session,
    _Tcp,
    _web_session,
)
from netwarden.flows.params import FlowParams
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw
from scapy.utils import wrpcap

from .synth_logins import PROTOS
from .synth_runs import brute_force, user_logins
from .synth_tcp import SYN_OPTS, client_stack, close, conn, log_uniform, stack_pair
from .table import FlowTable

log = logging.getLogger(__name__)

Gen = Callable[[list[Packet], random.Random, float], None]


def _ip(rng: random.Random, net: str = "10.") -> str:
    return net + ".".join(str(rng.randint(1, 254)) for _ in range(4 - net.count(".")))


def _udp(out: list[Packet], t: float, src: str, dst: str, sp: int, dp: int, size: int) -> None:
    p = Ether() / IP(src=src, dst=dst, ttl=64) / UDP(sport=sp, dport=dp) / Raw(bytes(size))
    p.time = t
    out.append(p)


# ---- benign -------------------------------------------------------------------------------


def benign_web(out: list[Packet], rng: random.Random, t: float) -> None:
    for _ in range(rng.randint(4, 12)):
        _web_session(out, rng, t + rng.uniform(0, 60))
    for _ in range(rng.randint(4, 12)):
        _dns_query(out, rng, t + rng.uniform(0, 60))
    if rng.random() < 0.5:
        _ssh_session(out, rng, t + rng.uniform(0, 30))


def benign_one_way_udp(out: list[Packet], rng: random.Random, t: float) -> None:
    """Lone UDP packets: DNS answers whose query was not captured, unanswered queries, NTP,
    mDNS, SSDP, NetBIOS, LLMNR, syslog: one-packet flows that are not amplification."""
    client, server = _ip(rng, "192.168."), _ip(rng, "192.168.")
    kinds = [
        (53, lambda: rng.randint(60, 1400), True),
        (53, lambda: rng.randint(30, 80), False),
        (123, lambda: 48, False),
        (123, lambda: 48, True),
        (5353, lambda: rng.randint(30, 500), False),
        (1900, lambda: rng.randint(120, 400), False),
        (137, lambda: rng.choice([50, 62, 90]), False),
        (5355, lambda: rng.randint(30, 60), False),
        (514, lambda: rng.randint(60, 400), False),
    ]
    for _ in range(rng.randint(20, 60)):
        port, size, reply = rng.choice(kinds)
        if reply:
            _udp(out, t, server, client, port, _eph(rng), size())
        else:
            _udp(out, t, client, server, _eph(rng) if port != 5353 else 5353, port, size())
        t += rng.expovariate(rng.choice([0.2, 1.0, 5.0]))


def benign_tcp_tails(out: list[Packet], rng: random.Random, t: float) -> None:
    """Mid-connection fragments (capture started late or the flow idled out): lone ACKs,
    FIN/ACKs and data segments of long-lived connections."""
    for _ in range(rng.randint(10, 30)):
        c = _Tcp(
            out,
            _ip(rng, "192.168."),
            _ip(rng),
            _eph(rng),
            rng.choice([443, 25, 9001, 80, 993]),
            rng,
        )
        flags = rng.choice(["A", "FA", "PA", "PA"])
        size = rng.randint(1, 1400) if flags == "PA" else 0
        c._pkt(t, rng.random() < 0.5, flags, rng.randbytes(size))
        if rng.random() < 0.4:
            c._pkt(t + rng.uniform(1e-3, 0.2), rng.random() < 0.5, "A")
        t += rng.expovariate(0.5)


def benign_ftp(out: list[Packet], rng: random.Random, t: float) -> None:
    """A successful FTP login, a few commands, QUIT."""
    for _ in range(rng.randint(1, 3)):
        c = _Tcp(out, _ip(rng, "192.168."), _ip(rng, "192.168."), _eph(rng), 21, rng)
        rtt = rng.uniform(3e-4, 0.05)
        u = c.handshake(t, rtt)
        u = c.send(u + rtt / 2, False, b"220 (vsFTPd 3.0.3)\r\n")
        u = c.send(u + rng.uniform(0.5, 3), True, b"USER alice\r\n")
        u = c.send(u + rtt / 2, False, b"331 Please specify the password.\r\n")
        u = c.send(u + rng.uniform(1, 5), True, b"PASS correct-horse\r\n")
        u = c.send(u + rtt / 2 + 0.01, False, b"230 Login successful.\r\n")
        for cmd in rng.sample(
            [b"SYST\r\n", b"PWD\r\n", b"TYPE I\r\n", b"PASV\r\n", b"LIST\r\n"], 3
        ):
            u = c.send(u + rng.uniform(0.2, 4), True, cmd)
            u = c.send(u + rtt / 2, False, b"200 " + rng.randbytes(rng.randint(10, 60)) + b"\r\n")
        u = c.send(u + rng.uniform(1, 10), True, b"QUIT\r\n")
        u = c.send(u + rtt / 2, False, b"221 Goodbye.\r\n")
        c.close(u + rtt, rtt, client_first=False)
        t += rng.uniform(5, 60)


def benign_short_tcp(out: list[Packet], rng: random.Random, t: float) -> None:
    """Short request/response connections of any client stack (API calls, page loads, file
    share lookups): the benign flows a one-guess login attempt resembles."""
    server = _ip(rng, "192.168.")
    for _ in range(rng.randint(5, 30)):
        c = conn(out, rng, _ip(rng, "192.168."), server, rng.choice([80, 443, 445, 8080, 3306]))
        rtt = log_uniform(rng, 5e-5, 0.1)
        u = c.handshake(t, rtt)
        for _ in range(rng.randint(1, 3)):
            u = c.send(u + log_uniform(rng, 1e-4, 0.5), True, rng.randbytes(rng.randint(40, 900)))
            reply = rng.randbytes(int(log_uniform(rng, 20, 60_000)))
            u = c.send(u + rtt / 2 + log_uniform(rng, 1e-4, 0.3), False, reply)
        close(
            c,
            u + log_uniform(rng, 1e-3, 5),
            rtt,
            client_first=rng.random() < 0.6,
            how=rng.choice(["fin", "fin", "fin-rst", "rst"]),
        )
        t += rng.expovariate(0.5)


# ---- attacks ------------------------------------------------------------------------------


def scan_tcp(out: list[Packet], rng: random.Random, t: float) -> None:
    """SYN or connect scan, vertical (one host, many ports) or horizontal (many hosts, one
    port); timing from aggressive to polite, a few ports open."""
    scanner, target = _ip(rng, "172.16."), _ip(rng, "192.168.")
    connect = rng.random() < 0.4
    horizontal = rng.random() < 0.3
    n = rng.randint(20, 120)
    gap = rng.choice([1e-4, 1e-3, 0.01, 0.1, 0.5])
    win = rng.choice([1024, 2048, 3072, 4096])
    sport = _eph(rng)
    open_ports = set(rng.sample([21, 22, 25, 80, 443, 3306, 8080], rng.randint(0, 3)))
    stack = client_stack(rng)  # a connect scan's SYNs are the scanner OS's own
    # LAN RTTs only: a SYN answered by a reset after 0.1-0.3 s (a slow remote host) is the
    # same flow as a benign refused connection (CIC-IDS2017 BENIGN rows at z-distance 0.1):
    # generated ones raised CIC false alarms (PortScan 6 -> 16 of 4,980 benign rows)
    base_rtt = rng.uniform(1e-4, 0.02)
    ports = (
        [rng.choice([22, 80, 443, 445, 3389])] * n if horizontal else rng.sample(range(1, 65535), n)
    )
    for port in ports:
        dst = _ip(rng, "192.168.") if horizontal else target
        c = _Tcp(out, scanner, dst, _eph(rng) if connect else sport, port, rng)
        rtt = base_rtt * rng.uniform(0.7, 1.3)
        if connect:
            c._pkt(t, True, "S", window=stack.syn_win, options=SYN_OPTS[stack.os])
        else:
            c._pkt(t, True, "S", window=win, options=[("MSS", 1460)])
        if port in open_ports or (horizontal and rng.random() < 0.3):
            c._pkt(t + rtt, False, "SA", window=29200, options=[("MSS", 1460)])
            if connect:
                c._pkt(t + rtt * 1.5, True, "A")
                c._pkt(t + rtt * 1.6, True, "RA", window=0, options=[])
            else:
                c._pkt(t + rtt * 1.5, True, "R", window=0, options=[])
        elif rng.random() < 0.85:
            c._pkt(t + rtt, False, "RA", window=0, options=[])
        t += gap * rng.uniform(0.5, 1.5)


def scan_version(out: list[Packet], rng: random.Random, t: float) -> None:
    """nmap -sV style: connect to open ports, wait for a banner or send a probe, reset."""
    scanner, target = _ip(rng, "172.16."), _ip(rng, "192.168.")
    stacks = stack_pair(rng)
    base_rtt = rng.uniform(1e-4, 0.01)
    for port in rng.sample(
        [21, 22, 25, 53, 80, 110, 143, 443, 3306, 5432, 8080, 8443], rng.randint(4, 10)
    ):
        for _ in range(rng.randint(1, 3)):
            c = conn(out, rng, scanner, target, port, stacks=stacks)
            rtt = base_rtt * rng.uniform(0.7, 1.3)
            u = c.handshake(t, rtt)
            if rng.random() < 0.5:
                u = c.send(u + rtt / 2, False, rng.randbytes(rng.randint(20, 120)))
            else:
                u = c.send(
                    u + rng.uniform(0.01, 5),
                    True,
                    rng.choice(
                        [b"GET / HTTP/1.0\r\n\r\n", b"\r\n\r\n", b"HELP\r\n", rng.randbytes(40)]
                    ),
                )
                if rng.random() < 0.7:
                    u = c.send(u + rtt / 2, False, rng.randbytes(rng.randint(20, 600)))
            c._pkt(u + rng.uniform(1e-3, 0.5), True, rng.choice(["RA", "R"]), window=0, options=[])
            t += rng.uniform(0.01, 1.0)


def dos_syn_flood(out: list[Packet], rng: random.Random, t: float) -> None:
    """Spoofed SYNs (varied rate, windows, TTLs, payload) to one port; ECN bits sometimes."""
    dst, dport = _ip(rng, "192.168."), rng.choice([80, 443, 22, 25, 8080, rng.randint(1, 65535)])
    rate = rng.choice([100.0, 1000.0, 10000.0])
    size = rng.choice([0, 0, 0, 20, 120])
    flags = rng.choice(["S", "S", "SEC"])
    for _ in range(rng.randint(100, 300)):
        p = (
            Ether()
            / IP(src=_ip(rng), dst=dst, ttl=rng.randint(30, 255), id=rng.getrandbits(16))
            / TCP(
                sport=rng.randint(1024, 65535),
                dport=dport,
                seq=rng.getrandbits(32),
                flags=flags,
                window=rng.choice([512, 1024, 5840, 8192, 64240]),
            )
        )
        if size:
            p = p / Raw(rng.randbytes(size))
        p.time = t
        out.append(p)
        t += rng.expovariate(rate)


def dos_udp_flood(out: list[Packet], rng: random.Random, t: float) -> None:
    """UDP floods: a few sources blasting one port (many fast packets per flow), or a
    request flood the server answers (DHCP-discover style: a new client port each time)."""
    dst = _ip(rng, "192.168.")
    dport = rng.choice([53, 67, 80, 123, 161, 1900, 5060, rng.randint(1, 65535)])
    if rng.random() < 0.5:
        size = rng.choice([rng.randint(1, 64), rng.randint(300, 600), rng.randint(1000, 1472)])
        rate = rng.choice([500.0, 5000.0, 50000.0])
        for _ in range(rng.randint(3, 12)):
            src, sp, u = _ip(rng), rng.randint(1024, 65535), t + rng.uniform(0, 1)
            for _ in range(rng.randint(20, 120)):
                _udp(out, u, src, dst, sp, dport, size)
                u += rng.expovariate(rate)
        return
    req, rsp = rng.randint(240, 420), rng.randint(300, 600)
    rtt = rng.uniform(1e-3, 0.02)
    for _ in range(rng.randint(100, 250)):
        src, sp = _ip(rng), rng.randint(1024, 65535)
        _udp(out, t, src, dst, sp, dport, req)
        _udp(out, t + rtt * rng.uniform(0.9, 1.1), dst, src, dport, sp, rsp)
        t += rng.expovariate(rng.choice([50.0, 500.0]))


def _login_kind(protos: tuple[str, ...], benign: bool) -> Gen:
    """A generator of tool runs (or real users) against one of ``protos``."""

    def gen(out: list[Packet], rng: random.Random, t: float) -> None:
        for _ in range(2):  # two runs (tools, servers, stacks) per scenario: more variety
            proto = PROTOS[rng.choice(protos)]
            (user_logins if benign else brute_force)(out, rng, t + rng.uniform(0, 3600), proto)

    return gen


KINDS: dict[str, tuple[str, Gen]] = {
    "benign-web": ("BENIGN", benign_web),
    "benign-udp1": ("BENIGN", benign_one_way_udp),
    "benign-tcp-tail": ("BENIGN", benign_tcp_tails),
    "benign-ftp": ("BENIGN", benign_ftp),
    "benign-short-tcp": ("BENIGN", benign_short_tcp),
    "scan-tcp": ("PortScan", scan_tcp),
    "scan-version": ("PortScan", scan_version),
    "dos-syn": ("DoS", dos_syn_flood),
    "dos-udp": ("DoS", dos_udp_flood),
    # password guessing (synth_logins): tools, pacing and server failure delays drawn per run
    "brute-ssh": ("BruteForce", _login_kind(("ssh",), False)),
    "brute-ftp": ("BruteForce", _login_kind(("ftp",), False)),
    "brute-http": ("BruteForce", _login_kind(("http",), False)),
    "brute-mail": ("BruteForce", _login_kind(("pop3", "imap"), False)),
    "brute-telnet": ("BruteForce", _login_kind(("telnet",), False)),
    "brute-smb": ("BruteForce", _login_kind(("smb",), False)),
    # real users of the same services (sometimes one mistyped password first)
    "benign-login": ("BENIGN", _login_kind(tuple(PROTOS), True)),
}


def scenario(kind: str, seed: int) -> list[Packet]:
    """The packets of one scenario of ``kind`` (sorted by time)."""
    rng = random.Random(f"{kind}:{seed}")
    out: list[Packet] = []
    KINDS[kind][1](out, rng, START_TS + rng.uniform(0, 86_400))
    out.sort(key=lambda p: float(p.time))
    return out


def load_synth(
    seeds: int, params: FlowParams | None = None, kinds: list[str] | None = None
) -> FlowTable:
    """``seeds`` scenarios of every kind (or of ``kinds``) -> flows labelled by kind (origin
    "capture", source "synth-<kind>", group "synth:<kind>:<seed>")."""
    from netwarden.extract import extract_flows

    tables = []
    with tempfile.TemporaryDirectory(prefix="nw-synth-") as d:
        paths, labels = [], []
        for kind in kinds or list(KINDS):
            label = KINDS[kind][0]
            for s in range(seeds):
                p = Path(d) / f"{kind}-{s}.pcap"
                wrpcap(str(p), scenario(kind, s))
                paths.append(p)
                labels.append((kind, s, label))
        meta = dict(zip(paths, labels, strict=True))
        for path, flows in extract_flows(paths, params=params or FlowParams()):
            kind, s, label = meta[Path(path)]
            n = len(flows)
            tables.append(
                FlowTable(
                    flows.features.astype(np.float64),
                    np.full(n, label),
                    np.full(n, label),
                    np.full(n, f"synth-{kind}"),
                    np.full(n, f"synth:{kind}:{s}"),
                    np.full(n, "capture"),
                )
            )
    t = FlowTable.concat(tables)
    log.info("synthetic flows: %d", len(t))
    return t
