"""What every subcommand shares: lazy choices and defaults, argument types, and one-line library errors.

Building a parser imports nothing heavy (no torch), so that `smartfrz --help` and argument errors are fast;
the subcommands import the library inside `run`.
"""

from __future__ import annotations

import argparse
import importlib
import math
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any


class DefaultsHelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show every option's default, except for flags and options whose default is "not given"."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None or action.default is False:
            return action.help
        return super()._get_help_string(action)


HELP_FORMAT = DefaultsHelpFormatter


class Lazy(Sequence):
    """A value read from `module:attr` on first use: choices and defaults that would otherwise import torch.

    `transform` turns the attribute into the value (a list by default); lists act as sequences.
    """

    def __init__(self, target: str, transform: Callable[[Any], Any] = list) -> None:
        self._target, self._transform = target, transform
        self._loaded = False
        self._value: Any = None

    def get(self) -> Any:
        """The value (imports its module the first time)."""
        if not self._loaded:
            module, attr = self._target.split(":")
            self._value = self._transform(getattr(importlib.import_module(module), attr))
            self._loaded = True
        return self._value

    def __getitem__(self, index):
        return self.get()[index]

    def __len__(self) -> int:
        return len(self.get())

    def __iter__(self) -> Iterator:
        return iter(self.get())

    def __contains__(self, item: object) -> bool:
        return item in self.get()

    def __str__(self) -> str:
        value = self.get()
        return " ".join(str(x) for x in value) if isinstance(value, list | tuple) else str(value)


def resolve(value: Any) -> Any:
    """An argument's value, with a Lazy default loaded."""
    return value.get() if isinstance(value, Lazy) else value


def positive(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def finite_float(text: str) -> float:
    """argparse type: a finite float (NaN would make every comparison false, inf every one true)."""
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
    return value


# (exception type, pattern in its message, hint): known fixes, added to the one-line error.
Hint = tuple[type[BaseException], str, str]


def library_errors() -> tuple[type[BaseException], ...]:
    """Exceptions that mean bad input or missing files/packages, not a bug: one line, exit 2."""
    from smartfrz.predictor.checkpoint import PredictorLoadError  # (TraceFormatError is a ValueError)

    return (ValueError, KeyError, OSError, ImportError, PredictorLoadError, StageError)


class StageError(RuntimeError):
    """A pipeline stage failed; the message names the stage and the cause."""


def message(err: BaseException) -> str:
    """The exception's text on one line (KeyError's without the quotes repr adds)."""
    text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)
    return " ".join(text.split()) or type(err).__name__


def hint_for(err: BaseException, hints: Sequence[Hint]) -> str | None:
    """The first hint whose type and pattern match `err` or an exception it was raised from."""
    while err is not None:
        for kind, pattern, hint in hints:
            if isinstance(err, kind) and re.search(pattern, message(err)):
                return hint
        err = err.__cause__
    return None


def add_debug(parser: argparse.ArgumentParser) -> None:
    """The --debug flag every command has."""
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")


def call(args: argparse.Namespace) -> int:
    """Run the parsed command; a library error prints `error: ...` (plus a known fix) and returns 2."""
    try:
        return int(args.func(args) or 0)
    except Exception as err:
        if args.debug or not isinstance(err, library_errors()):
            raise
        hint = hint_for(err, getattr(args, "hints", ()))
        sys.stdout.flush()
        print(f"error: {message(err)}" + (f" ({hint})" if hint else ""), file=sys.stderr)
        return 2


def main(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse `argv` (default: sys.argv[1:]) and run the chosen command; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.command = " ".join([parser.prog, *argv])
    return call(args)


def entry_point(module: Any, prog: str, argv: Sequence[str] | None) -> int:
    """`python -m ...` for one subcommand module: its options on a parser of its own."""
    parser = argparse.ArgumentParser(prog=prog, description=module.__doc__, formatter_class=HELP_FORMAT)
    module.configure(parser)
    return main(parser, argv)
