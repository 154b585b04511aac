"""The ``netwarden`` command as a user runs it: exit codes, one-line errors (never a
traceback for a user error), replay output, run with metrics and a graceful SIGTERM."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from modelutil import write_model_dir
from netwarden import cli
from netwarden.demo_traffic import SMALL, write_demo_pcap

REPO = Path(__file__).resolve().parent.parent
EXE = [sys.executable, "-m", "netwarden.cli"]


def nw(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EXE, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO)


def assert_user_error(r: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr
    errors = [line for line in r.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, r.stderr
    for n in needles:
        assert n in errors[0]


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    path = tmp_path_factory.mktemp("cap") / "small.pcap"
    return path, write_demo_pcap(path, seed=5, scale=SMALL)


@pytest.fixture(scope="module")
def pcap(small: tuple[Path, int]) -> Path:
    return small[0]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_model_dir(tmp_path_factory.mktemp("m") / "tiny")


@pytest.mark.parametrize("args", [(), ("replay",), ("frobnicate",), ("replay", "x.pcap",
                                  "--metrics-port", "abc"), ("model",), ("run", "--bogus")])
def test_usage_errors_exit_2(args: tuple[str, ...]) -> None:
    r = nw(*args)
    assert r.returncode == 2
    assert "usage: netwarden" in r.stderr and "Traceback" not in r.stderr


def test_bad_config_exits_3(tmp_path: Path, pcap: Path, model: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[flows]\nidle_timeout_s = -3\n")
    assert_user_error(nw("check-config", str(bad)), 3,
                      "flows.idle_timeout_s: must be > 0, got -3")
    assert_user_error(nw("replay", "--config", str(bad), "--model", str(model), str(pcap)), 3,
                      "flows.idle_timeout_s")
    assert_user_error(nw("run", "--source", "ftp://x", "--model", str(model)), 3,
                      "--source: unknown URL scheme 'ftp'")
    assert_user_error(nw("check-config", str(tmp_path / "missing.toml")), 3, "cannot read config")


def test_unreadable_input_exits_4(tmp_path: Path, model: Path) -> None:
    garbage = tmp_path / "garbage.pcap"
    garbage.write_bytes(os.urandom(4096))
    for target, needle in ((tmp_path / "missing.pcap", "no such capture file"),
                           (garbage, "garbage.pcap"), (tmp_path, "not a file")):
        assert_user_error(nw("replay", "--model", str(model), str(target)), 4, needle)


def test_bad_model_exits_5(tmp_path: Path, pcap: Path) -> None:
    broken = write_model_dir(tmp_path / "broken")
    (broken / "model.onnx").write_bytes(b"not onnx at all")
    for d in (tmp_path / "nope", tmp_path, broken):
        assert_user_error(nw("replay", "--model", str(d), str(pcap)), 5)
    assert_user_error(nw("model", "info", str(tmp_path / "nope")), 5)


def test_json_log_format_for_errors(tmp_path: Path, model: Path) -> None:
    r = nw("--log-format", "json", "replay", "--model", str(model), str(tmp_path / "x.pcap"))
    assert r.returncode == 4
    docs = [json.loads(line) for line in r.stderr.splitlines()]
    assert docs[-1]["log.level"] == "error" and "x.pcap" in docs[-1]["message"]


def test_replay_prints_alerts_and_summary(tmp_path: Path, pcap: Path, model: Path) -> None:
    summary = tmp_path / "summary.json"
    r = nw("replay", str(pcap), "--model", str(model), "--summary-json", str(summary),
           "--log-level", "warning")
    assert r.returncode == 0, r.stderr
    alerts = [json.loads(line) for line in r.stdout.splitlines()]
    s = json.loads(summary.read_text())
    assert len(alerts) == s["alerts"] > 0
    assert {a["netwarden"]["label"] for a in alerts} == set(s["alerts_by_label"])
    assert s["files"] == {str(pcap): s["packets"]}
    first = r.stderr.splitlines()[0]
    assert first.startswith(f"packets {s['packets']} (") and f"flows {s['flows']}," in first
    assert "packets/s" in first and "alerts by label: " in r.stderr


def test_replay_to_files(tmp_path: Path, pcap: Path, model: Path) -> None:
    alerts, flows = tmp_path / "alerts.jsonl", tmp_path / "flows.jsonl"
    r = nw("replay", str(pcap), "--model", str(model), "--alerts-out", str(alerts),
           "--flows-out", str(flows), "--threshold", "0.99")
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    docs = [json.loads(line) for line in alerts.read_text().splitlines()]
    assert all(d["netwarden"]["threshold"] == 0.99 for d in docs)
    assert len(flows.read_text().splitlines()) > len(docs)


def test_check_config_and_model_info(model: Path) -> None:
    r = nw("check-config", "netwarden.example.toml")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok: netwarden.example.toml\n")
    assert "batching.max_batch = 256" in r.stdout and "metrics.port = 9108" in r.stdout
    r = nw("model", "info", str(model))
    assert r.returncode == 0, r.stderr
    assert "tiny-linear 0.0.1" in r.stdout and "BENIGN (benign)" in r.stdout
    r = nw("model", "info", str(model), "--json")
    doc = json.loads(r.stdout)
    assert doc["name"] == "tiny-linear" and doc["threshold_in_force"]["value"] == 0.5


def test_missing_optional_command_explains_itself(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(cli, "OPTIONAL_COMMANDS", {
        "netwarden_nosuch.cli": (("frob",), "install the frob extras")})
    assert "frob" in cli.build_parser().format_help()
    assert cli.main(["frob", "--anything"]) == 2
    err = capsys.readouterr().err
    assert "netwarden frob is not available: install the frob extras" in err
    assert "Traceback" not in err


def test_optional_commands_are_added_when_they_import() -> None:
    if importlib.util.find_spec("netwarden_train") is None:
        pytest.skip("netwarden_train is not installed")
    help_text = cli.build_parser().format_help()
    for name in ("train", "evaluate", "calibrate"):
        assert name in help_text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(port: int, deadline: float) -> str:
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
                return str(resp.read().decode())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _notified(s: socket.socket) -> list[str]:
    """The next sd_notify datagram that is not a watchdog keep-alive, as its lines."""
    while True:
        lines = s.recv(4096).decode().split("\n")
        if lines != ["WATCHDOG=1"]:
            return lines


def test_run_serves_metrics_and_stops_gracefully_on_sigterm(tmp_path: Path,
                                                            small: tuple[Path, int],
                                                            model: Path) -> None:
    pcap, n_packets = small
    port = _free_port()
    cfg = tmp_path / "nw.toml"
    cfg.write_text(f'[source]\nurl = "{pcap}"\n[model]\ndir = "{model}"\n'
                   f'[alerts]\nsinks = ["alerts.jsonl"]\nflow_log = "flows.jsonl"\n'
                   f'[metrics]\nport = {port}\n[logging]\nlevel = "info"\n')
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # stands in for systemd
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(60)
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock")}
    # --realtime: the small capture spans ~40 s, so the daemon is still running when stopped
    proc = subprocess.Popen([*EXE, "run", "--config", str(cfg), "--realtime"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert _notified(notify) == ["READY=1", "STATUS=reading pcap"]
        deadline = time.monotonic() + 60
        text = _scrape(port, deadline)
        while "netwarden_packets_total 0.0" in text and time.monotonic() < deadline:
            time.sleep(0.3)
            text = _scrape(port, deadline)
        assert "netwarden_packets_total" in text and "netwarden_packets_total 0.0" not in text
        assert 'netwarden_reloads_total{result="error"} 0.0' in text  # there before any reload
        before_us = time.monotonic_ns() // 1000
        proc.send_signal(signal.SIGHUP)  # while a batch is being paced: reloads at once
        reloading = _notified(notify)
        assert reloading[0] == "RELOADING=1" and reloading[1].startswith("MONOTONIC_USEC=")
        assert before_us <= int(reloading[1].split("=")[1]) <= time.monotonic_ns() // 1000
        assert _notified(notify) == ["READY=1", "STATUS=reading pcap"]
        assert 'netwarden_reloads_total{result="ok"} 1.0' in _scrape(port, deadline)
        proc.send_signal(signal.SIGTERM)
        assert _notified(notify) == ["STOPPING=1"]
        _out, err = proc.communicate(timeout=30)
    finally:
        notify.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    stopped = re.search(r"stopped: packets (\d+) .*flows (\d+), alerts (\d+)", err)
    assert stopped, err
    packets, n_flows, n_alerts = map(int, stopped.groups())
    assert 0 < packets < n_packets  # it stopped before the end of the capture
    flows = (tmp_path / "flows.jsonl").read_text().splitlines()
    # every flow, the ones still open at SIGTERM included, was scored and written
    assert len(flows) == n_flows > 0
    assert len((tmp_path / "alerts.jsonl").read_text().splitlines()) == n_alerts


def test_run_to_the_end_of_a_file_source(tmp_path: Path, pcap: Path, model: Path) -> None:
    cfg = tmp_path / "nw.toml"
    cfg.write_text('[metrics]\nport = 0\n[alerts]\nsinks = ["out.jsonl"]\n')
    r = nw("run", "--config", str(cfg), "--source", f"pcap://{pcap}", "--model", str(model))
    assert r.returncode == 0, r.stderr
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) > 0


def test_shipped_configs_check_and_run(tmp_path: Path, pcap: Path, model: Path) -> None:
    for path in ("netwarden.example.toml", "systemd/netwarden.toml"):
        r = nw("check-config", path)
        assert r.returncode == 0 and r.stdout.startswith(f"ok: {path}\n"), r.stderr
    text = (REPO / "systemd" / "netwarden.toml").read_text()
    assert text.count("port = 9108") == 1
    cfg = tmp_path / "netwarden.toml"  # the unit's config, on a free port (0: no server)
    cfg.write_text(text.replace("port = 9108", "port = 0"))
    out = tmp_path / "alerts.ndjson"
    r = nw("run", "--config", str(cfg), "--source", f"pcap://{pcap}", "--model", str(model),
           "--alerts", str(out))
    assert r.returncode == 0, r.stderr
    assert len(out.read_text().splitlines()) > 0


def test_replay_to_dev_null(pcap: Path, model: Path) -> None:
    r = nw("replay", str(pcap), "--model", str(model), "--alerts-out", "/dev/null",
           "--flows-out", "/dev/null")
    assert r.returncode == 0, r.stderr
    assert "errors:" not in r.stderr and "cannot write" not in r.stderr
    assert re.search(r"alerts [1-9]\d* in", r.stderr), r.stderr


def test_help_says_alert_files_are_appended() -> None:
    for argv in (["replay", "--help"], ["run", "--help"]):
        text = " ".join(nw(*argv).stdout.split())
        assert "appends to an existing file" in text or "files are appended to" in text


def _bad_model(tmp_path: Path, manifest: str | None) -> Path:
    d = write_model_dir(tmp_path / "m")
    if manifest is not None:
        (d / "manifest.json").write_text(manifest)
    return d




@pytest.mark.parametrize(("case", "code", "needle"), [
    ("empty pcap", 4, "empty file"),
    ("manifest not JSON", 5, "not valid JSON"),
    ("manifest of another format", 5, "format_version"),
    ("manifest of another feature schema", 5, "does not match the running schema"),
    ("config wrong type", 3, "flows.max_flows: must be an integer, got 'many'"),
    ("config unknown key", 3, "alerts.sink: unknown key (did you mean 'sinks'?)"),
    ("config unknown kafka key", 3, "kafka.bogus: unknown key"),
    ("config bad service value", 3, "service.stall_after_s"),
    ("missing threshold file", 3, "model.threshold_file: must be an existing file"),
    ("missing source file", 4, "no such capture file"),
])
def test_bad_input_is_one_line_and_its_exit_code(case: str, code: int, needle: str,
                                                 tmp_path: Path, pcap: Path,
                                                 model: Path) -> None:
    cfg = tmp_path / "nw.toml"
    args = ["replay", "--model", str(model), str(pcap)]
    if case == "empty pcap":
        (tmp_path / "e.pcap").write_bytes(b"")
        args = ["replay", "--model", str(model), str(tmp_path / "e.pcap")]
    elif case.startswith("manifest"):
        doc = json.loads((model / "manifest.json").read_text())
        doc["feature_schema"]["id"] = "other-v9"
        text = {"manifest not JSON": "{not json", "manifest of another format": '{"foo": 1}',
                "manifest of another feature schema": json.dumps(doc)}[case]
        args = ["replay", "--model", str(_bad_model(tmp_path, text)), str(pcap)]
    elif case.startswith("config") or case == "missing threshold file":
        cfg.write_text({
            "config wrong type": '[flows]\nmax_flows = "many"\n',
            "config unknown key": '[alerts]\nsink = ["-"]\n',
            "config unknown kafka key": "[kafka]\nbogus = 1\n",
            "config bad service value": "[service]\nstall_after_s = -1\n",
            "missing threshold file": '[model]\nthreshold_file = "nope.json"\n'}[case])
        assert_user_error(nw("check-config", str(cfg)), code, needle)
        args = ["run", "--config", str(cfg), "--source", f"pcap://{pcap}", "--model", str(model)]
    elif case == "missing source file":
        args = ["run", "--source", f"pcap://{tmp_path}/nope.pcap", "--model", str(model)]
    assert_user_error(nw(*args), code, needle)


@pytest.mark.parametrize(("given", "expected"), [(None, "False"), ("1", "True")])
def test_cli_turns_numpys_huge_page_advice_off_unless_the_environment_says(
    given: str | None, expected: str
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    if given is not None:
        env["NUMPY_MADVISE_HUGEPAGE"] = given
    probe = (
        "from netwarden import cli\n"
        "try:\n"
        "    cli.main(['--version'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "import numpy\n"  # after main: numpy reads the variable when it is imported
        "print(numpy._core.multiarray._set_madvise_hugepage(True))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True,
                         text=True, timeout=60, check=True)
    assert out.stdout.split()[-1] == expected
