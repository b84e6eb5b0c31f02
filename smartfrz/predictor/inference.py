"""The FreezePredictor the runtime uses: P(converged) for windows of a layer's sampled weights."""

from __future__ import annotations

import math
import os
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from smartfrz import ops
from smartfrz.ops.predictor import full_mask
from smartfrz.predictor.checkpoint import PredictorLoadError, load_checkpoint
from smartfrz.predictor.labels import LabelRule
from smartfrz.predictor.model import AttentionPredictorNet

PREDICTOR_DIR_ENV = "SMARTFRZ_PREDICTOR_DIR"


def predictor_dir() -> Path:
    """Where named predictors live: $SMARTFRZ_PREDICTOR_DIR, else the package data ``smartfrz.predictor_data``.

    Read through importlib.resources, so editable installs and wheels agree; the package ships a native
    extension and is never imported from a zip, so the folder is a real one.
    """
    env = os.environ.get(PREDICTOR_DIR_ENV)
    if env:
        return Path(env)
    try:
        return Path(str(resources.files("smartfrz.predictor_data")))
    except ModuleNotFoundError:
        raise RuntimeError(
            "smartfrz.predictor_data is not installed (smartfrz imported from a source tree without "
            f"`pip install -e .`?); install the package or set ${PREDICTOR_DIR_ENV} to a folder of predictors"
        ) from None


class FreezePredictor:
    """A trained predictor with its decision threshold; inference only (no grad, eval mode).

    Two equivalent paths: ``predict_proba(windows [N, W, K])``, or the incremental one the runtime
    uses, ``embed_snapshots`` once per recorded snapshot then ``predict_from_embeddings``. Both run the
    network through the fused op ``smartfrz::predictor_logits`` (one native call instead of ~200
    small PyTorch ops), the eval-mode forward of ``AttentionPredictorNet`` up to float rounding.
    """

    def __init__(self, net: AttentionPredictorNet, threshold: float, label_rule: LabelRule, meta: dict[str, Any]):
        """Wrap a trained network; ``meta`` is the checkpoint's free-form metadata."""
        self.net = net.eval()
        self.threshold = float(threshold)
        self.label_rule = label_rule
        self.meta = meta
        self.window = net.cfg.window
        self.min_window = net.cfg.min_window
        self.context_features = net.cfg.context  # names of the context columns it reads, in order
        self.k = net.cfg.k
        self.embed_dim = net.cfg.embed_dim

    @property
    def device(self) -> torch.device:
        """Where the network computes."""
        return self.net.projection.device

    def to(self, device: str | torch.device) -> FreezePredictor:
        """Move the network to ``device``; returns self."""
        self.net.to(device)
        return self

    def _check(self, x: Tensor, name: str, shape: tuple[int | None, ...]) -> None:
        """Raise ValueError for a wrong shape, a non-float dtype or non-finite values."""
        if not isinstance(x, Tensor) or not x.is_floating_point():
            raise ValueError(
                f"{name} must be a floating-point Tensor, got {type(x).__name__} {getattr(x, 'dtype', '')}"
            )
        if x.dim() != len(shape) or any(s is not None and s != d for s, d in zip(shape, x.shape, strict=True)):
            want = "[" + ", ".join("N" if s is None else str(s) for s in shape) + "]"
            raise ValueError(f"{name} must have shape {want}, got {list(x.shape)}")
        # one float64 reduction: the sum is finite iff every element is (it cannot overflow for fp32/fp16
        # inputs, and inf - inf is NaN); several times cheaper than isfinite(x).all() on large windows
        if not math.isfinite(float(x.sum(dtype=torch.float64))):
            raise ValueError(f"{name} contains non-finite values")

    @torch.no_grad()
    def embed_snapshots(self, x: Tensor) -> Tensor:
        """Embed raw snapshots [N, K] -> [N, D] float32 (linear: done once when a snapshot is recorded)."""
        self._check(x, "snapshots", (None, self.k))
        return self.net.embed(x.to(self.device, torch.float32)).to(x.device)

    def _check_extras(self, n: int, context: Tensor | None, valid: Tensor | None) -> None:
        """Raise ValueError for a context that is not [N, C] float or a mask that is not [N, W] bool."""
        c = len(self.context_features)
        if context is not None and (
            not isinstance(context, Tensor) or not context.is_floating_point() or context.shape != (n, c)
        ):
            names = ", ".join(self.context_features)
            raise ValueError(f"context must be a float Tensor [N={n}, {c}] ({names}; NaN = unknown)")
        if valid is not None:
            if not isinstance(valid, Tensor) or valid.dtype != torch.bool or valid.shape != (n, self.window):
                raise ValueError(f"valid must be a bool Tensor [N={n}, W={self.window}]")
            if n and (not bool(valid[:, -1].all()) or int(valid.sum(dim=1).min()) < self.min_window):
                raise ValueError(f"every window needs its latest and at least min_window={self.min_window} snapshots")

    @torch.no_grad()
    def predict_from_embeddings(
        self, emb: Tensor, context: Tensor | None = None, valid: Tensor | None = None
    ) -> Tensor:
        """P(converged) [N] float32 from embedded windows [N, W, D]; same result as predict_proba.

        ``context`` [N, C] gives the ``context_features`` columns (smartfrz.train_context: progress t/T,
        the learning rate over its peak so far, the layer's depth fraction, the training loss's drop; NaN
        where unknown: the network was trained to do without t/T and the loss); ``valid``
        [N, W] marks real snapshots of windows shorter than W (left-padded).
        """
        self._check(emb, "embedded windows", (None, self.window, self.embed_dim))
        self._check_extras(emb.shape[0], context, valid)
        if emb.shape[0] == 0:
            return emb.new_zeros(0, dtype=torch.float32)
        dev = self.device
        emb_f = emb.to(dev, torch.float32)
        valid_d = full_mask(emb_f) if valid is None else valid.to(dev)
        context_f = self.net.context_tensor(None if context is None else context.to(dev, torch.float32), emb_f)
        logits = ops.predictor_logits(emb_f, valid_d, context_f, self.net.op_params(), self.net.cfg.heads)
        return torch.sigmoid(logits).to(emb.device)

    @torch.no_grad()
    def predict_proba(self, windows: Tensor, context: Tensor | None = None, valid: Tensor | None = None) -> Tensor:
        """P(converged) [N] float32 for raw windows [N, W, K] of sampled weights (oldest first)."""
        self._check(windows, "windows", (None, self.window, self.k))
        n = windows.shape[0]
        emb = self.embed_snapshots(windows.reshape(n * self.window, self.k)).reshape(n, self.window, self.embed_dim)
        return self.predict_from_embeddings(emb, context, valid)

    def predict(self, windows: Tensor, context: Tensor | None = None, valid: Tensor | None = None) -> Tensor:
        """Boolean [N]: P(converged) >= threshold."""
        return self.predict_proba(windows, context, valid) >= self.threshold


def resolve_predictor_path(name_or_path: str | os.PathLike[str]) -> Path:
    """A path as given, or a name looked up as predictor_dir()/<name>.pt."""
    path = Path(name_or_path)
    if path.suffix == ".pt" or path.exists() or os.sep in str(name_or_path):
        return path
    found = predictor_dir() / f"{name_or_path}.pt"
    if not found.is_file():
        known = sorted(p.stem for p in predictor_dir().glob("*.pt"))
        raise PredictorLoadError(f"no predictor named {name_or_path!r} in {predictor_dir()} (known: {known})")
    return found


def load_predictor(name_or_path: str | os.PathLike[str] = "default") -> FreezePredictor:
    """Load a shipped predictor by name ("default") or a checkpoint by path; PredictorLoadError if bad.

    Building the network runs its random initialisation before the saved weights replace it; that
    draw happens on a forked CPU generator, so loading never changes the caller's random stream.
    """
    path = resolve_predictor_path(name_or_path)
    with torch.random.fork_rng(devices=[]):
        net, payload = load_checkpoint(path)
    return FreezePredictor(net, payload["threshold"], LabelRule(**payload["label_rule"]), payload.get("meta", {}))
