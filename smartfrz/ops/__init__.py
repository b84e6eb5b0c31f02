"""The smartfrz native ops: fused weight recording, the frozen-activation cache and the predictor's forward.

Each op has a CPU kernel, a CUDA kernel (when built with CUDA) and a pure-PyTorch reference
(:mod:`smartfrz.ops.reference`) that defines its semantics. :func:`backends` says which one
serves each op on each device.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from smartfrz.ops._loader import load as _load
from smartfrz.ops._schemas import CACHE_DTYPES, FLOAT_DTYPES, PREDICTOR_PARAMS, STAT_NAMES

_BACKENDS = _load()

__all__ = [
    "CACHE_DTYPES",
    "FLOAT_DTYPES",
    "PREDICTOR_PARAMS",
    "STAT_NAMES",
    "backends",
    "cache_gather",
    "cache_store",
    "predictor_logits",
    "record_weights",
]


def backends() -> dict[str, dict[str, str]]:
    """Which implementation serves each op per device, e.g. ``{"record_weights": {"cpu": "native: ..."}}``."""
    return {op: dict(devices) for op, devices in _BACKENDS.items()}


def record_weights(
    weights: Sequence[torch.Tensor], sample_idx: torch.Tensor, prev: torch.Tensor | None = None, stats: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample K weights per layer and compute per-layer statistics, in one fused call.

    Args:
        weights: L tensors of any shape (fp32/fp16/bf16/fp64) on one device.
        sample_idx: ``[L, K]`` int64 flat positions into each weight (see ``layers.draw_sample_indices``).
        prev: the previous snapshot's samples ``[L, K]`` fp32, for the change statistic.
        stats: False skips the statistics and their pass over every weight: only the K samples are read.

    Returns:
        ``samples [L, K]`` fp32 and ``stats [L, 4]`` fp32 with columns :data:`STAT_NAMES` (``[L, 0]`` when
        ``stats`` is False).
    """
    return torch.ops.smartfrz.record_weights(list(weights), sample_idx, prev, stats)


def cache_store(
    cache: torch.Tensor,
    scales: torch.Tensor,
    valid: torch.Tensor,
    x: torch.Tensor,
    idx: torch.Tensor,
    check: bool = True,
) -> None:
    """Write the rows of ``x`` into ``cache[idx]`` (cast to the cache dtype) and mark them valid.

    ``cache [N, ...]`` is fp32/fp16/bf16/int8; an int8 cache keeps a per-row scale in ``scales [N]``.
    Duplicate indices in one call raise ValueError. ``check=False`` skips the host-side validation
    (no device sync on CUDA): out-of-range rows are then skipped, duplicates are undefined.
    """
    torch.ops.smartfrz.cache_store(cache, scales, valid, x, idx, check)


def cache_gather(
    cache: torch.Tensor,
    scales: torch.Tensor,
    valid: torch.Tensor,
    idx: torch.Tensor,
    dtype: torch.dtype = torch.float32,
    check: bool = True,
) -> torch.Tensor:
    """Read ``cache[idx]`` back as ``dtype`` on ``idx.device`` in one pass.

    On CUDA the cache may live in pinned host memory and is read by the kernel directly. Reading
    a row that was never stored or is out of range raises; ``check=False`` skips that validation
    (no device sync): out-of-range rows then read as zeros.
    """
    return torch.ops.smartfrz.cache_gather(cache, scales, valid, idx, dtype, check)


def predictor_logits(
    emb: torch.Tensor, valid: torch.Tensor, context: torch.Tensor, params: Sequence[torch.Tensor], heads: int
) -> torch.Tensor:
    """The attention freeze predictor's logits for N windows in one fused call (inference: no autograd).

    Args:
        emb: ``[N, W, D]`` float32 embedded snapshots, oldest first.
        valid: ``[N, W]`` bool, each row a suffix of True (short windows are left-padded).
        context: ``[N, C]`` float32 context inputs, NaN where unknown (C may be 0).
        params: the network's tensors in the order of :data:`PREDICTOR_PARAMS`, float32, on emb's device.
        heads: attention heads (the hidden size must be a multiple).

    Returns:
        ``[N]`` float32 logits; equal, up to float rounding, to ``smartfrz.ops.predictor.attention_logits``.
    """
    return torch.ops.smartfrz.predictor_logits(emb, valid, context, list(params), heads)
