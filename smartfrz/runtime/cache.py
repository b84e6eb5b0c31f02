"""Activation cache: the frozen prefix's output per dataset index, stored through the fused ops.

Rows live on the compute device or in (pinned) host memory, in fp16/bf16/fp32 or int8 with a
per-row scale. An activation is a tensor or a tuple of tensors (BERT blocks pass
``(hidden_states, mask)``); each tuple item is a *field* with its own storage, and integer fields
(masks) are kept exactly as float32. A byte budget caps the storage: once it is full, further samples are simply not
cached (they are recomputed each time), so the cache never runs the process out of memory. A
dataset index is mapped to a storage slot the first time it is stored.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from smartfrz import ops
from smartfrz.blocks import Activation

log = logging.getLogger("smartfrz.runtime")

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16, "int8": torch.int8}
_LOCATIONS = ("device", "host")


@dataclass
class CacheConfig:
    """Cache settings: storage dtype, where rows live, the byte budget, and the advance chunk size."""

    dtype: str = "float16"
    location: str = "device"  # "device": with the activations; "host": CPU memory (pinned when on CUDA)
    budget_mb: float = 1024.0
    chunk_rows: int = 1024  # rows pushed through newly frozen blocks at once when the prefix grows

    def __post_init__(self) -> None:
        if isinstance(self.dtype, torch.dtype):
            self.dtype = str(self.dtype).removeprefix("torch.")
        if self.dtype not in _DTYPES:
            raise ValueError(f"cache dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")
        if self.location not in _LOCATIONS:
            raise ValueError(f"cache location must be one of {_LOCATIONS}, got {self.location!r}")
        if not self.budget_mb > 0:
            raise ValueError(f"cache budget_mb must be > 0, got {self.budget_mb}")
        if self.chunk_rows < 1:
            raise ValueError(f"cache chunk_rows must be >= 1, got {self.chunk_rows}")

    @property
    def torch_dtype(self) -> torch.dtype:
        """The storage dtype as a torch dtype."""
        return _DTYPES[self.dtype]


_EXACT_INT = 2**24  # integers up to this magnitude are exact in float32


@dataclass
class _Field:
    """Storage of one tensor of the activation: rows, per-row scales and valid flags."""

    row_shape: tuple[int, ...]
    out_dtype: torch.dtype  # the dtype the activation had, restored on gather
    store_dtype: torch.dtype
    data: Tensor | None = None
    scales: Tensor | None = None
    valid: Tensor | None = None

    @property
    def row_bytes(self) -> int:
        """Bytes per stored row, with its scale and valid flag."""
        return math.prod(self.row_shape) * self.store_dtype.itemsize + 5

    @property
    def allocated(self) -> int:
        """Rows allocated."""
        return 0 if self.data is None else self.data.shape[0]

    @property
    def nbytes(self) -> int:
        """Bytes allocated."""
        return 0 if self.data is None else self.allocated * self.row_bytes

    def resize(self, size: int, device: torch.device, pin: bool) -> None:
        """Reallocate to ``size`` rows, keeping the rows stored so far."""
        data = torch.empty((size, *self.row_shape), dtype=self.store_dtype, device=device, pin_memory=pin)
        scales = torch.zeros(size, device=device, pin_memory=pin)
        valid = torch.zeros(size, dtype=torch.bool, device=device, pin_memory=pin)
        have = self.allocated
        if self.data is not None and self.scales is not None and self.valid is not None:
            data[:have].copy_(self.data)
            scales[:have].copy_(self.scales)
            valid[:have].copy_(self.valid)
        self.data, self.scales, self.valid = data, scales, valid

    def store(self, x: Tensor, slots: Tensor) -> None:
        """Write rows into ``slots`` (integer tensors as exact float32)."""
        assert self.data is not None and self.scales is not None and self.valid is not None
        if not x.is_floating_point():
            if x.numel() and int(x.abs().max()) >= _EXACT_INT:
                raise ValueError(f"integer activation values beyond {_EXACT_INT} cannot be cached exactly")
            x = x.float()
        ops.cache_store(self.data, self.scales, self.valid, x, slots)

    def gather(self, slots: Tensor) -> Tensor:
        """Read rows back in the activation's own dtype."""
        assert self.data is not None and self.scales is not None and self.valid is not None
        dtype = self.out_dtype if self.out_dtype.is_floating_point else torch.float32
        return ops.cache_gather(self.data, self.scales, self.valid, slots, dtype).to(self.out_dtype)


def _parts(act: Activation) -> tuple[Tensor, ...]:
    """The tensors of an activation (a tensor, or a tuple of tensors with the batch first)."""
    parts = act if isinstance(act, tuple) else (act,)
    if not parts or not all(isinstance(t, Tensor) and t.dim() >= 1 for t in parts):
        raise TypeError("the activation cache stores a tensor or a tuple of tensors with a batch dimension")
    return parts


class ActivationCache:
    """Per-index activation store with a byte budget, a hit counter and prefix advancing."""

    def __init__(self, config: CacheConfig, deterministic_inputs: bool) -> None:
        self.config = config
        self.deterministic_inputs = deterministic_inputs
        self.hits = 0
        self.lookups = 0
        self._reset_storage()

    def _reset_storage(self) -> None:
        """Forget every row and the row layout (the next store fixes it again)."""
        self._fields: list[_Field] | None = None
        self._is_tuple = False
        self._slot = torch.empty(0, dtype=torch.int64)  # dataset index -> slot, -1 when absent
        self.rows = 0  # slots in use
        self._cap_limit: int | None = None  # set when an allocation failed: stop growing there

    def _check_serving(self) -> None:
        """Refuse to serve unless the inputs were declared deterministic per index."""
        if not self.deterministic_inputs:
            raise RuntimeError(
                "the activation cache only serves when the frozen prefix's inputs are deterministic per "
                "dataset index (no random augmentation); pass deterministic_inputs=True if they are"
            )

    @property
    def row_bytes(self) -> int:
        """Bytes one cached sample costs (all fields, with scales and valid flags); 0 before the first store."""
        return sum(f.row_bytes for f in self._fields) if self._fields else 0

    @property
    def capacity(self) -> int:
        """Samples that fit in the budget (0 before the first store fixes the row layout)."""
        if not self._fields:
            return 0
        budget_rows = int(self.config.budget_mb * 2**20) // self.row_bytes
        return budget_rows if self._cap_limit is None else min(budget_rows, self._cap_limit)

    @property
    def nbytes(self) -> int:
        """Bytes of storage allocated now."""
        return sum(f.nbytes for f in self._fields) if self._fields else 0

    @property
    def hit_rate(self) -> float:
        """Fraction of looked-up samples served from the cache."""
        return self.hits / self.lookups if self.lookups else 0.0

    def _slots(self, idx: Tensor) -> Tensor:
        """Slot of each index (-1 when absent), on ``idx``'s device."""
        if idx.dtype != torch.int64 or idx.dim() != 1:
            raise ValueError(f"dataset indices must be a 1-D int64 tensor, got {idx.dtype} {tuple(idx.shape)}")
        if self._slot.device != idx.device:
            self._slot = self._slot.to(idx.device)
        if idx.numel() and int(idx.min()) < 0:
            raise ValueError("dataset indices must be >= 0")
        n = self._slot.numel()
        if n == 0:
            return torch.full_like(idx, -1)
        return torch.where(idx < n, self._slot[idx.clamp_max(n - 1)], -1)

    def contains(self, idx: Tensor) -> Tensor:
        """Boolean mask of the samples cached now (not counted as lookups)."""
        return self._slots(idx) >= 0

    def lookup(self, idx: Tensor) -> Tensor:
        """Boolean mask of the samples served from the cache (counts toward the hit rate)."""
        self._check_serving()
        hit = self._slots(idx) >= 0
        self.lookups += idx.numel()
        self.hits += int(hit.sum())
        return hit

    def gather(self, idx: Tensor) -> Activation:
        """Cached activations of ``idx`` (all must be hits), in the dtypes they were computed in."""
        self._check_serving()
        if not self._fields:
            raise RuntimeError("the activation cache is empty")
        slots = self._slots(idx)
        parts = tuple(f.gather(slots) for f in self._fields)
        return parts if self._is_tuple else parts[0]

    def _ensure_layout(self, act: Activation) -> tuple[Tensor, ...]:
        """Fix the row layout on the first store; later activations must match it."""
        parts = _parts(act)
        if self._fields is None:
            self._is_tuple = isinstance(act, tuple)
            self._fields = [
                _Field(tuple(t.shape[1:]), t.dtype, self.config.torch_dtype if t.is_floating_point() else torch.float32)
                for t in parts
            ]
            return parts
        shapes = [tuple(t.shape[1:]) for t in parts]
        if shapes != [f.row_shape for f in self._fields] or isinstance(act, tuple) != self._is_tuple:
            raise ValueError(
                f"prefix output rows have shapes {shapes}, the cache holds {[f.row_shape for f in self._fields]}; "
                "the cache needs a fixed per-sample shape (pad inputs to a fixed length, or disable the cache)"
            )
        return parts

    def _grow(self, needed: int, compute: torch.device) -> None:
        """Make room for ``needed`` slots (doubling, up to the capacity)."""
        assert self._fields
        have = self._fields[0].allocated
        if needed <= have:
            return
        size = min(self.capacity, max(needed, 2 * have, 64))
        device = compute if self.config.location == "device" else torch.device("cpu")
        pin = device.type == "cpu" and compute.type == "cuda"
        try:
            for f in self._fields:
                f.resize(size, device, pin)
        except (torch.OutOfMemoryError, RuntimeError) as err:  # pinned allocations fail as RuntimeError
            log.warning("activation cache stops growing at %d rows: %s", have, str(err).splitlines()[0])
            for f in self._fields:
                f.resize(have, device, pin)
            self._cap_limit = have

    def store(self, act: Activation, idx: Tensor) -> int:
        """Cache the rows of samples not cached yet, as far as the budget allows; returns rows stored."""
        parts = tuple(t.detach() for t in self._ensure_layout(act))
        slots = self._slots(idx)
        new = slots < 0
        if not bool(new.any()):
            return 0
        uniq, inverse = torch.unique(idx[new], return_inverse=True)
        positions = torch.nonzero(new).squeeze(1)
        first = torch.full((uniq.numel(),), positions.numel(), dtype=torch.int64, device=idx.device)
        first.scatter_reduce_(0, inverse, torch.arange(positions.numel(), device=idx.device), "amin")
        take = min(uniq.numel(), self.capacity - self.rows)
        if take > 0:
            self._grow(self.rows + take, idx.device)
            take = min(take, self.capacity - self.rows)  # the allocation may have failed
        if take <= 0:
            return 0
        uniq, rows = uniq[:take], positions[first[:take]]
        top = int(uniq.max()) + 1
        if top > self._slot.numel():
            grown = torch.full((max(top, 2 * self._slot.numel()),), -1, dtype=torch.int64, device=idx.device)
            grown[: self._slot.numel()] = self._slot
            self._slot = grown
        new_slots = torch.arange(self.rows, self.rows + take, device=idx.device)
        assert self._fields is not None
        for f, t in zip(self._fields, parts, strict=True):
            f.store(t.index_select(0, rows), new_slots)
        self._slot[uniq] = new_slots
        self.rows += take
        if self.rows >= self.capacity:
            log.info("activation cache full at %d rows (%.1f MiB budget)", self.rows, self.config.budget_mb)
        return take

    @torch.no_grad()
    def advance(self, fn: Callable[[Activation], Activation]) -> None:
        """Map every cached row through ``fn`` (the newly frozen blocks); rows over the new budget are dropped."""
        if not self._fields or self.rows == 0:
            self._reset_storage()
            return
        old_fields, old_rows, old_slot, is_tuple = self._fields, self.rows, self._slot, self._is_tuple
        compute = old_slot.device
        order = torch.nonzero(old_slot >= 0).squeeze(1)  # dataset indices ...
        order = order[torch.argsort(old_slot[order])]  # ... in slot order, so the kept rows are the oldest
        self._reset_storage()
        self._slot = torch.full_like(old_slot, -1)
        chunk = self.config.chunk_rows
        for start in range(0, old_rows, chunk):
            slots = torch.arange(start, min(start + chunk, old_rows), device=compute)
            parts = tuple(f.gather(slots) for f in old_fields)
            if self.store(fn(parts if is_tuple else parts[0]), order[start : start + chunk]) < slots.numel():
                break  # the new rows are larger and the budget is full

    def stats(self) -> dict[str, float | int]:
        """Rows cached, bytes allocated, capacity and hit rate."""
        return {"rows": self.rows, "bytes": self.nbytes, "capacity_rows": self.capacity, "hit_rate": self.hit_rate}

    def state_dict(self) -> dict[str, Any]:
        """Settings and counters (not the rows: they are rebuilt after a resume)."""
        return {
            "config": asdict(self.config),
            "deterministic_inputs": self.deterministic_inputs,
            "hits": self.hits,
            "lookups": self.lookups,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore settings and counters."""
        self.config = CacheConfig(**state["config"])
        self.deterministic_inputs = bool(state["deterministic_inputs"])
        self.hits, self.lookups = int(state["hits"]), int(state["lookups"])
        self._reset_storage()
