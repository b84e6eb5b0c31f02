"""A JSON file of probe results keyed by (run, seed, schedule): probes are expensive, so none runs twice.

The file is rewritten atomically after every new probe, so an interrupted search resumes where it
stopped and a later search (another tolerance, more seeds) reuses what overlaps.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

VERSION = 1


def probe_key(run_id: str, seed: int, schedule: Sequence[int]) -> str:
    """``RUN|sSEED|F0,F1,...``: one probe's cache key."""
    return f"{run_id}|s{seed}|{','.join(str(int(t)) for t in schedule)}"


class ProbeCache:
    """Probe records by key, backed by an optional JSON file; counts the probes it had to run."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self.entries: dict[str, dict[str, Any]] = {}
        self.new = 0
        if path is not None and path.exists():
            data = json.loads(path.read_text())
            if data.get("version") != VERSION:
                raise ValueError(f"probe cache {path} has version {data.get('version')}, expected {VERSION}")
            self.entries = data["probes"]

    def get(
        self, run_id: str, seed: int, schedule: Sequence[int], probe: Callable[[], dict[str, Any]]
    ) -> dict[str, Any]:
        """The cached record, or ``probe()``'s (stored and saved before it is returned)."""
        key = probe_key(run_id, seed, schedule)
        if key not in self.entries:
            self.entries[key] = probe()
            self.new += 1
            self.save()
        return self.entries[key]

    def save(self) -> None:
        """Write the file atomically (a temporary file beside it, then a rename); no-op without a path."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps({"version": VERSION, "probes": self.entries}, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, self.path)
