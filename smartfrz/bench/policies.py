"""The policies the benchmark compares, by name, and the fixed schedule the oracle replays."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from smartfrz.cadence import FREEZEOUT_T0, record_every_for
from smartfrz.runtime import AutoFreeze, FreezeOut, NoFreeze, Policy, SmartFRZ

BASE_POLICIES = ("none", "freezeout", "autofreeze", "smartfrz", "smartfrz-backstop")
DEFAULT_POLICIES = (
    "none",
    "freezeout",
    "freezeout+cache",
    "autofreeze",
    "smartfrz",
    "smartfrz+cache",
    "smartfrz-backstop",
    "smartfrz-backstop+cache",
)
MAIN_POLICIES = ("smartfrz-backstop+cache", "smartfrz+cache", "smartfrz")
"""The policy the targets are checked on: the first of these benched (the Freezer's default comes first)."""
CACHE_SUFFIX = "+cache"


@dataclass(frozen=True)
class PolicySpec:
    """A policy name and whether the activation cache serves the frozen prefix."""

    base: str
    cache: bool

    @property
    def needs_predictor(self) -> bool:
        """Whether the policy is SmartFRZ (alone or with the backstop), which runs the loaded predictor."""
        return self.base.startswith("smartfrz")

    @property
    def name(self) -> str:
        """``base`` or ``base+cache``."""
        return self.base + (CACHE_SUFFIX if self.cache else "")

    @staticmethod
    def parse(text: str) -> PolicySpec:
        """A name of ``BASE_POLICIES``, optionally with ``+cache``."""
        base, cache = (text[: -len(CACHE_SUFFIX)], True) if text.endswith(CACHE_SUFFIX) else (text, False)
        if base not in BASE_POLICIES:
            raise ValueError(f"unknown policy {text!r}; use one of {BASE_POLICIES}, optionally with '{CACHE_SUFFIX}'")
        if base == "none" and cache:
            raise ValueError("'none+cache' makes no sense: nothing is ever frozen, so nothing is cached")
        return PolicySpec(base, cache)


@dataclass(frozen=True)
class Cadence:
    """How often the adaptive policies look: SmartFRZ record/stage steps, AutoFreeze interval, FreezeOut t0."""

    record_every: int
    stage_every: int
    autofreeze_interval: int
    autofreeze_percentile: float = 50.0
    freezeout_t0: float = FREEZEOUT_T0

    @staticmethod
    def for_run(total_steps: int, snapshots: int, autofreeze_stages: int) -> Cadence:
        """SmartFRZ records ``snapshots`` times per run, at the traces' fractions of training (the Freezer's rule,
        :func:`smartfrz.cadence.record_every_for`); AutoFreeze decides ``stages`` times."""
        record = record_every_for(total_steps, snapshots)
        return Cadence(record, record, max(1, total_steps // autofreeze_stages))


class ScheduledFreeze(Policy):
    """Freeze block b after step ``freeze_steps[b]`` (None: never): the oracle's schedule, replayed."""

    name = "scheduled"

    def __init__(self, freeze_steps: list[int | None]) -> None:
        super().__init__()
        steps = [s for s in freeze_steps if s is not None]
        if steps != sorted(steps) or any(s < 1 for s in steps) or None in freeze_steps[: len(steps)]:
            raise ValueError(f"a prefix schedule needs non-decreasing positive steps, then Nones; got {freeze_steps}")
        self.freeze_steps = list(freeze_steps)
        self._steps = set(steps)

    def attach(self, ctx: Any) -> None:
        """Check that the schedule covers exactly the freezable blocks."""
        super().attach(ctx)
        if len(self.freeze_steps) != ctx.num_freezable:
            raise ValueError(f"schedule has {len(self.freeze_steps)} entries for {ctx.num_freezable} freezable blocks")

    def is_stage(self, step: int) -> bool:
        """Steps where the schedule moves."""
        return step in self._steps

    def decide(self, step: int, num_frozen: int) -> int:
        """Blocks whose freeze step has passed."""
        return sum(s is not None and s <= step for s in self.freeze_steps)

    def describe(self) -> dict[str, Any]:
        """Name and schedule."""
        return {"name": self.name, "freeze_steps": self.freeze_steps}


def build_policy(spec: PolicySpec, total_steps: int, cadence: Cadence, predictor: Any, seed: int) -> Policy:
    """The runtime policy object for ``spec`` (SmartFRZ takes the loaded predictor and the run's length).

    ``smartfrz-backstop`` is SmartFRZ that freezes no block later than FreezeOut (``cadence.freezeout_t0``).
    """
    if spec.base == "none":
        return NoFreeze()
    if spec.base == "freezeout":
        return FreezeOut(total_steps, cadence.freezeout_t0)
    if spec.base == "autofreeze":
        return AutoFreeze(cadence.autofreeze_interval, cadence.autofreeze_percentile)
    if predictor is None:
        raise ValueError("the smartfrz policies need a predictor")
    backstop = cadence.freezeout_t0 if spec.base == "smartfrz-backstop" else None
    return SmartFRZ(
        predictor, cadence.record_every, cadence.stage_every, seed=seed, total_steps=total_steps, backstop=backstop
    )
