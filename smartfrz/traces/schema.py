"""HDF5 trace schema constants shared by the writer, the reader and the docs (schema_version 1)."""

from __future__ import annotations

import h5py
import numpy as np

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
