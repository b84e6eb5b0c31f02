"""Classification metrics (scikit-learn) and the high-precision decision threshold."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score


def choose_threshold(y: np.ndarray, p: np.ndarray, min_precision: float) -> tuple[float, bool]:
    """Lowest threshold whose precision on (y, p) is >= ``min_precision`` (maximises recall then).

    Returns (threshold, met). When no threshold reaches the target, returns the threshold of highest
    precision with met=False, so the caller can say so instead of shipping a silent wrong promise.
    """
    y = np.asarray(y, dtype=bool)
    if y.all() or not y.any():
        raise ValueError("threshold selection needs both classes in the validation labels")
    precision, _, thresholds = precision_recall_curve(y, p)
    precision = precision[:-1]  # the last point (recall 0) has no threshold
    ok = np.flatnonzero(precision >= min_precision)
    if ok.size:
        return float(thresholds[ok[0]]), True
    return float(thresholds[int(np.argmax(precision))]), False


def binary_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float | int | None]:
    """ROC-AUC, PR-AUC, precision, recall and F1 at ``threshold``; AUCs are None with one class."""
    y = np.asarray(y, dtype=bool)
    p = np.asarray(p, dtype=np.float64)
    pred = p >= threshold
    tp = int((pred & y).sum())
    fp = int((pred & ~y).sum())
    fn = int((~pred & y).sum())
    both = bool(y.any() and not y.all())
    precision = tp / (tp + fp) if tp + fp else None
    recall = tp / (tp + fn) if tp + fn else None
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None
    return {
        "n": len(y),
        "positives": int(y.sum()),
        "roc_auc": float(roc_auc_score(y, p)) if both else None,
        "pr_auc": float(average_precision_score(y, p)) if both else None,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "predicted_positive": int(pred.sum()),
    }


def metrics_by_family(
    y: np.ndarray, p: np.ndarray, family: np.ndarray, threshold: float
) -> dict[str, dict[str, float | int | None]]:
    """``binary_metrics`` overall (key "all") and for each family."""
    out = {"all": binary_metrics(y, p, threshold)}
    for fam in sorted(set(family.tolist())):
        m = family == fam
        out[fam] = binary_metrics(y[m], p[m], threshold)
    return out
