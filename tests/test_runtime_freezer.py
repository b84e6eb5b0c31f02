"""Freezer facade and freezing mechanism: grads, optimizer state, eval mode, events, errors, FLOPs."""

from __future__ import annotations

import logging

import pytest
import torch
from test_runtime_support import FreezeAt, data, mlp, train
from torch import nn

from smartfrz.runtime import FreezeOut, Freezer


class FakeWriter:
    """Records SummaryWriter calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, object, int]] = []

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self.calls.append(("scalar", tag, value, step))

    def add_text(self, tag: str, text: str, step: int) -> None:
        self.calls.append(("text", tag, text, step))


def test_freeze_drops_grads_and_state_keeps_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    """Frozen params: no grad, no optimizer state; unfrozen params keep theirs and keep training."""
    model = mlp()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    writer = FakeWriter()
    freezer = Freezer(model, opt, FreezeAt(at=3, n=2), writer=writer)
    train(freezer, model, opt, steps=2)
    head_state = {k: v.clone() for k, v in opt.state[model[3].weight].items()}
    with caplog.at_level(logging.INFO, logger="smartfrz.runtime"):
        train(freezer, model, opt, steps=1, start=2)
    frozen = [p for b in (model[0], model[1]) for p in b.parameters()]
    trainable = [p for b in (model[2], model[3]) for p in b.parameters()]
    assert freezer.num_frozen == 2 and freezer.frozen_blocks == ["0", "1"]
    assert all(not p.requires_grad and p.grad is None and p not in opt.state for p in frozen)
    assert all(p.requires_grad and p in opt.state for p in trainable)
    # the head's Adam state was kept through the freeze: it went on from step 2 to step 3
    assert float(opt.state[model[3].weight]["step"]) == float(head_state["step"]) + 1
    before = [p.detach().clone() for p in frozen]
    head_before = model[3].weight.detach().clone()
    train(freezer, model, opt, steps=3, start=3)
    assert all(torch.equal(a, p) for a, p in zip(before, frozen, strict=True))
    assert not torch.equal(head_before, model[3].weight)
    assert float(opt.state[model[3].weight]["step"]) == 6
    # events: logged, listed, written
    assert [(e.step, e.block, e.score) for e in freezer.events.events] == [(3, 0, 0.9), (3, 1, 0.9)]
    assert "froze block 2/4 '1' at step 3, score 0.9" in caplog.text
    assert ("scalar", "smartfrz/frozen_blocks", 2, 3) in writer.calls


def test_frozen_block_stays_in_eval_mode_after_model_train() -> None:
    """BatchNorm statistics and dropout of a frozen block stop changing even after model.train()."""
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    freezer = Freezer(model, opt, FreezeAt(at=1, n=2))
    train(freezer, model, opt, steps=1)
    bn = model[1][1]
    stats = (bn.running_mean.clone(), bn.running_var.clone(), int(bn.num_batches_tracked))
    model.train()
    x, _ = data()
    freezer(x[:16])
    assert not model[1].training and not bn.training and model[2].training
    assert torch.equal(stats[0], bn.running_mean) and torch.equal(stats[1], bn.running_var)
    assert int(bn.num_batches_tracked) == stats[2]


def test_head_never_freezes_and_prefix_only_grows() -> None:
    """A policy asking for every block gets all but the head; asking for fewer later changes nothing."""

    class Greedy(FreezeAt):
        def is_stage(self, step: int) -> bool:
            return True

        def decide(self, step: int, num_frozen: int) -> int:
            return 99 if step == 1 else 0

    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    freezer = Freezer(model, opt, Greedy(0, 0))
    train(freezer, model, opt, steps=3)
    assert freezer.num_frozen == 3 and model[3].weight.requires_grad


def test_freezeout_schedule() -> None:
    """Block i freezes at ceil((t0 + (1 - t0) * i / L) * T)."""
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    freezer = Freezer(model, opt, FreezeOut(total_steps=20, t0=0.4))
    train(freezer, model, opt, steps=20)
    assert [(e.step, e.block) for e in freezer.events.events] == [(8, 0), (12, 1), (16, 2)]


def test_no_freeze_policy_matches_plain_training() -> None:
    """With NoFreeze the freezer changes nothing: identical losses to plain PyTorch."""
    m1, m2 = mlp(), mlp()
    o1, o2 = torch.optim.SGD(m1.parameters(), lr=0.1), torch.optim.SGD(m2.parameters(), lr=0.1)
    losses1 = train(Freezer(m1, o1, None), m1, o1, steps=5)

    class Plain:
        def __call__(self, x: torch.Tensor, idx: torch.Tensor | None) -> torch.Tensor:
            return m2(x)

        def step(self) -> None:
            pass

    losses2 = train(Plain(), m2, o2, steps=5)  # type: ignore[arg-type]
    assert losses1 == losses2


def test_flops_accounting() -> None:
    """Per-block forward FLOPs are measured (2 * in * out per Linear) and savings follow the frozen prefix."""
    model = mlp(bn=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    freezer = Freezer(model, opt, FreezeAt(at=2, n=1))
    train(freezer, model, opt, steps=4, batch=16)
    flops = freezer.flops.block_flops
    assert flops == [2 * 12 * 24, 2 * 24 * 24, 2 * 24 * 16, 2 * 16 * 3]
    full = 4 * 16 * 3 * sum(flops)
    saved = 2 * 16 * 2 * flops[0]  # steps 3 and 4 skip block 0's backward
    s = freezer.summary()
    assert s["flops_full"] == full and s["flops_saved"] == saved
    assert s["flops_saved_fraction"] == pytest.approx(saved / full)
    assert s["blocks_frozen"] == 1 and s["cache"] is None


def test_clear_errors() -> None:
    """Undiscoverable models, misplaced options and a cache without the determinism promise fail clearly."""

    class Opaque(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(2, 2), nn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.b(self.a(x))

    m = Opaque()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    with pytest.raises(ValueError, match=r"Freezer\(model, optimizer, blocks="):
        Freezer(m, opt, None)
    assert Freezer(m, opt, None, blocks=["a", "b"]).blocks[1].name == "b"
    with pytest.raises(ValueError, match="set them on the policy"):
        Freezer(mlp(), opt, FreezeOut(10), stage_every=5)
    with pytest.raises(ValueError, match="deterministic_inputs=True"):
        Freezer(mlp(), opt, None, cache=True)
    with pytest.raises(TypeError, match="predict_proba"):
        Freezer(mlp(), opt, object())
