"""Synthetic labelled captures (netwarden_train.synth_traffic): deterministic, labelled by
construction, and cut into flows by the daemon's extractor."""

from __future__ import annotations

import itertools

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
