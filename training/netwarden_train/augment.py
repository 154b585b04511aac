"""Feature-space augmentation for scarce classes: within-class mixup plus Gaussian jitter.

Works in standardised (z) space, where one unit is one training standard deviation, so the
jitter scale means the same for every feature.  Only classes with fewer than ``rare_below``
training rows are grown, up to ``target_rows``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from netwarden.features.cic_schema import CIC_SCHEMA

from .config import AugmentConfig

F32 = npt.NDArray[np.float32]


def augment(
    z: F32,
    y: npt.NDArray[np.int64],
    cells: npt.NDArray[np.str_],
    cfg: AugmentConfig,
    rng: np.random.Generator,
) -> tuple[F32, npt.NDArray[np.int64], npt.NDArray[np.str_]]:
    """Extra synthetic rows (only the new ones) for the rare cells (class x origin)."""
    new_z: list[F32] = []
    new_y: list[npt.NDArray[np.int64]] = []
    new_c: list[npt.NDArray[np.str_]] = []
    for cell in np.unique(cells):
        idx = np.flatnonzero(cells == cell)
        c = y[idx[0]]
        if len(idx) >= cfg.rare_below or len(idx) == 0:
            continue
        k = max(0, cfg.target_rows - len(idx))
        a = z[rng.choice(idx, k)]
        if cfg.mixup and len(idx) > 1:
            b = z[rng.choice(idx, k)]
            lam = rng.uniform(0.0, 1.0, (k, 1)).astype(np.float32)
            a = lam * a + (1 - lam) * b
        a = a + rng.normal(0.0, cfg.jitter_std, a.shape).astype(np.float32)
        new_z.append(a.astype(np.float32))
        new_y.append(np.full(k, c, dtype=np.int64))
        new_c.append(np.full(k, cell))
    if not new_z:
        return np.zeros((0, z.shape[1]), np.float32), np.zeros(0, np.int64), np.zeros(0, str)
    return np.concatenate(new_z), np.concatenate(new_y), np.concatenate(new_c)


# Units of the schema decide how a feature moves when the same traffic runs slower or faster.
_TIME = np.array([f.unit == "us" for f in CIC_SCHEMA.features])
_RATE = np.array([f.unit in ("1/s", "bytes/s") for f in CIC_SCHEMA.features])


def time_scaled(
    x: npt.NDArray[np.float64], log_range: float, rng: np.random.Generator
) -> npt.NDArray[np.float64]:
    """Copies of raw flows as if their packets were spaced ``exp(u)`` times wider,
    u ~ U(-log_range, log_range): durations and gaps scale by exp(u), rates by exp(-u).

    The same attack on another network differs mostly in round-trip and pacing; counts,
    sizes and flags stay.

    >>> x = np.zeros((1, len(CIC_SCHEMA))); x[0, 0] = 100.0; x[0, 1] = 3.0
    >>> y = time_scaled(x, 1.0, np.random.default_rng(0))
    >>> bool(y[0, 1] == 3.0 and 100 / np.e <= y[0, 0] <= 100 * np.e)
    True
    """
    f = np.exp(rng.uniform(-log_range, log_range, (len(x), 1)))
    out = x.copy()
    out[:, _TIME] *= f
    out[:, _RATE] /= f
    return out
