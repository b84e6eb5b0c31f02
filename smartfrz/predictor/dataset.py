"""Predictor examples from traces: per-layer embedded trajectories, labels, context and baseline features."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from smartfrz.predictor.features import baseline_features_upto
from smartfrz.predictor.labels import LabelRule, label_run
from smartfrz.traces import RunRecord, open_traces
from smartfrz.train_context import CONTEXT_FEATURES, loss_drop_curve


@dataclass
class RunLayout:
    """What replaying a run's freeze decisions needs besides its windows: block and weights per layer, T."""

    block: np.ndarray  # [L] int
    numel: np.ndarray  # [L] int
    n_snapshots: int


@dataclass
class WindowSet:
    """All windows of a set of runs: embedded series and, per example, where its window ends.

    ``emb`` concatenates every (run, layer) series of embedded snapshots along dim 0; example i is the
    window of up to ``window`` snapshots ending at ``emb[end[i]]`` and starting no earlier than
    ``first[i]`` (its series' first snapshot), left-padded and masked when shorter.
    """

    window: int
    emb: Tensor  # [sum of series lengths, D] float32
    end: np.ndarray  # [N] int64, row of the window's latest snapshot
    first: np.ndarray  # [N] int64, row of the series' first snapshot
    y: np.ndarray  # [N] bool
    context: np.ndarray  # [N, C] float32: CONTEXT_FEATURES (NaN = unknown)
    features: np.ndarray  # [N, F] float32 hand-made features for the baselines
    run_id: np.ndarray  # [N] str
    family: np.ndarray  # [N] str
    group: np.ndarray  # [N] str, the split unit (run or task)
    layer: np.ndarray  # [N] int64, layer index in its run
    t: np.ndarray  # [N] int64, snapshot index in its run
    layouts: dict[str, RunLayout] = field(default_factory=dict)  # per run id

    def __len__(self) -> int:
        return len(self.end)

    def gather(self, rows: np.ndarray | Tensor) -> tuple[Tensor, Tensor]:
        """Embedded windows [B, W, D] of examples ``rows`` and their valid masks [B, W]."""
        rows = np.asarray(rows)
        end = torch.as_tensor(self.end[rows], dtype=torch.long)
        first = torch.as_tensor(self.first[rows], dtype=torch.long)
        idx = end[:, None] - self.window + 1 + torch.arange(self.window)
        valid = idx >= first[:, None]
        return self.emb[torch.maximum(idx, first[:, None])], valid

    def subset(self, mask: np.ndarray) -> WindowSet:
        """Examples where ``mask`` is true (the embedded series are shared, not copied)."""
        fields = {k: v[mask] for k, v in vars(self).items() if isinstance(v, np.ndarray)}
        return WindowSet(window=self.window, emb=self.emb, layouts=self.layouts, **fields)


def run_context(run: RunRecord) -> np.ndarray:
    """Context [T, L, C] of a run, one column per ``CONTEXT_FEATURES`` name, as the runtime computes it."""
    n_t = len(run.steps)
    progress = run.steps.astype(np.float64) / max(1, int(run.steps[-1]))
    lr_rel = np.ones(n_t)  # traces from before lr was recorded: constant learning rates
    if run.lr is not None:  # as the runtime: the rate over the highest seen so far (1 while that is still 0)
        peak = np.maximum.accumulate(run.lr.astype(np.float64))
        lr_rel = np.where(peak > 0, run.lr / np.where(peak > 0, peak, 1.0), 1.0)
    per_snapshot = {"progress": progress, "lr_rel": lr_rel, "loss_drop": loss_drop_curve(run.train_loss)}
    out = np.empty((n_t, len(run.layer_names), len(CONTEXT_FEATURES)), dtype=np.float32)
    for c, name in enumerate(CONTEXT_FEATURES):
        out[..., c] = run.depth[None, :] if name == "depth" else per_snapshot[name][:, None]
    return out


def load_windows(
    traces: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    window: int,
    rule: LabelRule,
    embed: Callable[[Tensor], Tensor],
    k: int,
    group_by: str = "run",
    include_flagged: bool = False,
    min_window: int = 3,
) -> WindowSet:
    """Read runs, label them with ``rule``, embed every snapshot once with ``embed`` ([..., K] -> [..., D]).

    Every snapshot from the ``min_window``-th on is an example. Runs with fewer snapshots, and runs
    without the CKA pairs a pairwise rule needs, are skipped with a warning; flagged runs (did not
    learn, diverged) are left out unless asked. Raises ValueError when nothing usable remains.
    """
    if group_by not in ("run", "task"):
        raise ValueError(f"group_by must be 'run' or 'task', got {group_by!r}")
    sources = [traces] if isinstance(traces, (str, os.PathLike)) else list(traces)
    sets = [open_traces(s) for s in sources]
    infos = [(ts, info) for ts in sets for info in ts.list_runs(include_flagged=include_flagged)]
    ids = [info.run_id for _, info in infos]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise ValueError(f"run id(s) {repeated[:5]} appear in more than one of {sources}; a run must be read once")
    if not infos:
        raise ValueError(f"no usable (unflagged) runs in {sources}")
    series: list[Tensor] = []
    names = ("end", "first", "y", "context", "features", "run_id", "family", "group", "layer", "t")
    parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
    offset, skipped = 0, []
    layouts: dict[str, RunLayout] = {}
    for ts, info in tqdm(infos, desc="loading runs", unit="run"):
        if info.k != k:
            raise ValueError(f"run {info.run_id} in {info.path} has K={info.k}, the predictor expects {k}")
        if info.n_snapshots < min_window:
            skipped.append(f"{info.run_id} ({info.n_snapshots} snapshots < {min_window})")
            continue
        run = ts.load_run(info.run_id)
        if rule.needs_pairs and run.cka_pairs is None:
            skipped.append(f"{info.run_id} (no cka_pairs for rule {rule.rule!r})")
            continue
        labels = label_run(run.cka, run.cka_pairs, run.steps, rule, run.samples, run.val_acc)  # [T, L]
        layouts[info.run_id] = RunLayout(run.block.astype(np.int64), run.numel.astype(np.int64), len(run.steps))
        feats = baseline_features_upto(run.samples, window, min_window)  # [T, L, F]
        context = run_context(run)
        x = torch.from_numpy(run.samples).transpose(0, 1)  # [L, T, K], float16-exact values widened
        with torch.no_grad():
            emb = embed(x)  # [L, T, D]
        n_t, n_l = labels.shape
        ts_idx = np.arange(min_window - 1, n_t)
        for layer in range(n_l):
            series.append(emb[layer])
            parts["end"].append(offset + ts_idx)
            parts["first"].append(np.full(len(ts_idx), offset))
            parts["y"].append(labels[ts_idx, layer])
            parts["context"].append(context[ts_idx, layer])
            parts["features"].append(feats[ts_idx, layer])
            parts["layer"].append(np.full(len(ts_idx), layer))
            parts["t"].append(ts_idx)
            for key, value in (
                ("run_id", info.run_id),
                ("family", info.family),
                ("group", info.run_id if group_by == "run" else info.task),
            ):
                parts[key].append(np.full(len(ts_idx), value, dtype=object))
            offset += n_t
    if skipped:
        warnings.warn(f"skipped {len(skipped)} run(s): {'; '.join(skipped[:5])}", stacklevel=2)
    if not series:
        raise ValueError(f"no run in {sources} has at least {min_window} snapshots (and what rule {rule.rule!r} needs)")
    cat = {name: np.concatenate(v) for name, v in parts.items()}
    return WindowSet(
        window=window,
        emb=torch.cat(series).float().contiguous(),
        end=cat["end"].astype(np.int64),
        first=cat["first"].astype(np.int64),
        y=cat["y"].astype(bool),
        context=cat["context"].astype(np.float32),
        features=cat["features"].astype(np.float32),
        run_id=cat["run_id"].astype(str),
        family=cat["family"].astype(str),
        group=cat["group"].astype(str),
        layer=cat["layer"].astype(np.int64),
        t=cat["t"].astype(np.int64),
        layouts=layouts,
    )
