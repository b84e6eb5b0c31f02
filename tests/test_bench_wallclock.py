"""Smoke test of benchmarks/bench_wallclock_vs_flops.py at tiny settings (seconds; no timing thresholds)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_wallclock_vs_flops.py"


def test_wallclock_vs_flops_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """Every mode runs every repeat; frozen modes save FLOPs, the cache more; the table has one row per mode."""
    spec = importlib.util.spec_from_file_location("bench_wallclock_vs_flops", SCRIPT)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench  # dataclasses look their module up there
    spec.loader.exec_module(bench)
    argv = "--device cpu --blocks 4 --frozen 2 --width 16 --samples 64 --batch 16 --epochs 1 --repeats 2 --threads 1"
    results = bench.main(argv.split())
    assert {mode: len(runs) for mode, runs in results.items()} == {"plain": 2, "frozen": 2, "cached": 2}
    frozen, cached = results["frozen"][0], results["cached"][0]
    assert 0 < frozen.flops_saved_accounted < cached.flops_saved_accounted < 1
    assert cached.step_flops_counted < frozen.step_flops_counted < results["plain"][0].step_flops_counted
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("| frozen", "| cached"))]
    assert len(rows) == 2
