"""The demo: its generated traffic (deterministic, shaped like the real families) and the
``netwarden demo`` command (with a tiny model always; with the default model when one exists)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from modelutil import write_model_dir
from netwarden.alerts_ecs import format_addr
from netwarden.app_build import find_default_model_dir, model_search_dirs
from netwarden.capture import open_capture
from netwarden.decode import decode
from netwarden.demo_traffic import SMALL, demo_packets, family_of, write_demo_pcap
from netwarden.extract import extract_flows
from netwarden.flows.params import EndReason, FlowParams
from netwarden.packets import TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN
from scapy.compat import raw

EXE = [sys.executable, "-m", "netwarden.cli"]


@pytest.fixture(scope="module")
def pcap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demo") / "demo.pcap"
    write_demo_pcap(path, seed=11, scale=SMALL)
    return path


@pytest.fixture(scope="module")
def flows_by_family(pcap: Path) -> dict[str, np.ndarray]:
    metas: dict[str, list[np.void]] = defaultdict(list)
    for _, ended in extract_flows([pcap], params=FlowParams()):
        for row in ended.meta:
            metas[family_of(format_addr(int(row["src_hi"]), int(row["src_lo"])))].append(row)
    return {k: np.array(v) for k, v in metas.items()}


def test_generation_is_deterministic() -> None:
    a = [raw(p) for p in demo_packets(seed=1, scale=SMALL)]
    b = [raw(p) for p in demo_packets(seed=1, scale=SMALL)]
    c = [raw(p) for p in demo_packets(seed=2, scale=SMALL)]
    assert a == b and a != c
    times = [float(p.time) for p in demo_packets(seed=1, scale=SMALL)]
    assert times == sorted(times)


def test_every_family_is_present(flows_by_family: dict[str, np.ndarray]) -> None:
    assert set(flows_by_family) == {"benign web", "benign dns", "benign ssh", "port scan",
                                    "syn flood", "ssh brute force"}
    assert len(flows_by_family["port scan"]) == SMALL.scan_ports
    assert len(flows_by_family["ssh brute force"]) == SMALL.brute_attempts
    assert len(flows_by_family["benign web"]) == SMALL.web


def test_port_scan_is_syn_then_rst(flows_by_family: dict[str, np.ndarray]) -> None:
    scan = flows_by_family["port scan"]
    assert (scan["end_reason"] == EndReason.RST).all()
    assert (scan["bwd_packets"] == 1).all() and (scan["fwd_packets"] <= 2).all()
    assert len(np.unique(scan["dport"])) == len(scan)  # one flow per probed port


def test_syn_flood_is_syns_only(pcap: Path, flows_by_family: dict[str, np.ndarray]) -> None:
    flood = flows_by_family["syn flood"]
    assert (flood["fwd_packets"] == 1).all() and (flood["bwd_packets"] == 0).all()
    with open_capture(pcap) as r:
        packets = np.concatenate([decode(b)[0] for b in r])
    from_flood = (packets["src_lo"] & 0xFFFF_FFFF_FF00) == 0xFFFF_C633_6400  # 198.51.100.0/24
    assert from_flood.sum() == SMALL.flood_syns
    assert (packets["tcp_flags"][from_flood] == TCP_SYN).all()


def test_ssh_brute_force_is_full_sessions(flows_by_family: dict[str, np.ndarray]) -> None:
    brute = flows_by_family["ssh brute force"]
    assert (brute["dport"] == 22).all()
    assert (brute["end_reason"] == EndReason.FIN).all()  # each attempt closes its connection
    assert (brute["fwd_packets"] + brute["bwd_packets"] >= 15).all()
    assert (brute["bwd_bytes"] > 1500).all() and (brute["fwd_bytes"] > 1500).all()  # key exchange
    assert len(np.unique(brute["sport"])) == len(brute)


def test_benign_tcp_sessions_complete(pcap: Path, flows_by_family: dict[str, np.ndarray]) -> None:
    for fam in ("benign web", "benign ssh"):
        assert (flows_by_family[fam]["end_reason"] == EndReason.FIN).all()
    web = flows_by_family["benign web"]
    assert (web["bwd_bytes"] > web["fwd_bytes"]).all()  # responses outweigh requests
    assert (flows_by_family["benign dns"]["proto"] == 17).all()
    with open_capture(pcap) as r:
        flags = np.concatenate([decode(b)[0]["tcp_flags"] for b in r])
    assert ((flags & (TCP_FIN | TCP_ACK)) == (TCP_FIN | TCP_ACK)).any()
    assert ((flags & TCP_RST) != 0).any()


def _family_rows(stdout: str) -> dict[str, tuple[int, int]]:
    table = stdout.split("generated family", 1)[1].splitlines()[1:]
    rows = {}
    for line in table:
        m = re.match(r"^(.+?)\s+(\d+)\s+(\d+)\s\s", line)
        if m:
            rows[m.group(1)] = (int(m.group(2)), int(m.group(3)))
    return rows


def test_demo_command_with_a_tiny_model(tmp_path: Path) -> None:
    model = write_model_dir(tmp_path / "tiny")
    alerts = tmp_path / "alerts.jsonl"
    r = subprocess.run([*EXE, "demo", "--model", str(model), "--max-alerts", "3", "--alerts-out",
                        str(alerts), "--keep-pcap", str(tmp_path / "d.pcap"),
                        "--log-level", "warning"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert out.startswith("netwarden demo: ") and "model tiny-linear 0.0.1" in out
    n_alerts = len(alerts.read_text().splitlines())
    assert f"alerts ({n_alerts}; showing 3):" in out
    total = re.search(rf"^total\s+(\d+)\s+(\d+)\s+{n_alerts}$", out, re.M)
    assert total, out
    rows = _family_rows(out)
    assert set(rows) == {"benign web", "benign dns", "benign ssh", "port scan", "syn flood",
                         "ssh brute force"}
    assert sum(f for f, _ in rows.values()) == int(total.group(1))
    assert sum(a for _, a in rows.values()) == int(total.group(2))  # flows alerted
    assert int(total.group(2)) >= n_alerts  # a summary alert stands for many flows
    assert (tmp_path / "d.pcap").stat().st_size > 100_000


def test_demo_without_a_model_says_how_to_get_one(tmp_path: Path) -> None:
    r = subprocess.run([*EXE, "demo", "--model", str(tmp_path / "none")], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 5 and "Traceback" not in r.stderr


def test_demo_with_the_default_model_flags_the_attacks() -> None:
    if find_default_model_dir() is None:
        pytest.skip("no default model yet (looked for */manifest.json in "
                    f"{', '.join(map(str, model_search_dirs()))}); the training package "
                    "ships models/netwarden-cic/")
    r = subprocess.run([*EXE, "demo", "--log-level", "warning"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    rows = _family_rows(r.stdout)
    for fam in ("port scan", "syn flood", "ssh brute force"):
        _flows, alerts = rows[fam]
        assert alerts > 0, f"the default model does not flag the demo's {fam}:\n{r.stdout}"
    benign_flows = sum(rows[f][0] for f in ("benign web", "benign dns", "benign ssh"))
    benign_alerts = sum(rows[f][1] for f in ("benign web", "benign dns", "benign ssh"))
    assert benign_alerts <= 0.2 * benign_flows, r.stdout
