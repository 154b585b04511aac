"""Why a flow alerted: the top contributing features, with the benign typical range.

Two methods, chosen per model (documented in docs/alerts.md, "Reasons"):

* ``attributions``: the model has an attributions output (n, F), the contribution of each
  feature towards P(attack); features are ranked by that value, largest first.
* ``robust_z`` (fallback): each feature's distance from the benign median in units of a robust
  spread, ``|x - median| / scale`` with ``scale = (p95 - p05) / 3.29`` (for a normal
  distribution p95 - p05 = 3.29 sigma, so the score reads like a z-score), floored at
  ``1e-3 * max(|median|, 1)`` so a feature that is constant in benign traffic ranks very high
  when it moves without dividing by zero.  Features without benign statistics are not ranked.

Only contributions above zero and at least 1 % of the row's largest are reported: a feature
at its benign median, or one whose attribution is noise next to the top one, is no reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .features.schema import FeatureSchema
from .scoring.manifest import Manifest

METHOD_ATTRIBUTIONS = "attributions"
METHOD_ROBUST_Z = "robust_z"
_P05_P95_SIGMAS = 3.29  # p95 - p05 of a normal distribution, in standard deviations
_QUIET_UNITS = frozenset(("count", "ratio", "code", "type"))
_MIN_SHARE = 0.01  # a reason must contribute at least 1 % of the top reason


def fmt_num(x: float | None) -> str:
    """Short human form of a number: integers as such, others in 3 significant digits.

    >>> [fmt_num(v) for v in (12.0, 1000.0, 5e6, 0.000123, -3.5, None)]
    ['12', '1000', '5e6', '0.000123', '-3.5', 'n/a']
    """
    if x is None or not math.isfinite(x):
        return "n/a"
    if x == int(x) and abs(x) < 1e4:
        return str(int(x))
    s = f"{x:.3g}"
    if "e" in s:
        mant, exp = s.split("e")
        s = f"{mant}e{int(exp)}"
    return s


@dataclass(frozen=True, slots=True)
class Explainer:
    """Ranks features for alert reasons; built once per model."""

    names: tuple[str, ...]
    units: tuple[str, ...]
    p05: npt.NDArray[np.float64]  # NaN where the manifest has no statistics
    median: npt.NDArray[np.float64]
    p95: npt.NDArray[np.float64]
    scale: npt.NDArray[np.float64]

    @classmethod
    def build(cls, manifest: Manifest, schema: FeatureSchema) -> Explainer:
        """Arrays of the manifest's benign statistics in schema order."""
        n = len(schema)
        p05, med, p95 = (np.full(n, np.nan) for _ in range(3))
        for name, st in manifest.benign_stats.items():
            i = schema.index(name)
            p05[i], med[i], p95[i] = st.p05, st.median, st.p95
        floor = 1e-3 * np.maximum(np.abs(med), 1.0)
        scale = np.maximum((p95 - p05) / _P05_P95_SIGMAS, floor)
        return cls(schema.names, tuple(f.unit for f in schema.features), p05, med, p95, scale)

    def contributions(
        self, features: npt.NDArray[np.float32], attributions: npt.NDArray[np.float32] | None
    ) -> tuple[npt.NDArray[np.float64], str]:
        """Per-feature contributions (m, F) and the method used; NaN/inf ranked last."""
        if attributions is not None:
            c = attributions.astype(np.float64)
            method = METHOD_ATTRIBUTIONS
        else:
            c = np.abs(features.astype(np.float64) - self.median) / self.scale
            method = METHOD_ROBUST_Z
        return np.where(np.isfinite(c), c, -np.inf), method

    def top(
        self,
        features: npt.NDArray[np.float32],
        attributions: npt.NDArray[np.float32] | None,
        *,
        k: int = 3,
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.float64], npt.NDArray[np.bool_], str]:
        """Top ``k`` features per row, vectorised: (index, contribution, kept, method).

        All three arrays are (m, k), largest contribution first, ties to the lower feature
        index (the order of a stable sort); ``kept`` marks the reasons that pass the noise
        floor (always a prefix of each row).  ``k`` rounds of ``argmax`` cost far less than
        sorting all features of every row.
        """
        contrib, method = self.contributions(features, attributions)
        m = contrib.shape[0]
        k = min(k, contrib.shape[1])
        order = np.zeros((m, k), dtype=np.intp)
        value = np.full((m, k), -np.inf)
        rows = np.arange(m)
        work = contrib.copy()
        for t in range(k):
            j = work.argmax(axis=1) if m else np.zeros(0, dtype=np.intp)
            order[:, t], value[:, t] = j, work[rows, j]
            work[rows, j] = -np.inf
        floor = np.maximum(value[:, :1] * _MIN_SHARE, np.finfo(np.float64).tiny)
        return order, value, value >= floor, method

    def reasons(
        self,
        features: npt.NDArray[np.float32],
        attributions: npt.NDArray[np.float32] | None,
        *,
        k: int = 3,
    ) -> tuple[list[list[dict[str, Any]]], str]:
        """Top ``k`` reasons per row (largest contribution first) and the method."""
        order, value, kept, method = self.top(features, attributions, k=k)
        out: list[list[dict[str, Any]]] = []
        for r in range(features.shape[0]):
            out.append(
                [
                    self._reason(int(i), float(features[r, i]), float(c))
                    for i, c, ok in zip(order[r], value[r], kept[r], strict=True)
                    if ok
                ]
            )
        return out, method

    def _reason(self, i: int, value: float, contribution: float) -> dict[str, Any]:
        has = not math.isnan(self.p05[i])
        return {
            "feature": self.names[i],
            "value": _json_num(value),
            "unit": self.units[i],
            "benign_range": [_json_num(self.p05[i]), _json_num(self.p95[i])] if has else None,
            "benign_median": _json_num(self.median[i]) if has else None,
            "contribution": _json_num(contribution),
        }


def _json_num(x: float) -> float | None:
    return float(f"{x:.6g}") if math.isfinite(x) else None


def message(label: str, score: float, reasons: list[dict[str, Any]]) -> str:
    """One-line summary, e.g. ``SSH-Patator 0.98: Fwd IAT Min 12 us (benign 1e3..5e6)``.

    >>> message("DoS", 0.981, [{"feature": "Flow Duration", "value": 12.0, "unit": "us",
    ...                         "benign_range": [1000.0, 5e6]}])
    'DoS 0.98: Flow Duration 12 us (benign 1000..5e6)'
    """
    parts = []
    for r in reasons:
        unit = "" if r["unit"] in _QUIET_UNITS else f" {r['unit']}"
        rng = r.get("benign_range")
        bench = f" (benign {fmt_num(rng[0])}..{fmt_num(rng[1])})" if rng else ""
        parts.append(f"{r['feature']} {fmt_num(r['value'])}{unit}{bench}")
    head = f"{label} {score:.2f}"
    return f"{head}: {', '.join(parts)}" if parts else head
