"""Learning-rate schedules people actually use (constant, step, cosine, linear decay; optional linear warm-up)."""

from __future__ import annotations

import math

import torch

SCHEDULES = ("constant", "step", "cosine", "linear")
STEP_MILESTONES = (0.5, 0.75)
"""Fractions of training at which the ``step`` schedule divides the learning rate by 10."""


def lr_factor(schedule: str, step: int, total_steps: int, warmup: float = 0.0) -> float:
    """Multiplier of the peak learning rate after ``step`` of ``total_steps`` optimizer steps.

    Warm-up ramps linearly over the first ``warmup`` fraction of training; the decay runs over the rest.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")
    if not 0.0 <= warmup < 1.0:
        raise ValueError(f"warmup must be a fraction in [0, 1), got {warmup}")
    warm_steps = round(warmup * total_steps)
    if step < warm_steps:
        return (step + 1) / warm_steps
    progress = (step - warm_steps) / max(1, total_steps - warm_steps)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "linear":
        return max(0.0, 1.0 - progress)
    if schedule == "step":
        return 0.1 ** sum(progress >= m for m in STEP_MILESTONES)
    return 1.0


def make_scheduler(
    optimizer: torch.optim.Optimizer, schedule: str, total_steps: int, warmup: float = 0.0
) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepping once per optimizer step along :func:`lr_factor`."""
    lr_factor(schedule, 0, total_steps, warmup)  # validate now, not at the first step
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(schedule, s, total_steps, warmup))
