"""The byte budget bounds the storage the cache actually holds, measured by tracking every buffer it allocates."""

from __future__ import annotations

import weakref

import pytest
import torch

from smartfrz.runtime import CacheConfig
from smartfrz.runtime.cache import ActivationCache

ROW = 64  # float32 features per row: 256 bytes + 5 for scale and valid flag
ROW_BYTES = ROW * 4 + 5


class HeldBytes:
    """Live bytes of tensors made by torch.empty/torch.zeros (while installed), and their peak."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.live = self.peak = 0
        for name in ("empty", "zeros"):
            monkeypatch.setattr(torch, name, self._wrap(getattr(torch, name)))

    def _wrap(self, make):
        def tracked(*args, **kwargs):
            t = make(*args, **kwargs)
            n = t.untyped_storage().nbytes()
            self.live += n
            self.peak = max(self.peak, self.live)
            weakref.finalize(t.untyped_storage(), self._free, n)
            return t

        return tracked

    def _free(self, n: int) -> None:
        self.live -= n


def _fill(cache: ActivationCache, rows: int, batch: int = 16) -> None:
    for start in range(0, rows, batch):
        cache.store(torch.randn(batch, ROW), torch.arange(start, start + batch))


@pytest.mark.parametrize("dataset_size", [None, 700])
def test_growth_never_holds_more_than_the_budget(monkeypatch: pytest.MonkeyPatch, dataset_size: int | None) -> None:
    """Filling past the budget: the peak of all buffers alive at once stays within it; at least half is used."""
    budget_rows = 1000
    cfg = CacheConfig(dtype="float32", budget_mb=budget_rows * ROW_BYTES / 2**20, dataset_size=dataset_size)
    cache = ActivationCache(cfg, deterministic_inputs=True)
    held = HeldBytes(monkeypatch)
    _fill(cache, 1600)
    monkeypatch.undo()
    assert held.peak <= budget_rows * ROW_BYTES + 16 * 8  # the budget, plus one batch's slot indices
    want = dataset_size if dataset_size else budget_rows // 2
    assert cache.rows >= want


def test_same_layout_advance_holds_no_second_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Advancing through a same-shape block rewrites the rows in place: the peak stays at one storage."""
    cache = ActivationCache(CacheConfig(dtype="float32", dataset_size=512, chunk_rows=64), deterministic_inputs=True)
    _fill(cache, 512)
    x = cache.gather(torch.arange(512))
    held = HeldBytes(monkeypatch)
    cache.advance(lambda h: h * 2 + 1)
    monkeypatch.undo()
    assert held.peak < 512 * ROW_BYTES / 4  # only chunk-sized temporaries, not a second cache
    assert cache.rows == 512 and torch.allclose(cache.gather(torch.arange(512)), x * 2 + 1)


def test_pinned_capacity_counts_the_allocators_power_of_two_rounding() -> None:
    """A host cache serving CUDA is pinned, and pinned buffers are rounded up to powers of two: count that."""
    budget = 2**20
    cache = ActivationCache(CacheConfig(dtype="float16", location="host", budget_mb=1), deterministic_inputs=True)
    cache.store(torch.randn(2, 100), [0, 1])  # fixes the layout: 200 bytes + scale + flag per row
    naive = budget // cache.row_bytes
    assert cache.capacity == naive  # CPU activations: pageable memory, no rounding
    cache._compute = torch.device("cuda")  # as when the activations are on a GPU: the rows are pinned
    cap = cache.capacity
    assert cache._held(cap) <= budget < cache._held(cap + 1)
    assert cache._held(naive) > budget  # the old row count would pin more than the budget


@pytest.mark.gpu
def test_pinned_host_cache_holds_at_most_the_budget() -> None:
    """Measured by the pinned-memory allocator: filling a host cache past its budget pins at most the budget."""
    torch.cuda.synchronize()
    torch._C._host_emptyCache()
    stats = torch.cuda.host_memory_stats
    key = next(k for k in ("reserved_bytes.current", "allocated_bytes.current") if k in stats())
    before = stats()[key]
    cache = ActivationCache(CacheConfig(dtype="float16", location="host", budget_mb=8), deterministic_inputs=True)
    x = torch.randn(256, 1000, device="cuda")
    for start in range(0, 8192, 256):
        cache.store(x, torch.arange(start, start + 256))
    torch.cuda.synchronize()
    torch._C._host_emptyCache()
    assert stats()[key] - before <= 8 * 2**20 + 2**16  # the budget, plus the small slot-index buffers
