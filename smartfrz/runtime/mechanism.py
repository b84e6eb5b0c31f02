"""The freezing mechanism shared by all policies: stop gradients, pin eval mode, free optimizer state.

Frozen parameters stay in their optimizer's param groups with ``grad = None``: PyTorch optimizers
skip such parameters, and keeping the groups intact means an optimizer checkpoint taken after a
freeze loads into a freshly built optimizer, in any order with the freezer's own state.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from torch import nn
from torch.optim import Optimizer

log = logging.getLogger("smartfrz.runtime")


def keep_eval(module: nn.Module, args: object) -> None:
    """Forward pre-hook: a frozen block runs in eval mode even after the user calls ``model.train()``."""
    if module.training:
        module.eval()


def base_optimizer(optimizer: object) -> Optimizer:
    """The torch optimizer behind wrappers such as accelerate's ``AcceleratedOptimizer``."""
    for _ in range(8):  # accelerate's AcceleratedOptimizer (.optimizer), Lightning's LightningOptimizer (._optimizer)
        if isinstance(optimizer, Optimizer):
            break
        optimizer = getattr(optimizer, "optimizer", None) or getattr(optimizer, "_optimizer", None)
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"expected a torch.optim.Optimizer, got {type(optimizer).__name__}")
    return optimizer


def freeze_module(module: nn.Module, optimizers: Iterable[Optimizer], trainable_elsewhere: set[int]) -> int:
    """Freeze ``module`` in place and drop its optimizer state; returns the number of parameters frozen.

    ``trainable_elsewhere`` holds ids of parameters shared with a block that keeps training (tied
    weights); they are frozen too, since a tensor cannot be half frozen, and a warning says so.
    """
    optimizers = list(optimizers)
    count = 0
    for name, p in module.named_parameters():
        if id(p) in trainable_elsewhere:
            log.warning("parameter %s is shared with a block that keeps training; it is frozen too", name)
        p.requires_grad_(False)
        p.grad = None
        for opt in optimizers:
            opt.state.pop(p, None)
        count += p.numel()
    module.eval()
    module.register_forward_pre_hook(keep_eval)
    return count
