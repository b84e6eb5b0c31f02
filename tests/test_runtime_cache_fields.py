"""Cache fields beyond float tensors, and recovery when growing the storage fails part way."""

from __future__ import annotations

import pytest
import torch

from smartfrz.runtime import CacheConfig
from smartfrz.runtime.cache import ActivationCache


def test_bool_field_round_trips_on_cpu() -> None:
    """A (hidden, bool mask) activation is stored and comes back with the mask still bool and exact."""
    cache = ActivationCache(CacheConfig(dtype="float16"), deterministic_inputs=True)
    hidden = torch.randn(3, 4, 2)
    mask = torch.tensor([[True, True, False, False], [True, False, False, False], [True] * 4])
    assert cache.store((hidden, mask), torch.tensor([4, 0, 9])) == 3
    h, m = cache.gather(torch.tensor([9, 4]))
    assert m.dtype == torch.bool and torch.equal(m, mask[[2, 0]])
    assert torch.allclose(h, hidden[[2, 0]], atol=1e-2)


def test_failed_growth_of_a_tuple_activation_keeps_the_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the second field's larger buffer cannot be allocated, the cache stays at its old size, rows intact."""
    cache = ActivationCache(CacheConfig(dtype="float32"), deterministic_inputs=True)
    a, b = torch.randn(64, 3), torch.randn(64, 5)
    assert cache.store((a, b), torch.arange(64)) == 64
    real_empty = torch.empty

    def failing_empty(*size, **kwargs):  # the second field's (rows, 5) buffer beyond 64 rows fails
        shape = tuple(size[0]) if len(size) == 1 and isinstance(size[0], tuple | list) else size
        if len(shape) == 2 and shape[1] == 5 and shape[0] > 64:
            raise torch.OutOfMemoryError("simulated")
        return real_empty(*size, **kwargs)

    monkeypatch.setattr(torch, "empty", failing_empty)
    assert cache.store((torch.randn(8, 3), torch.randn(8, 5)), torch.arange(64, 72)) == 0
    monkeypatch.undo()
    assert cache.capacity == 64 and cache.rows == 64
    ga, gb = cache.gather(torch.arange(64))
    assert torch.equal(ga, a) and torch.equal(gb, b)
