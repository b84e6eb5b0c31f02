"""``python -m smartfrz.bench``: `smartfrz bench` (see --help)."""

from __future__ import annotations

from collections.abc import Sequence

from smartfrz.cli import _common
from smartfrz.cli import bench as command
from smartfrz.cli.bench import TRAINING_PRESETS, training_tasks

__all__ = ["TRAINING_PRESETS", "main", "training_tasks"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and write its outputs; returns the exit status."""
    return _common.entry_point(command, "python -m smartfrz.bench", argv)


if __name__ == "__main__":
    raise SystemExit(main())
