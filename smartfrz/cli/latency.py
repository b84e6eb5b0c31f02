"""`smartfrz latency`: time a saved freeze predictor on many layers, one CPU thread."""

from __future__ import annotations

import argparse
import json

from smartfrz.cli._common import HELP_FORMAT, Hint, add_debug, positive

NAME = "latency"
HELP = "time a predictor on 500 layers, one CPU thread"
HINTS: list[Hint] = []


def configure(p: argparse.ArgumentParser) -> None:
    """The options of `latency`."""
    p.add_argument("--predictor", default="default", help="name in predictor_data/ or a path")
    p.add_argument("--layers", type=positive, default=500, help="layers scored per call")
    p.add_argument("--repeats", type=positive, default=30, help="best of this many timed calls")
    add_debug(p)
    p.set_defaults(func=run, hints=HINTS)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `latency` on the `smartfrz` command."""
    configure(subparsers.add_parser(NAME, help=HELP, description=__doc__, formatter_class=HELP_FORMAT))


def run(args: argparse.Namespace) -> int:
    """Measure and print the latency as JSON."""
    from smartfrz.predictor.inference import load_predictor
    from smartfrz.predictor.latency import measure_latency

    result = measure_latency(load_predictor(args.predictor), n_layers=args.layers, repeats=args.repeats)
    print(json.dumps(result, indent=2))
    return 0
