"""Train / validation / test splits: stratified by class, and grouped to expose leakage.

The stratified split draws rows per class at random, so near-identical flows of one attack
burst land on both sides; the grouped split keeps every group (capture file, day, host pair
or host pair within a time window) on one side, which is what a new network looks like.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from .table import FlowTable

Idx = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class Split:
    train: Idx
    val: Idx
    test: Idx


def stratified(t: FlowTable, *, val: float, test: float, seed: int) -> Split:
    """Per class: shuffle, then cut test and val fractions (at least one row each when >= 3).

    >>> import numpy as np
    >>> from netwarden_train.table import FlowTable
    >>> f = np.array(["a"] * 10 + ["b"] * 10)
    >>> tab = FlowTable(np.zeros((20, 81)), f, f, f, f, f)
    >>> s = stratified(tab, val=0.2, test=0.2, seed=0)
    >>> len(s.train), len(s.val), len(s.test)
    (12, 4, 4)
    """
    rng = np.random.default_rng(seed)
    parts: list[list[Idx]] = [[], [], []]
    for fam in np.unique(t.family):
        idx = rng.permutation(np.flatnonzero(t.family == fam))
        n = len(idx)
        n_test = max(1, round(n * test)) if n >= 3 else 0
        n_val = max(1, round(n * val)) if n >= 3 else 0
        parts[2].append(idx[:n_test])
        parts[1].append(idx[n_test : n_test + n_val])
        parts[0].append(idx[n_test + n_val :])
    return Split(*(np.sort(np.concatenate(p)).astype(np.int64) for p in parts))


def grouped(t: FlowTable, *, val: float, test: float, seed: int) -> Split:
    """Whole groups go to one side; per class, groups are dealt so each side gets ~its share.

    Groups are visited largest first per (majority) class and each goes to the side furthest
    below its target row count, so a class with two groups still lands on two sides.
    """
    rng = np.random.default_rng(seed)
    target = np.array([1.0 - val - test, val, test])
    side_of: dict[str, int] = {}
    groups, inverse = np.unique(t.group, return_inverse=True)
    for fam in np.unique(t.family):
        rows = t.family == fam
        g_ids, counts = np.unique(inverse[rows], return_counts=True)
        order = rng.permutation(len(g_ids))
        order = order[np.argsort(-counts[order], kind="stable")]
        filled = np.zeros(3)
        for k in order:
            name = str(groups[g_ids[k]])
            if name in side_of:
                filled[side_of[name]] += counts[k]
                continue
            deficit = target * rows.sum() - filled
            side = int(np.argmax(deficit)) if filled[0] > 0 else 0
            side_of[name] = side
            filled[side] += counts[k]
    sides = np.array([side_of[str(g)] for g in groups])[inverse]
    return Split(*(np.flatnonzero(sides == s).astype(np.int64) for s in range(3)))


def make(t: FlowTable, *, kind: str, val: float, test: float, seed: int) -> Split:
    """Dispatch on ``kind`` ("stratified" or "grouped")."""
    if kind == "grouped":
        return grouped(t, val=val, test=test, seed=seed)
    return stratified(t, val=val, test=test, seed=seed)


def origin_to_train(sp: Split, origin: npt.NDArray[np.str_], which: str) -> Split:
    """Move every row of one origin (e.g. "capture") into the training side."""
    moved = [i[origin[i] == which] for i in (sp.val, sp.test)]
    return Split(
        np.sort(np.concatenate([sp.train, *moved])),
        sp.val[origin[sp.val] != which],
        sp.test[origin[sp.test] != which],
    )
