"""Shared helpers for the runtime tests: tiny models, a data set with indices, and fake predictors."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from smartfrz.runtime import Freezer, Policy


class RelChangePredictor:
    """Fake predictor: P(converged) = exp(-relative change between the window's first and last snapshot / tol)."""

    def __init__(self, window: int = 4, k: int = 16, threshold: float = 0.5, tol: float = 1e-3) -> None:
        self.window, self.k, self.threshold, self.tol = window, k, threshold, tol
        self.calls = 0

    def predict_proba(self, windows: Tensor) -> Tensor:
        """Scale-free: relative L2 change over the window."""
        self.calls += 1
        rel = (windows[:, -1] - windows[:, 0]).norm(dim=1) / windows[:, -1].norm(dim=1).clamp_min(1e-12)
        return torch.exp(-rel / self.tol)


class IncrementalRelChangePredictor(RelChangePredictor):
    """The same judgement through the incremental path (a fixed random linear embedding)."""

    def __init__(self, **kwargs: float) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.proj = torch.randn(self.k, 8, generator=torch.Generator().manual_seed(0))
        self.embedded = 0

    def embed_snapshots(self, x: Tensor) -> Tensor:
        """Linear embedding of raw snapshots."""
        self.embedded += x.shape[0]
        return x @ self.proj

    def predict_from_embeddings(self, emb: Tensor) -> Tensor:
        """Relative change of the embedded snapshots."""
        self.calls += 1
        rel = (emb[:, -1] - emb[:, 0]).norm(dim=1) / emb[:, -1].norm(dim=1).clamp_min(1e-12)
        return torch.exp(-rel / self.tol)


def mlp(seed: int = 0, bn: bool = True) -> nn.Sequential:
    """Four blocks: Linear, Linear(+BN), Linear, head Linear (each a block of an nn.Sequential)."""
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Sequential(nn.Linear(12, 24), nn.ReLU()),
        nn.Sequential(nn.Linear(24, 24), nn.BatchNorm1d(24) if bn else nn.Identity(), nn.ReLU()),
        nn.Sequential(nn.Linear(24, 16), nn.Dropout(0.1), nn.ReLU()),
        nn.Linear(16, 3),
    )


def data(n: int = 96, seed: int = 0) -> tuple[Tensor, Tensor]:
    """A learnable 3-class problem with 12 features."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 12, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return x, y


def train(
    freezer: Freezer,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    steps: int,
    batch: int = 16,
    seed: int = 0,
    use_idx: bool = True,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    start: int = 0,
    device: str = "cpu",
    forward_context: Callable[[int], AbstractContextManager[Any]] | None = None,
) -> list[float]:
    """Train ``steps`` optimizer steps from step ``start`` on a fixed data set; batches depend on the step only.

    ``forward_context(step)`` wraps the forward and loss (e.g. ``torch.autocast``); indices stay on the CPU.
    """
    x, y = (t.to(device) for t in data())
    losses = []
    model.train()
    for step in range(start, start + steps):
        idx = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed * 100_000 + step))[:batch]
        torch.manual_seed(seed * 100_000 + step)  # dropout noise depends on the step only (resume tests)
        rows = idx.to(device)
        with forward_context(step) if forward_context is not None else contextlib.nullcontext():
            out = freezer(x[rows], idx if use_idx else None)
            loss = F.cross_entropy(out, y[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        freezer.step()
        losses.append(loss.item())
    return losses


def test_fake_predictors_agree_on_constant_and_moving_windows() -> None:
    """The fakes say 'converged' for a constant window and 'not' for a moving one, on both paths."""
    still = torch.ones(1, 4, 16)
    moving = torch.linspace(1, 2, 4)[None, :, None].expand(1, 4, 16).contiguous()
    for p in (RelChangePredictor(), IncrementalRelChangePredictor()):
        windows = torch.cat([still, moving])
        if isinstance(p, IncrementalRelChangePredictor):
            probs = p.predict_from_embeddings(p.embed_snapshots(windows.reshape(-1, 16)).reshape(2, 4, -1))
        else:
            probs = p.predict_proba(windows)
        assert probs[0] > 0.99 and probs[1] < 0.01


def quiet_trainer(pl: Any, root: Any, callback: Any, **settings: Any) -> Any:
    """A CPU Lightning Trainer with ``callback`` and no logger, checkpoints, bars or summary (override any)."""
    quiet = dict(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    return pl.Trainer(accelerator="cpu", default_root_dir=root, callbacks=[callback], **{**quiet, **settings})


def free_port() -> int:
    """A free localhost TCP port for a torch.distributed rendezvous."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lightning_mlp(pl: Any, lr: float = 0.05, adam: bool = False, bn: bool = True) -> Any:
    """A LightningModule around ``mlp(bn=bn)`` as ``.net``, cross-entropy loss, SGD (or Adam) at ``lr``."""

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = mlp(bn=bn)

        def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
            x, y = batch
            return F.cross_entropy(self.net(x), y)

        def configure_optimizers(self) -> torch.optim.Optimizer:
            optimizer = torch.optim.Adam if adam else torch.optim.SGD
            return optimizer(self.parameters(), lr=lr)

    return Module()


class FreezeAt(Policy):
    """Test policy: freeze ``n`` blocks at step ``at`` (score 0.9 per block)."""

    name = "freeze_at"

    def __init__(self, at: int, n: int) -> None:
        super().__init__()
        self.at, self.n = at, n

    def is_stage(self, step: int) -> bool:
        return step == self.at

    def decide(self, step: int, num_frozen: int) -> int:
        self.block_scores = {b: 0.9 for b in range(self.n)}
        return self.n


class Stages(Policy):
    """Test policy: after step s, freeze up to ``plan[s]`` blocks (several stages, so the cache advances)."""

    name = "stages"

    def __init__(self, plan: dict[int, int]) -> None:
        super().__init__()
        self.plan = plan

    def is_stage(self, step: int) -> bool:
        return step in self.plan

    def decide(self, step: int, num_frozen: int) -> int:
        self.block_scores = {b: 0.9 for b in range(self.plan[step])}
        return self.plan[step]
