"""`python -m smartfrz.fit_predictor`: fit end to end on small traces, reload, report, probes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from smartfrz.calibration.probes import run_probe
from smartfrz.collection.grid import RunSpec, run_spec
from smartfrz.fit_predictor import main
from smartfrz.predictor import LabelRule, load_predictor
from smartfrz.testing import write_synthetic_traces
from smartfrz.traces import open_traces

FIT_ARGS = ["--window", "8", "--epochs", "3", "--max-batches", "4", "--batch-size", "64", "--embed-dim", "16"]


@pytest.fixture(scope="module")
def traces(tmp_path_factory) -> Path:
    """Six synthetic runs in two families (the documented trace format, written by smartfrz.traces)."""
    path = tmp_path_factory.mktemp("traces") / "syn.h5"
    return write_synthetic_traces(path, n_runs=6, families=("cnn", "mlp"), n_snapshots=24, n_layers=4, k=32)


@pytest.fixture(scope="module")
def fitted(traces, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fit") / "smoke.pt"
    assert main(["fit", "--traces", str(traces), "--out", str(out), "--tau", "0.9", "--lofo", *FIT_ARGS]) == 0
    return out


def test_fit_writes_checkpoint_report_and_card(fitted, traces):
    report = json.loads(fitted.with_name("smoke.report.json").read_text())
    card = fitted.with_name("smoke.card.md").read_text()
    assert report["label_rule"] == {"rule": "monotone", "tau": 0.9}
    assert set(report["metrics"]) == {"attention", "logreg", "gboost"}
    for res in report["metrics"].values():
        assert set(res["test"]) == {"all", "cnn", "mlp"}
        assert 0.0 <= res["test"]["all"]["roc_auc"] <= 1.0
    assert set(report["data"]["lofo"]) == {"cnn", "mlp"}
    assert report["latency"]["n_layers"] == 500 and report["latency"]["incremental_stage_ms"] > 0
    assert "Leave one family out" in card and str(traces) in card
    assert fitted.stat().st_size < 5_000_000


def test_reloaded_predictor_is_deterministic_and_matches_report(fitted, traces):
    p = load_predictor(fitted)
    report = json.loads(fitted.with_name("smoke.report.json").read_text())
    assert (p.window, p.k) == (8, 32) and p.threshold == pytest.approx(report["threshold"])
    run = open_traces(traces).load_run(open_traces(traces).list_runs()[0].run_id)
    windows = torch.from_numpy(run.samples[-8:]).transpose(0, 1).contiguous()  # [L, W, K], last window
    a = p.predict_proba(windows)
    assert torch.equal(a, load_predictor(fitted).predict_proba(windows))
    np.testing.assert_allclose(p.predict_proba(windows * 8.0).numpy(), a.numpy(), atol=1e-6)
    np.testing.assert_allclose(p.predict_proba(windows * 7.5).numpy(), a.numpy(), atol=0.02)  # fp16 input rounding


def test_fit_is_reproducible(fitted, traces, tmp_path):
    out = tmp_path / "again.pt"
    main(["fit", "--traces", str(traces), "--out", str(out), "--tau", "0.9", "--no-latency", *FIT_ARGS])
    a = torch.load(fitted, weights_only=True)["state_dict"]
    b = torch.load(out, weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_fit_rejects_windows_longer_than_runs(traces, tmp_path):
    with pytest.raises(ValueError, match="at least window"):
        main(["fit", "--traces", str(traces), "--out", str(tmp_path / "x.pt"), "--window", "50", "--no-latency"])


def test_latency_command(fitted, capsys):
    assert main(["latency", "--predictor", str(fitted), "--layers", "20"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_layers"] == 20 and out["attention_ms"] > 0


@pytest.fixture(scope="module")
def zoo_run(tmp_path_factory):
    """A tiny real run of the zoo's digits MLP (3 epochs, 256 samples, 12 snapshots)."""
    spec = RunSpec(
        task="digits_mlp", optimizer="sgd", lr=0.1, seed=0, max_train=256, max_val=200, epochs=3, snapshots=12
    )
    path = tmp_path_factory.mktemp("zoo") / "run.h5"
    run_spec(spec, path, progress=False)
    ts = open_traces(path)
    return ts.load_run(ts.list_runs()[0].run_id)


def test_probe_replays_run_and_freezes_prefix(zoo_run):
    everything = run_probe(zoo_run, LabelRule("pointwise", 0.01), progress=False)  # every block converged at t=0
    assert everything.frozen_blocks == everything.n_blocks - 1 >= 1
    assert everything.first_freeze_step == int(zoo_run.steps[0])
    assert everything.replay_max_abs_err is not None
    assert everything.replay_max_abs_err <= 2e-3 * np.abs(zoo_run.samples[0]).max()  # fp16 storage rounding
    assert everything.frozen_param_step_fraction > 0.5
    assert 0.0 <= everything.probe_acc <= 1.0
    assert everything.acc_loss_points == pytest.approx((everything.reference_acc - everything.probe_acc) * 100)
    never = dataclasses.replace(zoo_run, cka=np.zeros_like(zoo_run.cka))  # no layer ever converges
    nothing = run_probe(never, LabelRule("monotone", 0.5), progress=False)
    assert nothing.frozen_blocks == 0 and nothing.probe_acc == nothing.reference_acc
