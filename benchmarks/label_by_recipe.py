"""Label rules against probe-measured freeze frontiers, split by learning-rate regime (flat or decaying).

For each rule and each run of the frontier files, the rule's freeze schedule (from the run's trace) is
matched against the probed frontier block by block (``smartfrz.calibration.frontier_match``). Each row
gives the mean net savings: the frontier's savings the rule takes, minus what it freezes before the
frontier. It also gives the frontier's own savings and the number of blocks frozen before the frontier.
A CKA threshold comes late under a constant rate and early under decay (README, Results), so one table
over all runs hides which regime a rule fails in.

    python benchmarks/label_by_recipe.py --frontier predictor_data/frontier_rule_grid.json \
        --rules monotone:0.999:0.25 monotone:0.998:0.25,acc=1 floor:0.5:0.25
"""

from __future__ import annotations

import argparse
from pathlib import Path

from simulate_by_recipe import REGIMES, recipe_of, regime_of  # same folder: run as `python benchmarks/...`

from smartfrz.calibration.frontier_match import RuleMatch, aggregate_matches, match_rule
from smartfrz.predictor.labels import LabelRule
from smartfrz.predictor.simulate import load_frontiers
from smartfrz.traces import open_traces


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
    parser.add_argument("--rules", nargs="+", required=True, help="RULE[@H]:TAU[:REMAINING][,acc=POINTS]")
    args = parser.parse_args()
    rules = [LabelRule.parse(r) for r in args.rules]
    traces = open_traces(args.traces)
    loaded = [(traces.load_run(rid), frontier) for rid, frontier in load_frontiers(args.frontier).items()]
    print("| rule | " + " | ".join(f"{g}: net / frontier" for g in REGIMES) + " |")
    print("|---|" + "---|" * len(REGIMES))
    for rule in rules:
        by: dict[str, list[RuleMatch]] = {g: [] for g in REGIMES}
        for run, frontier in loaded:
            m = match_rule(run, rule, frontier)
            by[regime_of(recipe_of(run.info))].append(m)
            by["all"].append(m)
        print(f"| `{rule.key}` | " + " | ".join(cell(by[g]) for g in REGIMES) + " |")


if __name__ == "__main__":
    main()
