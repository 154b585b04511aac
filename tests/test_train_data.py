"""Training data: CSV header variants, label spelling, cleaning, splits, config validation."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from netwarden.features.cic_schema import CIC_SCHEMA
from netwarden_train import config, splits
from netwarden_train.clean import clean
from netwarden_train.columns import map_header
from netwarden_train.csvdata import read_csvs
from netwarden_train.labels import canonical, family
from netwarden_train.synthetic import write_csv
from netwarden_train.table import FlowTable

# The MachineLearningCVE header of the original CIC-IDS2017 release, in schema order, written
# out by hand (None: the column does not exist in that release).
MLCVE = [
    " Flow Duration",
    " Total Fwd Packets",
    " Total Backward Packets",
    "Total Length of Fwd Packets",
    " Total Length of Bwd Packets",
    " Fwd Packet Length Max",
    " Fwd Packet Length Min",
    " Fwd Packet Length Mean",
    " Fwd Packet Length Std",
    "Bwd Packet Length Max",
    " Bwd Packet Length Min",
    " Bwd Packet Length Mean",
    " Bwd Packet Length Std",
    "Flow Bytes/s",
    " Flow Packets/s",
    " Flow IAT Mean",
    " Flow IAT Std",
    " Flow IAT Max",
    " Flow IAT Min",
    "Fwd IAT Total",
    " Fwd IAT Mean",
    " Fwd IAT Std",
    " Fwd IAT Max",
    " Fwd IAT Min",
    "Bwd IAT Total",
    " Bwd IAT Mean",
    " Bwd IAT Std",
    " Bwd IAT Max",
    " Bwd IAT Min",
    "Fwd PSH Flags",
    " Bwd PSH Flags",
    " Fwd URG Flags",
    " Bwd URG Flags",
    None,
    None,
    " Fwd Header Length",
    " Bwd Header Length",
    "Fwd Packets/s",
    " Bwd Packets/s",
    " Min Packet Length",
    " Max Packet Length",
    " Packet Length Mean",
    " Packet Length Std",
    " Packet Length Variance",
    "FIN Flag Count",
    " SYN Flag Count",
    " RST Flag Count",
    " PSH Flag Count",
    " ACK Flag Count",
    " URG Flag Count",
    " CWE Flag Count",
    " ECE Flag Count",
    " Down/Up Ratio",
    " Average Packet Size",
    " Avg Fwd Segment Size",
    " Avg Bwd Segment Size",
    "Fwd Avg Bytes/Bulk",
    " Fwd Avg Packets/Bulk",
    " Fwd Avg Bulk Rate",
    " Bwd Avg Bytes/Bulk",
    " Bwd Avg Packets/Bulk",
    "Bwd Avg Bulk Rate",
    "Subflow Fwd Packets",
    " Subflow Fwd Bytes",
    " Subflow Bwd Packets",
    " Subflow Bwd Bytes",
    "Init_Win_bytes_forward",
    " Init_Win_bytes_backward",
    " act_data_pkt_fwd",
    " min_seg_size_forward",
    "Active Mean",
    " Active Std",
    " Active Max",
    " Active Min",
    "Idle Mean",
    " Idle Std",
    " Idle Max",
    " Idle Min",
    None,
    None,
    None,
]


def test_mlcve_header_list_matches_schema_length() -> None:
    assert len(MLCVE) == len(CIC_SCHEMA)


def test_both_header_variants_map_to_the_same_rows(tmp_path: Path) -> None:
    cur = read_csvs([write_csv(tmp_path / "cur.csv", 20)])[0]
    old = read_csvs([write_csv(tmp_path / "old.csv", 20, header=MLCVE, label_column=" Label")])[0]
    assert cur.x.shape == old.x.shape == (60, len(CIC_SCHEMA))
    np.testing.assert_array_equal(cur.x, old.x)
    assert list(old.family) == list(cur.family)


def test_missing_columns_get_documented_defaults(tmp_path: Path) -> None:
    hm = map_header([n for n in MLCVE if n is not None] + [" Label"])
    assert set(hm.missing) == {
        "Fwd RST Flags",
        "Bwd RST Flags",
        "ICMP Code",
        "ICMP Type",
        "Total TCP Flow Time",
    }
    old = read_csvs([write_csv(tmp_path / "old.csv", 5, header=MLCVE)])[0]
    assert (old.x[:, CIC_SCHEMA.index("ICMP Type")] == -1).all()


def test_header_without_features_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text("a,b,Label\n1,2,BENIGN\n")
    with pytest.raises(ValueError, match="maps only 0"):
        read_csvs([p])


@pytest.mark.parametrize(
    ("raw", "fam"),
    [
        ("Web Attack \x96 Brute Force", "WebAttack"),
        ("Web Attack - XSS", "WebAttack"),
        ("PortScan", "PortScan"),
        ("Portscan", "PortScan"),
        ("DoS slowhttptest", "DoS"),
        ("BENIGN", "BENIGN"),
        ("Bot", "Botnet"),
        ("Infiltration - Portscan", "PortScan"),
        ("FTP-Patator", "BruteForce"),
        (" SSH-Patator ", "BruteForce"),
    ],
)
def test_label_spellings(raw: str, fam: str) -> None:
    assert family(raw) == fam


def test_attempted_and_unknown_labels_are_dropped_and_counted(tmp_path: Path) -> None:
    p = write_csv(tmp_path / "a.csv", 3)
    lines = p.read_text().splitlines()
    lines[1] = lines[1].rsplit(",", 1)[0] + ",DoS Hulk - Attempted"
    lines[2] = lines[2].rsplit(",", 1)[0] + ",Martian"
    p.write_text("\n".join(lines) + "\n")
    t, drops = read_csvs([p])
    assert len(t) == 7 and drops == Counter({"attempted_label": 1, "unknown_label": 1})
    assert canonical("DoS Hulk - Attempted").endswith("attempted")


def _table(x: np.ndarray, fam: list[str], origin: str = "csv") -> FlowTable:
    f = np.array(fam)
    return FlowTable(
        x, f, f, np.full(len(f), "s"), np.arange(len(f)).astype(str), np.full(len(f), origin)
    )


def test_cleaning_drops_bad_rows_with_reasons() -> None:
    x = np.ones((6, len(CIC_SCHEMA)))
    x[0, 3] = np.nan
    x[1, 4] = np.inf
    x[2, 0] = -5  # negative Flow Duration
    x[4] = x[3]  # duplicate of row 3
    x[5, 7] = 9.0
    t, rep = clean(_table(x, ["BENIGN"] * 6))
    assert len(t) == 2
    assert rep.dropped == Counter({"nan": 1, "inf": 1, "negative_duration": 1, "duplicate": 1})
    assert "Flow Duration" in rep.constant_columns


def test_conflicting_labels_majority_wins() -> None:
    x = np.zeros((4, len(CIC_SCHEMA)))
    t, rep = clean(
        _table(x, ["DoS", "DoS", "BENIGN", "DoS"], "capture"), max_copies={"capture": 10}
    )
    assert list(t.family) == ["DoS"] * 3
    assert rep.dropped["conflicting_label"] == 1


def test_stratified_and_grouped_splits() -> None:
    rng = np.random.default_rng(0)
    fam = ["BENIGN"] * 200 + ["DoS"] * 100
    t = _table(rng.normal(size=(300, len(CIC_SCHEMA))), fam)
    groups = np.array([f"g{i % 20}" for i in range(300)])
    t = FlowTable(t.x, t.raw_label, t.family, t.source, groups, t.origin)
    s = splits.stratified(t, val=0.2, test=0.2, seed=1)
    assert sorted(np.concatenate([s.train, s.val, s.test]).tolist()) == list(range(300))
    assert Counter(t.family[s.test].tolist()) == {"BENIGN": 40, "DoS": 20}
    g = splits.grouped(t, val=0.2, test=0.2, seed=1)
    sides = [set(groups[i].tolist()) for i in (g.train, g.val, g.test)]
    assert not (sides[0] & sides[1] or sides[0] & sides[2] or sides[1] & sides[2])
    assert all(len(i) for i in (g.train, g.val, g.test))


def test_config_names_the_bad_key() -> None:
    with pytest.raises(ValueError, match=r"'train\.lr_max'"):
        config.from_dict({"train": {"lr_max": 1}})
    with pytest.raises(ValueError, match=r"'model\.activation'"):
        config.from_dict({"model": {"activation": "swish2"}})
    repo = Path(__file__).resolve().parent.parent
    cfg = config.load(repo / "training" / "configs" / "netwarden-cic.toml")
    assert cfg.name == "netwarden-cic"


def test_row_weights_per_cell_and_prefix_boost() -> None:
    from netwarden_train.trainer import row_weights

    y = np.array([0, 0, 0, 1])
    cells = np.array(["BENIGN|csv"] * 3 + ["DoS|capture|a.pcap"])
    w = row_weights(y, cells, "inverse", benign_weight=1.0)
    assert w[:3].sum() == pytest.approx(w[3])  # every cell the same total
    assert w.mean() == pytest.approx(1.0)
    w2 = row_weights(y, cells, "inverse", benign_weight=1.0, cell_weight={"DoS|capture": 2.0})
    assert w2[3] / w2[0] == pytest.approx(2 * w[3] / w[0])
