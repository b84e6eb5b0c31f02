"""``python -m smartfrz.fit_predictor``: `smartfrz fit`, `smartfrz latency` and `smartfrz probes` in one command.

Fit the attention freeze predictor on collected traces (labels from CKA curves), compare it with baselines,
and save a versioned checkpoint with its data card; or measure a predictor's latency; or run freeze probes
that calibrate the label threshold tau. Without a subcommand, `fit` is meant:
``python -m smartfrz.fit_predictor --traces traces/ --out predictor_data/mine.pt``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from smartfrz.cli import _common, fit, latency, probes

COMMANDS = (fit, latency, probes)
DEFAULT_COMMAND = fit.NAME


def build_parser() -> argparse.ArgumentParser:
    """`python -m smartfrz.fit_predictor {fit,latency,probes} ...`."""
    parser = argparse.ArgumentParser(
        prog="python -m smartfrz.fit_predictor", description=__doc__, formatter_class=_common.HELP_FORMAT
    )
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="{fit,latency,probes}")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point (`fit` when no subcommand is named); returns the exit status (2 on bad input)."""
    args = list(sys.argv[1:] if argv is None else argv)
    names = {command.NAME for command in COMMANDS}
    if args and args[0] not in names and args[0] not in ("-h", "--help"):
        args.insert(0, DEFAULT_COMMAND)
    return _common.main(build_parser(), args)


if __name__ == "__main__":
    sys.exit(main())
