"""A Freezer leaves the user's random streams alone: same seed, same dropout masks, same losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from smartfrz.predictor import load_predictor
from smartfrz.runtime import Freezer


def _model() -> nn.Sequential:
    """Four blocks with dropout, so every training step draws from the global RNG."""
    return nn.Sequential(
        nn.Sequential(nn.Linear(12, 32), nn.Dropout(0.3), nn.ReLU()),
        nn.Sequential(nn.Linear(32, 32), nn.Dropout(0.3), nn.ReLU()),
        nn.Sequential(nn.Linear(32, 32), nn.Dropout(0.3), nn.ReLU()),
        nn.Linear(32, 3),
    )


def _run(with_freezer: bool, steps: int = 12) -> tuple[list[float], Freezer | None]:
    """Seed, build, optionally attach the default-predictor Freezer, then train with fresh random batches."""
    torch.manual_seed(1234)
    model = _model()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    freezer = Freezer(model, opt, total_steps=10_000) if with_freezer else None
    losses = []
    model.train()
    for _ in range(steps):
        x = torch.randn(16, 12)  # drawn from the global RNG, as a shuffling DataLoader would
        y = torch.randint(0, 3, (16,))
        out = freezer(x) if freezer is not None else model(x)
        loss = F.cross_entropy(out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if freezer is not None:
            freezer.step()
        losses.append(loss.item())
    return losses, freezer


def test_load_predictor_leaves_the_global_rng_untouched() -> None:
    """Loading the shipped predictor builds a randomly initialised network on a forked generator."""
    torch.manual_seed(7)
    before = torch.get_rng_state()
    load_predictor("default")
    assert torch.equal(before, torch.get_rng_state())


def test_freezer_that_never_freezes_trains_bitwise_like_plain_training() -> None:
    """With dropout, a Freezer with the default predictor that froze nothing gives the plain run's losses."""
    plain, _ = _run(with_freezer=False)
    frozen, freezer = _run(with_freezer=True)
    assert freezer is not None and freezer.num_frozen == 0
    assert frozen == plain
