"""Trace one training run: train, record weight samples and stats, probe-batch Grams, evals -> RunRecord."""

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

from smartfrz import ops
from smartfrz._version import code_version
from smartfrz.blocks import Block, discover_blocks, layer_block_index, model_logits
from smartfrz.cadence import record_every_for
from smartfrz.collection.cka import GramStore, LayerGramCapture, cka_matrix
from smartfrz.layers import draw_sample_indices, find_layers
from smartfrz.traces.schema import STAT_NAMES, STATUS_FLAGGED, STATUS_OK, RunRecord
from smartfrz.traces.writer import write_run_file
from smartfrz.utils.batches import Batch, to_device
from smartfrz.utils.batches import batch_len as _batch_len
from smartfrz.utils.modes import eval_mode

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


def evaluate(
    model: nn.Module, loader: Iterable, loss_fn: Callable[..., torch.Tensor], device: torch.device
) -> tuple[float, float]:
    """Mean loss and accuracy over ``loader`` in eval mode (restores every submodule's previous mode)."""
    total_loss, correct, count = 0.0, 0, 0
    with eval_mode(model), torch.no_grad():
        for x, y in loader:
            x, y = to_device(x, device), to_device(y, device)
            logits = model_logits(model(x))
            total_loss += float(loss_fn(logits, y)) * len(y)
            correct += int((logits.argmax(dim=-1) == y).sum())
            count += len(y)
    if count == 0:
        raise ValueError("the validation loader yielded no samples")
    return total_loss / count, correct / count


def layer_blocks(model: nn.Module, names: Sequence[str], blocks: Sequence[Block] | None) -> np.ndarray:
    """Block index of every layer; -1 for all (with a warning) when the model's blocks cannot be found."""
    try:
        found = list(blocks) if blocks is not None else discover_blocks(model)
        mapping = layer_block_index(model, found)
    except (ValueError, TypeError) as err:
        warnings.warn(f"block discovery failed, storing block=-1 for every layer: {err}", stacklevel=3)
        return np.full(len(names), -1, dtype=np.int32)
    return np.array([mapping[n] for n in names], dtype=np.int32)


class _Recorder:
    """Snapshots of weights (one fused op), gradient norms (one fused op), evals and Grams."""

    def __init__(self, layers: Sequence[tuple[str, nn.Module]], k: int, seed: int, device: torch.device) -> None:
        self.weights = [m.weight for _, m in layers]
        self.sample_idx = draw_sample_indices([w.numel() for w in self.weights], k, seed)
        self._idx_dev = self.sample_idx.to(device)
        self.prev: torch.Tensor | None = None
        self.steps: list[int] = []
        self.samples: list[np.ndarray] = []
        self.stats: list[np.ndarray] = []
        self.train_loss: list[float] = []
        self.val_loss: list[float] = []
        self.val_acc: list[float] = []
        self.lr: list[float] = []

    def record(self, step: int, train_loss: float) -> np.ndarray:
        """Record weights and gradients now; returns the per-layer nonfinite weight counts."""
        with torch.no_grad():
            samples, stats = ops.record_weights([w.detach() for w in self.weights], self._idx_dev, self.prev)
            grads = [w.grad if w.grad is not None else torch.zeros_like(w) for w in self.weights]
            _, grad_stats = ops.record_weights(grads, self._idx_dev, None)
        self.prev = samples
        row = torch.cat([stats, grad_stats[:, :1]], dim=1).cpu().numpy()
        self.steps.append(step)
        with np.errstate(over="ignore"):  # |w| > 65504 becomes inf in fp16; stats keep the fp32 truth
            self.samples.append(samples.cpu().numpy().astype(np.float16))
        self.stats.append(row)
        self.train_loss.append(train_loss)
        return row[:, STAT_NAMES.index("nonfinite")]


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
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    device = torch.device(device)
    loss_fn = loss_fn if loss_fn is not None else nn.CrossEntropyLoss()
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
    if min_acc is None and num_classes:
        min_acc = MIN_ACC_RATIO / num_classes
    torch.manual_seed(seed)
    model.to(device).train()
    layers = find_layers(model)
    if not layers:
        raise ValueError(f"{type(model).__name__} has no layers with weights to trace")
    names = [n for n, _ in layers]
    block = layer_blocks(model, names, blocks)
    rec = _Recorder(layers, k, seed, device)
    capture = LayerGramCapture(model, [m for _, m in layers])
    probe = to_device(probe_inputs, device)
    n_probe = _batch_len(probe_inputs)
    grams = GramStore(int(gram_budget_mb * 2**20))
    flag_reason = ""
    start = time.perf_counter()
    step, loss_sum, loss_count = 0, 0.0, 0

    def snapshot() -> str:
        nonfinite = rec.record(step, loss_sum / max(1, loss_count))
        rec.lr.append(float(optimizer.param_groups[0]["lr"]))
        vl, va = evaluate(model, val_loader, loss_fn, device)
        rec.val_loss.append(vl)
        rec.val_acc.append(va)
        grams.append(capture(probe, n_probe))
        bad = np.flatnonzero(nonfinite > 0)
        return f"diverged: non-finite weights in layer {names[bad[0]]!r} at step {step}" if bad.size else ""

    bar = tqdm(total=total_steps, desc=run_id, position=progress_position, leave=False, disable=not progress)
    try:
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
                    flag_reason = f"diverged: non-finite training loss at step {step}"
                    snapshot()
                    break
                loss_sum, loss_count = loss_sum + value, loss_count + 1
                if step % record_every == 0 or step == total_steps:
                    flag_reason = snapshot()
                    loss_sum, loss_count = 0.0, 0
                    if flag_reason:
                        break
            if flag_reason:
                break
        bar.close()
        cka_pairs = cka_matrix(grams)
        cka = np.ascontiguousarray(cka_pairs[:, -1])
        gram_all = np.stack([grams.flat(t) for t in range(len(grams))]) if keep_gram else None
        gram_sizes = np.array(grams.sizes, dtype=np.int64)
    finally:
        grams.close()
    final_loader = final_val_loader if final_val_loader is not None else val_loader
    final_loss, final_acc = evaluate(model, final_loader, loss_fn, device)
    if not flag_reason and not math.isfinite(final_loss):
        flag_reason = "diverged: non-finite final validation loss"
    if not flag_reason and min_acc is not None and final_acc < min_acc:
        flag_reason = f"did not learn: final accuracy {final_acc:.4f} < {min_acc:.4f}"
    wall = time.perf_counter() - start
    meta = dict(metadata or {})
    group = optimizer.param_groups[0]
    config = {
        **meta,
        "epochs": epochs,
        "record_every": record_every,
        "k": k,
        "seed": seed,
        "total_steps": total_steps,
        "probe_size": n_probe,
        "min_acc": min_acc,
        "device": str(device),
    }
    attrs = {
        "task": meta.get("task", run_id),
        "family": meta.get("family", "custom"),
        "scenario": meta.get("scenario", "scratch"),
        "model": meta.get("model", type(model).__name__),
        "dataset": meta.get("dataset", "custom"),
        "optimizer": meta.get("optimizer", type(optimizer).__name__.lower()),
        "lr": float(meta.get("lr", group["lr"])),
        "weight_decay": float(meta.get("weight_decay", group.get("weight_decay", 0.0))),
        "batch_size": int(meta.get("batch_size", getattr(train_loader, "batch_size", 0) or 0)),
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
    n_layers = len(layers)
    record = RunRecord(
        run_id=run_id,
        attrs=attrs,
        layer_names=names,
        layer_kinds=[type(m).__name__ for _, m in layers],
        numel=np.array([m.weight.numel() for _, m in layers], dtype=np.int64),
        block=block,
        depth=np.linspace(0.0, 1.0, n_layers, dtype=np.float32) if n_layers > 1 else np.zeros(1, np.float32),
        sample_idx=rec.sample_idx.numpy(),
        steps=np.array(rec.steps, dtype=np.int64),
        samples=np.stack(rec.samples),
        stats=np.stack(rec.stats).astype(np.float32),
        cka=cka,
        train_loss=np.array(rec.train_loss, dtype=np.float32),
        val_loss=np.array(rec.val_loss, dtype=np.float32),
        val_acc=np.array(rec.val_acc, dtype=np.float32),
        probe_idx=np.asarray(probe_idx, dtype=np.int64) if probe_idx is not None else None,
        gram=gram_all,
        gram_sizes=gram_sizes,
        lr=np.array(rec.lr, dtype=np.float32),
        cka_pairs=cka_pairs,
    )
    path = write_run_file(out_path, record) if out_path is not None else None
    return TraceResult(
        run_id=run_id,
        path=path,
        status=attrs["status"],
        flag_reason=flag_reason,
        final_val_acc=final_acc,
        final_val_loss=final_loss,
        n_snapshots=len(rec.steps),
        n_layers=n_layers,
        steps=step,
        wall_time_s=wall,
        record=record,
    )
