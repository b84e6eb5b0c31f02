"""Write one run's trace to HDF5 atomically (temporary file, fsync, rename)."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from smartfrz._version import code_version
from smartfrz.traces.schema import (
    LAYER_DTYPE,
    REQUIRED_RUN_ATTRS,
    RUNS_GROUP,
    SCHEMA_VERSION,
    RunRecord,
)

TMP_SUFFIX = ".tmp"
"""Suffix of a run file being written; such files are never read and are removed on resume."""


def producer_string() -> str:
    """Return ``"smartfrz <code version>"`` for the root ``producer`` attribute."""
    return f"smartfrz {code_version()}"


def _attr_value(value: Any) -> Any:
    """Convert a Python value to something h5py stores as a scalar attribute."""
    if value is None:
        return ""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True)
    return value


def write_run_group(runs: h5py.Group, rec: RunRecord) -> None:
    """Create ``runs/<run_id>`` with all datasets and attributes of ``rec``."""
    if not rec.run_id or "/" in rec.run_id or rec.run_id in (".", ".."):
        raise ValueError(f"run id {rec.run_id!r} must be a non-empty name without '/'")
    missing = [a for a in REQUIRED_RUN_ATTRS if a not in rec.attrs]
    if missing:
        raise ValueError(f"run {rec.run_id!r}: missing attributes {missing}")
    t, n_layers, k = rec.samples.shape
    if rec.sample_idx.shape != (n_layers, k) or rec.stats.shape[:2] != (t, n_layers):
        raise ValueError(
            f"run {rec.run_id!r}: inconsistent shapes samples={rec.samples.shape} "
            f"sample_idx={rec.sample_idx.shape} stats={rec.stats.shape}"
        )
    g = runs.create_group(rec.run_id)
    for key, value in rec.attrs.items():
        g.attrs[key] = _attr_value(value)
    table = np.empty(n_layers, dtype=LAYER_DTYPE)
    table["name"] = rec.layer_names
    table["kind"] = rec.layer_kinds
    table["numel"] = rec.numel
    table["block"] = rec.block
    table["depth"] = rec.depth
    g.create_dataset("layers", data=table)
    g.create_dataset("sample_idx", data=rec.sample_idx.astype(np.int64))
    g.create_dataset("steps", data=rec.steps.astype(np.int64))
    g.create_dataset(
        "samples",
        data=rec.samples.astype(np.float16),
        chunks=(max(1, min(t, 64)), 1, k),
        compression="gzip",
        compression_opts=4,
        shuffle=True,
    )
    stats = g.create_dataset("stats", data=rec.stats.astype(np.float32))
    stats.attrs["stat_names"] = list(rec.stat_names)
    g.create_dataset("cka", data=rec.cka.astype(np.float32))
    for name in ("train_loss", "val_loss", "val_acc"):
        g.create_dataset(name, data=getattr(rec, name).astype(np.float32))
    if rec.probe_idx is not None:
        g.create_dataset("probe_idx", data=rec.probe_idx.astype(np.int64))
    if rec.lr is not None:
        if rec.lr.shape != (t,):
            raise ValueError(f"run {rec.run_id!r}: lr {rec.lr.shape} must be [{t}]")
        g.create_dataset("lr", data=rec.lr.astype(np.float32))
    if rec.cka_pairs is not None:
        if rec.cka_pairs.shape != (t, t, n_layers):
            raise ValueError(f"run {rec.run_id!r}: cka_pairs {rec.cka_pairs.shape} must be [{t}, {t}, {n_layers}]")
        g.create_dataset("cka_pairs", data=rec.cka_pairs.astype(np.float32), compression="gzip", compression_opts=4)
    if rec.gram is not None:
        if rec.gram_sizes is None or rec.gram.shape != (t, int(np.sum(rec.gram_sizes**2))):
            raise ValueError(f"run {rec.run_id!r}: gram {rec.gram.shape} does not match gram_sizes")
        gram = g.create_dataset(
            "gram",
            data=rec.gram.astype(np.float32),
            chunks=(1, rec.gram.shape[1]),
            compression="gzip",
            compression_opts=4,
        )
        gram.attrs["sizes"] = rec.gram_sizes.astype(np.int64)


def init_trace_file(f: h5py.File) -> h5py.Group:
    """Write the root attributes and return the (new) ``runs`` group."""
    f.attrs["schema_version"] = SCHEMA_VERSION
    f.attrs["producer"] = producer_string()
    return f.create_group(RUNS_GROUP)


def fsync_path(path: Path) -> None:
    """Flush a file or directory to stable storage."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_h5(path: str | os.PathLike[str]):
    """Context manager yielding a writable h5py.File at ``<path>.tmp``, renamed to ``path`` on success."""
    return _AtomicH5(Path(path))


class _AtomicH5:
    """Write to ``<path>.tmp`` under an exclusive flock, fsync, rename; on error remove the temporary file.

    The lock tells :func:`remove_stale_tmp` in another process that this temporary file is live; the
    kernel drops it when the writer dies, so the file of a killed writer counts as stale.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tmp = path.with_name(path.name + TMP_SUFFIX)
        self.file: h5py.File | None = None
        self._lock_fd = -1

    def __enter__(self) -> h5py.File:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.file = h5py.File(self.tmp, "w", locking=False)
        return self.file

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self.file is not None
        try:
            self.file.close()
            if exc_type is not None:
                self.tmp.unlink(missing_ok=True)
                return
            fsync_path(self.tmp)
            os.replace(self.tmp, self.path)
            fsync_path(self.path.parent)
        finally:
            os.close(self._lock_fd)


def remove_stale_tmp(folder: Path) -> list[Path]:
    """Delete ``*.h5.tmp`` files in ``folder`` that no live writer holds (left by killed runs)."""
    removed = []
    for tmp in sorted(Path(folder).glob(f"*.h5{TMP_SUFFIX}")):
        try:
            fd = os.open(tmp, os.O_RDWR)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue  # a live writer (this or another process) is still writing it
        else:
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
        finally:
            os.close(fd)
    return removed


def write_run_file(path: str | os.PathLike[str], rec: RunRecord) -> Path:
    """Write one run to its own HDF5 file atomically and return the final path."""
    with atomic_h5(path) as f:
        write_run_group(init_trace_file(f), rec)
    return Path(path)
