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


def test_lofo_by_task_scores_each_task_of_the_held_out_family(monkeypatch, capsys, tmp_path):
    """It trains without the family and prints a table: a header, a row per task with both classes, an 'all' row."""
    from smartfrz.testing import write_synthetic_traces

    traces = write_synthetic_traces(
        tmp_path / "syn.h5", n_runs=8, families=("cnn", "mlp"), n_snapshots=24, n_layers=4, k=1024
    )
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    script = importlib.import_module("lofo_by_task")
    monkeypatch.setattr("sys.argv", ["lofo_by_task.py", str(traces), "--family", "cnn", "--epochs", "2"])
    script.main()
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0].startswith("| held-out task") and rows[-1].startswith("| all |")
    for row in rows[1:]:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert all(0.0 <= float(c) <= 1.0 for c in cells[-2:])
