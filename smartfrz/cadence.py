"""Schedules over a planned run, each defined once.

The recording cadence is shared by the trace collector and the runtime, so both sample the same fractions;
FreezeOut's freeze schedule serves the FreezeOut policy, the SmartFRZ backstop and the policy simulator.
"""

from __future__ import annotations

import bisect
import functools
import math

SNAPSHOTS_PER_RUN = 40  # weight snapshots over a planned run, as the shipped predictor was trained on


def record_every_for(total_steps: int, snapshots: int = SNAPSHOTS_PER_RUN) -> int:
    """Optimizer steps between weight snapshots: ``round(total_steps / snapshots)``, at least 1.

    Rounding (not flooring) puts the snapshots at the same fractions of training as the traces the
    predictor learnt from, e.g. 70 steps -> every 2 steps (35 snapshots), not every step (70).
    """
    return max(1, round(total_steps / max(1, snapshots)))


FREEZEOUT_T0 = 0.5
"""FreezeOut's default share of training before the first block freezes (Brock et al. 2017)."""


def freezeout_step(block: int, num_freezable: int, t0: float, total_steps: int) -> int:
    """The step from which FreezeOut freezes ``block`` (of ``num_freezable``): ``t0 + (1 - t0) * block / n``
    of ``total_steps``, rounded up."""
    return math.ceil((t0 + (1 - t0) * block / num_freezable) * total_steps)


@functools.lru_cache(maxsize=64)
def freezeout_steps(num_freezable: int, t0: float, total_steps: int) -> tuple[int, ...]:
    """FreezeOut's freeze step of every block, non-decreasing; cached, as policies ask at every step."""
    return tuple(freezeout_step(b, num_freezable, t0, total_steps) for b in range(num_freezable))


def freezeout_prefix(step: int, num_freezable: int, t0: float, total_steps: int) -> int:
    """How many leading blocks FreezeOut with ``t0`` has frozen by ``step``."""
    return bisect.bisect_right(freezeout_steps(num_freezable, t0, total_steps), step)
