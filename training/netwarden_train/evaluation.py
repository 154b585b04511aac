"""Evaluation metrics in numpy: per-class P/R/F1, confusion, ROC/PR, detection at fixed FPR."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def confusion(y: I64, pred: I64, n: int) -> I64:
    """Rows: true class, columns: predicted class.

    >>> confusion(np.array([0, 1, 1]), np.array([0, 1, 0]), 2).tolist()
    [[1, 0], [1, 1]]
    """
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (y, pred), 1)
    return cm


def per_class(cm: I64) -> tuple[F64, F64, F64]:
    """Precision, recall and F1 per class (0 where undefined)."""
    tp = np.diag(cm).astype(float)
    with np.errstate(divide="ignore", invalid="ignore"):
        prec = np.nan_to_num(tp / cm.sum(axis=0))
        rec = np.nan_to_num(tp / cm.sum(axis=1))
        f1 = np.nan_to_num(2 * prec * rec / (prec + rec))
    return prec, rec, f1


def macro_f1(y: I64, pred: I64, n: int) -> float:
    """Macro F1 over the classes present in ``y``.

    >>> macro_f1(np.array([0, 1]), np.array([0, 1]), 3)
    1.0
    """
    cm = confusion(y, pred, n)
    present = cm.sum(axis=1) > 0
    return float(per_class(cm)[2][present].mean())


def roc_curve(score: F64, is_attack: npt.NDArray[np.bool_]) -> tuple[F64, F64, F64]:
    """False-positive rate, true-positive rate and thresholds, by descending score."""
    order = np.argsort(-score, kind="stable")
    s, a = score[order], is_attack[order]
    tp = np.cumsum(a)
    fp = np.cumsum(~a)
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # one point per distinct score
    tpr = np.r_[0.0, tp[last] / max(1, a.sum())]
    fpr = np.r_[0.0, fp[last] / max(1, (~a).sum())]
    return fpr, tpr, np.r_[np.inf, s[last]]


def pr_curve(score: F64, is_attack: npt.NDArray[np.bool_]) -> tuple[F64, F64]:
    """Recall and precision, by descending score."""
    order = np.argsort(-score, kind="stable")
    s, a = score[order], is_attack[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp = np.cumsum(a)[last]
    k = last + 1
    return np.r_[0.0, tp / max(1, a.sum())], np.r_[1.0, tp / k]


def _auc(x: F64, y: F64) -> float:
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))


def detection_at_fpr(score: F64, is_attack: npt.NDArray[np.bool_], fpr: float) -> dict[str, float]:
    """Attack recall at the threshold that alerts on at most ``fpr`` of benign rows."""
    benign = np.sort(score[~is_attack])
    if len(benign) == 0:
        return {"threshold": float("nan"), "detection_rate": float("nan"), "fpr": float("nan")}
    k = int(np.floor(fpr * len(benign)))  # benign rows allowed at or above the threshold
    thr = float(np.nextafter(benign[-k - 1], np.inf)) if k < len(benign) else float(benign[0])
    return {
        "threshold": thr,
        "detection_rate": float((score[is_attack] >= thr).mean()) if is_attack.any() else 0.0,
        "fpr": float((benign >= thr).mean()),
    }


def evaluate(
    y: I64, prob: F64, classes: list[str], *, benign: int, threshold: float
) -> dict[str, Any]:
    """Every metric the report and ``evaluate`` print, as a JSON-able dict."""
    n = len(classes)
    pred = prob.argmax(axis=1)
    cm = confusion(y, pred, n)
    prec, rec, f1 = per_class(cm)
    support = cm.sum(axis=1)
    present = support > 0
    score = 1.0 - prob[:, benign]
    is_attack = y != benign
    out: dict[str, Any] = {
        "rows": len(y),
        "accuracy": float((pred == y).mean()) if len(y) else float("nan"),
        "macro_f1": float(f1[present].mean()) if present.any() else float("nan"),
        "weighted_f1": float((f1 * support).sum() / max(1, support.sum())),
        "macro_precision": float(prec[present].mean()) if present.any() else float("nan"),
        "macro_recall": float(rec[present].mean()) if present.any() else float("nan"),
        "per_class": {
            c: {
                "precision": float(prec[i]),
                "recall": float(rec[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, c in enumerate(classes)
        },
        "confusion": cm.tolist(),
        "classes": classes,
    }
    out["binary"] = _binary(score, is_attack, threshold)
    return out


def _binary(score: F64, is_attack: npt.NDArray[np.bool_], threshold: float) -> dict[str, Any]:
    alert = score >= threshold
    both = is_attack.any() and (~is_attack).any()
    fpr, tpr, _ = roc_curve(score, is_attack) if both else (np.zeros(1),) * 3
    rec, prec = pr_curve(score, is_attack) if both else (np.zeros(1),) * 2
    return {
        "threshold": threshold,
        "attack_rows": int(is_attack.sum()),
        "benign_rows": int((~is_attack).sum()),
        "detection_rate": float(alert[is_attack].mean()) if is_attack.any() else None,
        "false_alarm_rate": float(alert[~is_attack].mean()) if (~is_attack).any() else None,
        "roc_auc": _auc(fpr, tpr) if both else None,
        "pr_auc": _auc(rec, prec) if both else None,
        "at_fpr_1pct": detection_at_fpr(score, is_attack, 0.01) if both else None,
        "at_fpr_0.1pct": detection_at_fpr(score, is_attack, 0.001) if both else None,
    }
