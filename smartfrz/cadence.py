"""The one recording cadence shared by the trace collector and the runtime, so both sample the same fractions."""

from __future__ import annotations

SNAPSHOTS_PER_RUN = 40  # weight snapshots over a planned run, as the shipped predictor was trained on


def record_every_for(total_steps: int, snapshots: int = SNAPSHOTS_PER_RUN) -> int:
    """Optimizer steps between weight snapshots: ``round(total_steps / snapshots)``, at least 1.

    Rounding (not flooring) puts the snapshots at the same fractions of training as the traces the
    predictor learnt from, e.g. 70 steps -> every 2 steps (35 snapshots), not every step (70).
    """
    return max(1, round(total_steps / max(1, snapshots)))
