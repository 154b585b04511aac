"""Small synthetic flow CSVs for tests and examples (no third-party data needed).

Three well-separated classes in CIC-IDS2017 columns: BENIGN (long flows, many packets),
PortScan (one SYN, tiny duration) and DoS (bursts at a high packet rate).  Not a model of
real traffic: only a fixture that a correct pipeline must learn quickly.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from netwarden.features.cic_schema import CIC_SCHEMA

_I = {n: i for i, n in enumerate(CIC_SCHEMA.names)}


def _rows(label: str, n: int, rng: np.random.Generator) -> np.ndarray:
    x = np.zeros((n, len(CIC_SCHEMA)))
    x[:, _I["ICMP Code"]] = x[:, _I["ICMP Type"]] = -1
    if label == "BENIGN":
        fwd, bwd = rng.integers(3, 60, n), rng.integers(2, 80, n)
        dur = rng.lognormal(13, 1.5, n)
        x[:, _I["ACK Flag Count"]] = fwd + bwd - 1
        x[:, _I["FWD Init Win Bytes"]] = rng.choice([29200, 64240, 65535], n)
    elif label == "PortScan":
        fwd, bwd = np.ones(n), rng.integers(0, 2, n)
        dur = rng.uniform(5, 200, n)
        x[:, _I["SYN Flag Count"]] = 1
        x[:, _I["FWD Init Win Bytes"]] = 1024
    else:  # DoS
        fwd, bwd = rng.integers(200, 2000, n), rng.integers(0, 5, n)
        dur = rng.uniform(1e5, 1e6, n)
        x[:, _I["SYN Flag Count"]] = fwd
        x[:, _I["FWD Init Win Bytes"]] = 512
    x[:, _I["Flow Duration"]] = dur
    x[:, _I["Total Fwd Packet"]] = fwd
    x[:, _I["Total Bwd packets"]] = bwd
    x[:, _I["Flow Packets/s"]] = (fwd + bwd) / (dur / 1e6)
    x[:, _I["Fwd Packets/s"]] = fwd / (dur / 1e6)
    x[:, _I["Fwd Header Length"]] = 20 * fwd
    x[:, _I["Subflow Fwd Packets"]] = fwd
    return x


def make_table(n_per_class: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """Feature rows and labels, ``n_per_class`` rows of each of the three classes."""
    rng = np.random.default_rng(seed)
    xs, labels = [], []
    for lbl in ("BENIGN", "PortScan", "DoS"):
        xs.append(_rows(lbl, n_per_class, rng))
        labels += [lbl] * n_per_class
    return np.concatenate(xs), labels


def write_csv(
    path: Path,
    n_per_class: int,
    *,
    seed: int = 0,
    header: list[str | None] | None = None,
    label_column: str = "Label",
) -> Path:
    """Write a CSV of ``make_table`` rows.

    ``header`` gives the column name for each schema feature in schema order (None: column
    left out, as older header variants lack some); default: the schema names themselves.
    """
    x, labels = make_table(n_per_class, seed)
    names = header if header is not None else list(CIC_SCHEMA.names)
    cols = [i for i, n in enumerate(names) if n is not None]
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["Src IP", "Dst IP", "Timestamp", *(names[i] for i in cols), label_column])
        for k, (row, lbl) in enumerate(zip(x, labels, strict=True)):
            ts = f"2017-07-0{3 + k % 3} {10 + k % 8:02d}:{k % 60:02d}:00"
            w.writerow(
                [f"10.0.{k % 7}.1", f"10.1.{k % 5}.2", ts, *(f"{row[i]:.6g}" for i in cols), lbl]
            )
    return path
