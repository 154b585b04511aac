"""Synthetic labelled captures (netwarden_train.synth_traffic): deterministic, labelled by
construction, and cut into flows by the daemon's extractor."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from netwarden_train.synth_traffic import KINDS, load_synth, scenario

FWD_PKTS = 1  # schema column "Total Fwd Packet"


def test_scenario_is_seeded() -> None:
    a = scenario("brute-ftp", 3)
    b = scenario("brute-ftp", 3)
    c = scenario("brute-ftp", 4)
    assert [bytes(p) for p in a] == [bytes(p) for p in b]
    assert [bytes(p) for p in a] != [bytes(p) for p in c]
    assert all(float(x.time) <= float(y.time) for x, y in itertools.pairwise(a))


def test_every_family_is_generated() -> None:
    assert {label for label, _ in KINDS.values()} == {"BENIGN", "PortScan", "DoS", "BruteForce"}


def test_load_synth_labels_by_kind() -> None:
    t = load_synth(1, kinds=["brute-ssh", "benign-udp1", "dos-syn"])
    assert set(t.source.tolist()) == {"synth-brute-ssh", "synth-benign-udp1", "synth-dos-syn"}
    assert set(t.origin.tolist()) == {"capture"}
    for src, fam in (
        ("synth-brute-ssh", "BruteForce"),
        ("synth-benign-udp1", "BENIGN"),
        ("synth-dos-syn", "DoS"),
    ):
        assert set(t.family[t.source == src].tolist()) == {fam}
    brute = t.x[t.source == "synth-brute-ssh"]
    assert len(brute) >= 5 and (brute[:, FWD_PKTS] >= 8).all()  # whole SSH sessions
    udp1 = t.x[t.source == "synth-benign-udp1"]
    assert len(udp1) >= 10 and (udp1[:, FWD_PKTS] + udp1[:, FWD_PKTS + 1] <= 2).mean() > 0.9
    assert np.isfinite(t.x).all()


# schema columns (netwarden.features.cic_schema.CIC_SCHEMA order)
BWD_PKTS, FWD_DATA_PKTS = 2, 68


@pytest.fixture(scope="module")
def brute() -> dict[str, np.ndarray]:
    t = load_synth(4, kinds=["brute-ssh", "brute-ftp"])
    return {k: t.x[t.source == f"synth-brute-{k}"] for k in ("ssh", "ftp")}


def test_brute_force_connections_have_realistic_packet_counts(
    brute: dict[str, np.ndarray],
) -> None:
    # ssh-password-guessing: 22-26 packets out, 15-19 back per connection (2-3 guesses);
    # ftp-bruteforce-30: 11 out, 9 back (one guess, QUIT). Whole sessions with the pure
    # ACKs that real stacks send for most data segments.
    for kind, lo_fwd, lo_bwd, med in (("ssh", 10, 7, (14, 30)), ("ftp", 6, 4, (8, 30))):
        x = brute[kind]
        assert len(x) >= 20
        assert (x[:, FWD_PKTS] >= lo_fwd).all() and (x[:, BWD_PKTS] >= lo_bwd).all()
        assert med[0] <= np.median(x[:, FWD_PKTS]) <= med[1]
        pure_acks = 1 - x[:, FWD_DATA_PKTS] / x[:, FWD_PKTS]
        assert np.median(pure_acks) > 0.3


def test_real_brute_force_counts_lie_inside_the_generated_range(
    shared_data: Path, brute: dict[str, np.ndarray]
) -> None:
    from netwarden.extract import extract_flows
    from netwarden.flows.params import FlowParams

    root = shared_data / "pcaps" / "attack" / "bruteforce"
    for kind, name in (("ssh", "ssh-password-guessing.pcap"), ("ftp", "ftp-bruteforce-30.pcap")):
        real = np.concatenate(
            [f.features for _, f in extract_flows([root / name], params=FlowParams())]
        )
        real = real[real[:, FWD_PKTS] >= 5]  # the login connections
        assert len(real) >= 10
        gen = brute[kind]
        for col in (FWD_PKTS, BWD_PKTS):
            lo, hi = np.percentile(gen[:, col], [1, 99])
            assert lo <= real[:, col].min() and real[:, col].max() <= hi, (kind, col)
