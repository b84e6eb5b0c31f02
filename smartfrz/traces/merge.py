"""Merge run files (or merged files) into one HDF5 trace file by copying run groups."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import h5py

from smartfrz.traces.reader import TraceFormatError, open_traces
from smartfrz.traces.schema import RUNS_GROUP
from smartfrz.traces.writer import atomic_h5, init_trace_file


def merge_traces(
    sources: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], out: str | os.PathLike[str]
) -> Path:
    """Validate every source (file or directory), copy all run groups into ``out`` atomically."""
    srcs = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    out = Path(out).resolve()
    infos = {}
    for src in srcs:
        for info in open_traces(src).list_runs():
            if info.path.resolve() == out:
                continue  # re-merging into the same directory: skip the previous merged file
            if info.run_id in infos:
                raise TraceFormatError(f"{info.path}: run {info.run_id!r} also in {infos[info.run_id].path}")
            infos[info.run_id] = info
    if not infos:
        raise TraceFormatError(f"no runs found in {srcs}")
    with atomic_h5(out) as dst:
        runs = init_trace_file(dst)
        for rid, info in sorted(infos.items()):
            with h5py.File(info.path, "r") as src:
                src.copy(src[RUNS_GROUP][rid], runs, name=rid)
    return out
