"""Alert reasons as text, for the batch alert builder: each distinct reason row once.

Floods repeat the same reasons (100k bench capture: 37,320 alert rows with reasons, 2,254
distinct), so :class:`ReasonRows` keys a row by the bytes of (count, features, values,
contributions) and formats it once: the field values of the reason dicts, their JSON text
and the message's reason text, exactly as :mod:`netwarden.alerts_reasons` and
:func:`~netwarden.alerts_reasons.message` give them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from .alerts_reasons import _QUIET_UNITS, Explainer, _json_num, fmt_num

_enc = json.encoder.encode_basestring  # a quoted JSON string, non-ASCII kept (C)
_ROW_CACHE_MAX = 1 << 16  # distinct reason rows remembered (floods repeat a few)
ReasonFields = tuple[tuple[Any, ...], ...]  # per reason: name, value, unit, p05, p95, ...
RowReasons = tuple[ReasonFields, str, str]  # fields, JSON array body, message text


def _jnum(x: float | None) -> str:
    return "null" if x is None else repr(x)


@dataclass(frozen=True, slots=True)
class _FeatureText:
    """The constant parts of one feature's reason: dict values and pre-encoded text."""

    name: str
    unit: str
    p05: float | None
    p95: float | None
    median: float | None
    has_stats: bool
    json_head: str  # '{"feature":...,"value":'
    json_mid: str  # ',"unit":...,"contribution":'
    msg_head: str  # 'Flow Duration '
    msg_tail: str  # ' us (benign 1000..5e6)'

    @classmethod
    def build(cls, ex: Explainer, i: int) -> _FeatureText:
        has = not math.isnan(ex.p05[i])
        lo, hi, med = (_json_num(float(a[i])) if has else None for a in (ex.p05, ex.p95, ex.median))
        rng = f"[{_jnum(lo)},{_jnum(hi)}]" if has else "null"
        unit = ex.units[i]
        return cls(
            name=ex.names[i],
            unit=unit,
            p05=lo,
            p95=hi,
            median=med,
            has_stats=has,
            json_head=f'{{"feature":{_enc(ex.names[i])},"value":',
            json_mid=(
                f',"unit":{_enc(unit)},"benign_range":{rng},'
                f'"benign_median":{_jnum(med) if has else "null"},"contribution":'
            ),
            msg_head=f"{ex.names[i]} ",
            msg_tail=("" if unit in _QUIET_UNITS else f" {unit}")
            + (f" (benign {fmt_num(lo)}..{fmt_num(hi)})" if has else ""),
        )


def reason_dicts(fields: ReasonFields) -> list[dict[str, Any]]:
    """Fresh reason dicts (documents share nothing mutable) from cached field tuples."""
    return [
        {
            "feature": name,
            "value": value,
            "unit": unit,
            "benign_range": [p05, p95] if has_stats else None,
            "benign_median": median,
            "contribution": contribution,
        }
        for name, value, unit, p05, p95, has_stats, median, contribution in fields
    ]


class ReasonRows:
    """Formats reason rows for one explainer, remembering up to 65,536 distinct rows."""

    def __init__(self, explainer: Explainer) -> None:
        self._features = [_FeatureText.build(explainer, i) for i in range(len(explainer.names))]
        self._cache: dict[bytes, RowReasons] = {}

    def rows(
        self,
        order: npt.NDArray[np.intp],
        values: npt.NDArray[np.float32],
        contrib: npt.NDArray[np.float64],
        kept: npt.NDArray[np.bool_],
    ) -> list[RowReasons]:
        """Per row: (reason fields, their JSON array body, the message's reason text).

        Floods repeat the same reasons (100k bench capture: 37,320 rows with reasons, 2,254
        distinct), so rows are keyed by the bytes of (count, features, values,
        contributions) and each distinct row is formatted once.
        """
        m, k = order.shape
        rec = np.zeros(m, [("n", "u1"), ("o", "<i2", (k,)), ("v", "<f4", (k,)), ("c", "<f8", (k,))])
        rec["n"], rec["o"] = kept.sum(axis=1), np.where(kept, order, 0)
        rec["v"], rec["c"] = np.where(kept, values, 0), np.where(kept, contrib, 0)
        buf, size, cache = rec.tobytes(), rec.dtype.itemsize, self._cache
        out = []
        for r, off in enumerate(range(0, m * size, size)):
            key = buf[off : off + size]
            hit = cache.get(key)
            if hit is None:
                if len(cache) >= _ROW_CACHE_MAX:
                    cache.clear()
                n = int(rec["n"][r])
                hit = cache[key] = self._row_reasons(
                    order[r, :n].tolist(), values[r, :n].tolist(), contrib[r, :n].tolist()
                )
            out.append(hit)
        return out

    def _row_reasons(
        self, feats: list[int], values: list[float], contribs: list[float]
    ) -> RowReasons:
        fields, frags, parts = [], [], []
        for i, v, c in zip(feats, values, contribs, strict=True):
            f = self._features[i]
            rv, rc = _json_num(v), float(f"{c:.6g}")  # kept contributions are finite
            fields.append((f.name, rv, f.unit, f.p05, f.p95, f.has_stats, f.median, rc))
            frags.append(f"{f.json_head}{_jnum(rv)}{f.json_mid}{rc!r}}}")
            parts.append(f"{f.msg_head}{fmt_num(rv)}{f.msg_tail}")
        return tuple(fields), ",".join(frags), ", ".join(parts)
