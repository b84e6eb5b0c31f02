"""Small synthetic trace files with plausible convergence, for tests of any reader of traces."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from smartfrz.traces.schema import STAT_NAMES, STATUS_FLAGGED, STATUS_OK, RunRecord
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
