"""Header aliases: map flow-CSV column names onto the ``cicflowmeter-v1`` feature schema.

Two header variants of CIC-IDS2017 exist: the current CICFlowMeter names used by the
"improved" CSVs (Engelen et al. 2021), which are the schema names themselves, and the
MachineLearningCVE names of the original release (Sharafaldin et al. 2018), many with a
leading space (`` Total Fwd Packets``).  The CSE-CIC-IDS2018 abbreviations (``Tot Fwd Pkts``)
are accepted too.  The table is written by hand: every alias below was read off a header.
Units are the same in all three variants (microseconds, bytes, per second), so every scale
factor is 1; the table keeps the factor so a future variant in other units only adds rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from netwarden.features.cic_schema import CIC_SCHEMA

# alias (as written in some header) -> schema name.  Matching ignores case and surrounding
# whitespace, so " Total Fwd Packets" and "total fwd packets" both hit the first row.
_ALIASES: dict[str, str] = {
    # MachineLearningCVE (CIC-IDS2017 original release)
    "Total Fwd Packets": "Total Fwd Packet",
    "Total Backward Packets": "Total Bwd packets",
    "Total Length of Fwd Packets": "Total Length of Fwd Packet",
    "Total Length of Bwd Packets": "Total Length of Bwd Packet",
    "Min Packet Length": "Packet Length Min",
    "Max Packet Length": "Packet Length Max",
    "CWE Flag Count": "CWR Flag Count",  # sic: the original header misspells CWR
    "Avg Fwd Segment Size": "Fwd Segment Size Avg",
    "Avg Bwd Segment Size": "Bwd Segment Size Avg",
    "Fwd Avg Bytes/Bulk": "Fwd Bytes/Bulk Avg",
    "Fwd Avg Packets/Bulk": "Fwd Packet/Bulk Avg",
    "Fwd Avg Bulk Rate": "Fwd Bulk Rate Avg",
    "Bwd Avg Bytes/Bulk": "Bwd Bytes/Bulk Avg",
    "Bwd Avg Packets/Bulk": "Bwd Packet/Bulk Avg",
    "Bwd Avg Bulk Rate": "Bwd Bulk Rate Avg",
    "Init_Win_bytes_forward": "FWD Init Win Bytes",
    "Init_Win_bytes_backward": "Bwd Init Win Bytes",
    "act_data_pkt_fwd": "Fwd Act Data Pkts",
    "min_seg_size_forward": "Fwd Seg Size Min",
    # CSE-CIC-IDS2018 abbreviations
    "Flow Duration": "Flow Duration",
    "Tot Fwd Pkts": "Total Fwd Packet",
    "Tot Bwd Pkts": "Total Bwd packets",
    "TotLen Fwd Pkts": "Total Length of Fwd Packet",
    "TotLen Bwd Pkts": "Total Length of Bwd Packet",
    "Fwd Pkt Len Max": "Fwd Packet Length Max",
    "Fwd Pkt Len Min": "Fwd Packet Length Min",
    "Fwd Pkt Len Mean": "Fwd Packet Length Mean",
    "Fwd Pkt Len Std": "Fwd Packet Length Std",
    "Bwd Pkt Len Max": "Bwd Packet Length Max",
    "Bwd Pkt Len Min": "Bwd Packet Length Min",
    "Bwd Pkt Len Mean": "Bwd Packet Length Mean",
    "Bwd Pkt Len Std": "Bwd Packet Length Std",
    "Flow Byts/s": "Flow Bytes/s",
    "Flow Pkts/s": "Flow Packets/s",
    "Fwd IAT Tot": "Fwd IAT Total",
    "Bwd IAT Tot": "Bwd IAT Total",
    "Fwd Header Len": "Fwd Header Length",
    "Bwd Header Len": "Bwd Header Length",
    "Fwd Pkts/s": "Fwd Packets/s",
    "Bwd Pkts/s": "Bwd Packets/s",
    "Pkt Len Min": "Packet Length Min",
    "Pkt Len Max": "Packet Length Max",
    "Pkt Len Mean": "Packet Length Mean",
    "Pkt Len Std": "Packet Length Std",
    "Pkt Len Var": "Packet Length Variance",
    "FIN Flag Cnt": "FIN Flag Count",
    "SYN Flag Cnt": "SYN Flag Count",
    "RST Flag Cnt": "RST Flag Count",
    "PSH Flag Cnt": "PSH Flag Count",
    "ACK Flag Cnt": "ACK Flag Count",
    "URG Flag Cnt": "URG Flag Count",
    "CWE Flag Cnt": "CWR Flag Count",
    "ECE Flag Cnt": "ECE Flag Count",
    "Pkt Size Avg": "Average Packet Size",
    "Fwd Seg Size Avg": "Fwd Segment Size Avg",
    "Bwd Seg Size Avg": "Bwd Segment Size Avg",
    "Fwd Byts/b Avg": "Fwd Bytes/Bulk Avg",
    "Fwd Pkts/b Avg": "Fwd Packet/Bulk Avg",
    "Fwd Blk Rate Avg": "Fwd Bulk Rate Avg",
    "Bwd Byts/b Avg": "Bwd Bytes/Bulk Avg",
    "Bwd Pkts/b Avg": "Bwd Packet/Bulk Avg",
    "Bwd Blk Rate Avg": "Bwd Bulk Rate Avg",
    "Subflow Fwd Pkts": "Subflow Fwd Packets",
    "Subflow Fwd Byts": "Subflow Fwd Bytes",
    "Subflow Bwd Pkts": "Subflow Bwd Packets",
    "Subflow Bwd Byts": "Subflow Bwd Bytes",
    "Init Fwd Win Byts": "FWD Init Win Bytes",
    "Init Bwd Win Byts": "Bwd Init Win Bytes",
    "Fwd Act Data Pkts": "Fwd Act Data Pkts",
    "Fwd Seg Size Min": "Fwd Seg Size Min",
}

# Features absent from older variants and the value that means "not measured" for them.
# MachineLearningCVE lacks RST counts, ICMP code/type and Total TCP Flow Time.
MISSING_DEFAULTS: dict[str, float] = {
    "Fwd RST Flags": 0.0,
    "Bwd RST Flags": 0.0,
    "ICMP Code": -1.0,
    "ICMP Type": -1.0,
    "Total TCP Flow Time": 0.0,
}

LABEL_COLUMNS = ("label",)
ID_COLUMNS = {
    "src": ("src ip", "source ip"),
    "dst": ("dst ip", "destination ip"),
    "timestamp": ("timestamp",),
    "dport": ("dst port", "destination port"),
    "proto": ("protocol",),
}


def _norm(name: str) -> str:
    return " ".join(name.strip().lower().split())


def _lookup() -> dict[str, str]:
    table = {_norm(n): n for n in CIC_SCHEMA.names}
    for alias, target in _ALIASES.items():
        table.setdefault(_norm(alias), target)
    return table


@dataclass(frozen=True, slots=True)
class HeaderMap:
    """Where each schema feature, the label and the identity columns sit in one header."""

    feature_cols: tuple[int | None, ...]  # per schema feature: column index or None (missing)
    scale: tuple[float, ...]
    label_col: int
    id_cols: dict[str, int]
    unused: tuple[str, ...]

    @property
    def missing(self) -> tuple[str, ...]:
        names = CIC_SCHEMA.names
        return tuple(names[i] for i, c in enumerate(self.feature_cols) if c is None)


def map_header(header: list[str]) -> HeaderMap:
    """Map a CSV header onto the schema.

    Raises:
        ValueError: no label column, or a schema feature is missing that has no default.

    >>> hm = map_header([" Flow Duration", " Total Fwd Packets", " Label"])
    >>> hm.feature_cols[:2], hm.label_col
    ((0, 1), 2)
    """
    lookup = _lookup()
    index = {n: i for i, n in enumerate(CIC_SCHEMA.names)}
    cols: list[int | None] = [None] * len(CIC_SCHEMA)
    unused: list[str] = []
    label_col = -1
    id_cols: dict[str, int] = {}
    for j, raw in enumerate(header):
        key = _norm(raw)
        target = lookup.get(key)
        if target is not None and cols[index[target]] is None:
            cols[index[target]] = j
        elif key in LABEL_COLUMNS:
            label_col = j
        else:
            for what, names in ID_COLUMNS.items():
                if key in names:
                    id_cols[what] = j
                    break
            else:
                unused.append(raw)
    if label_col < 0:
        raise ValueError(f"CSV header: no 'Label' column among {len(header)} columns")
    return HeaderMap(tuple(cols), tuple(1.0 for _ in cols), label_col, id_cols, tuple(unused))


def check_required(hm: HeaderMap, *, min_present: int = 60) -> None:
    """Refuse a header that maps too few features to be the same feature set.

    Raises:
        ValueError: fewer than ``min_present`` schema features found.
    """
    present = sum(c is not None for c in hm.feature_cols)
    if present < min_present:
        raise ValueError(
            f"CSV header maps only {present} of {len(CIC_SCHEMA)} schema features "
            f"(need >= {min_present}); missing: {', '.join(hm.missing[:10])}..."
        )
