"""One benchmark run: train a task with the Freezer under one policy, timing only the training steps.

Every policy of a seed sees the same initial weights and the same batch order (seeded before the
model is built; batches drawn from a seeded generator), so accuracy differences are paired. The
timer covers forward, backward, optimizer step and ``Freezer.step`` of every batch; evaluation and
the oracle's representation snapshots are outside it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset, TensorDataset, default_collate

from smartfrz.blocks import Block, model_logits, run_blocks
from smartfrz.runtime import CacheConfig, Freezer, Policy
from smartfrz.utils.batches import take
from smartfrz.utils.gram import centred_unit_gram
from smartfrz.utils.modes import eval_mode
from smartfrz.utils.seed import seed_everything
from smartfrz.zoo import Task, make_optimizer
from smartfrz.zoo.schedules import make_scheduler

EVAL_BATCH = 512


@dataclass
class RunResult:
    """What one (task, policy, seed) run measured."""

    task: str
    policy: str
    seed: int
    total_steps: int
    val_acc: float
    val_size: int
    train_time_s: float
    freezer_overhead_s: float
    policy_overhead_s: float  # the policy's part of it: recording and prediction
    flops_full: float | None
    flops_saved: float | None
    flops_saved_fraction: float | None
    blocks: list[str]
    blocks_frozen: int
    events: list[dict[str, Any]]
    cache: dict[str, Any] | None
    policy_config: dict[str, Any]
    snapshot_steps: list[int] = field(default_factory=list)
    block_cka: list[list[float]] | None = None  # [T, B-1] CKA of each freezable block's output vs the final one

    def to_json(self) -> dict[str, Any]:
        """Plain dict."""
        return dict(self.__dict__)


def materialise(ds: Dataset) -> tuple[Any, Tensor]:
    """All items of an in-memory dataset as batched inputs and labels."""
    if isinstance(ds, TensorDataset) and len(ds.tensors) == 2:
        return ds.tensors[0], ds.tensors[1]
    x, y = default_collate([ds[i] for i in range(len(ds))])
    return x, y


@torch.no_grad()
def accuracy(model: nn.Module, x: Any, y: Tensor) -> float:
    """Top-1 accuracy in eval mode (restores the previous mode; frozen blocks stay in eval mode anyway)."""
    correct = 0
    with eval_mode(model):
        for start in range(0, len(y), EVAL_BATCH):
            sl = torch.arange(start, min(start + EVAL_BATCH, len(y)))
            correct += int((model_logits(model(take(x, sl))).argmax(-1) == y[sl]).sum())
    return correct / len(y)


@torch.no_grad()
def block_grams(model: nn.Module, blocks: list[Block], probe: Any) -> np.ndarray:
    """Centred unit Gram of every freezable block's output on the probe batch, [B-1, n, n] (eval mode)."""
    out = []
    with eval_mode(model):
        act = probe
        for b in range(len(blocks) - 1):
            act = run_blocks(blocks, act, b, b + 1)
            feat = act[0] if isinstance(act, tuple) else act
            out.append(centred_unit_gram(feat))
    return np.stack(out)


def snapshot_steps(total_steps: int, count: int) -> list[int]:
    """``count`` evenly spaced steps in (0, total_steps], the last one being total_steps."""
    return sorted({max(1, round(total_steps * (i + 1) / count)) for i in range(count)})


@dataclass
class RunConfig:
    """Sizes shared by all runs of a task."""

    epochs: int
    batch_size: int
    lr: float
    cache: CacheConfig | None = None
    oracle_snapshots: int = 0  # >0: record block CKA at this many steps (the paired 'none' run)
    probe_size: int = 128
    max_steps: int | None = None  # stop early (the untimed warm-up run)
    schedule: str = "constant"  # learning-rate schedule (smartfrz.zoo.schedules), stepped after each optimizer step
    warmup: float = 0.0

    @property
    def recipe(self) -> str:
        """Suffix naming the recipe in results: "" for a constant rate, else e.g. "@cosine-wu0.05"."""
        if self.schedule == "constant" and not self.warmup:
            return ""
        return f"@{self.schedule}" + (f"-wu{self.warmup:g}" if self.warmup else "")


def batch_orders(n: int, batch_size: int, epochs: int, order: torch.Generator) -> Iterator[Tensor]:
    """Dataset indices of each training batch: a fresh permutation per epoch."""
    for _ in range(epochs):
        perm = torch.randperm(n, generator=order)
        for start in range(0, n, batch_size):
            yield perm[start : start + batch_size]


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    freezer: Freezer,
    xb: Any,
    yb: Tensor,
    idx: Tensor,
) -> Tensor:
    """One optimizer step through the freezer (forward, backward, update, lr step, freezer step); the loss."""
    loss = F.cross_entropy(model_logits(freezer(xb, idx)), yb)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    scheduler.step()
    freezer.step(loss)
    return loss


def block_cka_curves(grams: list[np.ndarray]) -> list[list[float]] | None:
    """Per snapshot, each block's linear CKA with the last snapshot (unit Grams: a dot product); None without."""
    if not grams:
        return None
    final = grams[-1].astype(np.float64)
    return [np.einsum("bij,bij->b", g.astype(np.float64), final).tolist() for g in grams]


def train_run(
    task: Task,
    data: tuple[Any, Tensor, Any, Tensor],
    num_classes: int,
    seed: int,
    policy_name: str,
    make_policy: Callable[[int], Policy],
    cfg: RunConfig,
    progress: Callable[[int], None] | None = None,
) -> RunResult:
    """Train ``task`` from seed ``seed`` with the policy ``make_policy(total_steps)``; final validation accuracy."""
    x_train, y_train, x_val, y_val = data
    n = len(y_train)
    total = steps_for(n, cfg)
    seed_everything(seed)
    model = task.build_model(num_classes)
    model.train()
    optimizer = make_optimizer(task, model.parameters(), cfg.lr)
    scheduler = make_scheduler(optimizer, cfg.schedule, total, cfg.warmup)
    freezer = Freezer(
        model,
        optimizer,
        make_policy(total),
        total_steps=total,
        cache=cfg.cache,
        deterministic_inputs=cfg.cache is not None,
        seed=seed,
        verbose=False,  # many runs under progress bars: the events are in the results instead
    )
    probe = take(x_train, torch.arange(min(cfg.probe_size, n))) if cfg.oracle_snapshots else None
    snaps = snapshot_steps(total, cfg.oracle_snapshots) if cfg.oracle_snapshots else []
    grams: list[np.ndarray] = []
    elapsed = 0.0
    stop = total if cfg.max_steps is None else min(total, cfg.max_steps)
    batches = islice(batch_orders(n, cfg.batch_size, cfg.epochs, torch.Generator().manual_seed(seed)), stop)
    for step, idx in enumerate(batches, start=1):
        t0 = time.perf_counter()
        loss = train_step(model, optimizer, scheduler, freezer, take(x_train, idx), y_train[idx], idx)
        elapsed += time.perf_counter() - t0
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{task.name}/{policy_name}/seed {seed}: loss became {float(loss)} at step {step}")
        if snaps and step in snaps:
            grams.append(block_grams(model, freezer.blocks, probe))
        if progress is not None:
            progress(1)
    summary = freezer.summary()
    return RunResult(
        task=task.name + cfg.recipe,
        policy=policy_name,
        seed=seed,
        total_steps=total,
        val_acc=accuracy(model, x_val, y_val),
        val_size=len(y_val),
        train_time_s=elapsed,
        freezer_overhead_s=float(summary["overhead_s"]),
        policy_overhead_s=float(summary["policy_s"]),
        flops_full=summary["flops_full"],
        flops_saved=summary["flops_saved"],
        flops_saved_fraction=summary["flops_saved_fraction"],
        blocks=[b.name for b in freezer.blocks],
        blocks_frozen=int(summary["blocks_frozen"]),
        events=[{k: e[k] for k in ("step", "block", "name", "score")} for e in summary["events"]],
        cache=summary["cache"],
        policy_config=summary["policy"],
        snapshot_steps=snaps,
        block_cka=block_cka_curves(grams),
    )


def steps_for(n_train: int, cfg: RunConfig) -> int:
    """Optimizer steps of one run."""
    return -(-n_train // cfg.batch_size) * cfg.epochs
