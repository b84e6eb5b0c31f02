"""Trace one training run: train, snapshot on a fixed cadence (smartfrz.collection.snapshots), flag, -> RunRecord."""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from smartfrz._version import code_version
from smartfrz.blocks import Block, discover_blocks, layer_block_index, model_logits
from smartfrz.cadence import record_every_for
from smartfrz.collection.snapshots import SnapshotRecorder, evaluate
from smartfrz.layers import find_layers
from smartfrz.traces.schema import STATUS_FLAGGED, STATUS_OK, RunRecord
from smartfrz.traces.writer import write_run_file
from smartfrz.utils.batches import Batch, to_device

MIN_ACC_RATIO = 1.5
"""A run whose final accuracy is below this multiple of chance (1 / classes) is flagged as not learning."""


@dataclass
class TraceResult:
    """Outcome of one traced run (what the grid summary reports)."""

    run_id: str
    path: Path | None
    status: str
    flag_reason: str
    final_val_acc: float
    final_val_loss: float
    n_snapshots: int
    n_layers: int
    steps: int
    wall_time_s: float
    record: RunRecord


def snapshot_plan(train_loader: Iterable, epochs: int, record_every: int | None, snapshots: int) -> tuple[int, int]:
    """(total optimizer steps, steps between snapshots); ``record_every`` defaults to the shared cadence."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    try:
        steps_per_epoch = len(train_loader)  # type: ignore[arg-type]
    except TypeError as err:
        raise ValueError("train_loader must have a len() (epochs x len gives the snapshot plan)") from err
    if steps_per_epoch == 0:
        raise ValueError("the training loader yields no batches")
    total_steps = epochs * steps_per_epoch
    if record_every is None:
        record_every = record_every_for(total_steps, snapshots)
    if record_every < 1:
        raise ValueError(f"record_every must be >= 1, got {record_every}")
    return total_steps, record_every


def layer_blocks(model: nn.Module, names: Sequence[str], blocks: Sequence[Block] | None) -> np.ndarray:
    """Block index of every layer; -1 for all (with a warning) when the model's blocks cannot be found."""
    try:
        found = list(blocks) if blocks is not None else discover_blocks(model)
        mapping = layer_block_index(model, found)
    except (ValueError, TypeError) as err:
        warnings.warn(f"block discovery failed, storing block=-1 for every layer: {err}", stacklevel=3)
        return np.full(len(names), -1, dtype=np.int32)
    return np.array([mapping[n] for n in names], dtype=np.int32)


def _train(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    train_loader: Iterable,
    loss_fn: Callable[..., torch.Tensor],
    device: torch.device,
    epochs: int,
    plan: tuple[int, int],
    recorder: SnapshotRecorder,
    bar: tqdm,
) -> tuple[int, str]:
    """Train, snapshotting every ``record_every`` steps and after the last; (steps run, why it diverged or "").

    A non-finite training loss or non-finite weights stop training there (after one last snapshot).
    """
    total_steps, record_every = plan
    step, loss_sum, loss_count = 0, 0.0, 0
    for _epoch in range(epochs):
        for x, y in train_loader:
            x, y = to_device(x, device), to_device(y, device)
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model_logits(model(x)), y)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            step += 1
            value = float(loss.detach())
            bar.update(1)
            if not math.isfinite(value):
                recorder.record(step, loss_sum / max(1, loss_count))
                return step, f"diverged: non-finite training loss at step {step}"
            loss_sum, loss_count = loss_sum + value, loss_count + 1
            if step % record_every == 0 or step == total_steps:
                flag_reason = recorder.record(step, loss_sum / max(1, loss_count))
                loss_sum, loss_count = 0.0, 0
                if flag_reason:
                    return step, flag_reason
    return step, ""


def final_flag(flag_reason: str, final_loss: float, final_acc: float, min_acc: float | None) -> str:
    """Why the run is flagged: divergence seen in training, else a non-finite final loss, else not learning."""
    if not flag_reason and not math.isfinite(final_loss):
        flag_reason = "diverged: non-finite final validation loss"
    if not flag_reason and min_acc is not None and final_acc < min_acc:
        flag_reason = f"did not learn: final accuracy {final_acc:.4f} < {min_acc:.4f}"
    return flag_reason


def describe_run(
    meta: Mapping[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer, train_loader: Iterable, run_id: str
) -> dict[str, Any]:
    """The run's descriptive attributes: from ``meta`` (run_spec passes the zoo's), else read off the objects."""
    group = optimizer.param_groups[0]
    return {
        "task": meta.get("task", run_id),
        "family": meta.get("family", "custom"),
        "scenario": meta.get("scenario", "scratch"),
        "model": meta.get("model", type(model).__name__),
        "dataset": meta.get("dataset", "custom"),
        "optimizer": meta.get("optimizer", type(optimizer).__name__.lower()),
        "lr": float(meta.get("lr", group["lr"])),
        "weight_decay": float(meta.get("weight_decay", group.get("weight_decay", 0.0))),
        "batch_size": int(meta.get("batch_size", getattr(train_loader, "batch_size", 0) or 0)),
    }


def trace_run(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train_loader: Iterable,
    val_loader: Iterable,
    probe_inputs: Batch,
    loss_fn: Callable[..., torch.Tensor] | None = None,
    epochs: int = 1,
    out_path: str | Path | None = None,
    *,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    run_id: str = "run",
    record_every: int | None = None,
    snapshots: int = 40,
    k: int = 1024,
    seed: int = 0,
    device: str | torch.device = "cpu",
    final_val_loader: Iterable | None = None,
    num_classes: int | None = None,
    min_acc: float | None = None,
    blocks: Sequence[Block] | None = None,
    metadata: Mapping[str, Any] | None = None,
    probe_idx: Sequence[int] | None = None,
    keep_gram: bool = False,
    gram_budget_mb: float = 1024.0,
    progress: bool = True,
    progress_position: int = 0,
) -> TraceResult:
    """Train ``model`` and trace it: weight samples, stats, CKA curves and evals (docs/trace_format.md).

    ``record_every`` optimizer steps (default: round(total steps / ``snapshots``)) and after the last step,
    the ``k`` seeded sample positions of every layer and its statistics are recorded in one fused call
    (``smartfrz.ops.record_weights``), gradients in a second; the model is evaluated on ``val_loader``
    (keep it small) and the centred Gram of every layer's output on ``probe_inputs`` is buffered. At the
    end each snapshot's Grams are compared with the final model's (linear CKA), the model is evaluated
    on ``final_val_loader`` (default ``val_loader``), and the run is flagged if it diverged (non-finite
    loss or weights: training stops there) or did not learn (final accuracy below ``min_acc``, default
    1.5 x chance when ``num_classes`` is given). Seeds torch's global RNG with ``seed`` (dropout).
    ``scheduler`` (optional) is stepped after every optimizer step; the learning rate of the first param
    group is recorded at each snapshot. Written atomically to ``out_path`` when given. Data-loader items
    are ``(x, y)``; the model is called as ``model(x)`` and may return logits, a tuple, or an object with
    ``.logits``.
    """
    device = torch.device(device)
    loss_fn = loss_fn if loss_fn is not None else nn.CrossEntropyLoss()
    total_steps, record_every = snapshot_plan(train_loader, epochs, record_every, snapshots)
    if min_acc is None and num_classes:
        min_acc = MIN_ACC_RATIO / num_classes
    torch.manual_seed(seed)
    model.to(device).train()
    layers = find_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no layers with weights to trace")
    block = layer_blocks(model, [n for n, _ in layers], blocks)
    recorder = SnapshotRecorder(
        model,
        layers,
        optimizer,
        val_loader,
        loss_fn,
        probe_inputs,
        k=k,
        seed=seed,
        device=device,
        gram_budget_bytes=int(gram_budget_mb * 2**20),
    )
    start = time.perf_counter()
    bar = tqdm(total=total_steps, desc=run_id, position=progress_position, leave=False, disable=not progress)
    try:
        plan = (total_steps, record_every)
        step, flag_reason = _train(
            model, optimizer, scheduler, train_loader, loss_fn, device, epochs, plan, recorder, bar
        )
        bar.close()
        cka_pairs, gram, gram_sizes = recorder.cka_and_grams(keep_gram)
    finally:
        recorder.close()
    final_loader = final_val_loader if final_val_loader is not None else val_loader
    final_loss, final_acc = evaluate(model, final_loader, loss_fn, device)
    flag_reason = final_flag(flag_reason, final_loss, final_acc, min_acc)
    wall = time.perf_counter() - start
    meta = dict(metadata or {})
    config = {
        **meta,
        "epochs": epochs,
        "record_every": record_every,
        "k": k,
        "seed": seed,
        "total_steps": total_steps,
        "probe_size": recorder.n_probe,
        "min_acc": min_acc,
        "device": str(device),
    }
    attrs = {
        **describe_run(meta, model, optimizer, train_loader, run_id),
        "epochs": epochs,
        "seed": seed,
        "record_every": record_every,
        "k": k,
        "code_version": code_version(),
        "wall_time_s": wall,
        "final_val_acc": final_acc,
        "final_val_loss": final_loss,
        "status": STATUS_FLAGGED if flag_reason else STATUS_OK,
        "flag_reason": flag_reason,
        "config_json": json.dumps(config, sort_keys=True, default=str),
    }
    record = recorder.to_record(run_id, attrs, block, cka_pairs, gram, gram_sizes, probe_idx)
    path = write_run_file(out_path, record) if out_path is not None else None
    return TraceResult(
        run_id=run_id,
        path=path,
        status=attrs["status"],
        flag_reason=flag_reason,
        final_val_acc=final_acc,
        final_val_loss=final_loss,
        n_snapshots=len(recorder.steps),
        n_layers=len(layers),
        steps=step,
        wall_time_s=wall,
        record=record,
    )
