"""``python -m smartfrz.collect``: `smartfrz collect` (train a grid of runs, write their weight trajectories).

``python -m smartfrz.collect merge SRC... --out FILE`` merges run files or directories;
``python -m smartfrz.collect plot TRACES --out PNG`` plots the CKA curves per layer depth.
The Python API for your own model and data loaders is :func:`trace_run`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from smartfrz.cli import _common
from smartfrz.cli import collect as command
from smartfrz.collection.tracer import TraceResult, trace_run

__all__ = ["TraceResult", "main", "trace_run"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit status (1 when a run failed or is missing, 2 on bad input)."""
    return _common.entry_point(command, "python -m smartfrz.collect", argv)


if __name__ == "__main__":
    sys.exit(main())
