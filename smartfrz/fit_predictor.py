"""``python -m smartfrz.fit_predictor``: `smartfrz fit`, `smartfrz latency` and `smartfrz probes` in one command.

Fit the attention freeze predictor on collected traces (labels from CKA curves), compare it with baselines,
and save a versioned checkpoint with its data card; or measure a predictor's latency; or run freeze probes
that calibrate the label threshold tau.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from smartfrz.cli import _common, fit, latency, probes


def build_parser() -> argparse.ArgumentParser:
    """`python -m smartfrz.fit_predictor {fit,latency,probes} ...`."""
    parser = argparse.ArgumentParser(
        prog="python -m smartfrz.fit_predictor", description=__doc__, formatter_class=_common.HELP_FORMAT
    )
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="{fit,latency,probes}")
    for command in (fit, latency, probes):
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (2 on bad input)."""
    return _common.main(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
