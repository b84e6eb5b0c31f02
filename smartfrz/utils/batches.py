"""Walk nested batches (tensors in tuples, lists, dicts) with torch's pytree, in one place."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.utils import _pytree as pytree

Batch = Any
"""A model input as a data loader yields it: a Tensor, or a (nested) tuple/list/dict of Tensors."""


def tensors(batch: Batch) -> list[Tensor]:
    """The tensors of ``batch`` in pytree order."""
    return [leaf for leaf in pytree.tree_leaves(batch) if isinstance(leaf, Tensor)]


def first_tensor(batch: Batch) -> Tensor | None:
    """The first tensor of ``batch`` (for its device), or None when it has none."""
    found = tensors(batch)
    return found[0] if found else None


def batch_len(batch: Batch) -> int:
    """Number of samples: the first non-zero leading dimension of its tensors (0 when there is none)."""
    return next((int(t.shape[0]) for t in tensors(batch) if t.dim() and t.shape[0]), 0)


def to_device(batch: Batch, device: torch.device | str) -> Batch:
    """``batch`` with every tensor moved to ``device`` (non-blocking), the structure kept."""
    return pytree.tree_map_only(Tensor, lambda t: t.to(device, non_blocking=True), batch)


def take(batch: Batch, idx: Tensor | slice) -> Batch:
    """Rows ``idx`` of every tensor of ``batch``."""
    return pytree.tree_map_only(Tensor, lambda t: t[idx], batch)
