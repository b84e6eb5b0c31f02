"""Run the benchmark grid: task x seed x policy, interleaved per seed, plus the oracle's probes."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from smartfrz.bench.oracle import DEFAULT_TAUS, DEFAULT_TOLERANCE_POINTS, candidate_schedules, loss_points
from smartfrz.bench.policies import Cadence, PolicySpec, ScheduledFreeze, build_policy
from smartfrz.bench.train import RunConfig, RunResult, materialise, steps_for, train_run
from smartfrz.runtime import CacheConfig, NoFreeze
from smartfrz.zoo import DataOptions, get_task

WARMUP_STEPS = 5  # an untimed run first, so one-time start-up costs do not land on the first timed policy


@dataclass
class BenchConfig:
    """What to run and how large."""

    tasks: list[str]
    seeds: list[int]
    policies: list[PolicySpec]
    predictor: str | None
    snapshots: int = 40  # SmartFRZ snapshots per run: the cadence of the default predictor's training traces
    autofreeze_stages: int = 10
    oracle: bool = True
    oracle_taus: tuple[float, ...] = DEFAULT_TAUS
    oracle_tolerance: float = DEFAULT_TOLERANCE_POINTS
    oracle_snapshots: int = 20
    max_train: int | None = None
    max_val: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
    cache_dtype: str = "float16"
    progress: bool = True
    recipes: tuple[tuple[str, float], ...] = (("constant", 0.0),)  # (lr schedule, warm-up fraction) per task

    def __post_init__(self) -> None:
        """Reject grids that cannot give paired results."""
        if not self.tasks or not self.seeds:
            raise ValueError("the benchmark needs at least one task and one seed")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds must be distinct, got {self.seeds}")
        names = [p.name for p in self.policies]
        if "none" not in names:
            raise ValueError("the 'none' policy is required: every difference is taken against it, paired by seed")
        if len(set(names)) != len(names):
            raise ValueError(f"policies must be distinct, got {names}")
        if self.oracle and self.oracle_snapshots < 2:
            raise ValueError("the oracle needs at least 2 CKA snapshots")

    def to_json(self) -> dict[str, Any]:
        """Plain dict (policies by name)."""
        out = asdict(self)
        out["policies"] = [p.name for p in self.policies]
        return out


def machine() -> dict[str, Any]:
    """Where the numbers were measured."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
        "device": "cpu",
    }


def interleaved(policies: Sequence[PolicySpec], rotation: int) -> list[PolicySpec]:
    """The policy order for one seed: rotated, so no policy always runs first (warm caches, turbo)."""
    r = rotation % len(policies)
    return list(policies[r:]) + list(policies[:r])


def _task_runs(
    cfg: BenchConfig, name: str, recipe: tuple[str, float], predictor: Any, bar: tqdm
) -> tuple[list[RunResult], list[dict[str, Any]]]:
    """All policies and oracle probes of one task under one learning-rate recipe, seed by seed."""
    task = get_task(name)
    data = task.load_data(DataOptions(max_train=cfg.max_train, max_val=cfg.max_val, seed=0))
    x_train, y_train = materialise(data.train)
    x_val, y_val = materialise(data.val)
    tensors = (x_train, y_train, x_val, y_val)
    cache = CacheConfig(dtype=cfg.cache_dtype, location="device", budget_mb=4096.0)
    base = RunConfig(
        cfg.epochs or task.epochs,
        cfg.batch_size or task.batch_size,
        task.lrs[len(task.lrs) // 2],
        schedule=recipe[0],
        warmup=recipe[1],
    )
    label = name + base.recipe
    total = steps_for(len(y_train), base)
    cadence = Cadence.for_run(total, cfg.snapshots, cfg.autofreeze_stages)
    runs: list[RunResult] = []
    oracles: list[dict[str, Any]] = []
    bar.set_postfix_str(f"{name} warm-up")
    warm = replace(base, cache=cache, max_steps=WARMUP_STEPS)
    train_run(task, tensors, data.num_classes, cfg.seeds[0], "warm-up", lambda steps: NoFreeze(), warm)
    for rotation, seed in enumerate(cfg.seeds):
        by_policy: dict[str, RunResult] = {}
        for spec in interleaved(cfg.policies, rotation):
            bar.set_postfix_str(f"{label} seed {seed} {spec.name}")
            run_cfg = replace(
                base,
                cache=cache if spec.cache else None,
                oracle_snapshots=cfg.oracle_snapshots if (spec.base == "none" and cfg.oracle) else 0,
            )
            result = train_run(
                task,
                tensors,
                data.num_classes,
                seed,
                spec.name,
                lambda steps, spec=spec, seed=seed: build_policy(spec, steps, cadence, predictor, seed),
                run_cfg,
                bar.update,
            )
            by_policy[spec.name] = result
            runs.append(result)
        if cfg.oracle:
            oracles.append(_oracle(cfg, task, tensors, data.num_classes, seed, by_policy["none"], base, cache, bar))
    return runs, oracles


def _oracle(
    cfg: BenchConfig,
    task: Any,
    tensors: Any,
    num_classes: int,
    seed: int,
    reference: RunResult,
    base: RunConfig,
    cache: CacheConfig,
    bar: tqdm,
) -> dict[str, Any]:
    """Probe the CKA-ladder schedules from the earliest up; keep the first within the tolerance."""
    assert reference.block_cka is not None
    candidates = candidate_schedules(
        np.asarray(reference.block_cka), reference.snapshot_steps, reference.total_steps, cfg.oracle_taus
    )
    probes = []
    chosen = None
    for tau, schedule in candidates:
        bar.set_postfix_str(f"{task.name}{base.recipe} seed {seed} oracle tau={tau:g}")
        bar.total += reference.total_steps
        bar.refresh()
        run_cfg = replace(base, cache=cache, oracle_snapshots=0)
        result = train_run(
            task,
            tensors,
            num_classes,
            seed,
            f"oracle(tau={tau:g})",
            lambda steps, schedule=schedule: ScheduledFreeze(schedule),
            run_cfg,
            bar.update,
        )
        lost = loss_points(reference.val_acc, result.val_acc)
        probes.append({"tau": tau, "schedule": schedule, "loss_points": lost, "run": result.to_json()})
        if lost <= cfg.oracle_tolerance:
            chosen = len(probes) - 1
            break
    return {
        "task": task.name + base.recipe,
        "seed": seed,
        "tolerance_points": cfg.oracle_tolerance,
        "taus": list(cfg.oracle_taus),
        "probes": probes,
        "chosen": chosen,  # index into probes; None: no schedule on the ladder kept accuracy (oracle = no freezing)
    }


def expected_steps(cfg: BenchConfig) -> int:
    """Optimizer steps of the policy runs (the progress bar's total; oracle probes extend it)."""
    total = 0
    for name in cfg.tasks:
        task = get_task(name)
        data = task.load_data(DataOptions(max_train=cfg.max_train, max_val=cfg.max_val, seed=0))
        steps = steps_for(len(data.train), RunConfig(cfg.epochs or task.epochs, cfg.batch_size or task.batch_size, 1.0))
        total += steps * len(cfg.seeds) * len(cfg.policies) * len(cfg.recipes)
    return total


def run_benchmark(
    cfg: BenchConfig, predictor: Any, on_task: Callable[[dict[str, Any]], None] | None = None
) -> dict[str, Any]:
    """Run every task, seed and policy (and the oracle); the raw results as a JSON-able dict.

    ``on_task`` receives the results so far after each task (e.g. to write partial outputs).
    """
    raw: dict[str, Any] = {"config": cfg.to_json(), "machine": machine(), "runs": [], "oracle": []}
    with tqdm(total=expected_steps(cfg), unit="step", desc="bench", disable=not cfg.progress) as bar:
        for done, name in enumerate(cfg.tasks, start=1):
            for recipe in cfg.recipes:
                task_runs, task_oracles = _task_runs(cfg, name, recipe, predictor, bar)
                raw["runs"] += [r.to_json() for r in task_runs]
                raw["oracle"] += task_oracles
            if on_task is not None:
                on_task({**raw, "config": {**raw["config"], "tasks": cfg.tasks[:done]}})
    return raw
