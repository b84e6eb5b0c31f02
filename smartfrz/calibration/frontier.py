"""The freeze frontier: per block, the earliest snapshot at which freezing the prefix stays within tolerance.

The frontier is a non-decreasing staircase F_0 <= F_1 <= ... over the freezable blocks (snapshot indices,
T = never; the head never freezes). Block b's frontier is the earliest t >= F_{b-1} such that the schedule
(blocks 0..b-1 at their frontiers, block b at t, later blocks never) loses at most ``tol`` points. Only the
search lives here; what a schedule loses comes from a callable (freeze probes, or a synthetic function).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

Schedule = tuple[int, ...]
"""Freeze snapshot per freezable block (T = never)."""

TOL_SLACK = 1e-9
"""Losses are sums of accuracy differences (multiples of 1 / n_val): a loss of exactly ``tol`` may round above it."""


@dataclass(frozen=True)
class Trial:
    """One evaluated schedule of the search: which block it tried where, what it lost, whether it passed."""

    block: int
    at: int
    schedule: Schedule
    loss_points: float
    safe: bool


@dataclass
class Frontier:
    """The staircase found and every trial that found it (in order)."""

    blocks: list[int]
    n_snapshots: int
    tol: float
    trials: list[Trial] = field(default_factory=list)


def search_frontier(
    n_free: int, n_snapshots: int, loss_points: Callable[[Schedule], float], tol: float = 0.2
) -> Frontier:
    """Binary-search each block's frontier in [F_{b-1}, T), left to right; O(B log T) evaluations.

    Assumes that, with the earlier blocks fixed, the loss of freezing block b at t does not increase
    with t (freezing later never hurts more). Noise breaks that, so a search can stop on a t whose later
    neighbours would fail: every trial is recorded for that reason. T (never) is safe by definition: it
    is the previous block's accepted schedule. Once a block is never safe, no later block can freeze.
    """
    never = n_snapshots
    blocks = [never] * n_free
    out = Frontier(blocks, n_snapshots, tol)
    floor = 0
    for b in range(n_free):
        lo, hi = floor, never
        while lo < hi:
            mid = (lo + hi) // 2
            schedule = tuple(blocks[:b]) + (mid,) + (never,) * (n_free - b - 1)
            loss = float(loss_points(schedule))
            safe = loss <= tol + TOL_SLACK
            out.trials.append(Trial(b, mid, schedule, loss, safe))
            if safe:
                hi = mid
            else:
                lo = mid + 1
        blocks[b] = floor = hi
        if hi == never:
            break
    return out
