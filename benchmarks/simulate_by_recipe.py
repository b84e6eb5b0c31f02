"""Label frontier and the shipped predictor's simulated savings per learning-rate recipe.

Replays the runtime's freeze rule (``smartfrz.predictor.simulate``) on every run of the given traces
and groups runs by the learning-rate recipe their stored RunSpec names (constant, step, cosine,
cosine-wu<w>, linear). The frontier column is what a perfect predictor of the label would freeze; the
predictor columns use the test runs of `smartfrz fit`'s default grouped split, which it never trained on.
``--frontier`` takes the JSON of `smartfrz probes frontier`: its runs are scored against their
probe-measured frontier instead, and listed with the share of it the predictor captures and every
freeze that came before it, then summed up by lr regime (constant or decaying); ``--thresholds``
also replays those runs at other thresholds than the
predictor's own, to see what a threshold trades (net: savings at or after the frontier minus before it);
``--backstop 0.5`` replays the Freezer's default, which freezes no block later than FreezeOut with that t0.

    python benchmarks/simulate_by_recipe.py traces/corpus/runs traces/default/traces.h5
    python benchmarks/simulate_by_recipe.py traces/default/traces.h5 --frontier predictor_data/frontier_default.json
    python benchmarks/simulate_by_recipe.py traces/corpus/runs --frontier predictor_data/frontier_rule_grid.json \
        --thresholds 0.5 0.7 0.9
    python benchmarks/simulate_by_recipe.py traces/corpus/runs --predictor predictor_data/experiments/monotone_loss.pt \
        --frontier predictor_data/frontier_{rule_grid,heldout,steplinear_a,steplinear_b}.json
"""

from __future__ import annotations

import argparse
import collections
from pathlib import Path

import numpy as np
import torch

from smartfrz.predictor import load_predictor
from smartfrz.predictor.dataset import load_windows
from smartfrz.predictor.fit import FitConfig
from smartfrz.predictor.simulate import SimulatedRun, choose_threshold_by_frontier, load_frontiers, simulate
from smartfrz.predictor.split import grouped_split
from smartfrz.predictor.train import TrainConfig, predict_windows
from smartfrz.traces import RunInfo, open_traces


def recipe_of(info: RunInfo) -> str:
    """The learning-rate recipe of a zoo run (its stored RunSpec), e.g. ``constant`` or ``cosine-wu0.05``."""
    spec = info.config.get("spec") or {}
    warmup = float(spec.get("warmup", 0.0))
    return str(spec.get("schedule", "constant")) + (f"-wu{warmup:g}" if warmup else "")


REGIMES = ("constant", "decaying", "all")
"""How the probed-run summaries group runs: a flat learning rate, a decaying one, and all together."""


def regime_of(recipe: str) -> str:
    """``constant`` for a flat rate (the corpus has no warm-up-only recipe), else ``decaying``."""
    return "constant" if recipe == "constant" else "decaying"


def _percent(values: list[float]) -> float:
    """Mean share in percent (NaN for no runs)."""
    return 100 * float(np.mean(values)) if values else float("nan")


def table(runs: list[SimulatedRun], recipes: dict[str, str], test_ids: set[str]) -> str:
    """One markdown row per recipe: frontier over all runs, predictor and frontier over the test runs."""
    by_recipe: dict[str, list[SimulatedRun]] = collections.defaultdict(list)
    for run in runs:
        by_recipe[recipes[run.run_id]].append(run)
    lines = [
        "| recipe | runs | frontier saved (all runs) | test runs | predictor saved (test) | frontier saved (test) "
        "| blocks frozen early (test) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in sorted(by_recipe):
        group = by_recipe[name]
        test = [r for r in group if r.run_id in test_ids]
        early = sum(len(r.early) for r in test)
        blocks = sum(len(r.frontier) for r in test)
        lines.append(
            f"| {name} | {len(group)} | {_percent([r.frontier_saved for r in group]):.1f}% | {len(test)} "
            f"| {_percent([r.saved for r in test]):.1f}% | {_percent([r.frontier_saved for r in test]):.1f}% "
            f"| {early}/{blocks} |"
        )
    return "\n".join(lines)


def probed_table(runs: list[SimulatedRun], probed: set[str]) -> str:
    """One markdown row per run with a probe-measured frontier: savings, share captured, early freezes."""
    lines = [
        "| run (probe frontier) | predictor saved | frontier saved | captured | saved before the frontier "
        "| frozen before the frontier |",
        "|---|---|---|---|---|---|",
    ]
    for r in (r for r in runs if r.run_id in probed):
        captured = f"{r.saved / r.frontier_saved:.0%}" if r.frontier_saved > 0 else "-"
        early = "; ".join(f"block {e['block']} at {e['at']:.0%} (frontier {e['frontier']:.0%})" for e in r.early)
        lines.append(
            f"| {r.run_id} | {100 * r.saved:.1f}% | {100 * r.frontier_saved:.1f}% | {captured} "
            f"| {100 * r.early_saved:.1f}% | {early or 'none'} |"
        )
    return "\n".join(lines)


def regime_table(runs: list[SimulatedRun], recipes: dict[str, str], probed: set[str]) -> str:
    """Mean savings on the probed runs by lr regime (constant or decaying): one threshold may not suit both."""
    lines = [
        "| regime | probed runs | saved | frontier | saved before the frontier | net | blocks frozen early |",
        "|---|---|---|---|---|---|---|",
    ]
    groups: dict[str, list[SimulatedRun]] = {g: [] for g in REGIMES}
    for r in (r for r in runs if r.run_id in probed):
        groups[regime_of(recipes[r.run_id])].append(r)
        groups["all"].append(r)
    for name, group in groups.items():
        if group:
            lines.append(
                f"| {name} | {len(group)} | {_percent([r.saved for r in group]):.1f}% "
                f"| {_percent([r.frontier_saved for r in group]):.1f}% "
                f"| {_percent([r.early_saved for r in group]):.1f}% "
                f"| {_percent([r.net_saved for r in group]):.1f}% | {sum(len(r.early) for r in group)} |"
            )
    return "\n".join(lines)


def threshold_table(
    data, probs: np.ndarray, thresholds: list[float], probed: dict[str, list[int]], recipes: dict[str, str]
) -> str:
    """One markdown row per lr regime and threshold over the probed runs: mean savings, frontier, early, net."""
    lines = [
        "| regime | threshold | runs | saved | frontier | saved before the frontier | net | blocks frozen early |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for regime in REGIMES:
        group = {rid: f for rid, f in probed.items() if regime in ("all", regime_of(recipes.get(rid, "constant")))}
        if not set(group) & set(data.run_id.tolist()):
            continue
        _, sweep = choose_threshold_by_frontier(data, probs, group, grid=np.array(thresholds))
        for s in sweep:
            lines.append(
                f"| {regime} | {s['threshold']:g} | {s['runs']:.0f} | {100 * s['saved']:.1f}% "
                f"| {100 * s['frontier_saved']:.1f}% | {100 * s['early_saved']:.1f}% | {100 * s['net_saved']:.1f}% "
                f"| {s['early_blocks']:.0f} |"
            )
    return "\n".join(lines)


def main() -> None:
    """Parse the arguments, simulate, print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("traces", nargs="+", help="trace files or directories of run files")
    parser.add_argument("--predictor", default="default", help="a name in predictor_data/ or a .pt path")
    parser.add_argument(
        "--frontier", type=Path, nargs="+", default=None, help="JSONs of `smartfrz probes frontier` (one or more)"
    )
    parser.add_argument(
        "--thresholds", type=float, nargs="+", default=None, help="with --frontier: also replay at these thresholds"
    )
    parser.add_argument(
        "--backstop", type=float, default=None, metavar="T0", help="replay the runtime's FreezeOut backstop too"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    predictor = load_predictor(args.predictor)
    net = predictor.net
    data = load_windows(
        args.traces, predictor.window, predictor.label_rule, net.embed, predictor.k, min_window=predictor.min_window
    )
    split = grouped_split(data.group, data.family, FitConfig.val_frac, FitConfig.test_frac, TrainConfig.seed)
    recipes = {info.run_id: recipe_of(info) for path in args.traces for info in open_traces(path).list_runs()}
    probed = load_frontiers(args.frontier) if args.frontier else {}
    if args.thresholds and not probed:
        parser.error("--thresholds needs --frontier")
    if args.thresholds and args.backstop is not None:
        parser.error("--thresholds sweeps the predictor alone: leave out --backstop")
    probs = predict_windows(net, data)
    runs = simulate(data, probs, predictor.threshold, frontiers=probed, backstop=args.backstop)
    print(table(runs, recipes, set(data.run_id[split == "test"].tolist())))
    if probed:
        print("\n" + probed_table(runs, set(probed)))
        print("\n" + regime_table(runs, recipes, set(probed)))
    if args.thresholds:
        print(f"\nOn the probed runs, by threshold (the predictor's own: {predictor.threshold:g}):\n")
        print(threshold_table(data, probs, args.thresholds, probed, recipes))


if __name__ == "__main__":
    main()
