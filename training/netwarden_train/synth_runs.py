"""Who drives the logins of ``synth_logins``: guessing tools and real users.

``brute_force`` is one tool run (hydra, medusa, ncrack, patator, nmap scripts: guesses per
connection, pacing, parallel tasks, how the tool hangs up, pauses as if a fail2ban-like jail
were being dodged) against one server whose failure delay is drawn (0 to ~3 s);
``user_logins`` is the benign counterpart: successful logins, sometimes after one mistyped
password, then work. TCP stacks are drawn per connection (``synth_tcp``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from scapy.packet import Packet

from .synth_logins import Proto, talk
from .synth_tcp import Conn, close, conn, log_uniform


@dataclass(frozen=True)
class Tool:
    """How one guessing tool run behaves (drawn per scenario)."""

    per_conn: tuple[int, int]  # guesses per connection
    pace: tuple[float, float]  # client delay before the next guess, seconds
    gap: tuple[float, float]  # between connections (one task)
    hangup: str  # "quit" (polite goodbye + FIN) | "fin" | "rst" | "server" (server closes)


def draw_tool(rng: random.Random) -> Tool:
    """hydra (several per connection, fast), medusa / nmap scripts (one per connection),
    ncrack (varied), patator (one or a few, polite)."""
    return rng.choice(
        [
            Tool((1, 6), (1e-4, 5e-3), (1e-3, 0.3), rng.choice(["rst", "fin", "server"])),
            Tool((1, 1), (1e-4, 2e-2), (0.01, 1.0), rng.choice(["quit", "fin", "rst"])),
            Tool((1, 6), (1e-3, 1.0), (0.05, 2.0), rng.choice(["fin", "server", "quit"])),
            Tool((1, 3), (1e-3, 0.1), (0.005, 0.5), "quit"),
        ]
    )


def brute_force(out: list[Packet], rng: random.Random, t: float, proto: Proto) -> None:
    """One tool run against one server: 4-25 connections, each a few failed guesses."""
    tool = draw_tool(rng)
    attacker, server = (
        f"172.16.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
        f"192.168.1.{rng.randint(1, 254)}",
    )
    port = rng.choice(proto.ports)
    fail_wait = rng.choice(
        [0.0, rng.uniform(0.2, 1.0), rng.uniform(1.0, 3.2), rng.uniform(1.5, 2.5)]
    )
    rtt = log_uniform(rng, 5e-5, 0.1)
    tasks = rng.choice([1, 1, 2, 4])  # parallel connections start side by side
    for _ in range(rng.randint(4, 25)):
        c = conn(out, rng, attacker, server, port)  # stacks per connection: more variety
        u = proto.opening(c, c.handshake(t + rng.uniform(0, 0.05) * (tasks - 1), rtt), rtt)
        lo, hi = tool.per_conn
        for _ in range(rng.randint(max(lo, proto.min_guesses), max(hi, proto.min_guesses))):
            u = proto.attempt(
                c, u + rng.uniform(*tool.pace), rtt, fail_wait * rng.uniform(0.8, 1.2), False
            )
        _hangup(c, u, rtt, proto, tool.hangup)
        t = (t if tasks > 1 and rng.random() < 0.6 else u) + rng.uniform(*tool.gap)
        if rng.random() < 0.05:  # the tool backs off as if a jail had been triggered
            t += rng.uniform(30, 600)


def _hangup(c: Conn, t: float, rtt: float, proto: Proto, how: str) -> None:
    if how == "quit" and proto.name in ("ftp", "pop3"):
        t = talk(c, t + 1e-3, rtt, b"QUIT\r\n", b"221 Goodbye.\r\n")
    elif how == "quit" and proto.name == "ssh":
        t = c.send(t + 1e-3, True, c.rng.randbytes(c.rng.choice([36, 52, 64])))  # disconnect
    if how == "server":
        close(
            c,
            t + c.rng.uniform(1e-4, 1e-2),
            rtt,
            client_first=False,
            how=c.rng.choice(["fin", "fin-rst"]),
        )
    else:
        close(c, t + c.rng.uniform(1e-4, 5e-3), rtt, how="rst" if how == "rst" else "fin")


def user_logins(out: list[Packet], rng: random.Random, t: float, proto: Proto) -> None:
    """Real users: 2-8 sessions, each a successful login (after one typo in one of four),
    then work, then a normal close."""
    server = f"192.168.1.{rng.randint(1, 254)}"
    for _ in range(rng.randint(2, 8)):
        client = f"192.168.1.{rng.randint(1, 254)}"
        rtt = log_uniform(rng, 5e-5, 0.06)
        c = conn(out, rng, client, server, rng.choice(proto.ports))
        u = proto.opening(c, c.handshake(t, rtt), rtt)
        if rng.random() < 0.25:
            u = proto.attempt(c, u + rng.uniform(1, 8), rtt, rng.uniform(0.5, 3), False)
        u = proto.attempt(c, u + rng.uniform(0.5, 8), rtt, 0.0, True)
        u = proto.work(c, u, rtt)
        close(c, u + rng.uniform(1e-3, 1), rtt, client_first=rng.random() < 0.7)
        t += rng.uniform(5, 120)
