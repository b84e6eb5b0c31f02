"""The `smartfrz` command: one subcommand per module here, each with `add_parser(subparsers)` and `run(args)`.

Parsers import nothing heavy, so `smartfrz --help` is fast; library errors print one line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from smartfrz._version import __version__
from smartfrz.cli import _common

COMMANDS = ("collect", "fit", "probes", "latency", "bench", "run")


def build_parser() -> argparse.ArgumentParser:
    """`smartfrz COMMAND ...`."""
    parser = argparse.ArgumentParser(
        prog="smartfrz",
        description="Automatic layer freezing for PyTorch training: collect traces, fit the freeze predictor, "
        "benchmark it, or run the whole pipeline. `smartfrz COMMAND --help` shows each command's options.",
        formatter_class=_common.HELP_FORMAT,
    )
    parser.add_argument("--version", action="version", version=f"smartfrz {__version__}")
    sub = parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"smartfrz.cli.{name}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """The console script."""
    return _common.main(build_parser(), argv)
