"""Freezing policies: each one only answers "how many leading blocks are frozen now".

The freezer owns the mechanism (freezing, cache, DDP); a policy sees the blocks and their layers,
observes training once per optimizer step, and at its stage steps returns the frozen prefix
length. Under DDP only rank 0 runs ``observe``/``decide``; ``is_stage`` must therefore depend on
the step alone, so every rank knows when a decision is broadcast.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from smartfrz.cadence import FREEZEOUT_T0, freezeout_prefix
from smartfrz.runtime.loss_meter import LossMeter


@dataclass
class PolicyContext:
    """What a policy may look at: blocks in forward order, judged layers, the optimizer and the training loss."""

    block_names: list[str]
    layers: list[tuple[str, nn.Module]]
    layer_block: list[int]  # block index of each layer
    optimizer: Optimizer
    loss: LossMeter = field(default_factory=LossMeter)  # the losses passed to Freezer.step

    @property
    def num_freezable(self) -> int:
        """Blocks that may freeze: all but the head (the last block)."""
        return len(self.block_names) - 1

    def layers_of(self, block: int) -> list[int]:
        """Indices (into ``layers``) of the judged layers inside ``block``."""
        return [i for i, b in enumerate(self.layer_block) if b == block]


def walk_prefix(ctx: PolicyContext, num_frozen: int, converged: dict[int, bool]) -> int:
    """Extend the frozen prefix while the next block's layers are all converged (layer-less blocks follow)."""
    n = num_frozen
    while n < ctx.num_freezable:
        layers = ctx.layers_of(n)
        if not all(converged.get(i, False) for i in layers):
            break
        n += 1
    return n


class Policy(ABC):
    """Interface of a freezing policy over the shared freezing mechanism."""

    name = "policy"

    def __init__(self) -> None:
        self.ctx: PolicyContext | None = None
        self.block_scores: dict[int, float] = {}  # per block, P(converged) or another score, for events

    def attach(self, ctx: PolicyContext) -> None:
        """Bind to a model's blocks; called once by the freezer."""
        self.ctx = ctx

    def observe(self, step: int, num_frozen: int) -> None:  # noqa: B027 - optional hook
        """Bookkeeping after optimizer step ``step`` (1-based), e.g. recording weights."""

    @abstractmethod
    def is_stage(self, step: int) -> bool:
        """Whether a freezing decision is taken after step ``step`` (must depend on the step only)."""

    @abstractmethod
    def decide(self, step: int, num_frozen: int) -> int:
        """How many leading blocks should be frozen after step ``step``."""

    def on_frozen(self, num_frozen: int) -> None:  # noqa: B027 - optional hook
        """The mechanism froze the prefix up to ``num_frozen`` blocks."""

    def detach(self) -> None:  # noqa: B027 - optional hook
        """Remove hooks installed by ``attach``."""

    def state_dict(self) -> dict[str, Any]:
        """Policy state to checkpoint."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 - stateless by default
        """Restore the state saved by ``state_dict``."""

    def describe(self) -> dict[str, Any]:
        """The settings that define this policy, for logs and checkpoints."""
        return {"name": self.name}


class NoFreeze(Policy):
    """Never freezes anything: the baseline, and a way to measure the freezer's own overhead."""

    name = "none"

    def is_stage(self, step: int) -> bool:
        """Never."""
        return False

    def decide(self, step: int, num_frozen: int) -> int:
        """Keep the prefix as it is."""
        return num_frozen


class FreezeOut(Policy):
    """FreezeOut (Brock et al. 2017): block i freezes at ``t0 + (1 - t0) * i / L`` of ``total_steps``."""

    name = "freezeout"

    def __init__(self, total_steps: int, t0: float = FREEZEOUT_T0) -> None:
        super().__init__()
        if total_steps < 1:
            raise ValueError(f"FreezeOut needs total_steps >= 1, got {total_steps}")
        if not 0.0 < t0 <= 1.0:
            raise ValueError(f"FreezeOut t0 must be in (0, 1], got {t0}")
        self.total_steps, self.t0 = total_steps, t0

    def _frozen_at(self, step: int) -> int:
        assert self.ctx is not None, "attach() first"
        return freezeout_prefix(step, self.ctx.num_freezable, self.t0, self.total_steps)

    def is_stage(self, step: int) -> bool:
        """Steps where the schedule moves."""
        return self._frozen_at(step) != self._frozen_at(step - 1)

    def decide(self, step: int, num_frozen: int) -> int:
        """The schedule's prefix at this step."""
        self.block_scores = {}
        return self._frozen_at(step)

    def describe(self) -> dict[str, Any]:
        """Name, total steps and t0."""
        return {"name": self.name, "total_steps": self.total_steps, "t0": self.t0}


class AutoFreeze(Policy):
    """AutoFreeze (Liu et al. 2021): freeze while the next block's gradient-norm change is low.

    Per layer, the gradient norm is summed over each interval of ``interval`` steps (read in an
    optimizer post-step hook, where the gradients are still there). At the end of an interval the
    relative change against the previous interval is compared with the ``percentile``-th percentile
    over the active layers; blocks whose layers all fall at or below it freeze, as a prefix.
    """

    name = "autofreeze"

    def __init__(self, interval: int = 100, percentile: float = 50.0) -> None:
        super().__init__()
        if interval < 1:
            raise ValueError(f"AutoFreeze interval must be >= 1, got {interval}")
        if not 0.0 <= percentile <= 100.0:
            raise ValueError(f"AutoFreeze percentile must be in [0, 100], got {percentile}")
        self.interval, self.percentile = interval, percentile
        self._acc: torch.Tensor | None = None
        self._prev: torch.Tensor | None = None
        self._active: list[int] = []
        self._handle: Any = None

    def attach(self, ctx: PolicyContext) -> None:
        """Install the gradient-norm hook on the optimizer."""
        super().attach(ctx)
        self._active = [i for i, b in enumerate(ctx.layer_block) if b < ctx.num_freezable]
        self._acc = torch.zeros(len(ctx.layers), dtype=torch.float64)
        self._handle = ctx.optimizer.register_step_post_hook(self._accumulate)

    def detach(self) -> None:
        """Remove the optimizer hook."""
        if self._handle is not None:
            self._handle.remove()
            self._handle = None

    @torch.no_grad()
    def _accumulate(self, *_: Any) -> None:
        """Optimizer post-step hook: add this step's per-layer gradient norms (stays on the grads' device)."""
        assert self.ctx is not None and self._acc is not None
        grads = [self.ctx.layers[i][1].weight.grad for i in self._active]
        present = [(i, g) for i, g in zip(self._active, grads, strict=True) if g is not None]
        if not present:
            return
        norms = torch.stack(torch._foreach_norm([g for _, g in present])).double()
        if self._acc.device != norms.device:  # keep the sum where the gradients are: no sync per step
            self._acc = self._acc.to(norms.device)
        rows = torch.tensor([i for i, _ in present], dtype=torch.int64, device=norms.device)
        self._acc.index_add_(0, rows, norms)

    def is_stage(self, step: int) -> bool:
        """Every ``interval`` steps."""
        return step % self.interval == 0

    def decide(self, step: int, num_frozen: int) -> int:
        """Freeze the leading blocks whose layers' gradient-norm change is at or below the percentile."""
        assert self.ctx is not None and self._acc is not None
        cur, prev = self._acc.cpu(), self._prev
        self._prev, self._acc = cur, torch.zeros_like(cur)
        self.block_scores = {}
        if prev is None or not self._active:
            return num_frozen
        rows = torch.tensor(self._active, dtype=torch.int64)
        change = (cur[rows] - prev[rows]).abs() / prev[rows].clamp_min(1e-30)
        threshold = float(torch.quantile(change, self.percentile / 100.0))
        converged = {i: float(c) <= threshold for i, c in zip(self._active, change.tolist(), strict=True)}
        for b in range(num_frozen, self.ctx.num_freezable):
            layers = self.ctx.layers_of(b)
            if layers:
                self.block_scores[b] = max(float(change[self._active.index(i)]) for i in layers)
        return walk_prefix(self.ctx, num_frozen, converged)

    def on_frozen(self, num_frozen: int) -> None:
        """Stop tracking frozen layers."""
        assert self.ctx is not None
        self._active = [i for i in self._active if self.ctx.layer_block[i] >= num_frozen]

    def state_dict(self) -> dict[str, Any]:
        """Accumulated and previous gradient norms."""
        return {"acc": self._acc.cpu(), "prev": self._prev, "active": list(self._active)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the gradient-norm history."""
        self._acc, self._prev, self._active = state["acc"].clone(), state["prev"], list(state["active"])

    def describe(self) -> dict[str, Any]:
        """Name, interval and percentile."""
        return {"name": self.name, "interval": self.interval, "percentile": self.percentile}
