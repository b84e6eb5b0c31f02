"""Activation cache: the frozen prefix's output per dataset index, stored through the fused ops.

Rows live on the compute device or in (pinned) host memory, in fp16/bf16/fp32 or int8 with a
per-row scale. An activation is a tensor or a tuple of tensors (BERT blocks pass
``(hidden_states, mask)``); each tuple item is a *field* with its own storage, and integer fields
(masks) are kept exactly as float32. Under ``torch.autocast`` a float field is stored in the
narrower of the configured dtype and the activation's own (see :func:`storage_dtype`) and handed
back in the activation's dtype, the one the trainable suffix would have received without the cache.
A byte budget caps the storage: once it is full, further samples are simply not cached (they are
recomputed each time), so the cache never runs the process out of memory. A dataset index is
mapped to a storage slot the first time it is stored.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
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
    dataset_size: int | None = None  # when given: indices must be below it, and storage is sized once

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
        if self.dataset_size is not None and self.dataset_size < 1:
            raise ValueError(f"cache dataset_size must be >= 1, got {self.dataset_size}")

    @property
    def torch_dtype(self) -> torch.dtype:
        """The storage dtype as a torch dtype."""
        return _DTYPES[self.dtype]


_EXACT_INT = 2**24  # integers up to this magnitude are exact in float32


def storage_dtype(configured: torch.dtype, activation: torch.dtype) -> torch.dtype:
    """The dtype a field is stored in: never wider than the activation, and bit-exact at equal width.

    int8 is kept as asked. A float cache stores the narrower of the two dtypes; at equal width (a
    bfloat16 autocast activation in the default float16 cache) the activation's own dtype, so a
    16-bit activation is stored exactly and a bfloat16 one never overflows float16's range.
    Integer and bool fields are stored as exact float32.
    """
    if not activation.is_floating_point:
        return torch.float32
    if configured == torch.int8 or configured.itemsize < activation.itemsize:
        return configured
    return activation


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
        keep = min(self.allocated, size)  # shrinking (recovery after a failed growth) keeps the first rows
        if self.data is not None and self.scales is not None and self.valid is not None:
            data[:keep].copy_(self.data[:keep])
            scales[:keep].copy_(self.scales[:keep])
            valid[:keep].copy_(self.valid[:keep])
        self.data, self.scales, self.valid = data, scales, valid

    def store(self, x: Tensor, slots: Tensor) -> None:
        """Write rows into ``slots`` (integer tensors as exact float32)."""
        assert self.data is not None and self.scales is not None and self.valid is not None
        if not x.is_floating_point():  # bool or integer (checked exact by the cache); stored as float32
            x = x.float()
        ops.cache_store(self.data, self.scales, self.valid, x, slots, check=False)

    def gather(self, slots: Tensor) -> Tensor:
        """Read rows back in the activation's own dtype."""
        assert self.data is not None and self.scales is not None and self.valid is not None
        dtype = self.out_dtype if self.out_dtype.is_floating_point else torch.float32
        return ops.cache_gather(self.data, self.scales, self.valid, slots, dtype, check=False).to(self.out_dtype)


def _parts(act: Activation) -> tuple[Tensor, ...]:
    """The tensors of an activation (a tensor, or a tuple of tensors with the batch first)."""
    parts = act if isinstance(act, tuple) else (act,)
    if not parts or not all(isinstance(t, Tensor) and t.dim() >= 1 for t in parts):
        raise TypeError("the activation cache stores a tensor or a tuple of tensors with a batch dimension")
    return parts


def _keys(idx: Tensor | Sequence[int]) -> list[int]:
    """Dataset indices as Python ints (the cache's own entry points; the Freezer checks them fully)."""
    keys = idx.tolist() if isinstance(idx, Tensor) else list(idx)
    if isinstance(idx, Tensor) and (idx.dim() != 1 or idx.dtype.is_floating_point or idx.dtype == torch.bool):
        raise ValueError(f"dataset indices must be a 1-D integer tensor, got {idx.dtype} {tuple(idx.shape)}")
    if keys and min(keys) < 0:
        raise ValueError("dataset indices must be >= 0")
    return keys


def _first_tensor(x: Any) -> Tensor | None:
    """The first tensor in a batch (nested tuples/lists), for its device."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, tuple | list):
        for item in x:
            t = _first_tensor(item)
            if t is not None:
                return t
    return None


def select_rows(x: Any, rows: Tensor) -> Any:
    """Rows of a batch (a tensor or a tuple of tensors) by position, without a host sync."""
    return tuple(t.index_select(0, rows) for t in x) if isinstance(x, tuple) else x.index_select(0, rows)


class ActivationCache:
    """Per-index activation store with a byte budget, a hit counter and prefix advancing.

    The index table (dataset index -> slot) is a host dict holding only the cached rows, so it is
    bounded by the capacity, and every decision about hits, misses and slots is taken on the host:
    the device sees slot tensors moved by non-blocking pinned copies and kernels called with
    ``check=False``, so an all-hit step never synchronises.
    """

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
        self._slot: dict[int, int] = {}  # dataset index -> slot, only for cached rows
        self._keys: list[int] = []  # slot -> dataset index
        self._compute: torch.device | None = None  # device of the activations
        self._cap_limit: int | None = None  # set when an allocation failed: stop growing there

    def clear(self) -> None:
        """Drop every row (e.g. when the precision they were computed at changes); counters are kept."""
        self._reset_storage()

    @property
    def rows(self) -> int:
        """Slots in use."""
        return len(self._keys)

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
        """Samples that fit in the budget and the dataset (0 before the first store fixes the row layout)."""
        if not self._fields:
            return 0
        rows = self._rows_within(self._budget_bytes)
        if self.config.dataset_size is not None:
            rows = min(rows, self.config.dataset_size)
        return rows if self._cap_limit is None else min(rows, self._cap_limit)

    @property
    def _budget_bytes(self) -> int:
        return int(self.config.budget_mb * 2**20)

    @property
    def _pinned(self) -> bool:
        """Rows live in pinned host memory (a host cache serving CUDA activations)."""
        return self.config.location == "host" and self._compute is not None and self._compute.type == "cuda"

    def _held(self, rows: int) -> int:
        """Bytes the allocator really holds for ``rows`` rows of every field.

        The pinned-memory allocator rounds each buffer up to a power of two, so that is what is counted.
        """
        assert self._fields is not None
        sizes = [n * rows for f in self._fields for n in (math.prod(f.row_shape) * f.store_dtype.itemsize, 4, 1)]
        if self._pinned:
            sizes = [1 << (n - 1).bit_length() if n > 0 else 0 for n in sizes]
        return sum(sizes)

    def _rows_within(self, nbytes: int) -> int:
        """The most rows whose storage is held within ``nbytes`` (held bytes grow with the rows)."""
        lo, hi = 0, max(0, nbytes) // max(1, self.row_bytes - 5 * len(self._fields or ())) + 1
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if self._held(mid) <= nbytes else (lo, mid - 1)
        return lo

    @property
    def nbytes(self) -> int:
        """Bytes of storage allocated now."""
        return sum(f.nbytes for f in self._fields) if self._fields else 0

    @property
    def hit_rate(self) -> float:
        """Fraction of looked-up samples served from the cache."""
        return self.hits / self.lookups if self.lookups else 0.0

    def _to_compute(self, values: list[int], device: torch.device | None = None) -> Tensor:
        """Host ints as an int64 tensor on the compute device: one non-blocking copy from pinned memory."""
        t = torch.tensor(values, dtype=torch.int64)
        device = device or self._compute
        if device is None or device.type == "cpu":
            return t
        return t.pin_memory().to(device, non_blocking=True)

    def slots_of(self, keys: list[int]) -> list[int]:
        """Slot of each dataset index (-1 when not cached), looked up on the host."""
        get = self._slot.get
        return [get(k, -1) for k in keys]

    def contains(self, idx: Tensor | Sequence[int]) -> Tensor:
        """Boolean mask (CPU) of the samples cached now (not counted as lookups)."""
        return torch.tensor([s >= 0 for s in self.slots_of(_keys(idx))], dtype=torch.bool)

    def lookup(self, idx: Tensor | Sequence[int]) -> Tensor:
        """Boolean mask (CPU) of the samples served from the cache (counts toward the hit rate)."""
        self._check_serving()
        hit = self.contains(idx)
        self.lookups += hit.numel()
        self.hits += int(hit.sum())
        return hit

    def gather(self, idx: Tensor | Sequence[int]) -> Activation:
        """Cached activations of ``idx`` (all must be hits), in the dtypes they were computed in."""
        self._check_serving()
        slots = self.slots_of(_keys(idx))
        if not self._fields or min(slots, default=0) < 0:
            missing = [k for k, s in zip(_keys(idx), slots, strict=True) if s < 0]
            raise KeyError(f"dataset indices {missing[:4]} are not in the activation cache")
        return self._gather_slots(slots)

    def _gather_slots(self, slots: list[int]) -> Activation:
        """Rows of these (valid) slots, on the compute device; no host sync."""
        assert self._fields is not None
        dev = self._to_compute(slots)
        parts = tuple(f.gather(dev) for f in self._fields)
        return parts if self._is_tuple else parts[0]

    def fetch(self, x: Any, keys: list[int], prefix: Callable[[Any], Activation]) -> Activation:
        """The prefix's output for the batch ``x`` with checked dataset indices ``keys``.

        Hits are gathered; misses are computed by ``prefix`` on their rows only, stored as far as
        the budget allows, and then served from the cache too, so a sample's activation is the
        same whether it was a hit or a miss. No host sync on an all-hit step.
        """
        self._check_serving()
        slots = self.slots_of(keys)
        miss = [p for p, s in enumerate(slots) if s < 0]
        self.lookups += len(keys)
        self.hits += len(keys) - len(miss)
        if not miss:
            return self._gather_slots(slots)
        ref = _first_tensor(x)
        device = ref.device if ref is not None else torch.device("cpu")
        computed = prefix(x if len(miss) == len(keys) else select_rows(x, self._to_compute(miss, device)))
        self._store_rows(computed, [keys[p] for p in miss], device)
        slots = self.slots_of(keys)
        unserved = [p for p, s in enumerate(slots) if s < 0]
        if not unserved:
            return self._gather_slots(slots)
        if len(unserved) == len(keys):
            return computed
        served = [p for p, s in enumerate(slots) if s >= 0]
        local = {p: i for i, p in enumerate(miss)}
        gathered = _parts(self._gather_slots([slots[p] for p in served]))
        rest = _parts(computed)
        served_t, unserved_t = self._to_compute(served), self._to_compute(unserved)
        rest_rows = self._to_compute([local[p] for p in unserved])
        out = []
        for g, c in zip(gathered, rest, strict=True):
            t = torch.empty((len(keys), *c.shape[1:]), dtype=c.dtype, device=c.device)
            t.index_copy_(0, served_t, g.to(c.dtype))
            t.index_copy_(0, unserved_t, c.index_select(0, rest_rows))
            out.append(t)
        return tuple(out) if self._is_tuple else out[0]

    def _ensure_layout(self, act: Activation) -> tuple[Tensor, ...]:
        """Fix the row layout on the first store; later activations must match it."""
        parts = _parts(act)
        if self._fields is None:
            self._is_tuple = isinstance(act, tuple)
            self._fields = [
                _Field(tuple(t.shape[1:]), t.dtype, storage_dtype(self.config.torch_dtype, t.dtype)) for t in parts
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
        """Make room for ``needed`` slots, never holding more than the budget, even while copying.

        With dataset_size the whole capacity is allocated once. Without it the storage doubles, but
        the old and the new buffers are held together during the copy, so a growth is capped at what
        fits beside the old one; the cache then stops at between half and all of the budget.
        """
        assert self._fields
        have = self._fields[0].allocated
        if needed <= have:
            return
        known = self.config.dataset_size is not None
        size = self.capacity if known else min(self.capacity, max(needed, 2 * have, 64))
        if have:
            size = min(size, self._rows_within(self._budget_bytes - self._held(have)))
            if size < needed:
                self._cap_limit = have
                log.info("activation cache stops at %d rows: growing further would exceed the budget", have)
                return
        device = compute if self.config.location == "device" else torch.device("cpu")
        pin = device.type == "cpu" and compute.type == "cuda"
        try:
            for f in self._fields:
                f.resize(size, device, pin)
            if pin:
                torch._C._host_emptyCache()  # unpin the old buffers instead of keeping them cached
        except (torch.OutOfMemoryError, RuntimeError) as err:  # pinned allocations fail as RuntimeError
            log.warning("activation cache stops growing at %d rows: %s", have, str(err).splitlines()[0])
            for f in self._fields:
                f.resize(have, device, pin)
            self._cap_limit = have

    def store(self, act: Activation, idx: Tensor | Sequence[int]) -> int:
        """Cache the rows of samples not cached yet, as far as the budget allows; returns rows stored."""
        parts = _parts(act)
        return self._store_rows(act, _keys(idx), parts[0].device)

    def _store_rows(self, act: Activation, keys: list[int], device: torch.device) -> int:
        """Store the first occurrence of each new key (host bookkeeping, one pinned copy per index tensor)."""
        parts = tuple(t.detach() for t in self._ensure_layout(act))
        self._compute = device
        first: dict[int, int] = {}
        for p, k in enumerate(keys):
            if k not in self._slot and k not in first:
                first[k] = p
        if not first:
            return 0
        take = min(len(first), self.capacity - self.rows)
        if take > 0:
            self._grow(self.rows + take, device)
            take = min(take, self.capacity - self.rows)  # the allocation may have failed
        if take <= 0:
            return 0
        new_keys = list(first)[:take]
        positions = [first[k] for k in new_keys]
        slots = list(range(self.rows, self.rows + take))
        everything = positions == list(range(len(keys)))
        rows = None if everything else self._to_compute(positions, device)
        slots_t = self._to_compute(slots, device)
        assert self._fields is not None
        self._check_exact([t for t in parts if not t.is_floating_point() and t.dtype != torch.bool])
        for f, t in zip(self._fields, parts, strict=True):
            f.store(t if rows is None else t.index_select(0, rows), slots_t)
        for k, s in zip(new_keys, slots, strict=True):
            self._slot[k] = s
        self._keys.extend(new_keys)
        if self.rows >= self.capacity:
            log.info("activation cache full at %d rows (%.1f MiB budget)", self.rows, self.config.budget_mb)
        return take

    @staticmethod
    def _check_exact(ints: list[Tensor]) -> None:
        """Integer fields must be exact in float32 (one host read for all of them)."""
        ints = [t for t in ints if t.numel()]
        if ints and int(torch.stack([t.abs().max() for t in ints]).max()) >= _EXACT_INT:
            raise ValueError(f"integer activation values beyond {_EXACT_INT} cannot be cached exactly")

    @torch.no_grad()
    def advance(self, fn: Callable[[Activation], Activation]) -> None:
        """Map every cached row through ``fn`` (the newly frozen blocks); rows over the new budget are dropped.

        When the new rows have the old layout (same shapes and dtypes, e.g. transformer blocks) they are
        written in place, so advancing holds no second copy; otherwise new storage is filled beside the old.
        """
        if not self._fields or self.rows == 0:
            self._reset_storage()
            return
        old_fields, old_keys, is_tuple, compute = self._fields, self._keys, self._is_tuple, self._compute
        assert compute is not None
        chunk = self.config.chunk_rows
        in_place: bool | None = None
        for start in range(0, len(old_keys), chunk):  # slot order: the kept rows are the oldest
            slots = self._to_compute(list(range(start, min(start + chunk, len(old_keys)))), compute)
            parts = tuple(f.gather(slots) for f in old_fields)
            out = fn(parts if is_tuple else parts[0])
            if in_place is None:
                in_place = self._same_layout(out)
                if not in_place:
                    self._reset_storage()
            if in_place:
                new_parts = _parts(out)
                self._check_exact([t for t in new_parts if not t.is_floating_point() and t.dtype != torch.bool])
                for f, t in zip(old_fields, new_parts, strict=True):
                    f.store(t.detach(), slots)
                continue
            keys = old_keys[start : start + chunk]
            if self._store_rows(out, keys, compute) < len(keys):
                break  # the new rows are larger and the budget is full

    def _same_layout(self, act: Activation) -> bool:
        """Whether ``act``'s rows have exactly the stored layout (so they can overwrite their own slots)."""
        parts = _parts(act)
        assert self._fields is not None
        return (
            isinstance(act, tuple) == self._is_tuple
            and len(parts) == len(self._fields)
            and all(
                tuple(t.shape[1:]) == f.row_shape and t.dtype == f.out_dtype
                for t, f in zip(parts, self._fields, strict=False)
            )
        )

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
