"""Label frontier and the shipped predictor's simulated savings per learning-rate recipe.

Replays the runtime's freeze rule (``smartfrz.predictor.simulate``) on every run of the given traces
and groups runs by the recipe in their run id (constant, step, cosine, cosine-wu<w>, linear). The
frontier column is what a perfect predictor of the label would freeze; the predictor columns use the
test runs of the fit's grouped split (seed 0, 20% val, 20% test), which the predictor never trained on.

    python benchmarks/simulate_by_recipe.py traces/corpus/runs traces/default/traces.h5
"""

from __future__ import annotations

import argparse
import collections
import re

import numpy as np
import torch

from smartfrz.predictor import load_predictor
from smartfrz.predictor.dataset import load_windows
from smartfrz.predictor.simulate import SimulatedRun, simulate
from smartfrz.predictor.split import grouped_split
from smartfrz.predictor.train import predict_windows

RECIPE = re.compile(r"-(cosine-wu[0-9.]+|cosine|linear|step)-s\d+$")


def recipe_of(run_id: str) -> str:
    """The learning-rate recipe a zoo run id names (no suffix: constant)."""
    match = RECIPE.search(run_id)
    return match.group(1) if match else "constant"


def _percent(values: list[float]) -> float:
    """Mean share in percent (NaN for no runs)."""
    return 100 * float(np.mean(values)) if values else float("nan")


def table(runs: list[SimulatedRun], test_ids: set[str]) -> str:
    """One markdown row per recipe: frontier over all runs, predictor and frontier over the test runs."""
    by_recipe: dict[str, list[SimulatedRun]] = collections.defaultdict(list)
    for run in runs:
        by_recipe[recipe_of(run.run_id)].append(run)
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


def main() -> None:
    """Parse the arguments, simulate, print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("traces", nargs="+", help="trace files or directories of run files")
    parser.add_argument("--predictor", default="default", help="a name in predictor_data/ or a .pt path")
    args = parser.parse_args()
    torch.set_num_threads(1)
    predictor = load_predictor(args.predictor)
    net = predictor.net
    data = load_windows(
        args.traces, predictor.window, predictor.label_rule, net.embed, predictor.k, min_window=predictor.min_window
    )
    split = grouped_split(data.group, data.family, 0.2, 0.2, 0)
    runs = simulate(data, predict_windows(net, data), predictor.threshold)
    print(table(runs, set(data.run_id[split == "test"].tolist())))


if __name__ == "__main__":
    main()
