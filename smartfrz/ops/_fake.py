"""Fake (meta) kernels, so the ops trace under torch.compile and torch.export."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from smartfrz.ops import predictor, reference
from smartfrz.ops._schemas import STAT_NAMES


def record_weights_fake(
    weights: Sequence[torch.Tensor], sample_idx: torch.Tensor, prev: torch.Tensor | None, stats: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Shapes only: samples [L, K] and stats [L, len(STAT_NAMES)] ([L, 0] without stats), both float32."""
    reference.check_record_inputs(weights, sample_idx, prev)
    n_layers, k = sample_idx.shape
    samples = sample_idx.new_empty((n_layers, k), dtype=torch.float32)
    return samples, sample_idx.new_empty((n_layers, len(STAT_NAMES) if stats else 0), dtype=torch.float32)


def cache_store_fake(
    cache: torch.Tensor,
    scales: torch.Tensor,
    valid: torch.Tensor,
    x: torch.Tensor,
    idx: torch.Tensor,
    check: bool = True,
) -> None:
    """A pure mutation: nothing to allocate (fake tensors never report pinned memory: not asked)."""
    reference.check_store_inputs(cache, scales, valid, x, idx, pinned=True)


def cache_gather_fake(
    cache: torch.Tensor,
    scales: torch.Tensor,
    valid: torch.Tensor,
    idx: torch.Tensor,
    dtype: torch.dtype,
    check: bool = True,
) -> torch.Tensor:
    """Output [B, *row_shape] of ``dtype`` on idx's device."""
    reference.check_gather_inputs(cache, scales, valid, idx, dtype, pinned=True)
    return idx.new_empty((idx.shape[0], *cache.shape[1:]), dtype=dtype)


def predictor_logits_fake(
    emb: torch.Tensor, valid: torch.Tensor, context: torch.Tensor, params: Sequence[torch.Tensor], heads: int
) -> torch.Tensor:
    """Logits [N] float32 on emb's device (the suffix check on valid needs data: the real kernels do it)."""
    predictor.check_predictor_inputs(emb, valid, context, params, heads)
    return emb.new_empty((emb.shape[0],), dtype=torch.float32)


FAKE_KERNELS = {
    "record_weights": record_weights_fake,
    "cache_store": cache_store_fake,
    "cache_gather": cache_gather_fake,
    "predictor_logits": predictor_logits_fake,
}
