"""One recording cadence: the runtime's default equals the collector's, rounding to the same fractions."""

from __future__ import annotations

import torch
from test_runtime_support import RelChangePredictor, mlp

from smartfrz.cadence import freezeout_prefix, freezeout_step, record_every_for
from smartfrz.runtime import Freezer


def test_record_every_rounds_to_the_same_fractions() -> None:
    """70 steps over 40 snapshots records every 2 steps (floor would record every step, 70 snapshots)."""
    assert [record_every_for(t) for t in (10, 59, 60, 70, 4000)] == [1, 1, 2, 2, 100]
    assert record_every_for(100, snapshots=0) == 100


def test_freezer_default_cadence_is_the_collectors() -> None:
    """The Freezer's default record_every (and stage_every) come from record_every_for(total_steps)."""
    model = mlp()
    freezer = Freezer(model, torch.optim.SGD(model.parameters(), lr=0.1), RelChangePredictor(), total_steps=70)
    assert freezer.policy.record_every == record_every_for(70) == 2
    assert freezer.policy.stage_every == 2


def test_freezeout_prefix_counts_the_blocks_whose_step_has_come() -> None:
    """The cached bisect equals counting blocks with freeze step <= step, at and around every freeze step."""
    for n, t0, total in [(1, 0.5, 10), (7, 0.5, 256), (5, 0.3, 17), (12, 1.0, 40), (3, 0.05, 1000)]:
        steps = [freezeout_step(b, n, t0, total) for b in range(n)]
        for s in {0, 1, total, total + 1, *steps, *(x - 1 for x in steps), *(x + 1 for x in steps)}:
            assert freezeout_prefix(s, n, t0, total) == sum(s >= x for x in steps)
