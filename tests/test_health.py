"""Health state, the watchdog that depends on it, and the /metrics, /healthz, /readyz server."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from netwarden.metrics import Metrics
from netwarden.service.health import Health, Watchdog
from netwarden.service.http import serve_status
from netwarden.service.notify import Notifier


def _healthy(h: Health, now: float) -> Health:
    h.set_source("iface:eth0", connected=True)
    h.set_model("cic-mlp 3", loaded=True)
    h.beat(now)
    return h


def test_live_needs_source_model_and_progress() -> None:
    h = Health(stall_after_s=10)
    r = h.report(0.0)
    assert not r.live and not r.ready
    assert set(r.problems) >= {"source not connected", "no model loaded"}
    _healthy(h, 100.0)
    assert h.report(105.0).live and h.report(105.0).ready
    assert not h.report(111.0).live
    h.set_source("iface:eth0", connected=False)
    assert not h.report(101.0).live


def test_ready_needs_recent_packets_when_asked() -> None:
    h = _healthy(Health(stall_after_s=10, max_packet_age_s=3), 100.0)
    r = h.report(100.0)
    assert r.live and not r.ready and r.last_packet_age_s is None
    h.saw_packets(99.0)
    assert h.report(100.0).ready
    assert h.report(100.0).last_packet_age_s == 1.0
    h.beat(103.0)
    assert not h.report(103.0).ready and h.report(103.0).live


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="stall_after_s"):
        Health(stall_after_s=0)
    with pytest.raises(ValueError, match="max_packet_age_s"):
        Health(max_packet_age_s=-1)


def test_watchdog_pets_only_while_live(tmp_path: Path) -> None:
    path = str(tmp_path / "n.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.setblocking(False)
    try:
        h = _healthy(Health(stall_after_s=5), 100.0)
        wd = Watchdog(Notifier(path, watchdog_s=4.0), h)
        assert wd.period_s == 2.0
        assert wd.tick(100.0)
        assert s.recv(64) == b"WATCHDOG=1"
        assert not wd.tick(101.0)  # within half the interval
        assert not wd.tick(106.0)  # loop stalled since 100
        h.beat(106.0)
        assert wd.tick(106.0)
        h.set_model("cic-mlp 3", loaded=False)
        h.beat(109.0)
        assert not wd.tick(109.0)
        assert s.recv(64) == b"WATCHDOG=1"
        with pytest.raises(BlockingIOError):
            s.recv(64)
    finally:
        s.close()


def test_watchdog_without_interval_never_sends() -> None:
    h = _healthy(Health(), 1.0)
    assert Watchdog(Notifier(None), h).tick(1.0) is False


def _get(url: str) -> tuple[int, bytes, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read(), r.headers["Content-Type"]
    except urllib.error.HTTPError as e:
        return e.code, e.read(), e.headers["Content-Type"]


def test_status_server_serves_metrics_and_health() -> None:
    m = Metrics()
    m.packets.inc(42)
    clock = [100.0]
    h = Health(stall_after_s=10)
    h.export_ready(m, lambda: clock[0])
    srv = serve_status(m.registry, h, port=0, clock=lambda: clock[0])
    base = f"http://127.0.0.1:{srv.port}"
    try:
        code, body, ctype = _get(base + "/metrics")
        assert code == 200 and ctype.startswith("text/plain")
        assert b"netwarden_packets_total 42.0" in body
        assert b"netwarden_ready 0.0" in body
        code, body, _ = _get(base + "/healthz")
        assert code == 503 and json.loads(body)["live"] is False
        _healthy(h, 100.0)
        code, body, ctype = _get(base + "/healthz")
        doc = json.loads(body)
        assert code == 200 and ctype == "application/json"
        assert doc["source"] == {"name": "iface:eth0", "connected": True}
        assert doc["status"] == "ok"
        assert _get(base + "/readyz")[0] == 200
        assert b"netwarden_ready 1.0" in _get(base + "/metrics")[1]
        clock[0] = 200.0
        assert _get(base + "/readyz")[0] == 503
        assert _get(base + "/nope")[0] == 404
    finally:
        srv.close()
    with pytest.raises(OSError):
        urllib.request.urlopen(base + "/metrics", timeout=1)


def test_port_in_use_names_the_address() -> None:
    srv = serve_status(Metrics().registry, port=0)
    try:
        with pytest.raises(OSError, match=f"127.0.0.1:{srv.port}"):
            serve_status(Metrics().registry, port=srv.port)
    finally:
        srv.close()


def test_settings_are_validated() -> None:
    from netwarden.exitcodes import UserError
    from netwarden.service.health import health_from_settings

    h = health_from_settings({})
    assert h.stall_after_s == 30.0 and h.max_packet_age_s is None
    assert health_from_settings({"max_packet_age_s": 5}).max_packet_age_s == 5.0
    with pytest.raises(UserError, match=r"service\.stall_afterr_s: unknown key"):
        health_from_settings({"stall_afterr_s": 1})
    with pytest.raises(UserError, match=r"service\.max_packet_age_s: must be a number"):
        health_from_settings({"max_packet_age_s": "5"})
    with pytest.raises(UserError, match=r"service\.stall_after_s: must be > 0"):
        health_from_settings({"stall_after_s": 0})


def test_loop_tick_reads_packet_time_and_pets(tmp_path: Path) -> None:
    from netwarden.service.health import loop_tick

    path = str(tmp_path / "n.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(2)
    try:
        m = Metrics()
        h = Health(stall_after_s=5, max_packet_age_s=2)
        h.set_source("iface:lo", connected=True)
        h.set_model("m", loaded=True)
        tick = loop_tick(h, Watchdog(Notifier(path, watchdog_s=10), h), m)
        tick(50.0)
        assert h.report(50.0).live and not h.report(50.0).ready
        assert s.recv(64) == b"WATCHDOG=1"
        m.last_packet_ts.set(49.5)
        tick(50.1)
        assert h.report(50.1).ready and h.report(50.1).last_packet_age_s == pytest.approx(0.6)
    finally:
        s.close()
