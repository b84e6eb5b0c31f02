"""Freezer paths with no other test: state-dict errors, forward kwargs with the cache, tied weights, op stats."""

from __future__ import annotations

import copy
import logging
import math

import pytest
import torch
from test_runtime_support import data, mlp, train
from torch import nn

import smartfrz.ops as ops
from smartfrz.ops import reference
from smartfrz.runtime import FreezeOut, Freezer
from smartfrz.runtime.mechanism import freeze_module


def _trained(steps: int, total: int = 20) -> tuple[Freezer, nn.Module]:
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    freezer = Freezer(model, opt, FreezeOut(total_steps=total, t0=0.1))
    train(freezer, model, opt, steps=steps)
    return freezer, model


def _fresh(total: int = 20, model: nn.Module | None = None) -> Freezer:
    model = model or mlp()
    return Freezer(model, torch.optim.SGD(model.parameters(), lr=0.05), FreezeOut(total_steps=total, t0=0.1))


def test_load_state_dict_round_trip_refreezes_the_prefix() -> None:
    freezer, _ = _trained(steps=10)
    assert freezer.num_frozen == 2
    fresh = _fresh()
    fresh.load_state_dict(freezer.state_dict())
    assert fresh.num_frozen == 2 and fresh.step_count == 10
    assert not any(p.requires_grad for p in fresh.model[0].parameters())
    assert all(p.requires_grad for p in fresh.model[2].parameters())


def test_load_state_dict_rejects_mismatches() -> None:
    freezer, _ = _trained(steps=10)
    state = freezer.state_dict()
    with pytest.raises(ValueError, match="state version"):
        _fresh().load_state_dict({**state, "version": -1})
    other = nn.Sequential(*list(mlp())[:3], nn.Linear(16, 3), nn.Linear(3, 3))  # five blocks
    with pytest.raises(ValueError, match="checkpoint blocks"):
        _fresh(model=other).load_state_dict(state)
    with pytest.raises(ValueError, match="checkpoint policy"):
        _fresh(total=21).load_state_dict(state)
    ahead, _ = _trained(steps=20)
    assert ahead.num_frozen == 3
    with pytest.raises(ValueError, match="already frozen more"):
        ahead.load_state_dict(state)
    assert ahead.num_frozen == 3  # a refused load changes nothing


def test_forward_with_the_cache_refuses_extra_arguments() -> None:
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    freezer = Freezer(model, opt, FreezeOut(total_steps=10, t0=0.1), cache=True, deterministic_inputs=True)
    x, _ = data()
    with pytest.raises(TypeError, match="batch and its indices only"):
        freezer(x[:4], torch.arange(4), scale=2.0)
    with pytest.raises(TypeError, match="batch and its indices only"):
        freezer(x[:4], torch.arange(4), True)
    model.train()
    assert freezer(x[:4], torch.arange(4)).shape == (4, 3)  # the plain call still works


def _tied_model() -> nn.Sequential:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Sequential(nn.Linear(6, 6), nn.ReLU()), nn.Sequential(nn.Linear(6, 6), nn.ReLU()))
    model.append(nn.Linear(6, 6))
    model[2].weight = model[0][0].weight  # tied across block 0 (frozen first) and the trainable head
    return model


def test_tied_weight_across_blocks_is_refused_up_front() -> None:
    """Blocks must not share a tensor (it cannot be half frozen): the Freezer says so before training."""
    model = _tied_model()
    with pytest.raises(ValueError, match="in both block '0' and '2'"):
        Freezer(model, torch.optim.SGD(model.parameters(), lr=0.1), FreezeOut(total_steps=10, t0=0.1))


def test_freeze_module_freezes_a_tensor_shared_with_a_trainable_module(caplog) -> None:
    model = _tied_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x = torch.randn(8, 6)
    model(x).pow(2).mean().backward()
    opt.step()
    tied = model[0][0].weight
    assert tied in opt.state
    elsewhere = {id(p) for p in model[2].parameters()}
    with caplog.at_level(logging.WARNING, logger="smartfrz.runtime"):
        assert freeze_module(model[0], [opt], elsewhere) == 6 * 6 + 6
    assert "shared with a block that keeps training" in caplog.text
    assert not tied.requires_grad and tied.grad is None and tied not in opt.state
    before, bias = tied.detach().clone(), model[2].bias.detach().clone()
    opt.zero_grad()
    model(x).pow(2).mean().backward()
    opt.step()
    assert torch.equal(tied, before) and not torch.equal(model[2].bias, bias)  # the head's own bias trains


@pytest.mark.parametrize("module", [ops, reference], ids=["ops", "reference"])
def test_record_weights_stats_against_hand_worked_values(module) -> None:
    weights = [torch.tensor([[3.0, -4.0], [0.0, 12.0]]), torch.tensor([0.5, -1.5])]
    idx = torch.tensor([[0, 1, 3], [1, 0, 1]])
    prev = torch.tensor([[0.0, 0.0, 7.0], [-1.5, 0.5, 0.5]])
    samples, stats = module.record_weights(weights, idx, prev)
    assert samples.tolist() == [[3.0, -4.0, 12.0], [-1.5, 0.5, -1.5]]
    # l2_norm over the whole layer, delta_l2_norm over the K samples against prev, nonfinite, max_abs
    want = [[13.0, math.sqrt(9 + 16 + 25), 0.0, 12.0], [math.sqrt(0.25 + 2.25), 2.0, 0.0, 1.5]]
    torch.testing.assert_close(stats, torch.tensor(want), rtol=1e-6, atol=0.0)
    _, no_prev = module.record_weights(copy.deepcopy(weights), idx, None)
    assert no_prev[:, 1].tolist() == [0.0, 0.0]
