"""Activation cache paths that break quietly: failed growth, partial stores of tuples, bad settings, large ints."""

from __future__ import annotations

import logging

import pytest
import torch

import smartfrz.ops as ops
from smartfrz.ops import reference
from smartfrz.runtime import CacheConfig, FreezeOut, Freezer
from smartfrz.runtime import cache as cache_module
from smartfrz.runtime.cache import ActivationCache
from smartfrz.zoo import models


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dtype": "float8"}, "cache dtype must be one of"),
        ({"location": "disk"}, "cache location must be one of"),
        ({"budget_mb": 0.0}, "budget_mb must be > 0"),
        ({"budget_mb": float("nan")}, "budget_mb must be > 0"),
        ({"chunk_rows": 0}, "chunk_rows must be >= 1"),
    ],
)
def test_cache_config_rejects_bad_settings(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CacheConfig(**kwargs)


def test_cache_config_accepts_a_torch_dtype() -> None:
    assert CacheConfig(dtype=torch.bfloat16).torch_dtype == torch.bfloat16


def test_integers_below_two_to_the_24_are_exact_and_above_refused() -> None:
    cache = ActivationCache(CacheConfig(dtype="float16"), deterministic_inputs=True)
    big = torch.tensor([[2**24 - 1, -(2**24 - 1), 3]], dtype=torch.int64)
    cache.store((torch.zeros(1, 2), big), torch.tensor([0]))
    assert torch.equal(cache.gather(torch.tensor([0]))[1], big)  # exact, though the floats are fp16
    with pytest.raises(ValueError, match="cannot be cached exactly"):
        cache.store((torch.zeros(1, 2), torch.tensor([[2**24, 0, 0]])), torch.tensor([1]))
    assert not cache.contains(torch.tensor([1])).any()


def test_growth_stops_where_an_allocation_fails(monkeypatch, caplog) -> None:
    """An allocation failing mid-run caps the cache there: stored rows survive, later rows are misses."""
    real_resize = cache_module._Field.resize

    def resize(self, size, device, pin):
        if size > 64:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        real_resize(self, size, device, pin)

    monkeypatch.setattr(cache_module._Field, "resize", resize)
    cache = ActivationCache(CacheConfig(dtype="float32"), deterministic_inputs=True)
    x = torch.randn(100, 8)
    assert cache.store(x[:64], torch.arange(64)) == 64
    with caplog.at_level(logging.WARNING, logger="smartfrz.runtime"):
        assert cache.store(x[64:], torch.arange(64, 100)) == 0
    assert "stops growing at 64 rows" in caplog.text
    assert cache.capacity == 64 and cache.rows == 64
    assert cache.contains(torch.arange(100)).tolist() == [True] * 64 + [False] * 36
    assert torch.equal(cache.gather(torch.arange(64)), x[:64])
    assert cache.store(x[64:], torch.arange(64, 100)) == 0  # no further attempts to grow past the cap


def _text_model() -> torch.nn.Sequential:
    torch.manual_seed(0)
    model = models.text_transformer(30, 3, dim=8, depth=2, heads=2, max_len=6)
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return model


def test_tuple_activations_with_a_partly_full_budget_keep_batch_order() -> None:
    """(hidden, mask) prefix outputs, some rows cached and some not: merged back in batch order."""
    model = _text_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    row_bytes = 6 * 8 * 4 + 5 + 6 * 4 + 5  # hidden [6, 8] float32 and the bool mask stored as float32
    config = CacheConfig(dtype="float32", budget_mb=5 * row_bytes / 2**20)
    freezer = Freezer(model, opt, FreezeOut(total_steps=100, t0=0.01), cache=config, deterministic_inputs=True)
    freezer.step()
    assert freezer.num_frozen == 1
    ids = torch.randint(1, 30, (12, 6), generator=torch.Generator().manual_seed(1))
    ids[torch.arange(6)[None, :] >= torch.tensor([6, 2, 4, 3, 5, 1, 6, 2, 3, 4, 5, 6])[:, None]] = 0
    with torch.no_grad():
        want = model(ids)
        first = torch.tensor([4, 0, 7, 2, 9, 1, 11, 5])  # 5 of 8 fit: a partial store
        assert torch.allclose(freezer(ids[first], first), want[first], atol=1e-5)
        assert freezer.cache is not None and freezer.cache.rows == 5
        second = torch.tensor([3, 7, 10, 0, 4, 6])  # hits (0, 4) and misses mixed
        assert torch.allclose(freezer(ids[second], second), want[second], atol=1e-5)
        assert freezer.cache.rows == 5 and freezer.cache.hits > 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.int8])
def test_cpu_kernels_with_threads_and_batches_above_the_grain(dtype: torch.dtype) -> None:
    """Several threads each take a range of rows (grain 16): results equal the reference bit for bit."""
    threads = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        n, rows = 300, 257
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(rows, 3, 11, generator=gen) * torch.logspace(-3, 3, rows)[:, None, None]
        idx = torch.randperm(n, generator=gen)[:rows]
        got = (torch.zeros(n, 3, 11, dtype=dtype), torch.zeros(n), torch.zeros(n, dtype=torch.bool))
        want = tuple(t.clone() for t in got)
        ops.cache_store(*got, x, idx)
        reference.cache_store(*want, x, idx)
        for a, b in zip(got, want, strict=True):
            assert torch.equal(a, b)
        back = torch.randperm(n, generator=gen)[:200]
        back = back[want[2][back]]
        assert torch.equal(
            ops.cache_gather(*got, back, torch.float32), reference.cache_gather(*want, back, torch.float32)
        )
        weights = [torch.randn(s, generator=gen) for s in (5, 40000, 17, 70001, 3)]
        widx = torch.stack([torch.randint(0, w.numel(), (64,), generator=gen) for w in weights])
        s1, st1 = ops.record_weights(weights, widx, None)
        s2, st2 = reference.record_weights(weights, widx, None)
        assert torch.equal(s1, s2)
        torch.testing.assert_close(st1, st2, rtol=1e-5, atol=1e-6)
    finally:
        torch.set_num_threads(threads)
