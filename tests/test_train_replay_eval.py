"""``netwarden-train evaluate --replay``: what the daemon's alert path alerts on labelled
captures, with and without the alert gate."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.shared_data
def test_replay_evaluation_counts_attack_and_benign_flows_alerted(
    shared_data: Path, tmp_path: Path
) -> None:
    from netwarden_train.replay_eval import replay_alerts

    rules = tmp_path / "rules.toml"
    rules.write_text(
        f'root = "{shared_data / "pcaps"}"\n'
        '[[capture]]\npath = "attack/scan/portscan-29ports.pcap"\ndefault = "drop"\n'
        '[[capture.rule]]\nlabel = "PortScan"\nhosts = ["10.100.25.14"]\n'
        '[[capture]]\npath = "benign/dns-edns.pcap"\ndefault = "BENIGN"\n')
    model = REPO / "models" / "netwarden-cic"
    gated = replay_alerts(model, [rules])
    plain = replay_alerts(model, [rules], gate=False)
    scan, dns = gated["per_capture"]["portscan-29ports.pcap"], gated["per_capture"]["dns-edns.pcap"]
    assert scan["family"] == "scan" and dns["family"] == "benign"
    assert scan["attack"] == 29 and scan["attack_alerted"] == 29
    assert dns["benign"] == 73 and dns["benign_alerted"] == 0  # lone answers: uncorroborated
    assert plain["per_capture"]["dns-edns.pcap"]["benign_alerted"] >= 1  # the gate did that
    assert gated["per_family"]["scan"]["attack_alerted"] == 29
