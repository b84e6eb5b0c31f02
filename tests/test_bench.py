"""The benchmark: held-out tasks, paired accounting, oracle schedules, and `--quick` end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from test_runtime_support import RelChangePredictor

from smartfrz.bench import BENCH_TASKS, PolicySpec, ScheduledFreeze
from smartfrz.bench.__main__ import main, training_tasks
from smartfrz.bench.oracle import candidate_schedules, schedule_from_cka
from smartfrz.bench.policies import Cadence, build_policy
from smartfrz.bench.report import _timed_against, add_policies, merge_shards, paired, summarise, targets
from smartfrz.bench.tasks import held_out
from smartfrz.cadence import record_every_for
from smartfrz.predictor.checkpoint import save_checkpoint
from smartfrz.predictor.labels import LabelRule
from smartfrz.predictor.model import AttentionPredictorNet, ModelConfig
from smartfrz.runtime import Freezer


def test_bench_tasks_hold_out_a_family_and_a_dataset_of_the_training_preset():
    names = [t.name for t in BENCH_TASKS]
    training = training_tasks()
    assert not set(names) & set(training)
    out = held_out(names, training)
    assert out["families"] and out["datasets"]
    assert {t.scenario for t in BENCH_TASKS} == {"scratch", "finetune"}


def test_bench_smartfrz_policies_know_the_run_length():
    """The predictor's progress input is t / total_steps: the bench must hand the run's length to SmartFRZ."""
    cadence = Cadence.for_run(300, 40, 10)
    plain = build_policy(PolicySpec.parse("smartfrz+cache"), 300, cadence, RelChangePredictor(), 0)
    assert plain.total_steps == 300 and plain.backstop is None
    backstop = build_policy(PolicySpec.parse("smartfrz-backstop"), 300, cadence, RelChangePredictor(), 0)
    assert backstop.total_steps == 300 and backstop.backstop == cadence.freezeout_t0


def test_bench_records_at_the_fractions_the_traces_and_the_freezer_use():
    """The bench's SmartFRZ cadence is the collector's and the Freezer's (276 steps: every 7, not every 6)."""
    assert Cadence.for_run(276, 40, 10).record_every == record_every_for(276, 40) == 7
    assert Cadence.for_run(92, 40, 10).record_every == 2 and Cadence.for_run(10, 40, 10).record_every == 1


def test_policy_spec_parsing_and_errors():
    assert PolicySpec.parse("smartfrz+cache") == PolicySpec("smartfrz", True)
    assert PolicySpec.parse("freezeout").name == "freezeout"
    with pytest.raises(ValueError, match="unknown policy"):
        PolicySpec.parse("egeria")
    with pytest.raises(ValueError, match="none\\+cache"):
        PolicySpec.parse("none+cache")


def test_scheduled_freeze_replays_its_schedule_as_a_prefix():
    model = torch.nn.Sequential(*(torch.nn.Linear(4, 4) for _ in range(3)), torch.nn.Linear(4, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    freezer = Freezer(model, opt, ScheduledFreeze([2, 2, None]), measure_flops=False)
    for step in range(1, 5):
        model(torch.randn(3, 4)).sum().backward()
        opt.step()
        freezer.step()
        assert freezer.num_frozen == (2 if step >= 2 else 0)
    with pytest.raises(ValueError, match="non-decreasing"):
        ScheduledFreeze([3, 2, None])
    with pytest.raises(ValueError, match="freezable blocks"):
        Freezer(model, torch.optim.SGD(model.parameters(), lr=0.1), ScheduledFreeze([1]), measure_flops=False)


def test_oracle_schedule_follows_the_cka_rule_and_the_prefix():
    steps = [10, 20, 30, 40]
    cka = np.array([[0.50, 0.99, 0.2], [0.97, 0.99, 0.5], [0.99, 0.99, 0.9], [1.0, 1.0, 1.0]])
    # block 0 is above 0.95 from snapshot 1; block 1 from 0 but must wait for block 0; block 2 only at the end.
    assert schedule_from_cka(cka, steps, 0.95, 40) == [20, 20, None]
    assert schedule_from_cka(cka, steps, 0.98, 40) == [30, 30, None]
    ladder = candidate_schedules(cka, steps, 40, (0.98, 0.95, 0.999))
    assert [tau for tau, _ in ladder] == [0.95, 0.98]  # earliest first; 0.999 freezes nothing before the end
    with pytest.raises(ValueError, match="do not match"):
        schedule_from_cka(cka, steps[:2], 0.9, 40)


def test_paired_rejects_a_run_from_another_seed():
    run = {"task": "t", "seed": 1, "policy": "freezeout", "val_acc": 0.5, "flops_saved_fraction": 0.1}
    none = {"task": "t", "seed": 0, "policy": "none", "val_acc": 0.6, "train_time_s": 1.0}
    with pytest.raises(ValueError, match="not paired"):
        paired({**run, "train_time_s": 1.0, "events": [], "total_steps": 1, "blocks_frozen": 0}, none)


@pytest.fixture(scope="module")
def quick_results(tmp_path_factory):
    """One `--quick` run with an untrained predictor whose threshold is 0, so SmartFRZ freezes for sure."""
    root = tmp_path_factory.mktemp("bench")
    torch.manual_seed(0)
    ckpt = save_checkpoint(
        root / "untrained.pt", AttentionPredictorNet(ModelConfig()), 0.0, LabelRule(), {"note": "test only"}
    )
    out = root / "out"
    assert main(["--quick", "--predictor", str(ckpt), "--out", str(out), "--no-progress", "--threads", "1"]) == 0
    return out, json.loads((out / "results.json").read_text())


def test_quick_outputs_exist(quick_results):
    out, raw = quick_results
    for name in ("results.json", "results.md", "tradeoff.png", "timeline_synth_resmlp.png"):
        assert (out / name).stat().st_size > 0
    table = (out / "results.md").read_text()
    for policy in ("none", "freezeout", "autofreeze", "smartfrz", "smartfrz+cache", "oracle"):
        assert f"| {policy} |" in table
    assert raw["held_out"]["families"] == ["resmlp"]
    assert raw["machine"]["device"] == "cpu"


def test_quick_runs_are_paired_and_consistent(quick_results):
    _, raw = quick_results
    runs = raw["runs"]
    seeds, policies = raw["config"]["seeds"], raw["config"]["policies"]
    assert len(seeds) >= 2
    assert sorted((r["seed"], r["policy"]) for r in runs) == sorted((s, p) for s in seeds for p in policies)
    nones = {r["seed"]: r for r in runs if r["policy"] == "none"}
    for r in runs:
        assert r["flops_full"] == pytest.approx(nones[r["seed"]]["flops_full"])  # same steps, same model
        assert 0.0 <= r["flops_saved_fraction"] < 1.0
        steps = [e["step"] for e in r["events"]]
        assert steps == sorted(steps) and all(1 <= s <= r["total_steps"] for s in steps)
        assert [e["block"] for e in r["events"]] == list(range(len(r["events"])))
        assert r["blocks_frozen"] == len(r["events"]) <= len(r["blocks"]) - 1
        assert 0.0 <= r["policy_overhead_s"] <= r["freezer_overhead_s"] < r["train_time_s"]
        if r["policy"] == "none":
            assert r["flops_saved_fraction"] == 0.0 and not r["events"]
        if r["policy"].startswith("smartfrz"):  # threshold 0: every freezable block froze at the first stage
            assert r["blocks_frozen"] == len(r["blocks"]) - 1
        if r["policy"] == "smartfrz+cache":
            assert r["cache"]["hit_rate"] > 0
            plain = next(x for x in runs if x["seed"] == r["seed"] and x["policy"] == "smartfrz")
            assert r["flops_saved_fraction"] > plain["flops_saved_fraction"]  # the cache also saves forwards


def test_quick_summary_is_computed_against_the_paired_none_run(quick_results):
    _, raw = quick_results
    runs = raw["runs"]
    for row in raw["summary"]["rows"]:
        if row["policy"] == "oracle":
            continue
        mine = [r for r in runs if r["task"] == row["task"] and r["policy"] == row["policy"]]
        deltas = []
        for r in mine:
            none = next(x for x in runs if x["task"] == r["task"] and x["seed"] == r["seed"] and x["policy"] == "none")
            deltas.append((r["val_acc"] - none["val_acc"]) * 100)
        assert row["delta_points_mean"] == pytest.approx(sum(deltas) / len(deltas))
        assert row["delta_points_sd"] == pytest.approx(float(np.std(deltas, ddof=1)))
        if row["policy"] == "none":
            assert row["delta_points_mean"] == 0.0 and row["flops_saved_mean"] == 0.0 and row["wall_saved_mean"] == 0.0
    target = raw["summary"]["targets"][0]
    assert target["policy"] == "smartfrz-backstop+cache" and target["wall_saved_target"] == 0.25
    main_row = next(r for r in raw["summary"]["rows"] if r["policy"] == target["policy"])
    assert target["flops_saved_target"] == 0.25  # from scratch; fine-tuning's is 0.40
    assert target["flops_saved_meets"] == (main_row["flops_saved_mean"] >= 0.25)


def test_quick_oracle_probes_are_on_the_ladder_and_pick_the_first_within_tolerance(quick_results):
    _, raw = quick_results
    assert len(raw["oracle"]) == len(raw["config"]["seeds"])
    for entry in raw["oracle"]:
        none = next(r for r in raw["runs"] if r["seed"] == entry["seed"] and r["policy"] == "none")
        assert len(none["block_cka"]) == len(none["snapshot_steps"]) == raw["config"]["oracle_snapshots"]
        assert none["block_cka"][-1] == pytest.approx([1.0] * (len(none["blocks"]) - 1), abs=1e-6)
        taus = [p["tau"] for p in entry["probes"]]
        assert taus == sorted(taus)
        for i, probe in enumerate(entry["probes"]):
            assert probe["loss_points"] == pytest.approx((none["val_acc"] - probe["run"]["val_acc"]) * 100)
            within = probe["loss_points"] <= entry["tolerance_points"]
            assert within == (entry["chosen"] == i)
            frozen_at = [e["step"] for e in probe["run"]["events"]]
            assert frozen_at == [s for s in probe["schedule"] if s is not None]


def _error(capsys) -> str:
    """The one line a failed command printed on stderr."""
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


def test_seen_tasks_are_refused_without_the_flag(tmp_path, capsys):
    assert main(["--tasks", "digits_mlp", "--policies", "none", "--out", str(tmp_path), "--no-progress"]) == 2
    err = _error(capsys)
    assert "trained the shipped predictor" in err and "pass --allow-seen-tasks" in err


def test_the_backstop_policy_alone_loads_the_predictor(tmp_path):
    """Every SmartFRZ variant runs the predictor, so naming only `smartfrz-backstop` must still load it."""
    assert all(PolicySpec.parse(p).needs_predictor for p in ("smartfrz", "smartfrz-backstop+cache"))
    assert not PolicySpec.parse("freezeout").needs_predictor
    argv = ["--quick", "--policies", "none", "smartfrz-backstop", "--no-oracle", "--epochs", "1"]
    assert main([*argv, "--out", str(tmp_path), "--no-progress", "--no-plots"]) == 0
    runs = json.loads((tmp_path / "results.json").read_text())["runs"]
    assert {r["policy"] for r in runs} == {"none", "smartfrz-backstop"}


def test_none_is_required(tmp_path, capsys):
    assert main(["--quick", "--policies", "freezeout", "--out", str(tmp_path), "--no-progress"]) == 2
    assert "'none' policy is required" in _error(capsys)


def test_missing_predictor_is_a_clear_error(tmp_path, capsys):
    assert main(["--quick", "--predictor", str(tmp_path / "nope.pt"), "--out", str(tmp_path), "--no-progress"]) == 2
    err = _error(capsys)
    assert "nope.pt" in err and "pass --predictor PATH" in err


def test_nan_free_summary(quick_results):
    _, raw = quick_results
    for row in raw["summary"]["rows"]:
        for key in ("acc_mean", "delta_points_mean", "flops_saved_mean", "wall_saved_mean"):
            assert math.isfinite(row[key])


def test_merge_rewrites_the_report_of_shards_and_refuses_mismatched_ones(quick_results, tmp_path):
    out, raw = quick_results
    merged_out = tmp_path / "merged"
    assert main(["--merge", str(out), "--out", str(merged_out), "--no-plots"]) == 0
    merged = json.loads((merged_out / "results.json").read_text())
    assert merged["summary"] == raw["summary"]
    assert (merged_out / "results.md").read_text() == (out / "results.md").read_text()
    with pytest.raises(ValueError, match="more than one bench shard"):
        merge_shards([raw, raw])
    other = {**raw, "config": {**raw["config"], "tasks": ["other"], "seeds": [7]}}
    with pytest.raises(ValueError, match=r"other settings than shard 0: \['seeds'\]"):
        merge_shards([raw, other])


def _pairs(raw):
    """(run, its seed's 'none' run) for every run of one bench result."""
    nones = {(r["task"], r["seed"]): r for r in raw["runs"] if r["policy"] == "none"}
    return [(r, nones[r["task"], r["seed"]]) for r in raw["runs"]]


def test_added_policies_replace_theirs_only_when_the_none_runs_are_the_same(quick_results, tmp_path):
    import copy

    out, raw = quick_results
    extra = copy.deepcopy({k: v for k, v in raw.items() if k != "summary"})
    extra["config"]["policies"] = ["none", "smartfrz"]
    extra["runs"] = [r for r in extra["runs"] if r["policy"] in ("none", "smartfrz")]
    for r in extra["runs"]:
        r["train_time_s"] *= 3.0  # a slower machine: wall-clock ratios must survive, absolute times do not
        if r["policy"] == "smartfrz":
            r["flops_saved_fraction"], r["predictor_note"] = 0.5, "new"
    merged = add_policies(raw, extra)
    ours = [paired(r, n)["wall_saved"] for r, n in _pairs(merged) if r["policy"] == "smartfrz"]
    theirs = [paired(r, n)["wall_saved"] for r, n in _pairs(extra) if r["policy"] == "smartfrz"]
    assert ours and ours == pytest.approx(theirs)
    kept = [p for p in raw["config"]["policies"] if p != "smartfrz"]
    assert merged["config"]["policies"] == [*kept, "smartfrz"]
    assert [r.get("predictor_note") for r in merged["runs"] if r["policy"] == "smartfrz"] == ["new"] * len(
        [r for r in raw["runs"] if r["policy"] == "smartfrz"]
    )
    assert len([r for r in merged["runs"] if r["policy"] == "freezeout"]) == len(
        [r for r in raw["runs"] if r["policy"] == "freezeout"]
    )
    assert merged["oracle"] == raw["oracle"]
    extra_dir = tmp_path / "extra"
    extra_dir.mkdir()
    (extra_dir / "results.json").write_text(json.dumps(extra))
    assert (
        main(["--merge", str(out), "--add-policies", str(extra_dir), "--out", str(tmp_path / "m"), "--no-plots"]) == 0
    )
    next(r for r in extra["runs"] if r["policy"] == "none")["val_acc"] += 0.01
    with pytest.raises(ValueError, match="not paired"):
        add_policies(raw, extra)
    with pytest.raises(ValueError, match=r"other settings: \['seeds'\]"):
        add_policies(raw, {**extra, "config": {**extra["config"], "seeds": [7]}})


def test_added_policies_on_some_tasks_replace_only_those_tasks_runs(quick_results):
    """A rerun of one task's SmartFRZ runs (same predictor, every recipe) replaces that task's; another task keeps
    its own; a changed 'none' run, a policy the base lacks and another predictor are refused on a subset."""
    import copy

    _, raw = quick_results
    base = copy.deepcopy({k: v for k, v in raw.items() if k != "summary"})
    task = base["config"]["tasks"][0]
    twin = next(t.name for t in BENCH_TASKS if t.name != task)  # a second registered task, same runs
    decayed = [{**r, "task": f"{r['task']}@cosine-wu0.05"} for r in base["runs"]]  # a second recipe's label
    base["runs"] += decayed
    base["runs"] += [{**r, "task": r["task"].replace(task, twin, 1)} for r in base["runs"]]
    base["config"]["tasks"] = [task, twin]
    extra = copy.deepcopy({k: v for k, v in base.items() if k != "summary"})
    extra["config"]["tasks"] = [task]
    extra["config"]["policies"] = ["none", "smartfrz"]
    extra["runs"] = [
        {**r, "predictor_note": "rerun"}
        for r in extra["runs"]
        if r["policy"] in ("none", "smartfrz") and r["task"].split("@")[0] == task
    ]
    merged = add_policies(base, extra)
    notes = {(r["task"], r.get("predictor_note")) for r in merged["runs"] if r["policy"] == "smartfrz"}
    assert notes == {
        (task, "rerun"),
        (f"{task}@cosine-wu0.05", "rerun"),
        (twin, None),
        (f"{twin}@cosine-wu0.05", None),
    }
    assert len(merged["runs"]) == len(base["runs"]) and merged["predictor"] == base["predictor"]
    summarise(merged)  # every policy still has runs on every task
    changed = copy.deepcopy(extra)
    next(r for r in changed["runs"] if r["policy"] == "none" and "@" in r["task"])["val_acc"] += 0.01
    with pytest.raises(ValueError, match="not paired"):
        add_policies(base, changed)
    with pytest.raises(ValueError, match="predictor"):
        add_policies(base, {**extra, "predictor": {"name": "another"}})
    without = {
        **base,
        "config": {**base["config"], "policies": [p for p in base["config"]["policies"] if p != "smartfrz"]},
        "runs": [r for r in base["runs"] if r["policy"] != "smartfrz"],
    }
    with pytest.raises(ValueError, match="policies"):  # the twin would have no smartfrz runs
        add_policies(without, extra)
    with pytest.raises(ValueError, match="tasks"):
        add_policies(base, {**extra, "config": {**extra["config"], "tasks": ["unknown_task"]}})


def test_merge_of_missing_results_is_a_clear_error(tmp_path, capsys):
    assert main(["--merge", str(tmp_path), "--out", str(tmp_path / "m")]) == 2
    assert "no bench results at" in _error(capsys)


def test_targets_compare_a_cached_policy_with_freezeout_and_its_cached_schedule():
    def row(policy, saved, delta):
        return {
            "policy": policy,
            "scenario": "scratch",
            "flops_saved_mean": saved,
            "delta_points_mean": delta,
            "wall_saved_mean": 0.0,
            "delta_points_min": delta - 1.5,
        }

    rows = [row("freezeout", 0.16, 0.0), row("freezeout+cache", 0.24, 0.0), row("smartfrz-backstop+cache", 0.22, 0.0)]
    check = targets(rows, "smartfrz-backstop+cache")
    assert check["beats_freezeout"] and not check["beats_freezeout_cache"] and "beats_autofreeze" not in check
    assert targets(rows[:2], "smartfrz+cache") is None
    assert not check["worst_seed_within_1_point"]  # one seed 1.5 points below its mean of 0
    assert check["record_predict_share"] is None  # rows from runs that did not time the policy apart
    assert "share_of_oracle" not in check  # no oracle row
    rows.append(row("oracle", 0.44, 0.0))
    assert targets(rows, "smartfrz-backstop+cache")["share_of_oracle"] == pytest.approx(0.5)
    rows[2]["policy_share_mean"] = 0.004
    assert targets(rows, "smartfrz-backstop+cache")["record_predict_share"] == 0.004


def test_policy_share_uses_the_measured_time_of_an_added_run():
    """Rescaling an added run's training time to the base bench must not change its measured overhead share."""
    none = {"task": "t", "seed": 0, "policy": "none", "val_acc": 0.9, "train_time_s": 50.0}
    own_none = {**none, "train_time_s": 100.0}
    run = {
        **none, "policy": "smartfrz", "train_time_s": 100.0, "policy_overhead_s": 0.5,
        "flops_saved_fraction": 0.2, "blocks_frozen": 1, "events": [], "total_steps": 10,
    }  # fmt: skip
    added = _timed_against(run, own_none, none)
    assert added["train_time_s"] == 50.0 and paired(added, none)["policy_share"] == pytest.approx(0.005)
