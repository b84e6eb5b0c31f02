"""Freeze probes: replay a traced run, freeze blocks when the label rule says so, compare final accuracy.

For a label rule (rule, tau), a block is converged from the first snapshot after which all its
layers stay labelled converged; the frozen part must be a prefix and the head never freezes, so
block b freezes at max(F_0..F_b). The probe replays the run's exact recipe (same task, data, seed
and optimizer; the replay is checked against the stored weight samples at the first freeze), freezes
blocks with the runtime's mechanism at those steps, trains to the end, and evaluates on the same
validation set as the trace's ``final_val_acc``, which is the unfrozen reference.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from smartfrz.blocks import discover_blocks, model_logits
from smartfrz.collection.grid import RunSpec
from smartfrz.collection.runner import build_run
from smartfrz.collection.snapshots import evaluate
from smartfrz.layers import find_layers
from smartfrz.predictor.labels import DEFAULT_HORIZON, LabelRule, block_freeze_snapshots, label_run
from smartfrz.runtime.mechanism import freeze_module
from smartfrz.traces import RunRecord, TraceSet
from smartfrz.utils.batches import to_device
from smartfrz.zoo.schedules import make_scheduler


@dataclass
class ScheduleProbe:
    """One replay of a run with a freezing schedule: its final accuracy and what it froze."""

    run_id: str
    seed: int
    frozen_blocks: int  # blocks frozen by the end (head excluded)
    n_blocks: int
    first_freeze_step: int | None
    frozen_param_step_fraction: float  # share of (parameter x step) updates skipped
    probe_acc: float
    replay_max_abs_err: float | None  # stored fp16 samples vs replayed weights at the first freeze (or the end)
    wall_time_s: float


@dataclass(kw_only=True)
class ProbeResult(ScheduleProbe):
    """One probe: a run replayed with the rule's freezing schedule, against the trace's unfrozen accuracy."""

    family: str
    rule: str
    tau: float
    reference_acc: float
    acc_loss_points: float  # (reference - probe) * 100; positive = freezing lost accuracy
    remaining: float | None = None  # the rule's weight-path cap (LabelRule.remaining)
    horizon: float = DEFAULT_HORIZON  # the horizon rule's look-ahead (LabelRule.horizon)
    acc_gate: float | None = None  # the rule's accuracy gate (LabelRule.acc_gate)
    norm_cap: float | None = None  # the rule's weight-norm cap (LabelRule.norm_cap)

    @property
    def rule_key(self) -> str:
        """The probed rule as ``RULE[@HORIZON]:TAU[:REMAINING][,norm=FRACTION][,acc=POINTS]``."""
        return LabelRule(self.rule, self.tau, self.horizon, self.remaining, self.acc_gate, self.norm_cap).key


def _spec(run: RunRecord) -> RunSpec:
    """The RunSpec stored in the run's config (runs traced outside the zoo cannot be replayed)."""
    spec = run.info.config.get("spec")
    if not spec:
        raise ValueError(f"run {run.run_id} has no zoo RunSpec in its config_json; it cannot be replayed")
    return RunSpec(**spec)


def rule_schedule(run: RunRecord, rule: LabelRule) -> np.ndarray:
    """The rule's freeze snapshot per freezable block of ``run`` (T = never)."""
    labels = label_run(run.cka, run.cka_pairs, run.steps, rule, run.samples, run.val_acc)
    return block_freeze_snapshots(labels, run.block, int(run.block.max()) + 1)


def run_probe(run: RunRecord, rule: LabelRule, progress: bool = True) -> ProbeResult:
    """Replay ``run`` freezing blocks on the rule's schedule; final accuracy against the trace's."""
    return probe_schedule(run, rule_schedule(run, rule), rule, progress)


def probe_schedule(run: RunRecord, freeze_at: np.ndarray, rule: LabelRule, progress: bool = True) -> ProbeResult:
    """Replay ``run`` freezing block b after snapshot ``freeze_at[b]`` (T = never); accuracy against the trace's."""
    probe = replay_schedule(run, freeze_at, progress=progress, desc=f"probe {run.run_id} tau={rule.tau:g}")
    reference = run.info.final_val_acc
    return ProbeResult(
        **asdict(probe),
        family=run.info.family,
        rule=rule.rule,
        tau=rule.tau,
        remaining=rule.remaining,
        horizon=rule.horizon,
        acc_gate=rule.acc_gate,
        norm_cap=rule.norm_cap,
        reference_acc=reference,
        acc_loss_points=(reference - probe.probe_acc) * 100.0,
    )


def replay_schedule(
    run: RunRecord,
    freeze_at: np.ndarray,
    seed: int | None = None,
    progress: bool = True,
    desc: str = "probe",
    train_unfrozen: bool = False,
) -> ScheduleProbe:
    """Replay ``run``'s recipe freezing block b after snapshot ``freeze_at[b]`` (T = never); its final accuracy.

    ``seed`` (default: the trace's) replays the recipe with another seed (data subset, init and shuffling
    all follow it). Only the trace's own seed has stored samples to check the replay against (at the first
    freeze, or at the end when nothing freezes) and a known unfrozen accuracy (``final_val_acc``, returned
    without training when nothing freezes unless ``train_unfrozen``: a replay on another machine or thread
    count can drift from the trace late in training).
    """
    start = time.perf_counter()
    spec = _spec(run)
    replayed = seed is None or seed == spec.seed
    spec = spec if replayed else dataclasses.replace(spec, seed=seed)
    task, data, model, optimizer = build_run(spec)
    blocks = discover_blocks(model)
    names = [n for n, _ in find_layers(model)]
    if names != run.layer_names:
        raise ValueError(f"run {run.run_id}: the rebuilt model's layers differ from the trace's")
    if len(freeze_at) != len(blocks) - 1:
        raise ValueError(f"run {run.run_id}: {len(freeze_at)} freeze times for {len(blocks) - 1} freezable blocks")
    n_t = len(run.steps)
    freeze_step = {b: int(run.steps[t]) for b, t in enumerate(freeze_at) if t < n_t}
    params = np.array([sum(p.numel() for p in blk.module.parameters()) for blk in blocks], dtype=np.float64)
    epochs = spec.epochs or task.epochs
    loader = DataLoader(
        data.train, batch_size=task.batch_size, shuffle=True, generator=torch.Generator().manual_seed(spec.seed)
    )
    total_steps = epochs * len(loader)
    scheduler = make_scheduler(optimizer, spec.schedule, total_steps, spec.warmup)
    skipped = sum(params[b] * (total_steps - s) for b, s in freeze_step.items())
    base = ScheduleProbe(
        run_id=run.run_id,
        seed=spec.seed,
        frozen_blocks=len(freeze_step),
        n_blocks=len(blocks),
        first_freeze_step=min(freeze_step.values()) if freeze_step else None,
        frozen_param_step_fraction=float(skipped / (params.sum() * total_steps)),
        probe_acc=run.info.final_val_acc,
        replay_max_abs_err=None,
        wall_time_s=0.0,
    )
    if not freeze_step and replayed and not train_unfrozen:  # nothing freezes: the probe is the traced run
        base.wall_time_s = time.perf_counter() - start
        return base
    device = torch.device(spec.device)
    loss_fn = torch.nn.CrossEntropyLoss()
    torch.manual_seed(spec.seed)
    model.to(device).train()
    weights = [m.weight for _, m in find_layers(model)]
    idx = torch.as_tensor(run.sample_idx)
    check_at = min(freeze_step.values(), default=int(run.steps[-1])) if replayed else None
    step = 0
    bar = tqdm(total=total_steps, desc=desc, leave=False, disable=not progress)
    for _ in range(epochs):
        for x, y in loader:
            x, y = to_device(x, device), to_device(y, device)
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model_logits(model(x)), y).backward()
            optimizer.step()
            scheduler.step()
            step += 1
            bar.update(1)
            if step == check_at:
                t = int(np.searchsorted(run.steps, step))
                with torch.no_grad():
                    now = torch.stack([w.detach().flatten().cpu()[i] for w, i in zip(weights, idx, strict=True)])
                base.replay_max_abs_err = float((now - torch.from_numpy(run.samples[t])).abs().max())
            for b in (b for b, s in freeze_step.items() if s == step):
                freeze_module(blocks[b].module, [optimizer], set())
    bar.close()
    val_loader = DataLoader(data.val, batch_size=max(task.batch_size, 256))
    _, base.probe_acc = evaluate(model, val_loader, loss_fn, device)
    base.wall_time_s = time.perf_counter() - start
    return base


def run_probes(
    traces: TraceSet, run_ids: Sequence[str], rules: Sequence[LabelRule], progress: bool = True
) -> list[ProbeResult]:
    """Every (run, rule) probe, in order."""
    results = []
    for rid in tqdm(run_ids, desc="probe runs", unit="run", disable=not progress):
        run = traces.load_run(rid)
        results += [run_probe(run, rule, progress) for rule in rules]
    return results


def summarise_probes(results: Sequence[ProbeResult]) -> dict[str, Any]:
    """Per tau: probes, mean / worst / std accuracy loss (points) and mean frozen share."""
    out: dict[str, Any] = {"probes": [asdict(r) for r in results], "per_tau": {}}
    for key in sorted({r.rule_key for r in results}):
        rs = [r for r in results if r.rule_key == key]
        loss = np.array([r.acc_loss_points for r in rs])
        out["per_tau"][key] = {
            "n": len(rs),
            "mean_loss_points": float(loss.mean()),
            "worst_loss_points": float(loss.max()),
            "std_loss_points": float(loss.std(ddof=1)) if len(rs) > 1 else None,
            "mean_frozen_param_step_fraction": float(np.mean([r.frozen_param_step_fraction for r in rs])),
            "runs_with_freezing": sum(r.frozen_blocks > 0 for r in rs),
        }
    return out
