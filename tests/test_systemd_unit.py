"""systemd/netwarden.service: systemd-analyze verify and security, and the directives we rely on."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from netwarden.config import load_config
from netwarden.service.health import health_from_settings

REPO = Path(__file__).resolve().parent.parent
UNIT = REPO / "systemd" / "netwarden.service"
EXEC = "/opt/netwarden/venv/bin/netwarden"
# `systemd-analyze security` result reached by the unit (systemd 252); lower is better.
MAX_EXPOSURE = 1.8

needs_analyze = pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)


def _service() -> dict[str, list[str]]:
    """Every [Service] assignment, repeated keys kept in order."""
    out: dict[str, list[str]] = {}
    section = ""
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out.setdefault(key, []).append(value)
    return out


@needs_analyze
def test_verify_passes_without_warnings(tmp_path: Path) -> None:
    stub = tmp_path / "netwarden"
    stub.write_text("#!/bin/sh\nexit 0\n")
    stub.chmod(0o755)
    unit = tmp_path / "netwarden.service"
    unit.write_text(UNIT.read_text().replace(EXEC, str(stub)))
    r = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == "", r.stderr  # unknown keys and bad values only warn


@needs_analyze
def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    unit = tmp_path / "netwarden.service"
    unit.write_text(UNIT.read_text().replace("MemoryMax=2G", "MemoryMax=2G\nMemoryMaxx=1G"))
    r = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Unknown key 'MemoryMaxx'" in r.stderr


@needs_analyze
def test_security_exposure_is_low() -> None:
    r = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    m = re.search(r"Overall exposure level for netwarden\.service: (\d+\.\d+)", r.stdout)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= MAX_EXPOSURE


def test_service_contract() -> None:
    s = _service()
    one = {k: v[-1] for k, v in s.items()}
    assert one["Type"] == "notify" and one["NotifyAccess"] == "main"
    assert one["ExecStart"].startswith(EXEC + " run --config /etc/netwarden/netwarden.toml")
    assert one["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert one["Restart"] == "on-failure" and "WatchdogSec" in one
    assert one["User"] == "netwarden"
    assert set(one["AmbientCapabilities"].split()) == {"CAP_NET_RAW", "CAP_NET_ADMIN"}
    assert set(one["CapabilityBoundingSet"].split()) == {"CAP_NET_RAW", "CAP_NET_ADMIN"}
    for key in (
        "NoNewPrivileges",
        "ProtectHome",
        "PrivateTmp",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectControlGroups",
        "LockPersonality",
        "RestrictSUIDSGID",
        "RestrictRealtime",
        "RestrictNamespaces",
    ):
        assert one[key] == "yes", key
    assert one["ProtectSystem"] == "strict"
    assert "AF_PACKET" in one["RestrictAddressFamilies"].split()
    assert s["SystemCallFilter"][0] == "@system-service"
    assert one["MemoryDenyWriteExecute"] == "no"  # numba's JIT needs W+X pages
    assert "NUMBA_CACHE_DIR=/var/cache/netwarden" in s["Environment"]
    for key, name in (
        ("StateDirectory", "netwarden"),
        ("ConfigurationDirectory", "netwarden"),
        ("CacheDirectory", "netwarden"),
        ("LogsDirectory", "netwarden"),
    ):
        assert one[key] == name
    assert one["MemoryMax"] and one["TimeoutStopSec"]


def test_example_config_loads() -> None:
    cfg = load_config(REPO / "systemd" / "netwarden.toml")
    assert cfg.source.url is not None and cfg.source.url.startswith("iface://")
    assert cfg.metrics.port == 9108
    assert health_from_settings(cfg.service).stall_after_s == 30.0
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.read_string(UNIT.read_text().replace("~@", "@"))  # parsable as INI at all
    assert parser.has_section("Install")


MDWE = """
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
if sys.argv[1] == "on" and libc.prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, REFUSE_EXEC_GAIN
    print("no-mdwe", ctypes.get_errno())
    raise SystemExit(0)
try:
    from numba import njit  # numba checks at import that it can JIT

    print("result", njit(lambda x: 2 * x + 1)(20))
except OSError as e:
    print("refused", e)
"""


@pytest.mark.parametrize("mode", ["off", "on"])
def test_memory_deny_write_execute_would_break_numba(mode: str, tmp_path: Path) -> None:
    """Why the unit leaves MemoryDenyWriteExecute off: PR_SET_MDWE (Linux >= 6.3) applies the
    same W^X policy, and numba's JIT then cannot allocate executable memory."""
    r = subprocess.run(
        [sys.executable, "-c", MDWE, mode],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    if r.stdout.startswith("no-mdwe"):
        pytest.skip(f"kernel without PR_SET_MDWE ({r.stdout.strip()})")
    if mode == "off":
        assert "result 41" in r.stdout, r.stdout + r.stderr
    else:
        assert "refused" in r.stdout and "executable memory" in r.stdout, r.stdout + r.stderr
