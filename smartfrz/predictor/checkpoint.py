"""Versioned predictor checkpoints: one torch file with weights, config, threshold and label rule."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from smartfrz.predictor.labels import LabelRule
from smartfrz.predictor.model import AttentionPredictorNet, ModelConfig
from smartfrz.train_context import LEGACY_CONTEXT

CHECKPOINT_FORMAT = "smartfrz-predictor"
SCHEMA_VERSION = 1
REQUIRED_KEYS = ("format", "schema_version", "model_config", "state_dict", "threshold", "label_rule", "normalisation")
NORMALISATION = {
    "embedding": "fixed seeded Gaussian projection [K, D] (buffer 'projection'), applied to raw samples",
    "window": "features of the steps e_t - e_{t-1} of the embedded window, each a ratio of two quantities "
    "that scale together (distances over window spread, steps over mean step, steps over ||e_latest||, "
    "cosines): invariant to multiplying a layer's weights by any c > 0; then standardised with means/stds "
    "fitted on the training windows (buffers token_mean/std, window_mean/std)",
}


class PredictorLoadError(RuntimeError):
    """A predictor checkpoint is missing, corrupt or incompatible; the message names file and problem."""


def save_checkpoint(
    path: str | os.PathLike[str],
    net: AttentionPredictorNet,
    threshold: float,
    label_rule: LabelRule,
    meta: dict[str, Any],
) -> Path:
    """Write the checkpoint atomically (temp file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "schema_version": SCHEMA_VERSION,
        "model_config": net.cfg.to_dict(),
        "state_dict": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
        "threshold": float(threshold),
        "label_rule": label_rule.to_dict(),
        "normalisation": NORMALISATION,
        "meta": meta,
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)
    return path


def _fail(path: Path, what: str) -> PredictorLoadError:
    """The error for ``path``."""
    return PredictorLoadError(f"predictor checkpoint {path}: {what}")


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[AttentionPredictorNet, dict[str, Any]]:
    """Read and validate a checkpoint; return the network (eval mode, CPU) and the raw payload."""
    path = Path(path)
    if not path.is_file():
        raise _fail(path, "no such file")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as err:
        raise _fail(path, f"not a readable torch file (truncated or corrupt?): {err}") from err
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise _fail(path, f"not a smartfrz predictor checkpoint (format={getattr(payload, 'get', dict)('format')!r})")
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing:
        raise _fail(path, f"missing key(s) {missing}")
    if payload["schema_version"] != SCHEMA_VERSION:
        raise _fail(
            path, f"schema_version {payload['schema_version']!r} is not supported (this code reads {SCHEMA_VERSION})"
        )
    try:
        cfg = ModelConfig(**{"context": LEGACY_CONTEXT, **payload["model_config"]})  # older: no loss input
        LabelRule(**payload["label_rule"])
        net = AttentionPredictorNet(cfg)
        net.load_state_dict(payload["state_dict"], strict=True)
    except (TypeError, ValueError, RuntimeError) as err:
        raise _fail(path, f"incompatible content: {err}") from err
    threshold = payload["threshold"]
    if not isinstance(threshold, float) or not 0.0 <= threshold <= 1.0:
        raise _fail(path, f"threshold must be a float in [0, 1], got {threshold!r}")
    net.eval()
    return net, payload
