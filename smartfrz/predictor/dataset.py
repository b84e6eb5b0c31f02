"""Predictor examples from traces: per-layer embedded trajectories, labels and baseline features."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from smartfrz.predictor.features import baseline_features
from smartfrz.predictor.labels import LabelRule, label_curves
from smartfrz.traces import open_traces


@dataclass
class WindowSet:
    """All windows of a set of runs: embedded series and, per example, where its window ends.

    ``emb`` concatenates every (run, layer) series of embedded snapshots along dim 0; example i is
    the window ``emb[start[i] : start[i] + window]`` with label ``y[i]``.
    """

    window: int
    emb: Tensor  # [sum of series lengths, D] float32
    start: np.ndarray  # [N] int64
    y: np.ndarray  # [N] bool
    features: np.ndarray  # [N, F] float32 hand-made features for the baselines
    run_id: np.ndarray  # [N] str
    family: np.ndarray  # [N] str
    group: np.ndarray  # [N] str, the split unit (run or task)

    def __len__(self) -> int:
        return len(self.start)

    def gather(self, rows: np.ndarray | Tensor) -> Tensor:
        """Embedded windows [B, W, D] of examples ``rows``."""
        base = torch.as_tensor(self.start[np.asarray(rows)], dtype=torch.long)
        return self.emb[base[:, None] + torch.arange(self.window)]

    def subset(self, mask: np.ndarray) -> WindowSet:
        """Examples where ``mask`` is true (the embedded series are shared, not copied)."""
        return WindowSet(
            window=self.window,
            emb=self.emb,
            start=self.start[mask],
            y=self.y[mask],
            features=self.features[mask],
            run_id=self.run_id[mask],
            family=self.family[mask],
            group=self.group[mask],
        )


def load_windows(
    traces: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    window: int,
    rule: LabelRule,
    embed: Callable[[Tensor], Tensor],
    k: int,
    group_by: str = "run",
    include_flagged: bool = False,
) -> WindowSet:
    """Read runs, label them with ``rule``, embed every snapshot once with ``embed`` ([..., K] -> [..., D]).

    Runs shorter than ``window`` snapshots are skipped with a warning; flagged runs (did not learn,
    diverged) are left out unless asked. Raises ValueError when nothing usable remains.
    """
    if group_by not in ("run", "task"):
        raise ValueError(f"group_by must be 'run' or 'task', got {group_by!r}")
    sources = [traces] if isinstance(traces, (str, os.PathLike)) else list(traces)
    sets = [open_traces(s) for s in sources]
    infos = [(ts, info) for ts in sets for info in ts.list_runs(include_flagged=include_flagged)]
    if not infos:
        raise ValueError(f"no usable (unflagged) runs in {sources}")
    series: list[Tensor] = []
    parts: dict[str, list[np.ndarray]] = {name: [] for name in ("start", "y", "features", "run_id", "family", "group")}
    offset = 0
    for ts, info in tqdm(infos, desc="loading runs", unit="run"):
        if info.k != k:
            raise ValueError(f"run {info.run_id} in {info.path} has K={info.k}, the predictor expects {k}")
        if info.n_snapshots < window:
            warnings.warn(f"run {info.run_id}: {info.n_snapshots} snapshots < window {window}; skipped", stacklevel=2)
            continue
        run = ts.load_run(info.run_id)
        labels = label_curves(run.cka, rule)  # [T, L]
        feats = baseline_features(run.samples, window)  # [T, L, F]
        x = torch.from_numpy(run.samples).transpose(0, 1)  # [L, T, K], float16-exact values widened
        with torch.no_grad():
            emb = embed(x)  # [L, T, D]
        n_t, n_l = labels.shape
        ts_idx = np.arange(window - 1, n_t)
        for layer in range(n_l):
            series.append(emb[layer])
            parts["start"].append(offset + ts_idx - window + 1)
            parts["y"].append(labels[ts_idx, layer])
            parts["features"].append(feats[ts_idx, layer])
            for key, value in (
                ("run_id", info.run_id),
                ("family", info.family),
                ("group", info.run_id if group_by == "run" else info.task),
            ):
                parts[key].append(np.full(len(ts_idx), value, dtype=object))
            offset += n_t
    if not series:
        raise ValueError(f"no run in {sources} has at least window={window} snapshots")
    cat = {name: np.concatenate(v) for name, v in parts.items()}
    return WindowSet(
        window=window,
        emb=torch.cat(series).float().contiguous(),
        start=cat["start"].astype(np.int64),
        y=cat["y"].astype(bool),
        features=cat["features"].astype(np.float32),
        run_id=cat["run_id"].astype(str),
        family=cat["family"].astype(str),
        group=cat["group"].astype(str),
    )
