"""Gradient checkpointing with a frozen prefix: same losses and gradients as without it; reentrant misuse warns."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from test_runtime_support import Stages, data, mlp, train
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from smartfrz.runtime import CacheConfig, Freezer

PLAN = {3: 1, 8: 2}  # block 0 freezes after step 3, block 1 after step 8: both were checkpointed suffix blocks


class Checkpointed(nn.Module):
    """A block whose forward the user runs through torch.utils.checkpoint."""

    def __init__(self, inner: nn.Module, reentrant: bool) -> None:
        super().__init__()
        self.inner, self.reentrant = inner, reentrant

    def forward(self, x: Tensor) -> Tensor:
        return checkpoint(self.inner, x, use_reentrant=self.reentrant)


def _train(
    wrapped: tuple[int, ...], reentrant: bool, cache: CacheConfig | None, plan: dict[int, int] = PLAN, steps: int = 12
) -> tuple[list[float], dict[str, Tensor], nn.Module]:
    """Losses, the gradients of one more step and the model after training with ``wrapped`` blocks checkpointed."""
    model = mlp(bn=False)  # Dropout: the recompute must replay its RNG
    for i in wrapped:
        model[i] = Checkpointed(model[i], reentrant)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    freezer = Freezer(model, opt, Stages(plan), cache=cache, deterministic_inputs=True, verbose=False)
    losses = train(freezer, model, opt, steps)
    x, y = data()
    torch.manual_seed(steps)
    opt.zero_grad()
    F.cross_entropy(freezer(x[:16], torch.arange(16)), y[:16]).backward()
    grads = {n.replace(".inner", ""): p.grad for n, p in model.named_parameters() if p.grad is not None}
    return losses, grads, model


def _params(model: nn.Module) -> dict[str, Tensor]:
    return {n.replace(".inner", ""): p.detach() for n, p in model.named_parameters()}


@pytest.mark.parametrize("cache", [None, CacheConfig(dtype="float32")], ids=["no-cache", "cache"])
def test_checkpointed_blocks_train_like_plain_ones(cache: CacheConfig | None) -> None:
    """Checkpointed suffix blocks that later freeze (use_reentrant=False) give the same losses, grads and weights."""
    plain_losses, plain_grads, plain = _train((), False, cache)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither PyTorch nor smartfrz has anything to warn about
        losses, grads, model = _train((1, 2), False, cache)
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(plain_losses), atol=1e-6, rtol=0)
    assert grads.keys() == plain_grads.keys() and set(grads) == {n for n in grads if not n.startswith(("0.", "1."))}
    torch.testing.assert_close(grads, plain_grads, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(_params(model), _params(plain), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("cache", [None, CacheConfig(dtype="float32")], ids=["no-cache", "cache"])
def test_reentrant_checkpoint_of_a_frozen_block_is_harmless(cache: CacheConfig | None) -> None:
    """A block checkpointed with use_reentrant=True that freezes (never first-trainable after a freeze) is fine."""
    plain_losses, _, plain = _train((), False, cache, plan={3: 2})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # PyTorch: "None of the inputs have requires_grad=True"
        warnings.simplefilter("error", RuntimeWarning)
        losses, _, model = _train((1,), True, cache, plan={3: 2})
    torch.testing.assert_close(torch.tensor(losses), torch.tensor(plain_losses), atol=1e-6, rtol=0)
    torch.testing.assert_close(_params(model), _params(plain), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("cache", [None, CacheConfig(dtype="float32")], ids=["no-cache", "cache"])
def test_reentrant_checkpoint_right_after_the_frozen_prefix_warns(cache: CacheConfig | None) -> None:
    """use_reentrant=True on the first trainable block starves it of gradients: the freezer says so and how to fix."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        with pytest.warns(RuntimeWarning, match=r"block '1' got no gradient.*use_reentrant=False"):
            _train((1,), True, cache, plan={3: 1})
