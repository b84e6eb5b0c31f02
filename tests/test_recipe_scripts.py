"""The schedule helpers of benchmarks/label_by_recipe.py against the runtime's FreezeOut rule."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from smartfrz.cadence import freezeout_step

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def label_by_recipe(monkeypatch):
    """The script as a module (it imports its sibling simulate_by_recipe, so its folder goes on sys.path)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    return importlib.import_module("label_by_recipe")


def test_freezeout_schedule_freezes_each_block_at_the_first_snapshot_past_its_step(label_by_recipe):
    run = SimpleNamespace(steps=np.arange(10, 101, 10), block=np.array([0, 0, 1, 2, 3]))  # block 3: the head
    at = label_by_recipe.freezeout_schedule(0.5)(run)
    assert [freezeout_step(b, 3, 0.5, 100) for b in range(3)] == [50, 67, 84]
    assert at.tolist() == [4, 6, 8]  # steps 50, 70, 90
    late = label_by_recipe.freezeout_schedule(1.0)(run)
    assert late.tolist() == [9, 9, 9]  # t0 = 1: every block at the last snapshot (step 100), none never


def test_runtime_overhead_benchmark_measures_the_worst_case(monkeypatch, capsys):
    """Its SmartFRZ mode must judge every layer at every stage: nothing may freeze (the backstop once froze it)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    script = importlib.import_module("bench_runtime_overhead")
    argv = ["bench_runtime_overhead.py", "--steps", "8", "--warmup", "1", "--samples", "256", "--batch", "16"]
    monkeypatch.setattr("sys.argv", [*argv, "--repeats", "1", "--device", "cpu"])
    script.main()
    out = capsys.readouterr().out
    assert "blocks frozen per run: [0]" in out
