"""Every third-party capture in ../shared/data/pcaps replays with exit 0, in one process.

One ``netwarden replay`` over all files (fast: one start-up, one model load); the summary JSON
says how many frames each file gave, so a file that was silently skipped fails the test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import all_shared_pcaps
from modelutil import write_model_dir

pytestmark = pytest.mark.shared_data


def test_every_shared_capture_replays(shared_data: Path, tmp_path: Path) -> None:
    pcaps = all_shared_pcaps()
    assert len(pcaps) >= 10, f"expected the shared captures under {shared_data / 'pcaps'}"
    model = write_model_dir(tmp_path / "tiny")
    summary = tmp_path / "summary.json"
    alerts = tmp_path / "alerts.jsonl"
    r = subprocess.run(
        [sys.executable, "-m", "netwarden.cli", "replay", *map(str, pcaps), "--model", str(model),
         "--alerts-out", str(alerts), "--flows-out", str(tmp_path / "flows.jsonl"),
         "--summary-json", str(summary), "--log-level", "warning"],
        capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    s = json.loads(summary.read_text())
    files = s["files"]
    assert set(files) == {str(p) for p in pcaps}
    empty = [p for p, n in files.items() if n == 0]
    assert not empty, f"captures that gave no frames: {empty}"
    assert sum(files.values()) == s["packets"]
    assert s["errors"] == {}, s["errors"]
    assert s["flows"] > len(pcaps)
    flows = (tmp_path / "flows.jsonl").read_text().splitlines()
    assert len(flows) == s["flows"]
    assert len(alerts.read_text().splitlines()) == s["alerts"]
