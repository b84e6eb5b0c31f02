"""Test helpers for code that reads traces: small synthetic trace files with plausible convergence, a window walker."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np

from smartfrz.traces.reader import RunInfo, TraceSet
from smartfrz.traces.schema import RUNS_GROUP, STAT_NAMES, STATUS_FLAGGED, STATUS_OK, RunRecord
from smartfrz.traces.writer import atomic_h5, init_trace_file, write_run_group


def synthetic_run(
    run_id: str,
    family: str = "cnn",
    n_snapshots: int = 40,
    n_layers: int = 4,
    k: int = 64,
    seed: int = 0,
    flagged: bool = False,
) -> RunRecord:
    """One run whose layer l settles at a rate that slows with depth; CKA rises to 1 likewise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_snapshots, dtype=np.float64)[:, None, None]
    tau = (np.arange(n_layers, dtype=np.float64) + 1.0)[None, :, None] * n_snapshots / (3.0 * n_layers)
    final = rng.normal(0.0, 0.1, size=(1, n_layers, k))
    start = final + rng.normal(0.0, 0.05, size=(1, n_layers, k))
    decay = np.exp(-t / tau)
    noise = rng.normal(0.0, 0.002, size=(n_snapshots, n_layers, k)) * decay
    samples = (final + (start - final) * decay + noise).astype(np.float32)
    d = decay[..., 0]  # [T, L]
    pairs = 1.0 - 0.6 * np.abs(d[:, None, :] - d[None, :, :])  # representations drift with the decay
    cka = pairs[:, -1].copy()
    stats = np.zeros((n_snapshots, n_layers, len(STAT_NAMES)), dtype=np.float32)
    stats[..., 0] = np.linalg.norm(samples, axis=-1)
    stats[1:, :, 1] = np.linalg.norm(np.diff(samples, axis=0), axis=-1)
    stats[..., 3] = np.abs(samples).max(axis=-1)
    stats[..., 4] = decay[..., 0]
    acc = 0.1 if flagged else 0.9
    attrs = {
        "task": f"synthetic_{family}",
        "family": family,
        "scenario": "scratch",
        "model": f"synthetic_{family}",
        "dataset": "synthetic",
        "optimizer": "sgd",
        "lr": 0.1,
        "weight_decay": 0.0,
        "batch_size": 32,
        "epochs": 1,
        "seed": seed,
        "record_every": 1,
        "k": k,
        "code_version": "synthetic",
        "wall_time_s": 0.0,
        "final_val_acc": acc,
        "final_val_loss": 0.5,
        "status": STATUS_FLAGGED if flagged else STATUS_OK,
        "flag_reason": "did not learn (synthetic)" if flagged else "",
        "config_json": json.dumps({"synthetic": True, "seed": seed}),
    }
    return RunRecord(
        run_id=run_id,
        attrs=attrs,
        layer_names=[f"layer{i}" for i in range(n_layers)],
        layer_kinds=["Linear"] * n_layers,
        numel=np.full(n_layers, 4 * k, dtype=np.int64),
        block=np.arange(n_layers, dtype=np.int32),
        depth=np.linspace(0.0, 1.0, n_layers, dtype=np.float32),
        sample_idx=np.sort(rng.integers(0, 4 * k, size=(n_layers, k)), axis=1),
        steps=np.arange(1, n_snapshots + 1, dtype=np.int64),
        samples=samples,
        stats=stats,
        cka=cka.astype(np.float32),
        train_loss=np.linspace(2.0, 0.3, n_snapshots, dtype=np.float32),
        val_loss=np.linspace(2.0, 0.4, n_snapshots, dtype=np.float32),
        val_acc=np.linspace(0.1, acc, n_snapshots, dtype=np.float32),
        lr=np.full(n_snapshots, 0.1, dtype=np.float32),
        cka_pairs=pairs.astype(np.float32),
    )


def write_synthetic_traces(
    path: str | os.PathLike[str],
    n_runs: int = 3,
    families: tuple[str, ...] = ("cnn", "mlp"),
    n_snapshots: int = 40,
    n_layers: int = 4,
    k: int = 64,
    n_flagged: int = 0,
    seed: int = 0,
) -> Path:
    """Write ``n_runs`` synthetic runs (the last ``n_flagged`` flagged) into one trace file."""
    with atomic_h5(path) as f:
        runs = init_trace_file(f)
        for i in range(n_runs):
            family = families[i % len(families)]
            rec = synthetic_run(
                f"synthetic_{family}-sgd-lr0.1-s{i}",
                family=family,
                n_snapshots=n_snapshots,
                n_layers=n_layers,
                k=k,
                seed=seed + i,
                flagged=i >= n_runs - n_flagged,
            )
            write_run_group(runs, rec)
    return Path(path)


class Window(NamedTuple):
    """One predictor example: layer ``layer_idx`` of run ``run_id`` seen at snapshot ``t``."""

    run_id: str
    layer_idx: int
    t: int
    samples: np.ndarray  # [W, K] float32, snapshots t-W+1 .. t
    cka: float  # CKA of the layer at t against the final model
    stats: np.ndarray  # [W, S] float32, same snapshots as samples
    cka_min_after: float  # min over t' >= t of the CKA curve (the default label rule's quantity)
    step: int  # optimizer step of snapshot t
    n_snapshots: int  # T of the run, so t / (T - 1) gives training progress


def iter_windows(
    traces: TraceSet,
    window: int,
    stride: int = 1,
    runs: Sequence[str] | None = None,
    include_flagged: bool = False,
    layers: Sequence[int] | None = None,
) -> Iterator[Window]:
    """Yield every window of ``window`` consecutive snapshots (t = window-1, +stride, ...), one layer at a time.

    ``runs`` restricts to these run ids (flagged ones are still skipped unless ``include_flagged``);
    ``layers`` to these layer indices. Only one layer's ``[T, K]`` trajectory is in memory at a time.
    """
    if window < 1 or stride < 1:
        raise ValueError(f"window and stride must be >= 1, got window={window} stride={stride}")
    infos = [traces.run_info(r) for r in runs] if runs is not None else traces.list_runs()
    for info in infos:
        if info.flagged and not include_flagged:
            continue
        yield from _run_windows(info, window, stride, layers)


def _run_windows(info: RunInfo, window: int, stride: int, layers: Sequence[int] | None) -> Iterator[Window]:
    """Windows of one run, layer by layer."""
    with h5py.File(info.path, "r") as f:
        g = f[RUNS_GROUP][info.run_id]
        cka = g["cka"][()]
        steps = g["steps"][()]
        n_t = steps.shape[0]
        cka_min_after = np.minimum.accumulate(cka[::-1], axis=0)[::-1]
        for li in range(info.n_layers) if layers is None else layers:
            traj = g["samples"][:, li, :].astype(np.float32)
            stats = g["stats"][:, li, :]
            for t in range(window - 1, n_t, stride):
                yield Window(
                    run_id=info.run_id,
                    layer_idx=int(li),
                    t=t,
                    samples=traj[t - window + 1 : t + 1],
                    cka=float(cka[t, li]),
                    stats=stats[t - window + 1 : t + 1],
                    cka_min_after=float(cka_min_after[t, li]),
                    step=int(steps[t]),
                    n_snapshots=n_t,
                )
