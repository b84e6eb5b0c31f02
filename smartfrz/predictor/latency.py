"""Measured inference latency of a predictor on one CPU thread (the brief's 500-layer budget)."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from smartfrz.predictor.inference import FreezePredictor


def _best_ms(fn: Callable[[], object], repeats: int, clock: Callable[[], float] = time.perf_counter) -> float:
    """Best-of-``repeats`` time of ``fn()`` in milliseconds on ``clock`` (after one warm-up call)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = clock()
        fn()
        best = min(best, clock() - start)
    return best * 1e3


def measure_latency(predictor: FreezePredictor, n_layers: int = 500, repeats: int = 10) -> dict[str, float | int]:
    """CPU milliseconds, one thread, for ``n_layers`` windows: incremental stage and full windows.

    incremental_stage_ms: embed the newest snapshot of every layer and run the attention on the
    embedded windows (what the runtime does at a freezing stage); full_window_ms: predict_proba on
    raw [N, W, K] windows (re-embeds all W snapshots). Wall-clock times suffer when the machine is
    shared; ``incremental_stage_cpu_ms`` is the same stage on the thread's CPU-time clock, which
    does not count time the thread spent descheduled.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        gen = torch.Generator().manual_seed(0)
        windows = torch.randn(n_layers, predictor.window, predictor.k, generator=gen).cumsum(dim=1)
        emb = predictor.embed_snapshots(windows.reshape(-1, predictor.k)).reshape(n_layers, predictor.window, -1)
        latest = windows[:, -1].contiguous()

        def stage() -> None:
            predictor.embed_snapshots(latest)
            predictor.predict_from_embeddings(emb)

        return {
            "n_layers": n_layers,
            "threads": 1,
            "incremental_stage_ms": _best_ms(stage, repeats),
            "incremental_stage_cpu_ms": _best_ms(stage, repeats, time.thread_time),
            "embed_latest_ms": _best_ms(lambda: predictor.embed_snapshots(latest), repeats),
            "attention_ms": _best_ms(lambda: predictor.predict_from_embeddings(emb), repeats),
            "full_window_ms": _best_ms(lambda: predictor.predict_proba(windows), max(2, repeats // 4)),
        }
    finally:
        torch.set_num_threads(threads)
