"""Read trace files: validate them, list runs, load one run."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from smartfrz.traces.schema import (
    REQUIRED_RUN_ATTRS,
    REQUIRED_RUN_DATASETS,
    RUNS_GROUP,
    SCHEMA_VERSION,
    STATUS_OK,
    RunRecord,
)
from smartfrz.traces.writer import TMP_SUFFIX


class TraceFormatError(ValueError):
    """A trace file is unreadable or does not follow the schema; the message names file and problem."""


@dataclass(frozen=True)
class RunInfo:
    """Metadata of one run (its attributes plus shapes), cheap to list."""

    run_id: str
    path: Path
    task: str
    family: str
    scenario: str
    model: str
    dataset: str
    optimizer: str
    lr: float
    seed: int
    status: str
    flag_reason: str
    final_val_acc: float
    n_snapshots: int
    n_layers: int
    k: int
    attrs: dict[str, Any]

    @property
    def flagged(self) -> bool:
        """True when the run did not learn or diverged (kept out of training data by default)."""
        return self.status != STATUS_OK

    @property
    def config(self) -> dict[str, Any]:
        """The full run configuration stored as JSON."""
        return json.loads(self.attrs["config_json"])


def _fail(path: Path, what: str) -> TraceFormatError:
    """Build the error for ``path``."""
    return TraceFormatError(f"{path}: {what}")


def _as_str(value: Any) -> str:
    """Decode an attribute that h5py may return as bytes."""
    return value.decode() if isinstance(value, bytes) else str(value)


def _attr(value: Any) -> Any:
    """An attribute as a plain Python value (str, int, float, or a numpy array for array attributes)."""
    if isinstance(value, (bytes, str)):
        return _as_str(value)
    return value.item() if isinstance(value, np.generic) else value


def _check_run(path: Path, rid: str, g: h5py.Group) -> RunInfo:
    """Validate one run group's attributes, datasets and shapes; return its metadata."""
    where = f"run {rid!r}"
    missing = [d for d in REQUIRED_RUN_DATASETS if d not in g]
    if missing:
        raise _fail(path, f"{where} is missing dataset(s) {missing}")
    missing = [a for a in REQUIRED_RUN_ATTRS if a not in g.attrs]
    if missing:
        raise _fail(path, f"{where} is missing attribute(s) {missing}")
    n_t = g["steps"].shape[0]
    n_l = g["layers"].shape[0]
    k = g["sample_idx"].shape[1] if g["sample_idx"].ndim == 2 else -1
    n_s = len(g["stats"].attrs.get("stat_names", []))
    expected = {
        "sample_idx": (n_l, k),
        "samples": (n_t, n_l, k),
        "stats": (n_t, n_l, n_s),
        "cka": (n_t, n_l),
        "train_loss": (n_t,),
        "val_loss": (n_t,),
        "val_acc": (n_t,),
        **({"lr": (n_t,)} if "lr" in g else {}),
        **({"cka_pairs": (n_t, n_t, n_l)} if "cka_pairs" in g else {}),
    }
    for name, shape in expected.items():
        if g[name].shape != shape:
            raise _fail(path, f"{where}: dataset {name!r} has shape {g[name].shape}, expected {shape}")
    if int(g.attrs["k"]) != k:
        raise _fail(path, f"{where}: attribute k={g.attrs['k']} but sample_idx has K={k}")
    a = {key: _attr(v) for key, v in g.attrs.items()}
    return RunInfo(
        run_id=rid,
        path=path,
        task=a["task"],
        family=a["family"],
        scenario=a["scenario"],
        model=a["model"],
        dataset=a["dataset"],
        optimizer=a["optimizer"],
        lr=float(a["lr"]),
        seed=int(a["seed"]),
        status=a["status"],
        flag_reason=a["flag_reason"],
        final_val_acc=float(a["final_val_acc"]),
        n_snapshots=n_t,
        n_layers=n_l,
        k=k,
        attrs=a,
    )


def validate_file(path: str | os.PathLike[str]) -> list[RunInfo]:
    """Open one trace file, check version and every run group; raise TraceFormatError if bad."""
    path = Path(path)
    if not path.is_file():
        raise _fail(path, "no such file")
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        raise _fail(path, f"not a readable HDF5 file (truncated or corrupt?): {err}") from err
    with f:
        version = f.attrs.get("schema_version")
        if version is None:
            raise _fail(path, "no 'schema_version' attribute: not a smartfrz trace file")
        if int(version) != SCHEMA_VERSION:
            raise _fail(path, f"schema_version {int(version)} is not supported (this reader reads {SCHEMA_VERSION})")
        if RUNS_GROUP not in f:
            raise _fail(path, f"missing group '/{RUNS_GROUP}'")
        try:
            return [_check_run(path, rid, f[RUNS_GROUP][rid]) for rid in sorted(f[RUNS_GROUP])]
        except (OSError, KeyError, RuntimeError) as err:
            raise _fail(path, f"corrupt content: {err}") from err


def _trace_files(path: Path) -> list[Path]:
    """The trace files behind ``path``: itself, or the ``*.h5`` files of a directory."""
    if path.is_dir():
        return sorted(p for p in path.glob("*.h5") if not p.name.endswith(TMP_SUFFIX))
    return [path]


class TraceSet:
    """Validated view of one or more trace files; reads lazily with h5py slicing."""

    def __init__(self, paths: Sequence[Path], runs: dict[str, RunInfo]) -> None:
        self.paths = list(paths)
        self._runs = runs

    def __len__(self) -> int:
        return len(self._runs)

    def __enter__(self) -> TraceSet:
        return self

    def __exit__(self, *exc: object) -> None:
        """Nothing stays open between calls; kept so ``with open_traces(...)`` reads naturally."""

    def list_runs(self, include_flagged: bool = True) -> list[RunInfo]:
        """Metadata of every run (sorted by run id), optionally without the flagged ones."""
        return [r for r in self._runs.values() if include_flagged or not r.flagged]

    def run_info(self, run_id: str) -> RunInfo:
        """Metadata of one run; KeyError naming the known runs if absent."""
        if run_id not in self._runs:
            first = self.paths[0]
            where = str(first) if len(self.paths) == 1 else f"{len(self.paths)} files under {first.parent}"
            known = ", ".join(sorted(self._runs)[:5])
            raise KeyError(f"no run {run_id!r} in {where} ({len(self._runs)} runs, e.g. {known})")
        return self._runs[run_id]

    def load_run(self, run_id: str) -> RunRecord:
        """Load every array of one run (but the Grams) into memory."""
        info = self.run_info(run_id)
        with h5py.File(info.path, "r") as f:
            g = f[RUNS_GROUP][run_id]
            layers = g["layers"][()]
            return RunRecord(
                run_id=run_id,
                attrs=dict(info.attrs),
                layer_names=[_as_str(x) for x in layers["name"]],
                layer_kinds=[_as_str(x) for x in layers["kind"]],
                numel=layers["numel"].astype(np.int64),
                block=layers["block"].astype(np.int32),
                depth=layers["depth"].astype(np.float32),
                sample_idx=g["sample_idx"][()],
                steps=g["steps"][()],
                samples=g["samples"][()].astype(np.float32),
                stats=g["stats"][()],
                stat_names=tuple(_as_str(s) for s in g["stats"].attrs["stat_names"]),
                cka=g["cka"][()],
                train_loss=g["train_loss"][()],
                val_loss=g["val_loss"][()],
                val_acc=g["val_acc"][()],
                probe_idx=g["probe_idx"][()] if "probe_idx" in g else None,
                lr=g["lr"][()] if "lr" in g else None,
                cka_pairs=g["cka_pairs"][()] if "cka_pairs" in g else None,
                info=info,
            )


def open_traces(path_or_dir: str | os.PathLike[str]) -> TraceSet:
    """Validate a trace file, a merged file, or a directory of run files and return a TraceSet."""
    root = Path(path_or_dir)
    if not root.exists():
        raise TraceFormatError(f"{root}: no such file or directory")
    paths = _trace_files(root)
    if not paths:
        raise TraceFormatError(f"{root}: directory holds no *.h5 trace files")
    runs: dict[str, RunInfo] = {}
    for p in paths:
        for info in validate_file(p):
            if info.run_id in runs:
                raise TraceFormatError(f"{p}: run {info.run_id!r} also in {runs[info.run_id].path}")
            runs[info.run_id] = info
    return TraceSet(paths, dict(sorted(runs.items())))
