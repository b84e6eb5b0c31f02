"""The `smartfrz` command: subcommands, fast help, one list style, and one-line errors with known fixes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from smartfrz import cli, collect, pipeline
from smartfrz.bench.policies import DEFAULT_POLICIES
from smartfrz.collection import workers

ROOT = Path(__file__).resolve().parents[1]


def _error(capsys) -> str:
    """The one line a failed command printed on stderr."""
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


def test_help_lists_the_subcommands_without_importing_torch():
    code = (
        "import sys, contextlib, io\n"
        "from smartfrz.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):\n"
        "    main(['--help'])\n"
        "print(out.getvalue())\n"
        "print('torch imported' if 'torch' in sys.modules else 'no torch')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    for name in cli.COMMANDS:
        assert f"    {name} " in proc.stdout
    assert proc.stdout.strip().endswith("no torch")


@pytest.mark.parametrize(
    "module", ["smartfrz.collect", "smartfrz.fit_predictor", "smartfrz.bench", "smartfrz.pipeline"]
)
def test_python_m_entry_points_still_work(module):
    proc = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith(f"usage: python -m {module}"), proc.stderr


def test_defaults_are_shown_even_when_they_live_in_the_library(capsys):
    with pytest.raises(SystemExit):
        cli.main(["bench", "--help"])
    out = " ".join(re.sub(r"-\n\s+", "-", capsys.readouterr().out).split())  # argparse wraps after hyphens
    assert f"(default: {' '.join(DEFAULT_POLICIES)})" in out and "smartfrz-backstop+cache" in DEFAULT_POLICIES
    assert "(default: 0.6 0.8 0.9 0.95 0.98 0.99)" in out and "(default: 0.2)" in out


def test_lists_are_space_separated_everywhere(capsys):
    assert collect.main(["--tasks", "digits_mlp", "--seeds", "0", "1", "2", "--lrs", "0.1", "0.05", "--list"]) == 0
    ids = capsys.readouterr().out.splitlines()[1:]
    assert len(ids) == 6 and ids[0] == "digits_mlp-sgd-lr0.1-s0" and ids[-1] == "digits_mlp-sgd-lr0.05-s2"


def test_unknown_task_lists_the_known_ones(capsys):
    assert cli.main(["collect", "--tasks", "nope", "--list"]) == 2
    err = _error(capsys)
    assert "unknown task(s) ['nope']" in err and "'digits_mlp'" in err


def test_existing_runs_suggest_resume(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "digits_mlp-sgd-lr0.1-s0.h5").write_bytes(b"")
    assert cli.main(["collect", "--tasks", "digits_mlp", "--lrs", "0.1", "--out", str(tmp_path), "--no-progress"]) == 2
    assert "add --resume to keep finished runs" in _error(capsys)


@pytest.mark.parametrize("tol", ["nan", "inf"])
def test_frontier_tolerance_must_be_a_finite_number(tol, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["probes", "frontier", "--traces", str(tmp_path), "--tol", tol])
    assert exc.value.code == 2 and "must be a finite number" in capsys.readouterr().err


def test_merge_of_a_missing_folder_is_one_line(tmp_path, capsys):
    assert cli.main(["collect", "merge", str(tmp_path / "none"), "--out", str(tmp_path / "m.h5")]) == 2
    assert str(tmp_path / "none") in _error(capsys)


def test_a_failing_stage_stops_the_pipeline_with_one_line(tmp_path, monkeypatch, capsys):
    def broken_run(spec, *args, **kwargs):
        raise FileNotFoundError(f"no data for {spec.task}")

    monkeypatch.setattr(workers, "run_spec", broken_run)
    assert pipeline.main(["--out", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()[-1]  # after the progress bars and the failed runs' lines
    assert err.startswith("error: pipeline stopped at stage 1/3 (collect): 6 of 6 runs failed"), err
    assert "FileNotFoundError: no data for digits_mlp" in err
    assert "Traceback" not in captured.out + captured.err  # one line per failed run while collecting, no traceback
    assert "=== 2/3" not in captured.out


def test_bench_unknown_task_lists_the_known_ones(tmp_path, capsys):
    args = ["bench", "--tasks", "nope", "--policies", "none", "--out", str(tmp_path), "--no-progress"]
    assert cli.main(args) == 2
    err = _error(capsys)
    assert "unknown task 'nope'" in err and "synth_resmlp" in err


def test_unknown_predictor_names_the_known_ones(capsys):
    assert cli.main(["latency", "--predictor", "nope"]) == 2
    err = _error(capsys)
    assert "no predictor named 'nope'" in err and "'default'" in err


def test_pipeline_fit_stage_fits_on_smoke_traces(tmp_path):
    """Stage 2 builds its FitConfig from the library defaults; a stale field name would fail here."""
    import argparse

    from smartfrz.cli import run as run_command
    from smartfrz.testing import write_synthetic_traces

    (tmp_path / "runs").mkdir()
    write_synthetic_traces(tmp_path / "runs" / "syn.h5", n_runs=6, families=("cnn", "mlp"), n_snapshots=16, k=32)
    out = tmp_path / "predictor.pt"
    run_command._fit(argparse.Namespace(threads=1, preset="smoke"), tmp_path, out)
    assert out.is_file() and out.with_suffix(".card.md").is_file()
