"""DDP support: rank 0 decides, the decision is broadcast, and the DDP wrapper is rebuilt after a freeze.

A DDP reducer is built for the parameters that require gradients when it is constructed; after a
freeze those parameters get no gradient and DDP would wait for them. Rebuilding the wrapper over
the same module (a collective that every rank runs at the same step, since every rank freezes at
the same step) gives a reducer over the parameters still training, with no ``find_unused_parameters``
graph walk on every step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


# Constructor settings DDP keeps as attributes of the same name (those a torch version lacks are skipped).
_KEPT = (
    "device_ids",
    "output_device",
    "dim",
    "process_group",
    "find_unused_parameters",
    "gradient_as_bucket_view",
    "static_graph",
    "mixed_precision",
    "forward_sync_buffers",
    "skip_all_reduce_unused_params",
    "batched_grad_copy",
)


def ddp_kwargs(model: DDP) -> dict[str, Any]:
    """The constructor settings of an existing DDP wrapper, so a rebuilt one behaves the same."""
    kwargs = {name: getattr(model, name) for name in _KEPT if hasattr(model, name)}
    kwargs["bucket_cap_mb"] = model.bucket_bytes_cap / 2**20
    if "forward_sync_buffers" not in kwargs and hasattr(model, "broadcast_buffers"):  # older torch
        kwargs["broadcast_buffers"] = model.broadcast_buffers
    return kwargs


def comm_hooks(model: DDP) -> list[tuple[Callable[..., Any], object]]:
    """The communication hooks registered on a DDP wrapper (fp16 compression, PowerSGD, ...), with their states."""
    return list(getattr(model, "_comm_hooks", []))


def wrap(module: nn.Module, kwargs: dict[str, Any], hooks: Sequence[tuple[Callable[..., Any], object]] = ()) -> DDP:
    """A fresh DDP wrapper over ``module`` with the same settings and hooks (collective: every rank, same point)."""
    ddp = DDP(module, **kwargs)
    for hook, state in hooks:
        ddp.register_comm_hook(state, hook)
    return ddp
