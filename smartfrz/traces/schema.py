"""HDF5 trace schema shared by the writer, the reader and the docs (schema_version 1): constants and the run record."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

if TYPE_CHECKING:
    from smartfrz.traces.reader import RunInfo

SCHEMA_VERSION = 1
"""Version written to the root attribute ``schema_version``; readers refuse any other value."""

RUNS_GROUP = "runs"
"""Top-level group holding one subgroup per run."""

WEIGHT_STAT_NAMES: tuple[str, ...] = ("l2_norm", "delta_l2_norm", "nonfinite", "max_abs")
"""Columns of the per-layer statistics ``smartfrz.ops.record_weights`` returns (``smartfrz.ops.STAT_NAMES``)."""

STAT_NAMES: tuple[str, ...] = (*WEIGHT_STAT_NAMES, "grad_l2_norm")
"""Columns of ``stats [T, L, S]``: the weight statistics of ``smartfrz.ops`` plus the gradient norm."""

STATUS_OK = "ok"
STATUS_FLAGGED = "flagged"

LAYER_DTYPE = np.dtype(
    [
        ("name", h5py.string_dtype("utf-8")),
        ("kind", h5py.string_dtype("utf-8")),
        ("numel", np.int64),
        ("block", np.int32),
        ("depth", np.float32),
    ]
)
"""Layout of the ``layers`` compound table (strings are variable-length UTF-8)."""

REQUIRED_RUN_ATTRS: tuple[str, ...] = (
    "task",
    "family",
    "scenario",
    "model",
    "dataset",
    "optimizer",
    "lr",
    "weight_decay",
    "batch_size",
    "epochs",
    "seed",
    "record_every",
    "k",
    "code_version",
    "wall_time_s",
    "final_val_acc",
    "final_val_loss",
    "status",
    "flag_reason",
    "config_json",
)
"""Attributes every run group must carry."""

REQUIRED_RUN_DATASETS: tuple[str, ...] = (
    "layers",
    "sample_idx",
    "steps",
    "samples",
    "stats",
    "cka",
    "train_loss",
    "val_loss",
    "val_acc",
)
"""Datasets every run group must hold; ``probe_idx`` and ``gram`` are optional."""


@dataclass
class RunRecord:
    """One run in memory: what the writer stores and what ``TraceSet.load_run`` returns (docs/trace_format.md).

    Loaded records hold samples widened to float32, no ``gram`` (read it with h5py when needed) and
    their listing ``info``; records built for writing leave ``info`` None.
    """

    run_id: str
    attrs: dict[str, Any]
    layer_names: list[str]
    layer_kinds: list[str]
    numel: np.ndarray  # [L] int64
    block: np.ndarray  # [L] int32
    depth: np.ndarray  # [L] float32
    sample_idx: np.ndarray  # [L, K] int64
    steps: np.ndarray  # [T] int64
    samples: np.ndarray  # [T, L, K] float16/float32 (stored as float16, loaded as float32)
    stats: np.ndarray  # [T, L, S] float32
    cka: np.ndarray  # [T, L] float32
    train_loss: np.ndarray  # [T] float32
    val_loss: np.ndarray  # [T] float32
    val_acc: np.ndarray  # [T] float32
    probe_idx: np.ndarray | None = None  # [n] int64
    gram: np.ndarray | None = None  # [T, G] float32: per snapshot, the layers' unit Grams flattened
    gram_sizes: np.ndarray | None = None  # [L] int64: side m of each layer's Gram (G = sum m^2)
    lr: np.ndarray | None = None  # [T] float32: learning rate of the first param group at each snapshot
    cka_pairs: np.ndarray | None = None  # [T, T, L] float32: CKA between every pair of snapshots
    stat_names: tuple[str, ...] = field(default=STAT_NAMES)
    info: RunInfo | None = None  # the run's metadata as open_traces lists it (set by load_run)
