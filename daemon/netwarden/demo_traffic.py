"""Synthetic demo traffic: benign web, DNS and SSH, plus a port scan, a SYN flood and an SSH
brute force, shaped like the CIC-IDS2017 families a model trained on that data knows.

Every TCP conversation is built packet by packet with real sequence numbers, options and
windows (a Linux client's SYN: window 29200, MSS/SACK/timestamps/window-scale options), so the
flow features match real captures.  A seeded ``random.Random`` drives all sizes and gaps: the
same seed gives the same bytes.  scapy is used here only (not on the hot path).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw
from scapy.utils import wrpcap

START_TS = 1_499_331_600.0  # 2017-07-06 09:00 UTC: a CIC-IDS2017 capture day
SERVER_WEB = "192.168.10.50"
SERVER_SSH = "192.168.10.51"
DNS_SERVER = "192.168.10.3"
ATTACKER = "172.16.0.1"  # the CIC-IDS2017 attacker as seen inside the victim network (NAT)
BRUTE_FORCER = "172.16.0.2"
FLOOD_NET = "198.51.100."  # spoofed SYN-flood sources (TEST-NET-2)

# Who sent a flow's first packet -> demo family (see :func:`family_of`).
FAMILIES = {
    "192.168.10.5": "benign web",
    "192.168.10.9": "benign dns",
    "192.168.10.14": "benign ssh",
    ATTACKER: "port scan",
    BRUTE_FORCER: "ssh brute force",
}

_LINUX_SYN_OPTS = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (0, 0)), ("NOP", None),
                   ("WScale", 7)]
_SYNACK_OPTS = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (0, 0)), ("NOP", None),
                ("WScale", 7)]
_TS_OPTS = [("NOP", None), ("NOP", None), ("Timestamp", (0, 0))]


def family_of(src_ip: str) -> str:
    """The demo family of a flow by its initiator's address.

    >>> family_of("198.51.100.7"), family_of("172.16.0.1")
    ('syn flood', 'port scan')
    """
    if src_ip.startswith(FLOOD_NET):
        return "syn flood"
    return FAMILIES.get(src_ip, "other")


@dataclass
class _Tcp:
    """One TCP conversation between a client and a server; appends packets to ``out``."""

    out: list[Packet]
    client: str
    server: str
    sport: int
    dport: int
    rng: random.Random
    cseq: int = 0
    sseq: int = 0
    cwin: int = 229  # window after the handshake, scaled by 2^7 (~29 KB)
    swin: int = 227
    macs: tuple[str, str] = ("00:0c:29:aa:00:01", "00:0c:29:bb:00:02")
    ipid: list[int] = field(default_factory=lambda: [0, 0])

    def __post_init__(self) -> None:
        self.cseq = self.rng.getrandbits(32)
        self.sseq = self.rng.getrandbits(32)
        self.ipid = [self.rng.getrandbits(16), self.rng.getrandbits(16)]

    def _pkt(self, t: float, from_client: bool, flags: str, payload: bytes = b"", *,
             window: int | None = None, options: Any = None) -> None:
        src, dst = (self.client, self.server) if from_client else (self.server, self.client)
        sp, dp = (self.sport, self.dport) if from_client else (self.dport, self.sport)
        seq, ack = (self.cseq, self.sseq) if from_client else (self.sseq, self.cseq)
        win = window if window is not None else (self.cwin if from_client else self.swin)
        i = 0 if from_client else 1
        self.ipid[i] = (self.ipid[i] + 1) & 0xFFFF
        mac_src, mac_dst = self.macs if from_client else self.macs[::-1]
        tcp = TCP(sport=sp, dport=dp, seq=seq, ack=ack if "A" in flags else 0, flags=flags,
                  window=win, options=_TS_OPTS if options is None else options)
        p = (Ether(src=mac_src, dst=mac_dst)
             / IP(src=src, dst=dst, ttl=64 if from_client else 63, id=self.ipid[i], flags="DF")
             / tcp)
        if payload:
            p = p / Raw(load=payload)
        p.time = t
        self.out.append(p)
        step = len(payload) + (1 if ("S" in flags or "F" in flags) else 0)
        if from_client:
            self.cseq = (self.cseq + step) & 0xFFFFFFFF
        else:
            self.sseq = (self.sseq + step) & 0xFFFFFFFF

    def handshake(self, t: float, rtt: float) -> float:
        self._pkt(t, True, "S", window=29200, options=_LINUX_SYN_OPTS)
        self._pkt(t + rtt / 2, False, "SA", window=28960, options=_SYNACK_OPTS)
        self._pkt(t + rtt, True, "A")
        return t + rtt

    def send(self, t: float, from_client: bool, data: bytes, mss: int = 1448) -> float:
        """Send ``data`` in MSS-sized segments (PSH on the last), acked by the peer."""
        for i in range(0, len(data), mss):
            last = i + mss >= len(data)
            self._pkt(t, from_client, "PA" if last else "A", data[i:i + mss])
            t += self.rng.uniform(20e-6, 120e-6)
        return t

    def ack(self, t: float, from_client: bool) -> float:
        self._pkt(t, from_client, "A")
        return t

    def close(self, t: float, rtt: float, client_first: bool = True) -> float:
        self._pkt(t, client_first, "FA")
        self._pkt(t + rtt / 2, not client_first, "FA")
        self._pkt(t + rtt, client_first, "A")
        return t + rtt


def _eph(rng: random.Random) -> int:
    return rng.randint(32768, 60999)  # Linux ephemeral port range


def _web_session(out: list[Packet], rng: random.Random, t: float) -> None:
    c = _Tcp(out, "192.168.10.5", SERVER_WEB, _eph(rng), 80, rng)
    rtt = rng.uniform(0.3e-3, 2e-3)
    path = rng.choice(["/", "/index.html", "/news/today", "/img/logo.png", "/api/items?page=2"])
    req = (f"GET {path} HTTP/1.1\r\nHost: intranet.example\r\nUser-Agent: Mozilla/5.0 (Windows "
           "NT 10.0; Win64; x64) Firefox/54.0\r\nAccept: text/html,*/*;q=0.8\r\nAccept-Encoding: "
           "gzip, deflate\r\nConnection: keep-alive\r\n\r\n").encode()
    t = c.handshake(t, rtt)
    for _ in range(rng.randint(1, 3)):  # keep-alive: a few requests per connection
        t = c.send(t + rng.uniform(1e-4, 5e-3), True, req)
        body = rng.randbytes(rng.choice([612, 3_800, 14_500, 48_000]))
        t = c.send(t + rtt / 2 + rng.uniform(1e-3, 8e-3), False, b"HTTP/1.1 200 OK\r\n\r\n" + body)
        t = c.ack(t + rtt / 2, True)
        t += rng.uniform(0.05, 1.5)  # user think time
    c.close(t, rtt)


def _dns_query(out: list[Packet], rng: random.Random, t: float) -> None:
    name = rng.choice(["intranet.example", "mail.example", "www.example.org", "cdn.example.net"])
    q = rng.getrandbits(16).to_bytes(2, "big") + b"\x01\x00\x00\x01" + bytes(6) + b"".join(
        len(p).to_bytes(1, "big") + p.encode() for p in name.split(".")) + b"\x00\x00\x01\x00\x01"
    sport = _eph(rng)
    for i, (src, dst, sp, dp, payload) in enumerate((
            ("192.168.10.9", DNS_SERVER, sport, 53, q),
            (DNS_SERVER, "192.168.10.9", 53, sport, q + rng.randbytes(rng.randint(16, 120))))):
        p = (Ether() / IP(src=src, dst=dst, ttl=64) / UDP(sport=sp, dport=dp) / Raw(load=payload))
        p.time = t + i * rng.uniform(2e-4, 3e-3)
        out.append(p)


def _ssh_handshake(c: _Tcp, t: float, rtt: float, rng: random.Random, client: bytes) -> float:
    """Banners, KEXINIT both ways, DH exchange, NEWKEYS: the packet sizes of OpenSSH 7."""
    t = c.send(t + rtt / 2, False, b"SSH-2.0-OpenSSH_7.2p2 Ubuntu-4ubuntu2.1\r\n")
    t = c.send(t + rng.uniform(1e-3, 4e-3), True, client)
    t = c.send(t + rng.uniform(1e-4, 1e-3), True, rng.randbytes(rng.randint(900, 1400)))
    t = c.send(t + rtt / 2, False, rng.randbytes(rng.randint(980, 1080)))  # server KEXINIT
    t = c.send(t + rtt / 2, True, rng.randbytes(48))  # KEXDH_INIT (curve25519)
    t = c.send(t + rtt / 2 + rng.uniform(2e-3, 8e-3), False, rng.randbytes(rng.randint(560, 740)))
    t = c.send(t + rtt / 2, True, rng.randbytes(16))  # NEWKEYS
    t = c.send(t + rng.uniform(1e-4, 5e-4), True, rng.randbytes(52))  # service request
    return c.send(t + rtt / 2, False, rng.randbytes(52))  # service accept


def _ssh_session(out: list[Packet], rng: random.Random, t: float) -> None:
    c = _Tcp(out, "192.168.10.14", SERVER_SSH, _eph(rng), 22, rng)
    rtt = rng.uniform(0.3e-3, 1e-3)
    t = _ssh_handshake(c, c.handshake(t, rtt), rtt, rng, b"SSH-2.0-OpenSSH_7.4\r\n")
    t = c.send(t + 0.01, True, rng.randbytes(420))  # public-key auth
    t = c.send(t + rtt / 2 + 0.02, False, rng.randbytes(36))
    t = c.send(t + 0.01, True, rng.randbytes(100))  # scp: the command
    for _ in range(rng.randint(40, 80)):  # the file, acked every two segments
        t = c.send(t + rng.uniform(1e-4, 4e-4), False, rng.randbytes(2 * 1448))
        t = c.ack(t + rtt / 2, True)
    c.close(t + 0.2, rtt)


def _port_scan(out: list[Packet], rng: random.Random, t: float, n_ports: int) -> None:
    """nmap -sS: SYN (window 1024, MSS only) to many ports; RST/ACK from closed ports,
    SYN/ACK then the scanner's RST from open ones."""
    ports = rng.sample(range(1, 10_000), n_ports)
    sport = _eph(rng)
    for port in ports:
        c = _Tcp(out, ATTACKER, SERVER_WEB, sport, port, rng)
        c._pkt(t, True, "S", window=1024, options=[("MSS", 1460)])
        if port in (22, 80, 443, 8080):
            c._pkt(t + 2e-4, False, "SA", window=29200, options=[("MSS", 1460)])
            c._pkt(t + 4e-4, True, "R", window=0, options=[])
        else:
            c._pkt(t + rng.uniform(5e-5, 3e-4), False, "RA", window=0, options=[])
        t += rng.uniform(2e-4, 2e-3)


def _syn_flood(out: list[Packet], rng: random.Random, t: float, n: int) -> None:
    """SYNs from spoofed sources to the web server; no handshake ever completes."""
    for _ in range(n):
        src = FLOOD_NET + str(rng.randint(1, 254))
        p = (Ether() / IP(src=src, dst=SERVER_WEB, ttl=rng.randint(40, 250),
                          id=rng.getrandbits(16))
             / TCP(sport=rng.randint(1024, 65535), dport=80, seq=rng.getrandbits(32), flags="S",
                   window=rng.choice([512, 1024, 2048, 5840, 64240])))
        p.time = t
        out.append(p)
        t += rng.expovariate(1500.0)  # ~1,500 SYNs/s


def _exchange(c: _Tcp, t: float, rtt: float, from_client: bool, size: int, *,
              acked: bool) -> float:
    """One data segment; the peer answers with a pure ACK when ``acked``."""
    t = c.send(t, from_client, c.rng.randbytes(size))
    if acked:
        c.ack(t + rtt / 2, not from_client)
    return t + rtt / 2


def _brute_attempt(c: _Tcp, t: float, rtt: float) -> float:
    """One patator/paramiko connection against OpenSSH: handshake, banners, key exchange,
    ``none`` auth, then five password guesses, each refused after OpenSSH's ~2.4 s failure
    delay.  The totals (22 packets / 1,992 bytes out, 33 packets / 2,697 bytes back, about
    12 s) are those of CIC-IDS2017's SSH-Patator flows (medians 22 / 2,008 and 33 / 2,745)."""
    rng = c.rng
    c.swin = 247  # OpenSSH's scaled window after the handshake, as in the CIC captures
    t = c.handshake(t, rtt)
    t = _exchange(c, t + rtt / 2, rtt, False, 41, acked=True)  # server banner
    t = _exchange(c, t + rng.uniform(1e-3, 3e-3), rtt, True, 24, acked=True)  # client banner
    t = _exchange(c, t + 1e-4, rtt, True, 640, acked=True)  # client KEXINIT
    t = _exchange(c, t, rtt, False, 720, acked=False)  # server KEXINIT
    t = _exchange(c, t + rng.uniform(2e-3, 6e-3), rtt, True, 272, acked=True)  # KEXDH_INIT
    t = _exchange(c, t + rng.uniform(4e-3, 9e-3), rtt, False, 976, acked=True)  # KEXDH_REPLY
    t = _exchange(c, t + 1e-3, rtt, True, 16, acked=True)  # NEWKEYS
    t = _exchange(c, t + 1e-4, rtt, True, 52, acked=True)  # service request
    t = _exchange(c, t, rtt, False, 52, acked=False)  # service accept
    t = _exchange(c, t + 1e-3, rtt, True, 68, acked=True)  # userauth "none"
    t = _exchange(c, t, rtt, False, 68, acked=False)  # failure: password allowed
    for _ in range(5):
        t = _exchange(c, t + rng.uniform(1e-3, 4e-3), rtt, True, 100, acked=True)  # guess
        t = _exchange(c, t + rng.uniform(2.2, 2.6), rtt, False, 68, acked=False)  # refused
        t = _exchange(c, t + 1e-3, rtt, True, 84, acked=True)  # keep-alive (ignore msg)
        t = _exchange(c, t, rtt, False, 100, acked=False)
    return c.close(t + rng.uniform(1e-3, 5e-3), rtt)


def _ssh_brute_force(out: list[Packet], rng: random.Random, t: float, n: int) -> None:
    """patator-style: one full SSH connection per batch of guesses, one client, a new source
    port each time, several connections in parallel."""
    for _ in range(n):
        c = _Tcp(out, BRUTE_FORCER, SERVER_SSH, _eph(rng), 22, rng)
        _brute_attempt(c, t, rng.uniform(0.4e-3, 1.5e-3))
        t += rng.uniform(0.15, 0.6)  # the next connection starts before this one has finished


@dataclass(frozen=True)
class Scale:
    """How much of each family to generate."""

    web: int = 25
    dns: int = 60
    scan_ports: int = 300
    flood_syns: int = 500
    brute_attempts: int = 40


SMALL = Scale(web=3, dns=6, scan_ports=20, flood_syns=30, brute_attempts=4)  # for tests


def demo_packets(seed: int = 7, scale: Scale = Scale()) -> list[Packet]:
    """All demo packets, sorted by time (about 40 s of traffic)."""
    rng = random.Random(seed)
    out: list[Packet] = []
    for _ in range(scale.web):
        _web_session(out, rng, START_TS + rng.uniform(0, 38))
    for _ in range(scale.dns):
        _dns_query(out, rng, START_TS + rng.uniform(0, 40))
    _ssh_session(out, rng, START_TS + rng.uniform(0, 4))
    _port_scan(out, rng, START_TS + 6.0, n_ports=scale.scan_ports)
    _syn_flood(out, rng, START_TS + 14.0, n=scale.flood_syns)
    _ssh_brute_force(out, rng, START_TS + 20.0, n=scale.brute_attempts)
    out.sort(key=lambda p: float(p.time))
    return out


def write_demo_pcap(path: Path, seed: int = 7, scale: Scale = Scale()) -> int:
    """Write the demo capture (classic pcap, Ethernet) to ``path``; returns the packet count."""
    pkts = demo_packets(seed, scale)
    wrpcap(str(path), pkts)
    return len(pkts)


def iter_families() -> Iterator[str]:
    """The family names in display order."""
    yield from ("benign web", "benign dns", "benign ssh", "port scan", "syn flood",
                "ssh brute force")
