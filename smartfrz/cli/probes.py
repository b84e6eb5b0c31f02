"""`smartfrz probes`: calibrate the label rule by replaying traced runs with freezing.

`smartfrz probes` (mode `rules`): for each run and rule, replay the run's recipe (same task, data, seed),
freeze each block (a prefix, head never) from the snapshot after which all its layers stay labelled
converged, train to the end, and compare the final validation accuracy with the trace's unfrozen
final_val_acc.

`smartfrz probes frontier`: search each run's freeze frontier, per block the earliest snapshot at which
freezing the prefix loses at most --tol points (mean over --seeds seeds, each against its own unfrozen
run), by binary search block after block (O(blocks x log snapshots) probes; every probe is cached in
--cache, so a rerun resumes). The rules (--rules or --taus) are then matched against the frontier, not
probed: per family, blocks they freeze before the frontier (unsafe), after it (savings lost) or exactly.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from smartfrz.cli._common import HELP_FORMAT, Hint, add_debug, finite_float, positive
from smartfrz.cli.fit import LABEL_RULES

NAME = "probes"
HELP = "calibrate the label rule: probe rules on replayed runs, or search each run's freeze frontier"
HINTS: list[Hint] = []
MODES = ("rules", "frontier")


def configure(p: argparse.ArgumentParser) -> None:
    """The options of `probes`."""
    p.add_argument(
        "mode", nargs="?", choices=MODES, default="rules", help="probe the rules, or search the frontier and match them"
    )
    p.add_argument("--traces", type=Path, required=True, help="trace file or directory of zoo runs")
    p.add_argument("--taus", type=float, nargs="+", default=[0.95, 0.99, 0.995, 0.999], help="thresholds to probe")
    p.add_argument("--label-rule", choices=LABEL_RULES, metavar="RULE", default="monotone", help="%(choices)s")
    p.add_argument(
        "--rules",
        nargs="+",
        default=None,
        help="rules as RULE[@HORIZON]:TAU[:REMAINING][,norm=FRACTION][,acc=POINTS] (e.g. horizon@0.5:0.995 "
        "monotone:0.999:0.5 monotone:0.998:0.25,acc=1 monotone:0.999:0.25,norm=0.05; HORIZON is the horizon "
        "rule's look-ahead (the floor rule's closing span), ACC gates on accuracy near its final as smartfrz fit "
        "--acc-gate; REMAINING caps the weights' remaining distance to the end, as smartfrz fit --remaining, "
        "and NORM lets it pass within that fraction of the weights' norm, as --norm-cap); replace --taus",
    )
    p.add_argument("--runs", nargs="+", default=None, help="run ids (default: all unflagged runs)")
    p.add_argument("--tasks", nargs="+", default=None, help="only runs of these zoo tasks (default: all)")
    p.add_argument("--max-runs", type=positive, default=1000, help="probe at most this many runs")
    p.add_argument("--out", type=Path, default=None, help="JSON file for the results (+ .md beside it)")
    p.add_argument("--threads", type=positive, default=1, help="torch CPU threads for the replayed training")
    frontier = p.add_argument_group("frontier mode")
    frontier.add_argument(
        "--seeds", type=positive, default=1, help="seeds per schedule: the trace's and the ones after it"
    )
    frontier.add_argument(
        "--tol", type=finite_float, default=0.2, help="accuracy points a safe freeze may lose (negative: must gain)"
    )
    frontier.add_argument("--cache", type=Path, default=None, help="JSON probe cache, read and extended")
    add_debug(p)
    p.set_defaults(func=run, hints=HINTS)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `probes` on the `smartfrz` command."""
    configure(subparsers.add_parser(NAME, help=HELP, description=__doc__, formatter_class=HELP_FORMAT))


def _rule(text: str):
    """Parse ``RULE[@HORIZON]:TAU[:REMAINING][,acc=POINTS]`` (e.g. ``horizon:0.95``) into a LabelRule."""
    from smartfrz.predictor.labels import LabelRule

    try:
        return LabelRule.parse(text)
    except ValueError as err:
        want = "RULE[@HORIZON]:TAU[:REMAINING][,acc=POINTS], e.g. horizon:0.95"
        raise ValueError(f"bad --rules entry {text!r} (want {want}): {err}") from None


def _wanted(args: argparse.Namespace, traces) -> list[str]:
    """The unflagged run ids --runs / --tasks / --max-runs select."""
    infos = traces.list_runs(include_flagged=False)
    wanted = [
        i.run_id for i in infos if (not args.runs or i.run_id in args.runs) and (not args.tasks or i.task in args.tasks)
    ]
    if args.runs and set(args.runs) - set(wanted):
        raise ValueError(f"unknown or flagged run(s): {sorted(set(args.runs) - set(wanted))}")
    if not wanted:
        raise ValueError(f"no unflagged runs in {args.traces} match --runs/--tasks")
    return wanted[: args.max_runs]


def _frontier(args: argparse.Namespace, traces, run_ids: list[str], rules: list) -> dict:
    """Search each run's frontier (cached probes) and match the rules against it."""
    from tqdm import tqdm

    from smartfrz.calibration.frontier_match import match_rule, summarise_matches
    from smartfrz.calibration.frontier_probes import measure_frontier
    from smartfrz.calibration.frontier_report import summarise_frontiers
    from smartfrz.calibration.probe_cache import ProbeCache

    cache = ProbeCache(args.cache)
    found, matches = [], []
    for rid in tqdm(run_ids, desc="frontier runs", unit="run"):
        run = traces.load_run(rid)
        front = measure_frontier(run, args.seeds, args.tol, cache)
        found.append(front)
        matches += [match_rule(run, rule, front.frontier) for rule in rules]
    summary = summarise_frontiers(found)
    summary.update(tol=args.tol, seeds=args.seeds, match=summarise_matches(matches))
    return summary


def run(args: argparse.Namespace) -> int:
    """Probe the rules, or search the frontier and match the rules against it; print and save the report."""
    import torch

    from smartfrz.calibration.frontier_report import frontier_markdown
    from smartfrz.calibration.probes import run_probes, summarise_probes
    from smartfrz.predictor.labels import LabelRule
    from smartfrz.predictor.report import code_version, probes_markdown, utc_now
    from smartfrz.traces import open_traces

    torch.set_num_threads(args.threads)
    traces = open_traces(args.traces)
    wanted = _wanted(args, traces)
    rules = [LabelRule(args.label_rule, tau) for tau in args.taus] if not args.rules else [_rule(r) for r in args.rules]
    if args.mode == "frontier":
        summary, markdown = _frontier(args, traces, wanted, rules), frontier_markdown
    else:
        summary, markdown = summarise_probes(run_probes(traces, wanted, rules)), probes_markdown
    summary["traces"] = str(args.traces)
    summary["date"] = utc_now()
    summary["code_version"] = code_version()
    print(markdown(summary))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(markdown(summary))
        print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0
