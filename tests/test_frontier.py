"""The freeze frontier: staircase search, probe cache, paired seeds, rule matching, and the real probe path."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from smartfrz.calibration import frontier_probes
from smartfrz.calibration.frontier import search_frontier
from smartfrz.calibration.frontier_match import match_schedule, summarise_matches
from smartfrz.calibration.frontier_probes import frozen_share, measure_frontier
from smartfrz.calibration.frontier_report import (
    _match_tables,
    frontier_markdown,
    median_se,
    paired_se,
    summarise_frontiers,
)
from smartfrz.calibration.probe_cache import ProbeCache, probe_key
from smartfrz.calibration.probes import ScheduleProbe
from smartfrz.cli import main as smartfrz_main
from smartfrz.testing import write_synthetic_traces
from smartfrz.traces import open_traces


def staircase_loss(true: list[int], calls: list[tuple[int, ...]]):
    """A monotone synthetic loss: 1 point per block frozen before its true frontier, recording each call."""

    def loss(schedule: tuple[int, ...]) -> float:
        calls.append(schedule)
        return float(sum(t < f for t, f in zip(schedule, true, strict=True)))

    return loss


def probe_bound(frontier: list[int], n_t: int) -> int:
    """Binary search's evaluations: ceil(log2(candidates + 1)) per searched block, none after a 'never'."""
    total, floor = 0, 0
    for f in frontier:
        total += math.ceil(math.log2(n_t - floor + 1))
        if f == n_t:
            break
        floor = f
    return total


@pytest.mark.parametrize(
    ("true", "n_t", "expected"),
    [
        ([0, 0, 3, 7, 7, 12, 12], 12, [0, 0, 3, 7, 7, 12, 12]),  # safe from t=0, a plateau, two never safe
        ([5, 2, 9], 12, [5, 5, 9]),  # a staircase: a block cannot freeze before the one below it
        ([12, 12, 12], 12, [12, 12, 12]),  # nothing is ever safe: one block searched, the rest never
        ([0, 0, 0, 0], 40, [0, 0, 0, 0]),
        ([39, 39], 40, [39, 39]),  # safe only at the last snapshot
    ],
)
def test_search_finds_a_known_staircase_in_log_probes(true, n_t, expected):
    calls: list[tuple[int, ...]] = []
    found = search_frontier(len(true), n_t, staircase_loss(true, calls), tol=0.2)
    assert found.blocks == expected
    assert len(found.trials) == len(calls) == len(set(calls))  # every probe recorded, none repeated
    assert len(calls) <= probe_bound(expected, n_t) <= len(true) * math.ceil(math.log2(n_t + 1))
    assert all(t.safe == (t.loss_points <= 0.2) for t in found.trials)
    assert all(t.schedule[t.block] == t.at for t in found.trials)


def test_a_loss_of_exactly_tol_is_safe_despite_rounding():
    loss = ((0.602 - 0.604) + (0.631 - 0.625)) * 100 / 2  # 0.2 in accuracy points, 0.20000000000000018 in floats
    assert loss > 0.2
    assert search_frontier(1, 4, lambda s: loss if s[0] < 4 else 0.0, tol=0.2).blocks == [0]


def test_search_prefix_schedules_fix_earlier_blocks_at_their_frontiers():
    calls: list[tuple[int, ...]] = []
    found = search_frontier(3, 8, staircase_loss([2, 4, 8], calls))
    for t in found.trials:
        assert list(t.schedule[: t.block]) == found.blocks[: t.block]
        assert all(s == 8 for s in t.schedule[t.block + 1 :])


def test_probe_cache_is_reused_and_written_atomically(tmp_path):
    path = tmp_path / "sub" / "cache.json"
    runs: list[int] = []
    cache = ProbeCache(path)
    rec = cache.get("r", 1, (3, 12), lambda: runs.append(1) or {"probe_acc": 0.5})
    assert rec == {"probe_acc": 0.5} and cache.new == 1 and runs == [1]
    assert cache.get("r", 1, (3, 12), lambda: pytest.fail("probed twice")) == rec
    again = ProbeCache(path)
    assert again.entries == {probe_key("r", 1, (3, 12)): {"probe_acc": 0.5}} and again.new == 0
    assert [p.name for p in path.parent.iterdir()] == ["cache.json"]  # no temporary file left behind
    path.write_text(json.dumps({"version": 0, "probes": {}}))
    with pytest.raises(ValueError, match="version"):
        ProbeCache(path)


@pytest.fixture
def synthetic_run(tmp_path):
    """A synthetic traced run: 5 layers, one block each (4 freezable), 10 snapshots, seed 3."""
    path = write_synthetic_traces(tmp_path / "syn.h5", n_runs=1, families=("mlp",), n_snapshots=10, n_layers=5, seed=3)
    ts = open_traces(path)
    return ts.load_run(ts.list_runs()[0].run_id)


def fake_replay(true: list[int], trained: list[tuple[int, tuple[int, ...]]]):
    """replay_schedule's stand-in: seed-dependent accuracy, minus 0.5 points per block frozen too early."""

    def replay(run, freeze_at, seed=None, progress=True, desc="", train_unfrozen=False):
        schedule = tuple(int(t) for t in freeze_at)
        trained.append((seed, schedule))
        early = sum(t < f for t, f in zip(schedule, true, strict=True))
        return ScheduleProbe(run.run_id, seed, 0, len(true) + 1, None, 0.0, 0.5 + 0.1 * seed - 0.005 * early, None, 1.0)

    return replay


def test_measure_frontier_pairs_seeds_and_resumes_from_the_cache(synthetic_run, monkeypatch, tmp_path):
    trained: list[tuple[int, tuple[int, ...]]] = []
    monkeypatch.setattr(frontier_probes, "replay_schedule", fake_replay([2, 2, 6, 10], trained))
    cache_path = tmp_path / "cache.json"
    first = measure_frontier(synthetic_run, n_seeds=2, tol=0.2, cache=ProbeCache(cache_path), progress=False)
    assert first.seeds == [3, 4] and first.frontier == [2, 2, 6, 10]
    assert first.frontier_steps == [3, 3, 7, None] and first.frontier_fraction[:3] == [0.3, 0.3, 0.7]
    assert first.reference_acc == {"3": pytest.approx(0.8), "4": pytest.approx(0.9)}
    assert all(t["loss_points"] in (pytest.approx(0.0), pytest.approx(0.5), pytest.approx(1.0)) for t in first.trials)
    assert first.probes == first.new_probes == len(trained) == 2 * (len(first.trials) + 1)
    assert {s for s, _ in trained} == {3, 4}
    assert first.frozen_share == pytest.approx(frozen_share(synthetic_run, [2, 2, 6, 10]))
    again = measure_frontier(synthetic_run, n_seeds=2, tol=0.2, cache=ProbeCache(cache_path), progress=False)
    assert again.new_probes == 0 and len(trained) == first.probes and again.frontier == first.frontier
    assert again.probe_time_s == first.probe_time_s == first.probes  # 1 s per fake probe, cached ones included
    more = measure_frontier(synthetic_run, n_seeds=3, tol=0.2, cache=ProbeCache(cache_path), progress=False)
    assert more.new_probes == len(more.trials) + 1  # only seed 5 is new
    meta = {"tol": 0.2, "seeds": 2, "traces": "syn", "date": "-", "code_version": "-"}
    md = frontier_markdown({**summarise_frontiers([first]), **meta})
    assert "2 (3, 30%); 2 (3, 30%); 6 (7, 70%); never" in md and "## Trials" in md


def test_paired_se_is_the_standard_error_of_the_per_seed_changes():
    ref = {"0": 0.90, "1": 0.80, "2": 0.70}
    acc = {"0": 0.89, "1": 0.80, "2": 0.68}  # changes -1, 0, -2 points: std 1, SE 1/sqrt(3)
    assert paired_se(acc, ref) == pytest.approx(1 / np.sqrt(3))
    assert np.isnan(paired_se({"0": 0.5}, ref))  # one seed: no spread to measure
    trials = [
        {"acc": acc, "schedule": [1, 4]},
        {"acc": dict(ref), "schedule": [2, 4]},
        {"acc": {"0": 0.9}, "schedule": [3, 4]},  # one seed: skipped
        {"acc": dict(ref), "schedule": [4, 5]},  # from the last snapshot (4) or never (5): freezes nothing, skipped
    ]
    run = {"reference_acc": ref, "n_snapshots": 5, "trials": trials}
    assert median_se(run) == pytest.approx(0.5 / np.sqrt(3))  # median of 1/sqrt(3) and 0


def hand_run():
    """4 snapshots at steps 10..40; three freezable blocks of 100, 100, 200 parameters and a 600-parameter head."""
    return SimpleNamespace(
        run_id="r",
        info=SimpleNamespace(family="cnn"),
        steps=np.array([10, 20, 30, 40]),
        numel=np.array([100, 100, 200, 600]),
        block=np.array([0, 1, 2, 3]),
    )


def test_match_counts_unsafe_late_and_exact_blocks_and_their_shares():
    run = hand_run()
    m = match_schedule(run, "monotone:0.9", [0, 2, 4], [1, 1, 4])
    assert (m.exact, m.late) == (1, 1)
    assert m.unsafe == [{"block": 0, "at": 0.25, "frontier": 0.5}]
    assert m.frontier_share == pytest.approx((100 * 20 + 100 * 20) / (1000 * 40))
    assert m.lost_share == pytest.approx(100 * 10 / (1000 * 40))  # block 1 frozen one interval late
    assert m.unsafe_share == pytest.approx(100 * 10 / (1000 * 40))  # block 0 frozen one interval early
    safe = match_schedule(run, "monotone:0.99", [1, 4, 4], [1, 1, 4])
    summary = summarise_matches([m, safe])
    assert summary["per_rule"]["monotone:0.9"]["captured"] == pytest.approx(0.75)
    assert summary["per_rule"]["monotone:0.99"]["unsafe"] == 0
    # equal net savings (0.05 each: m takes 0.075 but 0.025 of it early); the tie goes to fewer unsafe blocks
    assert summary["per_rule"]["monotone:0.9"]["net_share"] == pytest.approx(0.05)
    assert summary["best"] == "monotone:0.99" and summary["best_per_family"] == {"cnn": "monotone:0.99"}
    assert summary["held_out"] == {}  # one family: nothing to hold out
    with pytest.raises(ValueError, match="frontier of 3 blocks"):
        match_schedule(run, "x", [0, 1], [1, 1, 4])


def test_rules_are_chosen_by_net_savings_and_checked_on_a_held_out_family():
    cnn, mlp = hand_run(), hand_run()
    mlp.info = SimpleNamespace(family="mlp")
    frontier = [1, 1, 4]
    # "early" freezes block 0 one interval before its frontier but takes everything else: more net savings
    # than "late", which never freezes block 1.
    early_cnn = match_schedule(cnn, "early", [0, 1, 4], frontier)
    late_cnn = match_schedule(cnn, "late", [1, 4, 4], frontier)
    assert early_cnn.unsafe and not late_cnn.unsafe
    early_mlp = match_schedule(mlp, "early", [0, 0, 0], frontier)  # far too early on the mlp
    late_mlp = match_schedule(mlp, "late", [1, 4, 4], frontier)
    summary = summarise_matches([early_cnn, late_cnn, early_mlp, late_mlp])
    assert summary["best_per_family"] == {"cnn": "early", "mlp": "late"}
    held = summary["held_out"]
    assert held["mlp"]["rule"] == "early"
    assert held["mlp"]["net_share"] < summary["per_family"]["mlp"]["late"]["net_share"]
    assert held["cnn"]["rule"] == "late"
    md = _match_tables(summary)
    assert any(line.startswith("| mlp | early |") for line in md)


def test_probes_help_documents_the_frontier_mode(capsys):
    with pytest.raises(SystemExit):
        smartfrz_main(["probes", "--help"])
    out = capsys.readouterr().out
    assert "{rules,frontier}" in out and "--seeds" in out and "--cache" in out and "binary search" in out


def test_real_probes_frontier_on_a_tiny_zoo_run(zoo_trace, tmp_path):
    """`smartfrz probes frontier` on a real run: nothing is safe at tol -1, the last snapshot loses exactly 0."""
    out, cache = tmp_path / "front.json", tmp_path / "cache.json"
    args = ["probes", "frontier", "--traces", str(zoo_trace), "--seeds", "2", "--tol", "-1", "--cache", str(cache)]
    assert smartfrz_main([*args, "--rules", "pointwise:0.01", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    (run,) = report["runs"]
    n_t = run["n_snapshots"]
    assert run["frontier"] == [n_t] * len(run["frontier"]) and run["frozen_share"] == 0.0
    last = next(t for t in run["trials"] if t["at"] == n_t - 1)  # freezing after the last step changes nothing
    assert last["loss_points"] == 0.0 and not last["safe"]
    assert run["replay_max_abs_err"] is not None and run["replay_max_abs_err"] < 1e-2
    assert run["reference_acc"]["0"] == run["trace_acc"]  # the unfrozen replay reproduces the traced run
    assert run["new_probes"] == run["probes"] == 2 * (len(run["trials"]) + 1)
    match = report["match"]["per_rule"]["pointwise:0.01"]
    assert match["unsafe"] == match["blocks"] == len(run["frontier"])  # freezing everything at t=0 is unsafe
    assert "## Label rules against the frontier" in out.with_suffix(".md").read_text()
    assert smartfrz_main([*args, "--out", str(out)]) == 0
    assert json.loads(out.read_text())["runs"][0]["new_probes"] == 0
