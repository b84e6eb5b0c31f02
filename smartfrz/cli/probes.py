"""`smartfrz probes`: calibrate the label threshold tau by replaying traced runs with freezing.

For each run and tau: replay the run's recipe (same task, data, seed), freeze each block (a prefix, head
never) from the snapshot after which all its layers stay labelled converged, train to the end, and compare
the final validation accuracy with the trace's unfrozen final_val_acc.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from smartfrz.cli._common import HELP_FORMAT, Hint, add_debug, positive
from smartfrz.cli.fit import LABEL_RULES

NAME = "probes"
HELP = "calibrate tau: replay traced runs freezing blocks when the label rule says so"
HINTS: list[Hint] = []


def configure(p: argparse.ArgumentParser) -> None:
    """The options of `probes`."""
    p.add_argument("--traces", type=Path, required=True, help="trace file or directory of zoo runs")
    p.add_argument("--taus", type=float, nargs="+", default=[0.95, 0.99, 0.995, 0.999], help="thresholds to probe")
    p.add_argument("--label-rule", choices=LABEL_RULES, metavar="RULE", default="monotone", help="%(choices)s")
    p.add_argument(
        "--rules",
        nargs="+",
        default=None,
        help="rules as RULE:TAU[:REMAINING] (e.g. horizon:0.95 monotone:0.999:0.5; REMAINING caps the weights' "
        "remaining distance to the end, as smartfrz fit --remaining); replace --taus",
    )
    p.add_argument("--runs", nargs="+", default=None, help="run ids (default: all unflagged runs)")
    p.add_argument("--tasks", nargs="+", default=None, help="only runs of these zoo tasks (default: all)")
    p.add_argument("--max-runs", type=positive, default=1000, help="probe at most this many runs")
    p.add_argument("--out", type=Path, default=None, help="JSON file for the results (+ .md beside it)")
    p.add_argument("--threads", type=positive, default=1, help="torch CPU threads for the replayed training")
    add_debug(p)
    p.set_defaults(func=run, hints=HINTS)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `probes` on the `smartfrz` command."""
    configure(subparsers.add_parser(NAME, help=HELP, description=__doc__, formatter_class=HELP_FORMAT))


def _rule(text: str):
    """Parse ``RULE:TAU[:REMAINING]`` (e.g. ``horizon:0.95``, ``monotone:0.999:0.5``) into a LabelRule."""
    from smartfrz.predictor.labels import LabelRule

    try:
        return LabelRule.parse(text)
    except ValueError as err:
        raise ValueError(f"bad --rules entry {text!r} (want RULE:TAU[:REMAINING], e.g. horizon:0.95): {err}") from None


def run(args: argparse.Namespace) -> int:
    """Replay the runs with each tau's freezing schedule and report the accuracy lost."""
    import torch

    from smartfrz.calibration.probes import run_probes, summarise_probes
    from smartfrz.predictor.labels import LabelRule
    from smartfrz.predictor.report import code_version, probes_markdown, utc_now
    from smartfrz.traces import open_traces

    torch.set_num_threads(args.threads)
    traces = open_traces(args.traces)
    infos = traces.list_runs(include_flagged=False)
    wanted = [
        i.run_id for i in infos if (not args.runs or i.run_id in args.runs) and (not args.tasks or i.task in args.tasks)
    ]
    if args.runs and set(args.runs) - set(wanted):
        raise ValueError(f"unknown or flagged run(s): {sorted(set(args.runs) - set(wanted))}")
    if not wanted:
        raise ValueError(f"no unflagged runs in {args.traces} match --runs/--tasks")
    rules = [LabelRule(args.label_rule, tau) for tau in args.taus] if not args.rules else [_rule(r) for r in args.rules]
    summary = summarise_probes(run_probes(traces, wanted[: args.max_runs], rules))
    summary["traces"] = str(args.traces)
    summary["date"] = utc_now()
    summary["code_version"] = code_version()
    print(probes_markdown(summary))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2) + "\n")
        args.out.with_suffix(".md").write_text(probes_markdown(summary))
        print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0
