"""Hand-made, scale-free window features (relative update norms) for the baseline classifiers."""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

BASELINE_FEATURES = (
    "mean_log_rel_step",
    "std_log_rel_step",
    "last_log_rel_step",
    "slope_log_rel_step",
    "min_log_rel_step",
    "max_log_rel_step",
    "log_rel_displacement",
    "path_efficiency",
    "log_step_decay",
)
_FLOOR = 1e-12


def baseline_features(samples: np.ndarray, window: int) -> np.ndarray:
    """Features [T, L, F] of the window ending at each snapshot (NaN for t < window - 1).

    From one run's sampled weights [T, L, K]: relative step norms ||x_i - x_{i-1}|| / ||x_t|| over the
    window (mean, spread, last, slope and extremes of their log), net displacement over the window
    relative to ||x_t||, path efficiency (displacement / path length), and the log ratio of the mean
    step in the last fifth of the window to the first fifth.
    """
    x = np.asarray(samples, dtype=np.float32)
    n_t, n_l, _ = x.shape
    out = np.full((n_t, n_l, len(BASELINE_FEATURES)), np.nan, dtype=np.float32)
    if n_t < window or window < 3:
        return out
    ref = np.maximum(np.linalg.norm(x, axis=-1), _FLOOR)  # [T, L]
    step = np.linalg.norm(np.diff(x, axis=0), axis=-1)  # [T-1, L]; step[i-1] = ||x_i - x_{i-1}||
    wins = sliding_window_view(step, window - 1, axis=0)  # [T-W+1, L, W-1]
    end_ref = ref[window - 1 :, :, None]
    log_rel = np.log(np.maximum(wins / end_ref, _FLOOR))
    pos = np.arange(window - 1, dtype=np.float64)
    centred = pos - pos.mean()
    slope = (log_rel * centred).sum(-1) / (centred**2).sum()
    net = np.linalg.norm(x[window - 1 :] - x[: n_t - window + 1], axis=-1)
    path = np.maximum(wins.sum(-1), _FLOOR)
    fifth = max(1, (window - 1) // 5)
    decay = np.log(np.maximum(wins[..., -fifth:].mean(-1), _FLOOR) / np.maximum(wins[..., :fifth].mean(-1), _FLOOR))
    feats = np.stack(
        [
            log_rel.mean(-1),
            log_rel.std(-1),
            log_rel[..., -1],
            slope,
            log_rel.min(-1),
            log_rel.max(-1),
            np.log(np.maximum(net / end_ref[..., 0], _FLOOR)),
            net / path,
            decay,
        ],
        axis=-1,
    )
    out[window - 1 :] = feats
    return out


def baseline_features_upto(samples: np.ndarray, window: int, min_window: int) -> np.ndarray:
    """Like :func:`baseline_features`, but snapshots min_window-1 .. window-2 get the features of the
    shorter window they have (all earlier snapshots), matching the predictor's variable-length windows."""
    out = baseline_features(samples, window)
    for t in range(min_window - 1, min(window - 1, samples.shape[0])):
        out[t] = baseline_features(samples[: t + 1], t + 1)[t]
    return out
