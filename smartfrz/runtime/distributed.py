"""DDP support: rank 0 decides, the decision is broadcast, and the DDP wrapper is rebuilt after a freeze.

A DDP reducer is built for the parameters that require gradients when it is constructed; after a
freeze those parameters get no gradient and DDP would wait for them. Rebuilding the wrapper over
the same module (a collective that every rank runs at the same step, since every rank freezes at
the same step) gives a reducer over the parameters still training, with no ``find_unused_parameters``
graph walk on every step.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP


def is_distributed() -> bool:
    """True inside an initialised process group with more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_rank0() -> bool:
    """True on rank 0, or when not distributed."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def broadcast_decision(num_frozen: int, scores: dict[int, float], num_blocks: int) -> tuple[int, dict[int, float]]:
    """Rank 0's prefix length and block scores, on every rank (one small broadcast)."""
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    buf = torch.full((num_blocks + 1,), float("nan"), dtype=torch.float64, device=device)
    if dist.get_rank() == 0:
        buf[0] = num_frozen
        for b, s in scores.items():
            buf[b + 1] = s
    dist.broadcast(buf, src=0)
    values = buf.cpu().tolist()
    return int(values[0]), {b: v for b, v in enumerate(values[1:]) if v == v}


def ddp_kwargs(model: DDP) -> dict[str, Any]:
    """The constructor settings of an existing DDP wrapper that matter when rebuilding it."""
    kwargs: dict[str, Any] = {
        "device_ids": model.device_ids,
        "output_device": model.output_device,
        "dim": model.dim,
        "process_group": model.process_group,
        "find_unused_parameters": model.find_unused_parameters,
        "gradient_as_bucket_view": model.gradient_as_bucket_view,
        "bucket_cap_mb": model.bucket_bytes_cap / 2**20,
    }
    return kwargs


def wrap(module: nn.Module, kwargs: dict[str, Any]) -> DDP:
    """A fresh DDP wrapper over ``module`` (collective: call on every rank at the same point)."""
    return DDP(module, **kwargs)
