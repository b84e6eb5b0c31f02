"""`python -m smartfrz.fit_predictor`: fit end to end on small traces, reload, report, probes."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from smartfrz.calibration.probes import run_probe, summarise_probes
from smartfrz.fit_predictor import main
from smartfrz.predictor import LabelRule, load_predictor
from smartfrz.predictor.baselines import BASELINES
from smartfrz.predictor.latency import _best_ms
from smartfrz.testing import write_synthetic_traces
from smartfrz.traces import open_traces

FIT_ARGS = ["--window", "8", "--epochs", "30", "--max-batches", "4", "--batch-size", "64", "--embed-dim", "16"]


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
    assert report["label_rule"] == {
        "rule": "monotone",
        "tau": 0.9,
        "horizon": 0.25,
        "remaining": None,
        "acc_gate": None,
        "norm_cap": None,
    }
    assert set(report["metrics"]) == {"attention", "attention_no_progress", "attention_no_loss", *BASELINES}
    for res in report["metrics"].values():
        assert set(res["test"]) == {"all", "cnn", "mlp"}
        # the synthetic traces are learnable: every model must beat chance (0.5) by a wide margin
        assert res["test"]["all"]["roc_auc"] > 0.85, res["test"]["all"]
        assert res["test"]["all"]["pr_auc"] > res["test"]["all"]["positives"] / res["test"]["all"]["n"] + 0.1
    assert set(report["data"]["lofo"]) == {"cnn", "mlp"}
    latency = report["latency"]
    assert latency["n_layers"] == 500 and latency["threads"] == 1
    assert all(np.isfinite(latency[k]) and 0 < latency[k] < 60_000 for k in latency if k.endswith("_ms"))
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
    rounding = (p.predict_proba(windows * 7.5) - a).abs().max()  # only fp16 input rounding differs
    early = torch.from_numpy(run.samples[:8]).transpose(0, 1).contiguous()  # same layers, early in training
    moved = (p.predict_proba(early) - a).abs().max()
    assert moved > 0.2 and rounding < moved / 10 and rounding < a.std() / 4, (rounding, moved, a)


def test_fit_is_reproducible(fitted, traces, tmp_path):
    out = tmp_path / "again.pt"
    main(["fit", "--traces", str(traces), "--out", str(out), "--tau", "0.9", "--no-latency", *FIT_ARGS])
    a = torch.load(fitted, weights_only=True)["state_dict"]
    b = torch.load(out, weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_fit_with_ema_keeps_averaged_weights_and_records_the_decay(fitted, traces, tmp_path):
    """--ema: a different (averaged) network from the same seed, the decay in the report; a bad decay is refused."""
    out = tmp_path / "ema.pt"
    args = ["fit", "--traces", str(traces), "--out", str(out), "--tau", "0.9", "--no-latency", *FIT_ARGS]
    assert main([*args, "--ema", "0.9"]) == 0
    a = torch.load(fitted, weights_only=True)["state_dict"]
    b = torch.load(out, weights_only=True)["state_dict"]
    assert torch.equal(a["projection"], b["projection"]) and torch.equal(a["token_mean"], b["token_mean"])
    assert not all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads(out.with_name("ema.report.json").read_text())["train_config"]["ema_decay"] == 0.9
    load_predictor(out)  # the averaged state loads into a plain network
    assert main([*args, "--ema", "1.0"]) == 2


def test_fit_ships_the_threshold_calibrated_on_probe_frontiers(traces, tmp_path):
    """--frontier: the shipped threshold is the sweep's pick on the probed runs; the card says so."""
    infos = open_traces(traces).list_runs()
    probed = {i.run_id: [i.n_snapshots // 2] * 3 for i in infos[:3]}  # 4 layers, the last the head: 3 blocks
    front = tmp_path / "front.json"
    front.write_text(json.dumps({"runs": [{"run_id": r, "frontier": f} for r, f in probed.items()]}))
    out = tmp_path / "cal.pt"
    args = ["fit", "--traces", str(traces), "--out", str(out), "--tau", "0.9", "--acc-gate", "5", "--no-latency"]
    assert main([*args, "--frontier", str(front), *FIT_ARGS]) == 0
    report = json.loads(out.with_name("cal.report.json").read_text())
    cal = report["data"]["frontier_threshold"]
    assert report["label_rule"]["acc_gate"] == 5.0
    assert set(cal["runs_split"]) == set(probed) and cal["missing_runs"] == []
    assert set(cal["runs_split"].values()) == {"val"}  # calibrated out of sample: never trained on
    best = max(row["net_saved"] for row in cal["sweep"])
    picks = [row["threshold"] for row in cal["sweep"] if row["net_saved"] >= best - cal["slack"]]
    assert cal["threshold"] == max(picks) == report["threshold"] == pytest.approx(load_predictor(out).threshold)
    card = out.with_name("cal.card.md").read_text()
    assert "probe-measured frontiers" in card and f"Threshold {cal['validation_threshold']:.4f}: the lowest" in card
    front.write_text(json.dumps({"runs": [{"run_id": "nope", "frontier": [1, 1, 1]}]}))
    assert main([*args, "--frontier", str(front), *FIT_ARGS]) == 2  # no fitted run has a frontier: one clear line


def test_fit_without_validation_tasks_says_why(traces, tmp_path, capsys):
    """--group-by task with one task per family leaves no validation tasks: the error says where they come from."""
    args = ["fit", "--traces", str(traces), "--out", str(tmp_path / "x.pt"), "--tau", "0.9", "--no-latency"]
    assert main([*args, "--group-by", "task", *FIT_ARGS]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "val split is empty" in err and "families of 3 or more tasks" in err


def test_lofo_errors_name_the_held_out_family(traces, monkeypatch):
    """A fold that cannot be fitted names the family it left out."""
    import smartfrz.predictor.fit as fit_module

    real = fit_module.evaluate
    calls = []

    def second_fails(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise ValueError("the val split is empty")
        return real(*args, **kwargs)

    monkeypatch.setattr(fit_module, "evaluate", second_fails)
    cfg = fit_module.FitConfig(traces=[str(traces)], label_rule=LabelRule(tau=0.9), lofo=True, baselines=())
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, window=8, embed_dim=16))
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, epochs=2, max_batches_per_epoch=2))
    with pytest.raises(ValueError, match=r"leaving out cnn: the val split is empty"):
        fit_module.run_fit(cfg)


def test_fit_rejects_min_windows_longer_than_runs(traces, tmp_path, capsys):
    """Windows longer than a run are masked, but a layer must be judged within the run (24 snapshots)."""
    out = str(tmp_path / "x.pt")
    args = ["fit", "--traces", str(traces), "--out", out, "--window", "50", "--min-window", "30", "--no-latency"]
    assert main(args) == 2
    stderr = capsys.readouterr().err
    err = stderr.strip().splitlines()[-1]  # after the loading progress bar
    assert err.startswith("error: no run in") and "at least 30 snapshots" in err and "smaller --min-window" in err
    assert "Traceback" not in stderr
    with pytest.raises(
        ValueError, match="at least 30 snapshots"
    ):  # --debug: the library's exception, traceback and all
        main([*args, "--debug"])


def test_fit_is_the_default_subcommand(traces, tmp_path, capsys):
    """`python -m smartfrz.fit_predictor --traces ...` (the design card's command) means `... fit --traces ...`."""
    out = str(tmp_path / "x.pt")
    args = ["--traces", str(traces), "--out", out, "--window", "50", "--min-window", "30", "--no-latency"]
    assert main(args) == 2
    assert "at least 30 snapshots" in capsys.readouterr().err.strip().splitlines()[-1]
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0 and "{fit,latency,probes}" in capsys.readouterr().out


def test_latency_command(fitted, capsys):
    assert main(["latency", "--predictor", str(fitted), "--layers", "20"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_layers"] == 20 and all(np.isfinite(out[k]) and out[k] > 0 for k in out if k.endswith("_ms"))


def test_latency_takes_the_best_of_repeats():
    ticks = iter([0.0, 5.0, 10.0, 10.002, 20.0, 20.003])  # three timed calls: 5 s, 2 ms, 3 ms
    calls = []
    assert _best_ms(lambda: calls.append(1), 3, clock=lambda: next(ticks)) == pytest.approx(2.0)
    assert len(calls) == 4  # one warm-up call, untimed


@pytest.fixture(scope="module")
def zoo_run(zoo_trace):
    """The tiny real digits MLP run of ``zoo_trace``."""
    ts = open_traces(zoo_trace)
    return ts.load_run(ts.list_runs()[0].run_id)


def test_probe_replays_run_and_freezes_prefix(zoo_run):
    everything = run_probe(zoo_run, LabelRule("pointwise", 0.01), progress=False)  # every block converged at t=0
    assert everything.frozen_blocks == everything.n_blocks - 1 >= 1
    assert everything.first_freeze_step == int(zoo_run.steps[0])
    assert everything.replay_max_abs_err is not None
    assert everything.replay_max_abs_err <= 2e-3 * np.abs(zoo_run.samples[0]).max()  # fp16 storage rounding
    assert everything.frozen_param_step_fraction > 0.5
    assert everything.reference_acc == pytest.approx(float(zoo_run.val_acc[-1]))
    assert everything.acc_loss_points == pytest.approx((everything.reference_acc - everything.probe_acc) * 100)
    never = dataclasses.replace(zoo_run, cka=np.zeros_like(zoo_run.cka))  # no layer ever converges
    nothing = run_probe(never, LabelRule("monotone", 0.5), progress=False)
    assert nothing.frozen_blocks == 0 and nothing.probe_acc == nothing.reference_acc
    at_end = np.zeros_like(zoo_run.cka)
    at_end[-1] = 1.0  # converged only at the last snapshot: freezing after the last step changes nothing
    late = run_probe(dataclasses.replace(zoo_run, cka=at_end), LabelRule("monotone", 0.5), progress=False)
    assert late.frozen_blocks == late.n_blocks - 1 and late.frozen_param_step_fraction == 0.0
    assert late.probe_acc == late.reference_acc  # the replay and its evaluation reproduce the traced run
    capped = run_probe(zoo_run, LabelRule("pointwise", 0.01, remaining=0.0), progress=False)
    assert capped.rule_key == "pointwise:0.01:0" and capped.first_freeze_step == int(zoo_run.steps[-1])
    assert summarise_probes([everything, capped])["per_tau"].keys() == {"pointwise:0.01", "pointwise:0.01:0"}
