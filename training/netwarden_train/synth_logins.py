"""Password logins over TCP for generated captures: one ``Proto`` per service.

FTP, SSH, telnet, POP3, IMAP, HTTP basic auth and login forms, SMB/NTLM: each knows how a
session opens (server-first banner or client hello), how one password attempt looks on the
wire (the server's failure delay is a parameter) and how a logged-in user continues. The tool
runs and the users that drive them are in ``synth_runs``; the TCP stacks in ``synth_tcp``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from .synth_tcp import Conn, log_uniform

Step = Callable[[Conn, float, float], float]  # (connection, time, rtt) -> time


def _rb(rng: random.Random, lo: int, hi: int) -> bytes:
    return rng.randbytes(rng.randint(lo, hi))


def _word(rng: random.Random, lo: int, hi: int) -> bytes:
    """A password from a word list: printable, ``lo`` to ``hi`` characters."""
    return bytes(
        rng.choice(b"abcdefghijklmnopqrstuvwxyz0123456789!") for _ in range(rng.randint(lo, hi))
    )


def talk(c: Conn, t: float, rtt: float, ask: bytes, answer: bytes, *, wait: float = 0.0) -> float:
    """Client sends ``ask``; the server answers ``answer`` after ``wait`` (+ half an RTT)."""
    t = c.send(t, True, ask)
    return c.send(t + rtt / 2 + wait + log_uniform(c.rng, 2e-6, 5e-4), False, answer)


@dataclass(frozen=True)
class Proto:
    """One login service: ``opening`` up to the first prompt, ``attempt(ok)`` one password
    try (``wait``: the server's failure delay), ``work`` what a logged-in user does."""

    name: str
    ports: tuple[int, ...]
    opening: Step
    attempt: Callable[[Conn, float, float, float, bool], float]
    work: Step
    min_guesses: int = 1  # per connection: one HTTP request or one SMB session setup is, as a
    # flow, any web or file-share client (they raised CIC-IDS2017 BENIGN false alarms)


# ---- FTP ----------------------------------------------------------------------------------


def _ftp_open(c: Conn, t: float, rtt: float) -> float:
    banner = c.rng.choice(
        [
            b"220 (vsFTPd 3.0.3)\r\n",
            b"220 ProFTPD Server (Debian) ready.\r\n",
            b"220-FileZilla Server 0.9.60 beta\r\n220 welcome\r\n",
            b"220 Microsoft FTP Service\r\n",
            b"220 ProFTPD 1.3.0a Server (ProFTPD Default Installation) [192.168.1.1]\r\n",
            b"220---------- Welcome to Pure-FTPd [privsep] [TLS] ----------\r\n220 You will "
            b"be disconnected after 15 minutes of inactivity.\r\n",
            b"220 ready\r\n",
        ]
    )
    return c.send(t + rtt / 2 + c.rng.uniform(1e-3, 8e-3), False, banner)


def _ftp_try(c: Conn, t: float, rtt: float, wait: float, ok: bool) -> float:
    rng = c.rng
    user = rng.choice([b"admin", b"root", b"ftp", b"anonymous", _word(rng, 1, 8)])
    t = talk(c, t, rtt, b"USER " + user + b"\r\n", b"331 Please specify the password.\r\n")
    pw = b"PASS " + _word(rng, 1, 14) + b"\r\n"
    ans = b"230 Login successful.\r\n" if ok else b"530 Login incorrect.\r\n"
    return talk(c, t + rng.uniform(1e-4, 2e-3), rtt, pw, ans, wait=0.0 if ok else wait)


def _ftp_work(c: Conn, t: float, rtt: float) -> float:
    for cmd in c.rng.sample(
        [
            b"SYST\r\n",
            b"PWD\r\n",
            b"TYPE I\r\n",
            b"PASV\r\n",
            b"LIST\r\n",
            b"CWD pub\r\n",
            b"SIZE a.bin\r\n",
        ],
        c.rng.randint(2, 6),
    ):
        t = talk(c, t + c.rng.uniform(0.2, 4), rtt, cmd, b"200 " + _rb(c.rng, 10, 60) + b"\r\n")
    return talk(c, t + c.rng.uniform(0.5, 10), rtt, b"QUIT\r\n", b"221 Goodbye.\r\n")


# ---- SSH ----------------------------------------------------------------------------------


def _ssh_open(c: Conn, t: float, rtt: float) -> float:
    """Banners (either side first), KEXINIT both ways, key exchange, NEWKEYS, service."""
    rng = c.rng
    srv = (
        b"SSH-2.0-OpenSSH_" + rng.choice([b"7.2p2 Ubuntu-4", b"8.9p1", b"6.6.1", b"9.6"]) + b"\r\n"
    )
    cli = rng.choice(
        [
            b"SSH-2.0-libssh_0.9.6\r\n",
            b"SSH-2.0-paramiko_2.7\r\n",
            b"SSH-2.0-Go\r\n",
            b"SSH-2.0-OpenSSH_6.2\r\n",
            b"SSH-2.0-Nmap-SSH2-Hostkey\r\n",
            b"SSH-2.0-PUTTY\r\n",
        ]
    )
    if rng.random() < 0.5:
        t = c.send(t + rtt / 2 + rng.uniform(1e-3, 8e-3), False, srv)
        t = c.send(t + rtt / 2 + rng.uniform(1e-4, 2e-3), True, cli)
    else:
        t = c.send(t + rng.uniform(1e-4, 1e-3), True, cli)
        t = c.send(t + rtt / 2 + rng.uniform(1e-3, 8e-3), False, srv)
    t = c.send(t + rng.uniform(1e-4, 2e-3), True, _rb(rng, 600, 1700))  # client KEXINIT
    t = c.send(t + rtt / 2 + rng.uniform(0, 1e-3), False, _rb(rng, 700, 1100))
    if rng.random() < 0.5:  # a second client message before the server's (ext-info, ignore)
        t = c.send(t + rng.uniform(1e-4, 1e-3), True, _rb(rng, 16, 48))
    t = c.send(t + rtt / 2 + rng.uniform(1e-4, 4e-3), True, rng.choice([b"\0" * 48, bytes(272)]))
    t = c.send(t + rtt / 2 + rng.uniform(2e-3, 3e-2), False, _rb(rng, 280, 1100))
    t = c.send(t + rtt / 2 + rng.uniform(1e-4, 5e-3), True, bytes(16))  # NEWKEYS
    t = c.send(t + rng.uniform(1e-4, 4e-2), True, rng.choice([bytes(44), bytes(52)]))
    t = c.send(t + rtt / 2, False, rng.choice([bytes(44), bytes(52)]))
    if rng.random() < 0.6:  # "none" auth, answered with the allowed methods
        t = talk(c, t + rng.uniform(1e-4, 3e-3), rtt, _rb(rng, 60, 84), _rb(rng, 52, 84))
    if rng.random() < 0.5:  # a public key offered first (the client's ~/.ssh), refused
        t = talk(c, t + rng.uniform(1e-4, 3e-3), rtt, _rb(rng, 300, 460), _rb(rng, 52, 84))
    return t


def _ssh_try(c: Conn, t: float, rtt: float, wait: float, ok: bool) -> float:
    """One password request; some clients then send an ignore/keep-alive message (patator
    via paramiko: CIC-IDS2017's SSH-Patator flows have 22 packets out for 5 guesses)."""
    rng = c.rng
    ans = bytes(rng.choice([28, 36])) if ok else rng.randbytes(rng.choice([52, 56, 68, 84]))
    guess = rng.randbytes(rng.choice([84, 100, 116, 132, 152]))
    t = talk(c, t, rtt, guess, ans, wait=0.0 if ok else wait)
    if not ok and rng.random() < 0.3:
        t = c.send(t + rng.uniform(1e-4, 2e-3), True, rng.randbytes(rng.choice([36, 52, 84])))
    return t


def _ssh_work(c: Conn, t: float, rtt: float) -> float:
    """Channel open, a shell, keystrokes echoed, some output, exit."""
    rng = c.rng
    t = talk(c, t + rng.uniform(1e-3, 0.05), rtt, _rb(rng, 100, 400), _rb(rng, 400, 1500))
    for _ in range(rng.randint(5, 60)):
        t = talk(
            c,
            t + rng.expovariate(4.0),
            rtt,
            bytes(36),
            bytes(36) if rng.random() < 0.8 else _rb(rng, 100, 3000),
        )
    return talk(c, t + rng.uniform(0.5, 5), rtt, _rb(rng, 36, 100), _rb(rng, 36, 200))


# ---- telnet, POP3, IMAP -------------------------------------------------------------------


def _telnet_open(c: Conn, t: float, rtt: float) -> float:
    rng = c.rng
    for _ in range(rng.randint(1, 4)):  # option negotiation (IAC DO / WILL ...)
        t = c.send(t + rtt / 2, False, _rb(rng, 3, 24))
        t = c.send(t + rtt / 2 + rng.uniform(1e-4, 1e-2), True, _rb(rng, 3, 24))
    return c.send(t + rtt / 2, False, rng.choice([b"\r\nUbuntu 16.04\r\nlogin: ", b"login: "]))


def _telnet_try(c: Conn, t: float, rtt: float, wait: float, ok: bool) -> float:
    rng = c.rng
    t = talk(c, t, rtt, rng.choice([b"admin\r\n", b"root\r\n", b"pi\r\n"]), b"Password: ")
    ans = _rb(rng, 200, 900) + b"$ " if ok else b"\r\nLogin incorrect\r\nlogin: "
    return talk(
        c,
        t + rng.uniform(1e-3, 0.05),
        rtt,
        _word(rng, 3, 12) + b"\r\n",
        ans,
        wait=0.0 if ok else wait,
    )


def _pop_open(c: Conn, t: float, rtt: float) -> float:
    banner = c.rng.choice([b"+OK Dovecot ready.\r\n", b"+OK POP3 server ready <1.2@x>\r\n"])
    return c.send(t + rtt / 2 + c.rng.uniform(1e-3, 2e-2), False, banner)


def _pop_try(c: Conn, t: float, rtt: float, wait: float, ok: bool) -> float:
    t = talk(c, t, rtt, b"USER " + c.rng.choice([b"info", b"admin", b"bob"]) + b"\r\n", b"+OK\r\n")
    ans = b"+OK Logged in.\r\n" if ok else b"-ERR [AUTH] Authentication failed.\r\n"
    return talk(
        c,
        t + c.rng.uniform(1e-4, 3e-3),
        rtt,
        b"PASS " + _word(c.rng, 3, 12) + b"\r\n",
        ans,
        wait=0.0 if ok else wait,
    )


def _pop_work(c: Conn, t: float, rtt: float) -> float:
    rng = c.rng
    t = talk(c, t + 0.01, rtt, b"STAT\r\n", b"+OK 3 48213\r\n")
    for i in range(rng.randint(1, 5)):
        t = talk(
            c, t + rng.uniform(1e-3, 0.1), rtt, b"RETR %d\r\n" % (i + 1), _rb(rng, 800, 40_000)
        )
    return talk(c, t + 0.01, rtt, b"QUIT\r\n", b"+OK Logging out.\r\n")


def _imap_open(c: Conn, t: float, rtt: float) -> float:
    t = c.send(
        t + rtt / 2 + c.rng.uniform(1e-3, 2e-2),
        False,
        b"* OK [CAPABILITY IMAP4rev1 "
        b"SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN] Dovecot ready.\r\n",
    )
    if c.rng.random() < 0.5:
        t = talk(c, t + 1e-3, rtt, b"a1 CAPABILITY\r\n", _rb(c.rng, 150, 260))
    return t


def _imap_try(c: Conn, t: float, rtt: float, wait: float, ok: bool) -> float:
    ask = b"a2 LOGIN " + c.rng.choice([b"admin", b"bob"]) + b" " + _word(c.rng, 3, 12) + b"\r\n"
    ans = (
        _rb(c.rng, 180, 300) + b" a2 OK Logged in\r\n"
        if ok
        else b"a2 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n"
    )
    return talk(c, t, rtt, ask, ans, wait=0.0 if ok else wait)


def _imap_work(c: Conn, t: float, rtt: float) -> float:
    rng = c.rng
    t = talk(c, t + 0.01, rtt, b"a3 SELECT INBOX\r\n", _rb(rng, 300, 600))
    for i in range(rng.randint(1, 6)):
        t = talk(
            c,
            t + rng.uniform(1e-3, 2),
            rtt,
            b"a%d FETCH %d BODY[]\r\n" % (i + 4, i),
            _rb(rng, 500, 30_000),
        )
    return talk(c, t + 0.05, rtt, b"a9 LOGOUT\r\n", b"* BYE\r\na9 OK Logout completed.\r\n")


# ---- HTTP basic auth / login form, SMB ----------------------------------------------------


def _none(c: Conn, t: float, rtt: float) -> float:
    return t


def _http_try(c: Conn, t: float, rtt: float, wait: float, ok: bool) -> float:
    rng = c.rng
    if rng.random() < 0.5:  # basic auth
        ask = (
            b"GET /admin/ HTTP/1.1\r\nHost: 10.0.0.5\r\nAuthorization: Basic "
            + rng.randbytes(rng.randint(9, 24)).hex().encode()
            + b"\r\n\r\n"
        )
        ans = (
            b"HTTP/1.1 "
            + (b"200 OK" if ok else b"401 Unauthorized")
            + b"\r\n"
            + _rb(rng, 150, 600 if not ok else 9000)
        )
    else:  # login form: the login page again, or a redirect
        body = b"username=admin&password=" + rng.randbytes(6).hex().encode()
        ask = b"POST /login.php HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
        ans = b"HTTP/1.1 302 Found\r\n" if ok else _rb(rng, 300, 4000)
        ask += body
    return talk(c, t, rtt, ask, ans, wait=rng.uniform(1e-3, 0.03) + (0.0 if ok else wait / 4))


def _http_work(c: Conn, t: float, rtt: float) -> float:
    for _ in range(c.rng.randint(1, 6)):
        t = talk(
            c,
            t + c.rng.uniform(0.05, 3),
            rtt,
            _rb(c.rng, 300, 700),
            _rb(c.rng, 400, 60_000),
            wait=c.rng.uniform(1e-3, 0.05),
        )
    return t


def _smb_open(c: Conn, t: float, rtt: float) -> float:
    return talk(c, t + 1e-3, rtt, _rb(c.rng, 150, 220), _rb(c.rng, 230, 400))  # negotiate


def _smb_try(c: Conn, t: float, rtt: float, wait: float, ok: bool) -> float:
    rng = c.rng
    t = talk(c, t + 1e-3, rtt, _rb(rng, 140, 200), _rb(rng, 280, 400))  # NTLM negotiate
    return talk(
        c,
        t + 1e-3,
        rtt,
        _rb(rng, 350, 650),
        _rb(rng, 72, 120) if not ok else _rb(rng, 80, 250),
        wait=0.0 if ok else wait / 3,
    )


def _smb_work(c: Conn, t: float, rtt: float) -> float:
    for _ in range(c.rng.randint(2, 10)):
        t = talk(
            c, t + c.rng.uniform(1e-3, 0.5), rtt, _rb(c.rng, 100, 300), _rb(c.rng, 100, 20_000)
        )
    return t


PROTOS: dict[str, Proto] = {
    "ftp": Proto("ftp", (21, 21, 2121), _ftp_open, _ftp_try, _ftp_work),
    "ssh": Proto("ssh", (22, 22, 2222), _ssh_open, _ssh_try, _ssh_work),
    "telnet": Proto("telnet", (23, 23, 2323), _telnet_open, _telnet_try, _ssh_work),
    "pop3": Proto("pop3", (110,), _pop_open, _pop_try, _pop_work),
    "imap": Proto("imap", (143,), _imap_open, _imap_try, _imap_work),
    "http": Proto("http", (80, 8080, 8000), _none, _http_try, _http_work, min_guesses=3),
    "smb": Proto("smb", (445, 139), _smb_open, _smb_try, _smb_work, min_guesses=2),
}
