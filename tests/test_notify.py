"""The sd_notify client against unix datagram sockets the test owns (path and abstract)."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from netwarden.service.notify import Notifier, watchdog_interval_s


@pytest.fixture()
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(2)
    yield s, path
    s.close()


def _recv(s: socket.socket) -> list[str]:
    return s.recv(4096).decode().split("\n")


def test_ready_stopping_status_watchdog_reach_the_socket(
    listener: tuple[socket.socket, str],
) -> None:
    s, path = listener
    n = Notifier.from_env({"NOTIFY_SOCKET": path})
    assert n.enabled
    assert n.ready(status="capturing on eth0")
    assert _recv(s) == ["READY=1", "STATUS=capturing on eth0"]
    assert n.watchdog()
    assert _recv(s) == ["WATCHDOG=1"]
    assert n.status("two\nlines")
    assert _recv(s) == ["STATUS=two lines"]
    assert n.stopping()
    assert _recv(s) == ["STOPPING=1"]
    n.close()
    assert not n.watchdog()


def test_reloading_carries_monotonic_usec(listener: tuple[socket.socket, str]) -> None:
    s, path = listener
    n = Notifier(path)
    before = time.monotonic_ns() // 1000
    assert n.reloading()
    after = time.monotonic_ns() // 1000
    msg = _recv(s)
    assert msg[0] == "RELOADING=1"
    key, value = msg[1].split("=")
    assert key == "MONOTONIC_USEC" and before <= int(value) <= after
    assert n.reloading(monotonic_ns=5_000_123_456)
    assert _recv(s) == ["RELOADING=1", "MONOTONIC_USEC=5000123"]


def test_abstract_namespace_socket() -> None:
    name = f"netwarden-test-{os.getpid()}-{time.monotonic_ns()}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(b"\0" + name.encode())
    s.settimeout(2)
    try:
        n = Notifier("@" + name)
        assert n.ready()
        assert _recv(s) == ["READY=1"]
    finally:
        s.close()


def test_unset_socket_is_a_no_op() -> None:
    n = Notifier.from_env({})
    assert not n.enabled
    assert not n.ready() and not n.watchdog() and not n.reloading() and not n.stopping()
    assert n.watchdog_s is None


def test_missing_socket_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    n = Notifier(str(tmp_path / "gone.sock"))
    assert not n.ready()
    assert not n.watchdog()
    assert sum("cannot notify" in r.message for r in caplog.records) == 1


def test_watchdog_interval_from_env() -> None:
    pid = os.getpid()
    assert (
        watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(pid)}, pid=pid)
        == 30.0
    )
    assert watchdog_interval_s({"WATCHDOG_USEC": "0"}, pid=pid) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "x"}, pid=pid) is None
    n = Notifier.from_env({"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "4000000"})
    assert n.watchdog_s == 4.0
