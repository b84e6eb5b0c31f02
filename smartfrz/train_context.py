"""The training context a predictor sees beside a layer's weights, defined once for the traces and the runtime."""

from __future__ import annotations

import math

import numpy as np

CONTEXT_FEATURES = ("progress", "lr_rel", "depth", "loss_drop")
"""Generic context of a window: training progress t/T (unknown without ``total_steps``), the learning rate
over its peak so far, the layer's depth fraction i / (L - 1) in forward order, and the training loss's
drop so far, log(first / current) of the mean loss over the recording interval (unknown when the loss is
not passed to the freezer). The loss drop tells a plateau (accuracy near its end) from a run still
learning, which the weights alone do not show under a constant learning rate."""
LEGACY_CONTEXT = ("progress", "lr_rel", "depth")
"""The context of predictors fitted before the loss was an input (checkpoints without a context list)."""
HIDEABLE = ("progress", "loss_drop")
"""Context a user may not provide; a predictor learns to do without it (shown hidden for a share of windows)."""


def loss_drop(first: float, current: float) -> float:
    """log(first / current) of two mean training losses; NaN when either is unknown or not positive."""
    if not (math.isfinite(first) and math.isfinite(current)) or first <= 0.0 or current <= 0.0:
        return float("nan")
    return math.log(first / current)


def loss_drop_curve(interval_loss: np.ndarray) -> np.ndarray:
    """[T] loss drop at every snapshot of a trace, from its per-interval mean training losses [T]."""
    loss = np.asarray(interval_loss, dtype=np.float64)
    return np.array([loss_drop(float(loss[0]), float(v)) for v in loss]) if loss.size else loss
