"""Package version and code version (single source of truth for setup.py, traces, reports and cards)."""

from __future__ import annotations

import subprocess
from functools import lru_cache
from pathlib import Path

__version__ = "0.1.0"


def _git(*args: str) -> str | None:
    """Output of a git command run in the package's checkout, or None outside one."""
    try:
        out = subprocess.run(
            ["git", *args], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


@lru_cache(maxsize=1)
def code_version() -> str:
    """``<version>[+g<short hash>[+dirty]]``: the code that produced a trace, a checkpoint or a report."""
    sha = _git("rev-parse", "--short", "HEAD")
    if not sha:
        return __version__
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return f"{__version__}+g{sha}" + ("+dirty" if dirty else "")
