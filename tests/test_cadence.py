"""One recording cadence: the runtime's default equals the collector's, rounding to the same fractions."""

from __future__ import annotations

import torch
from test_runtime_support import RelChangePredictor, mlp

from smartfrz.cadence import record_every_for
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
