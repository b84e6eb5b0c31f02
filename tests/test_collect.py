"""Collection: CKA math, the trace_run API, flags, determinism, and the CLI (smoke, resume after kill, workers)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from smartfrz.collection.cka import (
    GramStore,
    LayerGramCapture,
    centred_unit_gram,
    cka_against_final,
    layer_features,
)
from smartfrz.collection.grid import build_grid
from smartfrz.collection.presets import PRESETS
from smartfrz.collection.tracer import trace_run
from smartfrz.collection.workers import run_grid
from smartfrz.traces import STAT_NAMES, open_traces

ROOT = Path(__file__).resolve().parents[1]


def _linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Textbook linear CKA (Kornblith et al. 2019): ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)."""
    x = x - x.mean(0)
    y = y - y.mean(0)
    return float(np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def test_cka_matches_textbook_formula_and_invariances():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 20))
    y = x @ rng.normal(size=(20, 7)) + 0.5 * rng.normal(size=(32, 7))
    q, _ = np.linalg.qr(rng.normal(size=(20, 20)))
    store = GramStore(budget_bytes=1 << 20)
    for feats in (y, 3.0 * x @ q + 1.0, x):  # the last snapshot is the "final model"
        store.append([centred_unit_gram(torch.from_numpy(feats))])
    cka = cka_against_final(store)[:, 0]
    assert cka[0] == pytest.approx(_linear_cka(y, x), rel=1e-5)
    assert cka[1] == pytest.approx(1.0, abs=1e-5)  # invariant to rotation, isotropic scaling and shift
    assert cka[2] == pytest.approx(1.0, abs=1e-6)
    assert 0.0 < cka[0] < 0.99


def test_gram_store_spills_to_disk_identically():
    rng = np.random.default_rng(0)
    grams = [[rng.normal(size=(m, m)).astype(np.float32) for m in (8, 5, 8)] for _ in range(5)]
    mem, disk = GramStore(1 << 30), GramStore(2 * 153 * 4)
    for g in grams:
        mem.append(g)
        disk.append(g)
    assert not mem.on_disk and disk.on_disk
    for t in range(-5, 5):
        for a, b, c in zip(mem[t], disk[t], grams[t], strict=True):
            np.testing.assert_array_equal(a, c)
            np.testing.assert_array_equal(b, c)
    cka = cka_against_final(disk)
    np.testing.assert_array_equal(cka_against_final(mem), cka)
    assert cka[2, 1] == pytest.approx(float(np.sum(grams[2][1].astype(np.float64) * grams[-1][1])), rel=1e-6)
    with pytest.raises(ValueError, match="shape"):
        disk.append([np.zeros((4, 4), np.float32)] * 3)
    disk.close()


def test_broadcast_layer_outputs_are_compared_over_positions():
    class PosEmb(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.tok = nn.Embedding(10, 4)
            self.pos = nn.Embedding(6, 4)
            self.head = nn.Linear(4, 2)

        def forward(self, ids: torch.Tensor) -> torch.Tensor:
            pos = self.pos(torch.arange(ids.shape[1]))  # [S, 4], the same for every sample
            h = self.tok(ids.T).transpose(0, 1) + pos  # tok output is sequence first: [S, n, 4]
            return self.head(h.mean(1))

    model = PosEmb()
    grams = LayerGramCapture(model, [model.tok, model.pos, model.head])(torch.randint(0, 10, (7, 6)), 7)
    assert [g.shape for g in grams] == [(7, 7), (6, 6), (7, 7)]
    one = torch.randn(1, 6, 4)
    np.testing.assert_array_equal(layer_features(one, 7), one[0])  # broadcast [1, S, d]: positions as rows
    with pytest.raises(RuntimeError, match="no probe-batch dimension"):
        layer_features(torch.randn(5000, 3), 7)


def _toy(seed: int = 0, random_labels: bool = False):
    """A small learnable 4-class problem and an MLP."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(640, 12, generator=g)
    y = (x @ torch.randn(12, 4, generator=g)).argmax(1)
    if random_labels:
        y = torch.randint(0, 4, (640,), generator=g)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 4))
    train = DataLoader(TensorDataset(x[:512], y[:512]), 32, shuffle=True, generator=torch.Generator().manual_seed(0))
    val = DataLoader(TensorDataset(x[512:], y[512:]), 64)
    return model, train, val, x[512:576]


def _trace(tmp_path, name="run", lr=0.3, epochs=2, **kw):
    model, train, val, probe = _toy(**kw)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    return trace_run(
        model, opt, train, val, probe, epochs=epochs, out_path=tmp_path / f"{name}.h5", run_id=name,
        record_every=3, k=64, num_classes=4, progress=False, metadata={"family": "mlp"},
    )  # fmt: skip


def test_trace_run_api_writes_a_valid_run(tmp_path):
    res = _trace(tmp_path)
    assert res.status == "ok" and res.final_val_acc > 0.6
    run = open_traces(res.path).load_run("run")
    t, n_layers = 32 // 3 + 1, 3  # 32 steps: every 3rd step plus the last
    assert run.samples.shape == (t, n_layers, 64) and run.stats.shape == (t, n_layers, len(STAT_NAMES))
    assert run.steps.tolist() == [*range(3, 32, 3), 32]
    np.testing.assert_allclose(run.cka[-1], 1.0, atol=1e-5)
    assert np.all((run.cka >= -1e-6) & (run.cka <= 1 + 1e-5))
    assert run.layer_kinds == ["Linear"] * 3 and run.info.family == "mlp"
    # samples are what the layer weights held: the last snapshot equals the final model
    assert np.all(run.stats[:, :, STAT_NAMES.index("grad_l2_norm")] > 0)
    assert np.all(run.stats[1:, :, STAT_NAMES.index("delta_l2_norm")] > 0)
    assert np.all(np.isfinite(run.train_loss)) and run.val_acc[-1] > run.val_acc[0]


def test_trace_run_is_deterministic(tmp_path):
    a = _trace(tmp_path, "a", epochs=1).record
    b = _trace(tmp_path, "b", epochs=1).record
    for name in ("samples", "stats", "cka", "train_loss", "val_loss", "val_acc", "sample_idx"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_diverging_run_is_flagged_and_stops(tmp_path):
    res = _trace(tmp_path, "nan", lr=1e6)
    assert res.status == "flagged" and res.flag_reason.startswith("diverged")
    assert res.steps < 32
    assert open_traces(tmp_path).list_runs(include_flagged=False) == []


def test_run_that_does_not_learn_is_flagged(tmp_path):
    res = _trace(tmp_path, "noise", lr=1e-4, epochs=1, random_labels=True)
    assert res.status == "flagged" and res.flag_reason.startswith("did not learn")


# ---- CLI (subprocesses, tiny grids on sklearn digits) ----

TINY = ["--tasks", "digits_mlp", "--max-train", "256", "--epochs", "3", "--snapshots", "6", "--probe-size", "32"]
TINY += ["--val-snapshot-size", "64", "--k", "128", "--no-progress"]


def _collect(*args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """Run ``python -m smartfrz.collect`` from the repo root."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "smartfrz.collect", *args], cwd=ROOT, env=env, capture_output=True, text=True, **kw
    )
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def _arrays_and_attrs(path: Path) -> dict:
    """Every dataset and attribute of a run file, minus the wall time."""
    out = {}
    with h5py.File(path, "r") as f:
        for rid, g in f["runs"].items():
            for key, value in g.attrs.items():
                if key != "wall_time_s":
                    out[f"{rid}@{key}"] = value
            for name, ds in g.items():
                out[f"{rid}/{name}"] = ds[()]
    return out


def test_cli_smoke_preset_end_to_end(tmp_path):
    out = tmp_path / "smoke"
    proc = _collect("--preset", "smoke", "--out", str(out), "--merge", "--no-progress")
    assert "runs ok" in proc.stdout
    summary = __import__("json").loads((out / "summary.json").read_text())
    assert summary["grid_runs"] == 2 and not summary["failed"] and not summary["missing"]
    assert set(summary["tasks"]) == {"digits_mlp", "fmnist_vgg"}
    ts = open_traces(out / "traces.h5")
    runs = ts.list_runs()
    assert len(runs) == 2 and {r.scenario for r in runs} == {"scratch"}
    for info in runs:
        run = ts.load_run(info.run_id)
        assert run.samples.shape == (info.n_snapshots, info.n_layers, 1024)
        np.testing.assert_allclose(run.cka[-1], 1.0, atol=1e-4)
        assert run.probe_idx is not None and len(run.probe_idx) == 64
    assert sorted(r.run_id for r in open_traces(out / "runs").list_runs()) == sorted(r.run_id for r in runs)
    merged2 = tmp_path / "again.h5"
    _collect("merge", str(out / "runs"), "--out", str(merged2))
    assert [r.run_id for r in open_traces(merged2).list_runs()] == [r.run_id for r in runs]


# The collection CLI, killed (SIGKILL, no clean-up) the moment its first run is reported done.
KILL_AFTER_FIRST_RUN = """
import os, signal, sys
from smartfrz import collect
from smartfrz.collection import workers
report = workers._report
def report_then_die(bar, outcome, *rest):
    report(bar, outcome, *rest)
    if outcome.state == "done":
        os.kill(os.getpid(), signal.SIGKILL)
workers._report = report_then_die
sys.exit(collect.main(sys.argv[1:]))
"""


def test_kill_then_resume_completes_without_redoing(tmp_path):
    out = tmp_path / "k"
    args = [*TINY, "--lrs", "0.1", "0.05", "0.03", "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_FIRST_RUN, *args], cwd=ROOT, env=env, capture_output=True, timeout=240
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    runs_dir = out / "runs"
    done = sorted(runs_dir.glob("*.h5"))
    assert [p.name for p in done] == ["digits_mlp-sgd-lr0.1-s0.h5"], "killed right after the first run"
    for p in done:  # whatever was renamed into place is complete
        open_traces(p)
    first = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in done}
    (runs_dir / "digits_mlp-sgd-lr0.03-s0.h5.tmp").write_bytes(b"half a file")  # as if killed mid-write
    _collect(*args, "--resume")
    final = sorted(runs_dir.glob("*"))
    assert [p.name for p in final] == sorted(f"digits_mlp-sgd-lr{lr}-s0.h5" for lr in ("0.1", "0.05", "0.03"))
    for name, stamp in first.items():  # finished runs were not redone
        p = runs_dir / name
        assert (p.stat().st_ino, p.stat().st_mtime_ns) == stamp
    assert len(open_traces(runs_dir).list_runs()) == 3
    again = _collect(*args, check=False)  # without --resume, existing runs are never silently clobbered
    assert again.returncode != 0 and "--resume" in again.stderr


def test_two_workers_give_bitwise_the_same_data(tmp_path):
    args = [*TINY, "--lrs", "0.1", "0.03", "--epochs", "2"]
    threads = torch.get_num_threads()
    try:  # the 1-worker reference runs in this process, exactly as the CLI's --workers 1 path does
        specs = build_grid(PRESETS["smoke"], tasks=["digits_mlp"], lrs=[0.1, 0.03], epochs=2, max_train=256,
                           snapshots=6, probe_size=32, val_snapshot_size=64, k=128)  # fmt: skip
        outcomes = run_grid(specs, tmp_path / "w1", workers=1, threads=1, progress=False)
        assert [o.state for o in outcomes] == ["done", "done"]
    finally:
        torch.set_num_threads(threads)
    _collect(*args, "--out", str(tmp_path / "w2"), "--workers", "2")
    files1 = sorted((tmp_path / "w1" / "runs").glob("*.h5"))
    files2 = sorted((tmp_path / "w2" / "runs").glob("*.h5"))
    assert [p.name for p in files1] == [p.name for p in files2] and len(files1) == 2
    for a, b in zip(files1, files2, strict=True):
        da, db = _arrays_and_attrs(a), _arrays_and_attrs(b)
        assert da.keys() == db.keys()
        for key in da:
            np.testing.assert_array_equal(np.asarray(da[key]), np.asarray(db[key]), err_msg=key)


def test_plot_reports_depth_ordering(tmp_path):
    from smartfrz.collection.plot import plot_cka
    from smartfrz.testing import write_synthetic_traces

    path = write_synthetic_traces(tmp_path / "s.h5", n_runs=2, families=("cnn",), n_snapshots=30, n_layers=5, k=8)
    stats = plot_cka(path, tmp_path / "cka.png", tau=0.9)
    assert (tmp_path / "cka.png").stat().st_size > 10_000
    # synthetic deeper layers settle later by construction: the rank correlation must see it
    assert stats["synthetic_cnn"]["spearman_mean"] > 0.9 and stats["synthetic_cnn"]["runs"] == 2


def test_resume_redoes_a_run_whose_recipe_changed(tmp_path):
    import json
    from dataclasses import replace

    from smartfrz.collection.workers import plan, run_path
    from smartfrz.testing import synthetic_run
    from smartfrz.traces import write_run_file
    from smartfrz.zoo import get_task

    spec = build_grid(PRESETS["smoke"], tasks=["digits_mlp"])[0]
    task = get_task("digits_mlp")
    rec = synthetic_run(spec.run_id, n_snapshots=3, n_layers=1, k=4)
    rec.attrs.update(
        config_json=json.dumps({"spec": spec.to_json(), "epochs": task.epochs}),
        batch_size=task.batch_size,
        optimizer=task.optimizer,
        weight_decay=task.weight_decay,
    )
    write_run_file(run_path(tmp_path, spec), rec)
    assert plan([spec], tmp_path, resume=True, overwrite=False) == ([], [spec.run_id])
    changed = replace(spec, snapshots=spec.snapshots + 1)
    assert plan([changed], tmp_path, resume=True, overwrite=False) == ([changed], [])
    with pytest.raises(FileExistsError, match="--resume"):
        plan([spec], tmp_path, resume=False, overwrite=False)
