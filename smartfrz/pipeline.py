"""``python -m smartfrz.pipeline``: `smartfrz run`, the whole job end to end (collect -> fit -> bench)."""

from __future__ import annotations

from collections.abc import Sequence

from smartfrz.cli import _common
from smartfrz.cli import run as command


def main(argv: Sequence[str] | None = None) -> int:
    """Run the pipeline; returns the exit status (2, after one line naming the stage, when one fails)."""
    return _common.entry_point(command, "python -m smartfrz.pipeline", argv)


if __name__ == "__main__":
    raise SystemExit(main())
