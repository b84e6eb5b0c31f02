"""Baseline classifiers on hand-made features, scored exactly like the attention predictor."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from smartfrz.train_context import CONTEXT_FEATURES

BASELINES = ("logreg", "gboost", "progress_depth", "gboost_ctx")
"""logreg / gboost: the hand-made weight-window features only; progress_depth: a logistic regression on
training progress t/T and depth fraction alone (a FreezeOut-like rule in two numbers); gboost_ctx: the weight
features plus the context inputs of the model it is compared with."""


def baseline_inputs(
    name: str, features: np.ndarray, context: np.ndarray, context_names: Sequence[str] = CONTEXT_FEATURES
) -> np.ndarray:
    """The input matrix baseline ``name`` sees, from weight features [N, F] and context [N, C] (CONTEXT_FEATURES).

    ``gboost_ctx`` reads the ``context_names`` columns only: the context the attention model it is scored
    against was given, so that neither sees an input the other lacks (the training loss's drop, say).
    """
    if name in ("logreg", "gboost"):
        return features
    if name == "progress_depth":
        return context[:, [CONTEXT_FEATURES.index("progress"), CONTEXT_FEATURES.index("depth")]]
    if name == "gboost_ctx":
        return np.concatenate([features, context[:, [CONTEXT_FEATURES.index(c) for c in context_names]]], axis=1)
    raise ValueError(f"unknown baseline {name!r}; choose one of {BASELINES}")


def _make(name: str, seed: int) -> Callable[[], object]:
    """Factory of an unfitted scikit-learn classifier with balanced class weights."""
    if name == "logreg":
        return lambda: make_pipeline(
            StandardScaler(), LogisticRegression(class_weight="balanced", max_iter=2000, random_state=seed)
        )
    if name == "progress_depth":
        return lambda: LogisticRegression(class_weight="balanced", max_iter=2000, random_state=seed)
    if name in ("gboost", "gboost_ctx"):
        return lambda: HistGradientBoostingClassifier(
            class_weight="balanced", max_iter=200, learning_rate=0.1, random_state=seed
        )
    raise ValueError(f"unknown baseline {name!r}; choose one of {BASELINES}")


def fit_baseline(name: str, x: np.ndarray, y: np.ndarray, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    """Fit baseline ``name`` on features x [N, F] and labels y; return a P(converged) scorer."""
    if not np.all(np.isfinite(x)):
        raise ValueError("baseline features contain non-finite values")
    clf = _make(name, seed)()
    with threadpool_limits(1):  # OpenMP spinning on shared, oversubscribed cores costs more than it gains
        clf.fit(x, y.astype(int))

    def score(feats: np.ndarray) -> np.ndarray:
        with threadpool_limits(1):
            return clf.predict_proba(feats)[:, 1]

    return score
