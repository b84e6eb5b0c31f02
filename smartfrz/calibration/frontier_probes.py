"""The freeze frontier of a traced run, measured with freeze probes paired per seed and cached.

A schedule's loss is the mean over seeds of (unfrozen accuracy - frozen accuracy) x 100, each seed
paired with its own unfrozen run: a replay of the recipe under that seed with nothing frozen. The trace's
own seed is replayed too rather than paired with the trace's accuracy: a replay on another machine or
thread count can drift from the trace late in training (checked against the stored samples at the end).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from smartfrz.calibration.frontier import Schedule, search_frontier
from smartfrz.calibration.probe_cache import ProbeCache, probe_key
from smartfrz.calibration.probes import replay_schedule
from smartfrz.traces import RunRecord


@dataclass
class RunFrontier:
    """One run's frontier, how it was found, and what freezing at it saves."""

    run_id: str
    family: str
    task: str
    seeds: list[int]
    tol: float
    frontier: list[int]  # snapshot index per freezable block (T = never)
    frontier_steps: list[int | None]  # the step of that snapshot (None = never)
    frontier_fraction: list[float | None]  # that step over the run's steps
    n_snapshots: int
    frozen_share: float  # traced parameter x step share skipped when freezing at the frontier
    trace_acc: float  # the trace's final accuracy (its own seed, as traced)
    reference_acc: dict[str, float]  # unfrozen final accuracy per seed, replayed here
    trials: list[dict[str, Any]]  # every schedule tried: block, at, schedule, loss_points, safe, acc per seed
    probes: int  # (schedule, seed) replays the search read, unfrozen references included
    new_probes: int  # of which were run now (the rest came from the cache)
    replay_max_abs_err: float | None  # worst check of the trace seed's replays (unfrozen included) vs its samples
    probe_time_s: float  # the training time of every probe it read, cached ones included
    wall_time_s: float  # this search's own time (short when the cache held the probes)


def frozen_share(run: RunRecord, freeze_at: Sequence[int]) -> float:
    """Share of traced (parameter x step) updates skipped when block b freezes after snapshot freeze_at[b]."""
    total = float(run.steps[-1])
    ends = np.append(run.steps, run.steps[-1]).astype(np.float64)  # index T (never) skips nothing
    skipped = sum(run.numel[run.block == b].sum() * (total - ends[t]) for b, t in enumerate(freeze_at))
    return float(skipped / (run.numel.sum() * total))


def seeds_for(run: RunRecord, n_seeds: int) -> list[int]:
    """The trace's seed and the ``n_seeds - 1`` after it."""
    return list(range(run.info.seed, run.info.seed + n_seeds))


def _accuracy(run: RunRecord, cache: ProbeCache, progress: bool) -> Callable[[int, Schedule], float]:
    """Final accuracy of ``run`` replayed with a seed and a schedule, through the cache."""

    def acc(seed: int, schedule: Schedule) -> float:
        def probe() -> dict[str, Any]:
            desc = f"probe {run.run_id} s{seed} {','.join(map(str, schedule))}"
            return asdict(replay_schedule(run, np.asarray(schedule), seed, progress, desc, train_unfrozen=True))

        return float(cache.get(run.run_id, seed, schedule, probe)["probe_acc"])

    return acc


def measure_frontier(
    run: RunRecord, n_seeds: int = 1, tol: float = 0.2, cache: ProbeCache | None = None, progress: bool = True
) -> RunFrontier:
    """Search ``run``'s frontier with probes (mean loss over ``n_seeds`` seeds within ``tol`` points)."""
    start = time.perf_counter()
    cache = cache if cache is not None else ProbeCache()
    new_before = cache.new
    seeds = seeds_for(run, n_seeds)
    n_t, n_free = len(run.steps), int(run.block.max())
    never: Schedule = (n_t,) * n_free
    acc = _accuracy(run, cache, progress)
    reference = {s: acc(s, never) for s in seeds}

    def loss_points(schedule: Schedule) -> float:
        return float(np.mean([(reference[s] - acc(s, schedule)) * 100.0 for s in seeds]))

    found = search_frontier(n_free, n_t, loss_points, tol)
    trials = [{**asdict(t), "acc": {str(s): acc(s, t.schedule) for s in seeds}} for t in found.trials]
    schedules = [t.schedule for t in found.trials]
    read = [cache.entries[probe_key(run.run_id, seed, s)] for seed in seeds for s in (never, *schedules)]
    errs = [r["replay_max_abs_err"] for r in read if r["seed"] == seeds[0] and r["replay_max_abs_err"] is not None]
    steps = [int(run.steps[t]) if t < n_t else None for t in found.blocks]
    return RunFrontier(
        run_id=run.run_id,
        family=run.info.family,
        task=run.info.task,
        seeds=seeds,
        tol=tol,
        frontier=found.blocks,
        frontier_steps=steps,
        frontier_fraction=[s / float(run.steps[-1]) if s is not None else None for s in steps],
        n_snapshots=n_t,
        frozen_share=frozen_share(run, found.blocks),
        trace_acc=run.info.final_val_acc,
        reference_acc={str(s): a for s, a in reference.items()},
        trials=trials,
        probes=len(read),
        new_probes=cache.new - new_before,
        replay_max_abs_err=max(errs) if errs else None,
        probe_time_s=sum(r["wall_time_s"] for r in read),
        wall_time_s=time.perf_counter() - start,
    )
