"""Label rules: matching on synthetic flow rows, and on real shared captures."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import numpy as np
import pytest
from netwarden.flows.params import FLOW_META_DTYPE, FlowParams
from netwarden_train.captures import extract, table_for
from netwarden_train.rules import CaptureRules, Rule, label_flows, load_rules

REPO = Path(__file__).resolve().parent.parent
RULES = REPO / "training" / "configs" / "captures.toml"


def _halves(a: str) -> tuple[int, int]:
    ip = ipaddress.ip_address(a)
    v = (0xFFFF << 32) | int(ip) if ip.version == 4 else int(ip)
    return v >> 64, v & (2**64 - 1)


def _meta(rows: list[tuple[str, str, int, int, int, float]]) -> np.ndarray:
    m = np.zeros(len(rows), FLOW_META_DTYPE)
    for k, (src, dst, sport, dport, proto, t) in enumerate(rows):
        m[k]["src_hi"], m[k]["src_lo"] = _halves(src)
        m[k]["dst_hi"], m[k]["dst_lo"] = _halves(dst)
        m[k]["sport"], m[k]["dport"], m[k]["proto"] = sport, dport, proto
        m[k]["first_ts_ns"] = int(t * 1e9)
    return m


def test_rules_match_hosts_either_direction_ports_and_time() -> None:
    net = ipaddress.ip_network
    cap = CaptureRules(
        Path("x.pcap"),
        "BENIGN",
        (
            Rule("DoS", hosts=(net("10.0.0.9/32"),), ports=(80,), after_s=1.0, before_s=5.0),
            Rule("PortScan", hosts=(net("10.0.0.0/24"),), peers=(net("2001:db8::/32"),), proto=6),
            Rule("drop", proto=17),
        ),
    )
    meta = _meta(
        [
            ("10.0.0.9", "10.1.1.1", 4000, 80, 6, 2.0),  # attacker -> victim:80 in window
            ("10.1.1.1", "10.0.0.9", 80, 4000, 6, 3.0),  # reverse direction, still matches
            ("10.0.0.9", "10.1.1.1", 4000, 80, 6, 9.0),  # outside the time window
            ("10.0.0.7", "2001:db8::1", 1, 22, 6, 9.0),  # v4 host, v6 peer: second rule
            ("192.168.0.1", "192.168.0.2", 53, 53, 17, 0.0),  # UDP: dropped
            ("192.168.0.1", "192.168.0.2", 1, 2, 6, 0.0),  # nothing matches: default
        ]
    )
    assert label_flows(meta, cap, t0_ns=0) == ["DoS", "DoS", "BENIGN", "PortScan", "drop", "BENIGN"]


def test_rules_file_is_validated(tmp_path: Path) -> None:
    p = tmp_path / "r.toml"
    (tmp_path / "a.pcap").write_bytes(b"")
    p.write_text(f'root = "{tmp_path}"\n[[capture]]\npath = "a.pcap"\ndefault = "Martian"\n')
    with pytest.raises(ValueError, match="known label"):
        load_rules(p)
    p.write_text(
        f'root = "{tmp_path}"\n[[capture]]\npath = "a.pcap"\n[[capture.rule]]\n'
        'label = "DoS"\nhost = ["1.2.3.4"]\n'
    )
    with pytest.raises(ValueError, match="unknown key"):
        load_rules(p)


@pytest.mark.shared_data
def test_label_rules_on_shared_captures(shared_data: Path) -> None:
    caps = {c.path.name: c for c in load_rules(RULES)}
    wanted = ["portscan-29ports.pcap", "nmap-version-scan.pcap", "ftp-bruteforce-30.pcap"]
    paths = [caps[n].path for n in wanted]
    got = {p.name: table_for(caps[p.name], fl) for p, fl in extract(paths, FlowParams())}
    scan, counts = got["portscan-29ports.pcap"]
    assert len(scan) == 29 and set(scan.family) == {"PortScan"}  # 29 SYNs to 29 ports
    nmap, counts = got["nmap-version-scan.pcap"]
    assert set(nmap.family) == {"PortScan"} and counts["drop"] >= 1  # its DNS lookups
    ftp, _ = got["ftp-bruteforce-30.pcap"]
    assert len(ftp) >= 30 and set(ftp.family) == {"BruteForce"}  # 30 login attempts


@pytest.mark.shared_data
def test_shipped_model_on_shared_captures(shared_data: Path, tmp_path: Path) -> None:
    """The default model alerts on a scan and a brute force, and not on ordinary services."""
    from netwarden_train.assess import assess

    rules = tmp_path / "r.toml"
    rules.write_text(
        f'root = "{shared_data / "pcaps"}"\n'
        '[[capture]]\npath = "attack/scan/portscan-29ports.pcap"\ndefault = "PortScan"\n'
        '[[capture]]\npath = "attack/bruteforce/ssh-password-guessing.pcap"\ndefault = "drop"\n'
        '[[capture.rule]]\nlabel = "BruteForce"\nports = [22]\n'
        '[[capture]]\npath = "benign/services-std-ports.pcap"\ndefault = "BENIGN"\n'
    )
    out = assess(REPO / "models" / "netwarden-cic", [rules])
    per = out["per_capture"]
    assert per["portscan-29ports.pcap"]["alerted"] >= 0.9
    assert per["ssh-password-guessing.pcap"]["alerted"] >= 0.9
    assert per["services-std-ports.pcap"]["alerted"] <= 0.05
