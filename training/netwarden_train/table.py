"""The in-memory flow table training works on: features, labels and grouping keys."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from netwarden.features.cic_schema import CIC_SCHEMA

N_FEATURES = len(CIC_SCHEMA)


@dataclass(frozen=True, slots=True)
class FlowTable:
    """Rows of flows in schema order with their raw label, family and provenance.

    Attributes:
        x: float64 (n, 81) raw features in schema order.
        raw_label: the label as read (CSV ``Label`` or a label rule's name).
        family: the class the model learns (``labels.family``).
        source: the file each row came from.
        group: the key of the grouped split (day / host / time window / capture file).
        origin: "csv" or "capture".
    """

    x: npt.NDArray[np.float64]
    raw_label: npt.NDArray[np.str_]
    family: npt.NDArray[np.str_]
    source: npt.NDArray[np.str_]
    group: npt.NDArray[np.str_]
    origin: npt.NDArray[np.str_]

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def take(self, idx: npt.NDArray[np.int64] | npt.NDArray[np.bool_]) -> FlowTable:
        return FlowTable(
            self.x[idx],
            self.raw_label[idx],
            self.family[idx],
            self.source[idx],
            self.group[idx],
            self.origin[idx],
        )

    @staticmethod
    def concat(tables: list[FlowTable]) -> FlowTable:
        if not tables:
            return FlowTable.empty()
        return FlowTable(
            np.concatenate([t.x for t in tables]),
            *(
                np.concatenate([getattr(t, f) for t in tables]).astype(str)
                for f in ("raw_label", "family", "source", "group", "origin")
            ),
        )

    @staticmethod
    def empty() -> FlowTable:
        s = np.zeros(0, dtype=str)
        return FlowTable(np.zeros((0, N_FEATURES)), s, s, s, s, s)
