"""The hindsight oracle: freezing schedules read off the paired unfrozen run's CKA curves, checked by probes.

The unfrozen ('none') run records, at evenly spaced steps, each freezable block's output on a fixed
probe batch; linear CKA against the final snapshot gives a [T, B-1] curve. For a threshold tau a
block is converged from the first snapshot after which its CKA stays >= tau; the prefix rule makes
block b freeze at the latest of blocks 0..b. Lower tau means earlier freezes. The oracle replays
the schedules from the lowest tau up (same seed, so the run is identical up to the first freeze) and
keeps the first one whose accuracy is within ``tolerance`` points of the unfrozen run: the earliest
schedule on this ladder that loses at most that much. It is a search over a tau ladder, not over
every per-block freeze step, so it bounds the reachable savings from below.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from smartfrz.predictor.labels import LabelRule, first_converged, label_curves

DEFAULT_TAUS = (0.6, 0.8, 0.9, 0.95, 0.98, 0.99)
DEFAULT_TOLERANCE_POINTS = 0.2


def schedule_from_cka(cka: np.ndarray, steps: Sequence[int], tau: float, total_steps: int) -> list[int | None]:
    """Freeze step per freezable block (None: never) under the monotone CKA rule with threshold ``tau``."""
    cka = np.asarray(cka, dtype=np.float64)
    if cka.ndim != 2 or cka.shape[0] != len(steps):
        raise ValueError(f"CKA curves {cka.shape} do not match {len(steps)} snapshot steps")
    first = np.maximum.accumulate(first_converged(label_curves(cka, LabelRule("monotone", tau))))
    out: list[int | None] = []
    for t in first.tolist():
        step = steps[t] if t < len(steps) else None
        out.append(step if step is not None and step < total_steps else None)
    return out


def candidate_schedules(
    cka: np.ndarray, steps: Sequence[int], total_steps: int, taus: Sequence[float] = DEFAULT_TAUS
) -> list[tuple[float, list[int | None]]]:
    """Distinct non-empty schedules over ``taus``, earliest freezing (lowest tau) first."""
    seen: set[tuple[int | None, ...]] = set()
    out = []
    for tau in sorted(taus):
        schedule = schedule_from_cka(cka, steps, tau, total_steps)
        key = tuple(schedule)
        if key in seen or all(s is None for s in schedule):
            continue
        seen.add(key)
        out.append((tau, schedule))
    return out


def loss_points(reference_acc: float, acc: float) -> float:
    """Accuracy lost in points (positive: worse than the reference)."""
    return (reference_acc - acc) * 100.0
