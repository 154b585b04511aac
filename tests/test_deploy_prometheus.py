"""deploy/: promtool checks, and every dashboard query and rule run on a real Prometheus server
that scrapes ``netwarden replay --realtime --metrics-port`` on 127.0.0.1."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from capwriter import write_pcap
from netwarden.capture import open_capture

REPO = Path(__file__).resolve().parent.parent
PROM = REPO / "deploy" / "prometheus"
RULES = PROM / "rules" / "netwarden.rules.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "netwarden.json"
GRAFANA_DS = REPO / "deploy" / "grafana" / "provisioning" / "datasources" / "netwarden.yml"
NETWARDEN = Path(sys.executable).parent / "netwarden"

# Series a pcap replay cannot produce, and why (their queries must still evaluate cleanly).
NOT_IN_REPLAY = {
    "netwarden_kafka_consumer_lag": "only a kafka:// source sets it",
    "netwarden_reloads_total": "only SIGHUP in `netwarden run` counts reloads",
}

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="no promtool")


def _promtool(*args: str, cwd: Path = PROM) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=60)


@needs_promtool
def test_promtool_check_config_and_rules() -> None:
    r = _promtool("check", "config", "prometheus.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    r = _promtool("check", "rules", str(RULES))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS: 8 rules found" in r.stdout


@needs_promtool
def test_promtool_rule_unit_tests() -> None:
    r = _promtool("test", "rules", "tests/netwarden_rules_test.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def _panels() -> list[dict[str, Any]]:
    return [p for p in json.loads(DASHBOARD.read_text())["panels"] if p["type"] != "row"]


def test_dashboard_covers_the_issue_and_uses_the_provisioned_datasource() -> None:
    uid = re.search(r"uid: (\S+)", GRAFANA_DS.read_text())
    assert uid is not None
    panels = _panels()
    assert len({p["id"] for p in panels}) == len(panels)
    exprs = " ".join(t["expr"] for p in panels for t in p["targets"])
    for metric in (
        "netwarden_packets_total",
        "netwarden_flows_ended_total",
        "netwarden_capture_kernel_drops_total",
        "netwarden_alerts_total",
        "netwarden_alerts_suppressed_total",
        "netwarden_alerts_held",
        "netwarden_inference_latency_seconds_bucket",
        "netwarden_inference_batch_size_bucket",
        "netwarden_model_info",
        "netwarden_kafka_consumer_lag",
    ):
        assert metric in exprs, metric
    for p in panels:
        assert p["datasource"]["uid"] == uid.group(1)
        assert p["targets"] and all(t["expr"] for t in p["targets"])


def _rule_exprs() -> dict[str, str]:
    """alert name -> expression (a small reader for our own rules file; no YAML library)."""
    text = RULES.read_text()
    out: dict[str, str] = {}
    for block in re.split(r"\n      - alert: ", text)[1:]:
        name, rest = block.split("\n", 1)
        m = re.search(r"expr: \|\n((?:          .*\n)+)|expr: (.*)\n", rest)
        assert m, name
        out[name.strip()] = (m.group(1) or m.group(2)).strip()
    return out


def test_rule_reader_sees_every_rule() -> None:
    assert len(_rule_exprs()) == 8


# --- the live check ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _compose_capture(shared: Path, out: Path) -> Path:
    """A ~9 s capture: an nmap scan (2.4 s), then 6 s of benign DNS/TCP traffic after it."""
    frames: list[tuple[int, bytes, int]] = []
    t = 1_700_000_000_000_000_000
    for name, span_ns in (
        ("attack/scan/nmap-version-scan.pcap", None),
        ("benign/dns-mixed.pcap", 6_000_000_000),
    ):
        with open_capture(shared / "pcaps" / name) as reader:
            batches = list(reader)
        ts = np.concatenate([b.ts_ns for b in batches])
        first = int(ts[0])
        for b in batches:
            for i in range(len(b)):
                rel = int(b.ts_ns[i]) - first
                if span_ns is not None and rel > span_ns:
                    break
                o = int(b.offsets[i])
                frames.append((t + rel, bytes(b.data[o : o + int(b.caplen[i])]), int(b.wirelen[i])))
        t = frames[-1][0] + 600_000_000
    return write_pcap(out, frames)


class _Prometheus:
    def __init__(self, tmp: Path, target_port: int) -> None:
        self.port = _free_port()
        cfg = tmp / "prometheus.yml"
        cfg.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            f"rule_files: ['{RULES}']\n"
            "scrape_configs:\n"
            "  - job_name: netwarden\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{target_port}']}}]\n"
        )
        self.log = (tmp / "prometheus.log").open("w")
        self.proc = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={cfg}",
                f"--storage.tsdb.path={tmp / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self._wait_for(self._ready, "become ready")
        # Target updates are throttled (~5 s): wait for the first (failing) scrape attempt.
        self._wait_for(lambda: bool(self.api("query", query="up")["result"]), "scrape")

    def _ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=1):
                return True
        except OSError:
            return False

    def _wait_for(self, done: Any, what: str) -> None:
        deadline = time.monotonic() + 30
        while not done():
            assert self.proc.poll() is None, "prometheus exited"
            assert time.monotonic() < deadline, f"prometheus did not {what} in 30 s"
            time.sleep(0.2)

    def api(self, path: str, **params: str) -> Any:
        q = urllib.parse.urlencode(params)
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.port}/api/v1/{path}?{q}", timeout=10
        ) as r:
            doc = json.load(r)
        assert doc["status"] == "success", doc
        return doc["data"]

    def query(self, expr: str, at: float) -> list[dict[str, Any]]:
        data = self.api("query", query=expr, time=f"{at:.3f}")
        return list(data["result"])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture()
def replayed(shared_data: Path, tmp_path: Path) -> Iterator[tuple[_Prometheus, float, Path]]:
    """Prometheus that scraped a realtime replay; yields (server, last scrape time, alerts)."""
    if shutil.which("prometheus") is None:
        pytest.skip("the prometheus server (Debian package `prometheus`) is not installed")
    if not NETWARDEN.exists():
        pytest.skip(f"{NETWARDEN} is missing: install the project (pip install -e .)")
    pcap = _compose_capture(shared_data, tmp_path / "scan-then-benign.pcap")
    metrics_port = _free_port()
    prom = _Prometheus(tmp_path, metrics_port)
    alerts = tmp_path / "alerts.ndjson"
    try:
        replay = subprocess.run(
            [
                str(NETWARDEN),
                "replay",
                str(pcap),
                "--realtime",
                "--metrics-port",
                str(metrics_port),
                "--alerts-out",
                str(alerts),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert replay.returncode == 0, replay.stderr
        time.sleep(1.5)  # one more scrape fails: the series go stale after the last good one
        up = prom.api("query", query='up{job="netwarden"}[2m]')["result"]
        good = [float(t) for t, v in up[0]["values"] if v == "1"]
        assert len(good) >= 5, f"only {len(good)} successful scrapes: {up}"
        yield prom, good[-1], alerts
    finally:
        prom.stop()


def _at_scrape(expr: str) -> str:
    """Grafana variables to PromQL: all sensors, a 1 m rate window."""
    return expr.replace("$__rate_interval", "1m").replace('instance=~"$instance"', 'instance=~".*"')


@pytest.mark.slow
@pytest.mark.shared_data
def test_every_panel_and_rule_on_a_real_prometheus(
    replayed: tuple[_Prometheus, float, Path],
) -> None:
    prom, at, alerts = replayed
    assert alerts.read_text().count("\n") > 0, "the scan raised no alert"
    empty, report = [], []
    for panel in _panels():
        for t in panel["targets"]:
            expr = _at_scrape(t["expr"])
            result = prom.query(expr, at)
            names = set(re.findall(r"\b(netwarden_[a-z_]+)", expr))
            if not result and names & NOT_IN_REPLAY.keys():
                report.append(f"panel {panel['title']!r}: no data ({NOT_IN_REPLAY[names.pop()]})")
                continue
            report.append(f"panel {panel['title']!r} [{t['legendFormat']}]: {len(result)} series")
            if not result:
                empty.append(f"{panel['title']}: {expr}")
    for name, expr in _rule_exprs().items():
        result = prom.query(expr, at)  # evaluates without error (api() asserts success)
        report.append(f"rule {name}: {len(result)} series (firing condition)")
        for metric in set(re.findall(r"\b(netwarden_[a-z_]+|up)\b", expr)) - NOT_IN_REPLAY.keys():
            if not prom.query(f"count({metric})", at):
                empty.append(f"rule {name}: no series of {metric}")
    print("\n".join(report))
    assert not empty, "queries without data:\n" + "\n".join(empty)
    groups = prom.api("rules")["groups"]
    health = {r["name"]: r["health"] for g in groups for r in g["rules"]}
    assert len(health) == 8 and set(health.values()) == {"ok"}, health
