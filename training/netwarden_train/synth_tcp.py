"""TCP stacks for generated captures: per-connection OS profiles and acknowledgement habits.

The demo generator's conversation model (``netwarden.demo_traffic._Tcp``) speaks one stack
(Linux client, SYN window 29200, timestamps, no pure ACKs for data). Real captures differ in
exactly the features a flow model leans on: the SYN window (macOS 65535, Windows 64240 or
8192), the scaled window after the handshake (the CSVs' "Bwd Init Win Bytes" is the last
backward window: 114 and 340 in the shared brute-force captures), header length (no
timestamps on Windows: 20-byte headers) and, above all, the pure ACKs that answer most data
segments (ssh-password-guessing: 22 packets out, 15 back per connection, of which about half
are pure ACKs). ``conn`` draws one client and one server stack per connection.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

from netwarden.demo_traffic import _Tcp
from scapy.packet import Packet

_TS = ("Timestamp", (0, 0))
# SYN option lists as the stacks send them (MSS, SACK, timestamps, window scale)
SYN_OPTS: dict[str, list[Any]] = {
    "linux": [("MSS", 1460), ("SAckOK", b""), _TS, ("NOP", None), ("WScale", 7)],
    "macos": [
        ("MSS", 1460),
        ("NOP", None),
        ("WScale", 6),
        ("NOP", None),
        ("NOP", None),
        _TS,
        ("SAckOK", b""),
        ("EOL", None),
    ],
    "windows": [
        ("MSS", 1460),
        ("NOP", None),
        ("WScale", 8),
        ("NOP", None),
        ("NOP", None),
        ("SAckOK", b""),
    ],
    "bare": [("MSS", 1460)],
}
_TS_OPTS = [("NOP", None), ("NOP", None), _TS]


def log_uniform(rng: random.Random, lo: float, hi: float) -> float:
    """A value between ``lo`` and ``hi``, uniform in log scale (timings span decades: the
    model sees log-scaled IATs, so 2 us and 200 us are as far apart as 2 ms and 200 ms)."""
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


@dataclass(frozen=True, slots=True)
class Stack:
    """One side's TCP habits.

    Attributes:
        os: key of the SYN option list.
        syn_win: window of the SYN (client) or SYN/ACK (server).
        win: scaled window after the handshake.
        ack_p: probability that a data segment from the peer gets a pure ACK.
        ack_delay_s: delayed-ACK timer (Linux 40 ms, Windows up to 200 ms; 0: at once).
    """

    os: str
    syn_win: int
    win: int
    ack_p: float
    ack_delay_s: float


def client_stack(rng: random.Random) -> Stack:
    """A client OS: old/new Linux, macOS, Windows, or a raw tool stack."""
    os = rng.choice(["linux", "linux", "macos", "windows", "windows", "bare"])
    syn = {
        "linux": rng.choice([29200, 64240, 65495]),
        "macos": 65535,
        "windows": rng.choice([64240, 8192, 65535]),
        "bare": rng.choice([1024, 5840, 14600, 65535]),
    }[os]
    win = rng.choice(
        [229, 237, 251, 502, 2053, 4117, 8212, 16471, 64240, 65535 if os != "linux" else 1026]
    )
    return Stack(os, syn, win, rng.choice([0.5, 0.8, 1.0, 1.0]), rng.choice([0.0, 1e-3, 0.04]))


def server_stack(rng: random.Random, client: Stack) -> Stack:
    """A server OS answering ``client`` (timestamps only when the client offered them)."""
    linux = rng.random() < 0.75
    os = "linux" if linux else "windows"
    if client.os in ("windows", "bare"):
        os = "windows" if not linux else "bare"  # no timestamps without the client's offer
    syn = rng.choice([28960, 65160, 14480, 5792]) if linux else rng.choice([8192, 65535, 64000])
    win = rng.choice([114, 227, 235, 247, 340, 453, 509, 1024, 8212, 65535])
    ack = rng.choice([0.3, 0.6, 0.9]) if linux else rng.choice([0.5, 1.0])
    return Stack(os, syn, win, ack, rng.choice([0.0, 0.04, 0.1]))


class Conn(_Tcp):  # type: ignore[misc]  # demo_traffic is not typed for mypy here
    """A conversation whose stacks (options, windows, pure ACKs) come from ``Stack``s."""

    cstack: Stack
    sstack: Stack

    def setup(self, cstack: Stack, sstack: Stack) -> Conn:
        self.cstack, self.sstack = cstack, sstack
        self.cwin, self.swin = cstack.win, sstack.win
        return self

    def _ts(self) -> bool:
        return self.cstack.os in ("linux", "macos") and self.sstack.os == "linux"

    def _pkt(
        self,
        t: float,
        from_client: bool,
        flags: str,
        payload: bytes = b"",
        *,
        window: int | None = None,
        options: Any = None,
    ) -> None:
        if options is None and "S" not in flags:
            options = list(_TS_OPTS) if self._ts() else []
        super()._pkt(t, from_client, flags, payload, window=window, options=options)

    def handshake(self, t: float, rtt: float) -> float:
        c, s = self.cstack, self.sstack
        self._pkt(t, True, "S", window=c.syn_win, options=SYN_OPTS[c.os])
        sopts = [o for o in SYN_OPTS[s.os] if o[0] != "Timestamp" or self._ts()]
        self._pkt(t + rtt / 2, False, "SA", window=s.syn_win, options=sopts)
        self._pkt(t + rtt, True, "A")
        return t + rtt

    def send(self, t: float, from_client: bool, data: bytes, mss: int = 1448) -> float:
        """Data in MSS segments; the peer's stack may answer each with a pure ACK.

        Returns the time of the last data segment (the ACK, if any, comes later)."""
        end = t
        for i in range(0, len(data), mss):
            last = i + mss >= len(data)
            self._pkt(end, from_client, "PA" if last else "A", data[i : i + mss])
            end += log_uniform(self.rng, 1e-6, 2e-4)  # back to back, or paced
        peer = self.sstack if from_client else self.cstack
        if data and self.rng.random() < peer.ack_p:
            delayed = peer.ack_delay_s * self.rng.uniform(0.5, 1)
            lag = max(log_uniform(self.rng, 2e-6, 5e-4), delayed)
            self._pkt(end + lag, not from_client, "A")
            self._drift(not from_client)
        return end

    def _drift(self, client_side: bool) -> None:
        """The advertised window moves a little as the receiver's buffer fills and drains."""
        step = self.rng.choice([0, 0, 0, 1, 2, 7, 23, -1, -3, -9])
        if client_side:
            self.cwin = max(1, min(65535, self.cwin + step))
        else:
            self.swin = max(1, min(65535, self.swin + step))


def conn(
    out: list[Packet],
    rng: random.Random,
    client: str,
    server: str,
    dport: int,
    *,
    stacks: tuple[Stack, Stack] | None = None,
) -> Conn:
    """A new connection from an ephemeral port; ``stacks`` pins both sides (one tool run
    talks from one machine to one server), else they are drawn."""
    if stacks is None:
        c = client_stack(rng)
        stacks = (c, server_stack(rng, c))
    sport = rng.randint(1025, 65535) if stacks[0].os == "windows" else rng.randint(32768, 60999)
    return Conn(out, client, server, sport, dport, rng).setup(*stacks)


def stack_pair(rng: random.Random) -> tuple[Stack, Stack]:
    """One client and one server stack (for every connection of one scenario)."""
    c = client_stack(rng)
    return c, server_stack(rng, c)


def close(c: Conn, t: float, rtt: float, *, how: str = "fin", client_first: bool = True) -> float:
    """End a connection: FIN handshake, a reset, or a FIN answered by a reset."""
    if how == "rst":
        c._pkt(t, client_first, "RA", window=0, options=[])
        return t
    c._pkt(t, client_first, "FA")
    if how == "fin-rst":
        c._pkt(t + rtt / 2, not client_first, "RA", window=0, options=[])
        return t + rtt / 2
    c._pkt(t + rtt / 2, not client_first, "FA")
    c._pkt(t + rtt, client_first, "A")
    return t + rtt
