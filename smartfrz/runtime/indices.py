"""Dataset indices of a batch, checked once per call on the host before the cache uses them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

_USAGE = (
    "freezer(x, idx) takes the batch's dataset indices as idx (a 1-D integer tensor or list, one per sample); "
    "pass further model inputs after it or by keyword, e.g. freezer(ids, idx, mask) or freezer(ids, None, mask)"
)


def host_indices(idx: Tensor | Sequence[int] | Any, batch: int, dataset_size: int | None = None) -> list[int]:
    """``idx`` as Python ints after checking it: 1-D integers, one per sample, >= 0, unique, < dataset_size.

    A CUDA tensor is copied to the host (one sync); DataLoader indices are on the CPU already.
    """
    if isinstance(idx, Tensor):
        if idx.dtype == torch.bool or idx.dtype.is_floating_point or idx.dtype.is_complex:
            raise TypeError(f"dataset indices must be integers, got a {idx.dtype} tensor; {_USAGE}")
        if idx.dim() != 1:
            raise ValueError(f"dataset indices must be 1-D, got a tensor of shape {tuple(idx.shape)}; {_USAGE}")
        keys = idx.tolist()
    elif isinstance(idx, list | tuple):
        if not all(isinstance(k, int) and not isinstance(k, bool) for k in idx):
            raise TypeError(f"dataset indices must be integers, got {[type(k).__name__ for k in idx][:4]}; {_USAGE}")
        keys = list(idx)
    else:
        raise TypeError(f"dataset indices must be a 1-D integer tensor or a list, got {type(idx).__name__}; {_USAGE}")
    if len(keys) != batch:
        raise ValueError(f"got {len(keys)} dataset indices for a batch of {batch} samples; {_USAGE}")
    if keys and min(keys) < 0:
        raise ValueError(f"dataset indices must be >= 0, got {min(keys)}")
    if len(set(keys)) != len(keys):
        seen: set[int] = set()
        dup = next(k for k in keys if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise ValueError(f"dataset index {dup} appears twice in one batch; each sample needs its own index")
    if dataset_size is not None and keys and max(keys) >= dataset_size:
        raise ValueError(f"dataset index {max(keys)} is out of range for dataset_size={dataset_size}")
    return keys
