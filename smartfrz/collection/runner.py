"""Run one RunSpec from the zoo: build its exact start (data, seeded model, optimizer) and trace it."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader, Subset, default_collate

from smartfrz.collection.grid import RunSpec
from smartfrz.collection.tracer import TraceResult, trace_run
from smartfrz.utils.seed import seed_everything
from smartfrz.zoo import DataOptions, Task, TaskData, get_task, make_optimizer
from smartfrz.zoo.schedules import make_scheduler


def build_run(spec: RunSpec) -> tuple[Task, TaskData, torch.nn.Module, torch.optim.Optimizer]:
    """The task, its data, a freshly seeded model and its optimizer: the exact start of a run.

    Tracing and freeze probes both start here, so a probe replays its traced run bit for bit.
    """
    task = get_task(spec.task)
    seed_everything(spec.seed)
    opts = DataOptions(root=spec.data_root, max_train=spec.max_train, max_val=spec.max_val, seed=spec.seed)
    data = task.load_data(opts)
    if task.prepare is not None:
        task.prepare(opts)  # e.g. pretrain the source model from the same data root
    seed_everything(spec.seed)
    model = task.build_model(data.num_classes)
    return task, data, model, make_optimizer(task, model.parameters(), spec.lr, spec.optimizer)


def run_metadata(spec: RunSpec, task: Task, data: TaskData, model: torch.nn.Module) -> dict[str, object]:
    """What the trace records about a zoo run beyond trace_run's own settings (its attributes and config)."""
    return {
        "task": task.name,
        "family": task.family,
        "scenario": task.scenario,
        "model": type(model).__name__,
        "dataset": task.dataset,
        "optimizer": spec.optimizer,
        "lr": spec.lr,
        "schedule": spec.schedule,
        "warmup": spec.warmup,
        "weight_decay": task.weight_decay,
        "batch_size": task.batch_size,
        "spec": spec.to_json(),
        "n_train": len(data.train),
        "n_val": len(data.val),
    }


def probe_and_val_subsets(spec: RunSpec, data: TaskData) -> tuple[list[int], Subset]:
    """The seeded probe-batch indices and the small validation subset evaluated at every snapshot."""
    order = torch.randperm(len(data.val), generator=torch.Generator().manual_seed(spec.seed)).tolist()
    probe_idx = sorted(order[: min(spec.probe_size, len(order))])
    return probe_idx, Subset(data.val, sorted(order[: min(spec.val_snapshot_size, len(order))]))


def run_spec(spec: RunSpec, out_path: Path | None, progress: bool = True, position: int = 0) -> TraceResult:
    """Load the task's data, build its model, and trace one run into ``out_path``."""
    task, data, model, optimizer = build_run(spec)
    probe_idx, val_small = probe_and_val_subsets(spec, data)
    probe_x = default_collate([data.val[i][0] for i in probe_idx])
    eval_bs = max(task.batch_size, 256)
    train_loader = DataLoader(
        data.train,
        batch_size=task.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(spec.seed),
    )
    epochs = spec.epochs or task.epochs
    return trace_run(
        model,
        optimizer,
        train_loader,
        DataLoader(val_small, batch_size=eval_bs),
        probe_x,
        epochs=epochs,
        scheduler=make_scheduler(optimizer, spec.schedule, epochs * len(train_loader), spec.warmup),
        out_path=out_path,
        run_id=spec.run_id,
        record_every=spec.record_every,
        snapshots=spec.snapshots,
        k=spec.k,
        seed=spec.seed,
        device=spec.device,
        final_val_loader=DataLoader(data.val, batch_size=eval_bs),
        num_classes=data.num_classes,
        metadata=run_metadata(spec, task, data, model),
        probe_idx=probe_idx,
        keep_gram=spec.keep_gram,
        progress=progress,
        progress_position=position,
    )
