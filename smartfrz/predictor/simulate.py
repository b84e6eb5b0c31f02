"""Policy simulator: replay the runtime's freeze decisions on traced runs and score them against a frontier.

For every run, the runtime's rule is applied to the predictor's P(converged) of each layer at each
recording: a block freezes at the first stage where all its layers score >= threshold and every earlier
block is frozen (the head never). The frontier is the earliest safe freeze snapshot per block: measured
with freeze probes where given, else from a probe-validated label rule. Savings are parameter x time
shares (a frozen block skips its backward and optimizer update from the freeze on); FLOPs per block are
not in the traces, so parameters are the weight.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from smartfrz.cadence import freezeout_steps
from smartfrz.predictor.dataset import RunLayout, WindowSet
from smartfrz.predictor.labels import block_freeze_snapshots


@dataclass
class SimulatedRun:
    """One run replayed: when each block froze under the predictor and at the frontier."""

    run_id: str
    family: str
    predicted: list[int]  # freeze snapshot per freezable block (T = never)
    frontier: list[int]
    saved: float  # parameter-time share frozen by the predictor
    frontier_saved: float  # the same at the frontier
    early: list[dict[str, float]]  # blocks frozen before the frontier: block, at, frontier (fractions of training)
    early_saved: float = 0.0  # of ``saved``, the share frozen before the frontier

    @property
    def net_saved(self) -> float:
        """Savings taken at or after the frontier minus those taken before it (the rule choice's measure)."""
        return self.saved - 2.0 * self.early_saved


def _staircase(
    scores: np.ndarray, layout: RunLayout, threshold: float, backstop: np.ndarray | None = None
) -> np.ndarray:
    """Freeze snapshot per block from P [T, L] (NaN where not judged yet), as the runtime walks the prefix.

    At each stage t the prefix first takes every block the ``backstop`` snapshots (per block) have
    reached, then grows over every next block whose layers all score >= threshold now (a layer-less
    block follows its predecessor); a frozen block never thaws.
    """
    n_t = scores.shape[0]
    n_free = int(layout.block.max())  # the head (last block) never freezes
    ok = ~np.isnan(scores) & (np.nan_to_num(scores, nan=0.0) >= threshold)  # unjudged layers never pass
    out = np.full(n_free, n_t, dtype=np.int64)
    frozen = 0
    for t in range(n_t):
        while backstop is not None and frozen < n_free and backstop[frozen] <= t:
            out[frozen] = t
            frozen += 1
        while frozen < n_free and ok[t, layout.block == frozen].all():
            out[frozen] = t
            frozen += 1
    return out


def _first_stays(labels: np.ndarray, layout: RunLayout) -> np.ndarray:
    """Frontier snapshot per block from labels [T, L]."""
    return block_freeze_snapshots(labels, layout.block, int(layout.block.max()) + 1)


def _saved(freeze_at: np.ndarray, layout: RunLayout) -> float:
    """Share of parameter x snapshot-intervals skipped when block b freezes after snapshot freeze_at[b]."""
    n_t = layout.n_snapshots
    params = np.array([layout.numel[layout.block == b].sum() for b in range(len(freeze_at))], dtype=np.float64)
    frozen = np.clip(n_t - 1 - freeze_at, 0, None) / n_t
    return float((params * frozen).sum() / layout.numel.sum())


def _grid(data: WindowSet, rows: np.ndarray, values: np.ndarray, n_t: int, n_l: int, fill: float) -> np.ndarray:
    """Scatter per-example ``values`` of ``rows`` into a [T, L] array."""
    out = np.full((n_t, n_l), fill, dtype=np.float64)
    out[data.t[rows], data.layer[rows]] = values
    return out


def backstop_snapshots(n_blocks: int, n_snapshots: int, t0: float) -> np.ndarray:
    """Snapshot per block at which FreezeOut with ``t0`` has frozen it, snapshot t ending (t + 1) / T of training."""
    return np.array(freezeout_steps(n_blocks, t0, n_snapshots), dtype=np.int64) - 1


def simulate(
    data: WindowSet,
    probs: np.ndarray,
    threshold: float,
    frontiers: Mapping[str, Sequence[int]] | None = None,
    backstop: float | None = None,
) -> list[SimulatedRun]:
    """Replay every run of ``data`` with these probabilities against each run's frontier.

    The frontier of a run is ``frontiers[run_id]`` where given (probe-measured: `smartfrz probes
    frontier`), else the label rule's, from ``data.y``. A freeze counts as early when it comes before the
    block's frontier snapshot (by any amount). With ``backstop`` (FreezeOut's t0), no block freezes later
    than the first snapshot at or after that schedule's step, as in the runtime's SmartFRZ policy (which
    freezes at the step itself: the simulator can be up to one snapshot later).
    """
    out = []
    for rid in sorted(set(data.run_id.tolist())):
        rows = np.flatnonzero(data.run_id == rid)
        lay = data.layouts[rid]
        n_t, n_l = lay.n_snapshots, len(lay.block)
        cap = None if backstop is None else backstop_snapshots(int(lay.block.max()), n_t, backstop)
        pred = _staircase(_grid(data, rows, probs[rows], n_t, n_l, np.nan), lay, threshold, cap)
        if frontiers is not None and rid in frontiers:
            front = np.asarray(frontiers[rid], dtype=np.int64)
        else:
            front = _first_stays(_grid(data, rows, data.y[rows], n_t, n_l, 0.0) > 0, lay)
        early = [
            {"block": b, "at": (p + 1) / n_t, "frontier": (f + 1) / n_t}
            for b, (p, f) in enumerate(zip(pred, front, strict=True))
            if p < f
        ]
        family = str(data.family[rows[0]])
        saved, front_saved = _saved(pred, lay), _saved(front, lay)
        early_saved = saved - _saved(np.maximum(pred, front), lay)
        out.append(SimulatedRun(rid, family, pred.tolist(), front.tolist(), saved, front_saved, early, early_saved))
    return out


def summarise(runs: list[SimulatedRun]) -> dict[str, object]:
    """Per family and overall: savings, frontier savings, share captured, runs and blocks frozen early."""

    def agg(rs: list[SimulatedRun]) -> dict[str, float]:
        saved = float(np.mean([r.saved for r in rs]))
        front = float(np.mean([r.frontier_saved for r in rs]))
        blocks = sum(len(r.predicted) for r in rs)
        return {
            "runs": len(rs),
            "saved": saved,
            "frontier_saved": front,
            "captured": saved / front if front > 0 else float("nan"),
            "early_saved": float(np.mean([r.early_saved for r in rs])),
            "net_saved": float(np.mean([r.net_saved for r in rs])),
            "early_blocks": sum(len(r.early) for r in rs),
            "early_block_share": sum(len(r.early) for r in rs) / max(1, blocks),
            "runs_with_early": sum(bool(r.early) for r in rs),
            "runs_freezing_nothing": sum(r.saved == 0 for r in rs),
        }

    fams = sorted({r.family for r in runs})
    return {
        "all": agg(runs),
        "per_family": {f: agg([r for r in runs if r.family == f]) for f in fams},
        "runs": [asdict(r) for r in runs],
    }


def choose_threshold_by_savings(
    data: WindowSet,
    probs: np.ndarray,
    max_early_share: float = 0.1,
    grid: np.ndarray | None = None,
) -> tuple[float, dict[str, object]]:
    """The lowest threshold whose replay freezes at most ``max_early_share`` of blocks before the frontier.

    A false freeze costs accuracy and a missed one only time, so the early share is the constraint and
    savings the objective (they grow as the threshold falls). Falls back to the strictest grid value.
    """
    grid = np.round(np.arange(0.5, 0.991, 0.01), 2) if grid is None else grid
    best: tuple[float, dict[str, object]] | None = None
    for thr in sorted((float(t) for t in grid), reverse=True):  # strictest first: it is the fallback
        summary = summarise(simulate(data, probs, thr))
        too_early = summary["all"]["early_block_share"] > max_early_share  # type: ignore[index]
        if best is None or not too_early:
            best = (thr, summary)
        if too_early:
            break
    assert best is not None, "the threshold grid is empty"
    return best


def load_frontiers(paths: Sequence[str | os.PathLike[str]]) -> dict[str, list[int]]:
    """Frontier snapshot per block, by run id, from files of `smartfrz probes frontier --out`."""
    return {r["run_id"]: r["frontier"] for f in paths for r in json.loads(Path(f).read_text())["runs"]}


def choose_threshold_by_frontier(
    data: WindowSet,
    probs: np.ndarray,
    frontiers: Mapping[str, Sequence[int]],
    slack: float = 0.01,
    grid: np.ndarray | None = None,
) -> tuple[float, list[dict[str, float]]]:
    """The threshold with the most net savings against probe-measured frontiers, and the sweep behind it.

    Net savings (taken at or after each block's frontier, minus those taken before it) are averaged over
    the runs of ``data`` that have a frontier; the highest threshold whose net is within ``slack`` of the
    best is chosen, since a lower one buys little and adds early freezes. ValueError when no run of
    ``data`` has a frontier.
    """
    probed = sorted(set(data.run_id.tolist()) & set(frontiers))
    if not probed:
        raise ValueError("none of the fitted runs has a probe-measured frontier; check the frontier JSON's run ids")
    grid = np.round(np.arange(0.3, 0.991, 0.01), 2) if grid is None else grid
    sweep = []
    for thr in sorted(float(t) for t in grid):
        runs = [r for r in simulate(data, probs, thr, frontiers=frontiers) if r.run_id in frontiers]
        agg = summarise(runs)["all"]
        keys = ("runs", "saved", "frontier_saved", "early_saved", "net_saved", "early_blocks")
        sweep.append({"threshold": thr, **{k: float(agg[k]) for k in keys}})
    best = max(row["net_saved"] for row in sweep)
    chosen = max(row["threshold"] for row in sweep if row["net_saved"] >= best - slack)
    return chosen, sweep
