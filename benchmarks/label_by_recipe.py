"""Label rules against probe-measured freeze frontiers, split by learning-rate regime (flat or decaying).

For each rule and each run of the frontier files, the rule's freeze schedule (from the run's trace) is
matched against the probed frontier block by block (``smartfrz.calibration.frontier_match``). Each row
gives the mean net savings: the frontier's savings the rule takes, minus what it freezes before the
frontier. It also gives the frontier's own savings and the number of blocks frozen before the frontier.
A CKA threshold comes late under a constant rate and early under decay (README, Results), so one table
over all runs hides which regime a rule fails in. ``--freezeout T0 ...`` adds FreezeOut's fixed schedule
(block i of n from t0 + (1 - t0) i / n of training), a bar any rule read from the weights should clear.

    python benchmarks/label_by_recipe.py --frontier predictor_data/frontier_rule_grid.json \
        --rules monotone:0.999:0.25 monotone:0.998:0.25,acc=1 floor:0.5:0.25 --freezeout 0.5
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
from simulate_by_recipe import REGIMES, recipe_of, regime_of  # same folder: run as `python benchmarks/...`

from smartfrz.cadence import freezeout_steps
from smartfrz.calibration.frontier_match import RuleMatch, aggregate_matches, match_schedule
from smartfrz.calibration.probes import rule_schedule
from smartfrz.predictor.labels import LabelRule
from smartfrz.predictor.simulate import load_frontiers
from smartfrz.traces import RunRecord, open_traces

Schedule = Callable[[RunRecord], np.ndarray]


def freezeout_schedule(t0: float) -> Schedule:
    """FreezeOut's freeze snapshot per block of a run: the first snapshot at or after its freeze step."""

    def schedule(run: RunRecord) -> np.ndarray:
        n = int(run.block.max())  # the head (last block) never freezes
        total = int(run.steps[-1])
        return np.searchsorted(run.steps, freezeout_steps(n, t0, total))  # T = never

    return schedule


def cell(matches: list[RuleMatch]) -> str:
    """``net / frontier (early blocks, runs)`` in percent, or ``-`` for no runs."""
    if not matches:
        return "-"
    agg = aggregate_matches(matches)
    shares = f"{100 * agg['net_share']:.1f}% / {100 * agg['frontier_share']:.1f}%"
    return f"{shares} ({agg['unsafe']} early, {agg['runs']} runs)"


def main() -> None:
    """Parse the arguments, match every rule on every probed run, print one markdown row per rule."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--traces", default="traces/corpus/runs", help="trace file or directory of the probed runs")
    parser.add_argument("--frontier", type=Path, nargs="+", required=True, help="JSONs of `smartfrz probes frontier`")
    parser.add_argument("--rules", nargs="*", default=[], help="RULE[@H]:TAU[:REMAINING][,acc=POINTS]")
    parser.add_argument("--freezeout", type=float, nargs="*", default=[], metavar="T0", help="FreezeOut schedules")
    args = parser.parse_args()
    if not args.rules and not args.freezeout:
        parser.error("give --rules, --freezeout or both")
    if any(not 0.0 < t0 <= 1.0 for t0 in args.freezeout):
        parser.error("FreezeOut's t0 is a fraction of training in (0, 1]")
    schedules: dict[str, Schedule] = {}
    for rule in (LabelRule.parse(r) for r in args.rules):
        schedules[f"`{rule.key}`"] = lambda run, rule=rule: rule_schedule(run, rule)
    for t0 in args.freezeout:
        schedules[f"FreezeOut t0={t0:g}"] = freezeout_schedule(t0)
    traces = open_traces(args.traces)
    loaded = [(traces.load_run(rid), frontier) for rid, frontier in load_frontiers(args.frontier).items()]
    print("| rule | " + " | ".join(f"{g}: net / frontier" for g in REGIMES) + " |")
    print("|---|" + "---|" * len(REGIMES))
    for name, schedule in schedules.items():
        by: dict[str, list[RuleMatch]] = {g: [] for g in REGIMES}
        for run, frontier in loaded:
            m = match_schedule(run, name, schedule(run), frontier)
            by[regime_of(recipe_of(run.info))].append(m)
            by["all"].append(m)
        print(f"| {name} | " + " | ".join(cell(by[g]) for g in REGIMES) + " |")


if __name__ == "__main__":
    main()
