"""Attention freeze predictor network: fixed linear snapshot embedding, scale-free tokens, attention."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from smartfrz.ops import PREDICTOR_PARAMS
from smartfrz.ops.predictor import TOKEN_FEATURES, WINDOW_FEATURES, attention_logits, full_mask, window_features
from smartfrz.train_context import CONTEXT_FEATURES

SAMPLE_DTYPES = {
    "float16": torch.float16,
    "float32": torch.float32,
}


@dataclass(frozen=True)
class ModelConfig:
    """Shape and size of the predictor network."""

    window: int = 8
    min_window: int = 3  # a layer is judged once it has this many snapshots; shorter windows are masked
    k: int = 1024
    embed_dim: int = 32
    hidden: int = 16
    heads: int = 4
    head_hidden: int = 64
    dropout: float = 0.1
    projection_seed: int = 0
    sample_dtype: str = "float16"  # precision the training traces stored samples in; inputs are rounded to it
    context: tuple[str, ...] = CONTEXT_FEATURES  # the context inputs, in order (smartfrz.train_context)

    def __post_init__(self) -> None:
        """Reject sizes the network cannot be built with."""
        if self.window < 3 or self.k < 1 or self.embed_dim < 1 or not 3 <= self.min_window <= self.window:
            raise ValueError(f"bad predictor sizes (3 <= min_window <= window, k >= 1, embed_dim >= 1): {self}")
        if self.sample_dtype not in SAMPLE_DTYPES:
            raise ValueError(f"sample_dtype must be one of {sorted(SAMPLE_DTYPES)}, got {self.sample_dtype!r}")
        if self.hidden % self.heads:
            raise ValueError(f"hidden={self.hidden} must be divisible by heads={self.heads}")
        object.__setattr__(self, "context", tuple(self.context))  # checkpoints store it as a list
        unknown = [c for c in self.context if c not in CONTEXT_FEATURES]
        if unknown or len(set(self.context)) != len(self.context):
            raise ValueError(f"context must be distinct names from {CONTEXT_FEATURES}, got {self.context}")

    def to_dict(self) -> dict[str, object]:
        """Plain dict for checkpoints."""
        return asdict(self)


def random_projection(k: int, dim: int, seed: int) -> Tensor:
    """Seeded Gaussian [K, D] projection scaled to keep distances (Johnson-Lindenstrauss).

    Sample positions are arbitrary and exchangeable, so a learned per-position embedding has nothing
    to learn beyond geometry; a fixed random projection keeps that geometry and makes training cheap.
    """
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(k, dim, generator=gen) / math.sqrt(dim)


class AttentionPredictorNet(nn.Module):
    """Latest snapshot queries the window (multi-head scaled dot-product); an MLP head gives a logit."""

    def __init__(self, cfg: ModelConfig) -> None:
        """Build layers from a ModelConfig; the projection is a fixed, seeded buffer."""
        super().__init__()
        self.cfg = cfg
        h = cfg.hidden
        self.register_buffer("projection", random_projection(cfg.k, cfg.embed_dim, cfg.projection_seed))
        # feature standardisation, fitted on the training windows (set_standardisation) and saved with the weights
        self.register_buffer("token_mean", torch.zeros(TOKEN_FEATURES))
        self.register_buffer("token_std", torch.ones(TOKEN_FEATURES))
        self.register_buffer("window_mean", torch.zeros(WINDOW_FEATURES))
        self.register_buffer("window_std", torch.ones(WINDOW_FEATURES))
        # the modules hold and name the parameters (state-dict keys, smartfrz.ops.PREDICTOR_PARAMS); the forward
        # itself is smartfrz.ops.predictor.attention_logits, which reads them through op_params()
        self.token = nn.Sequential(nn.Linear(TOKEN_FEATURES, h), nn.ReLU(inplace=True), nn.Linear(h, h))
        self.time = nn.Parameter(0.02 * torch.randn(cfg.window, h))
        self.norm = nn.LayerNorm(h)
        self.q = nn.Linear(h, h)
        self.k = nn.Linear(h, h, bias=False)
        self.v = nn.Linear(h, h)
        self.out = nn.Linear(h, h)
        n_ctx = 2 * len(cfg.context)
        self.head = nn.Sequential(
            nn.Linear(2 * h + WINDOW_FEATURES + n_ctx, cfg.head_hidden),
            nn.GELU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.head_hidden, 1),
        )
        self.skip = nn.Linear(WINDOW_FEATURES + n_ctx, 1)  # linear path on summary + context (a logistic floor)
        self._op_refs = [
            (self.get_submodule(module), attr) for module, _, attr in (n.rpartition(".") for n in PREDICTOR_PARAMS)
        ]

    def embed(self, x: Tensor) -> Tensor:
        """Linear embedding of raw snapshots [..., K] -> [..., D] (done once per recorded snapshot).

        Samples are first rounded to the precision the training traces stored them in (float16 in
        schema 1), so that at runtime tiny steps look exactly as they did in training; the rounding
        is relative, so scale invariance holds up to it (exactly for power-of-two factors).
        """
        return x.to(SAMPLE_DTYPES[self.cfg.sample_dtype]).to(self.projection.dtype) @ self.projection

    @torch.no_grad()
    def set_standardisation(self, emb: Tensor, valid: Tensor | None = None) -> None:
        """Fit the feature means/stds on training windows [N, W, D] (std floored to avoid blow-ups)."""
        valid = full_mask(emb) if valid is None else valid
        tokens, window_feats = window_features(emb, valid)
        flat = tokens[valid]
        self.token_mean.copy_(flat.mean(0))
        self.token_std.copy_(flat.std(0).clamp_min(1e-3))
        self.window_mean.copy_(window_feats.mean(0))
        self.window_std.copy_(window_feats.std(0).clamp_min(1e-3))

    def op_params(self) -> list[Tensor]:
        """The network's tensors in the order of ``smartfrz.ops.PREDICTOR_PARAMS`` (the fused op's and the functions').

        Read through (module, attribute) pairs found once: ``.to()`` replaces buffers, so tensors are not cached.
        """
        return [getattr(module, attr) for module, attr in self._op_refs]

    def forward_embedded(self, emb: Tensor, context: Tensor | None = None, valid: Tensor | None = None) -> Tensor:
        """Logits [N] from embedded windows [N, W, D], context [N, C] (NaN = unknown) and valid [N, W]."""
        valid = full_mask(emb) if valid is None else valid
        if valid.shape != emb.shape[:2] or not bool(valid[:, -1].all()):
            raise ValueError("valid must be [N, W] with the latest snapshot of every window valid")
        context = self.context_tensor(context, emb)
        return attention_logits(emb, valid, context, self.op_params(), self.cfg.heads, self.cfg.dropout, self.training)

    def context_tensor(self, context: Tensor | None, emb: Tensor) -> Tensor:
        """Context [N, C] in emb's dtype and device: as given, or all unknown (NaN) when None; checks its shape."""
        n, c = emb.shape[0], len(self.cfg.context)
        if context is None:
            return torch.full((n, c), float("nan"), dtype=emb.dtype, device=emb.device)
        if context.shape != (n, c):
            names = ", ".join(self.cfg.context)
            raise ValueError(f"context must be [N={n}, {c}] ({names}), got {list(context.shape)}")
        return context.to(emb.device, emb.dtype)

    def forward(self, windows: Tensor, context: Tensor | None = None, valid: Tensor | None = None) -> Tensor:
        """Logits [N] from raw windows [N, W, K]."""
        return self.forward_embedded(self.embed(windows), context, valid)
