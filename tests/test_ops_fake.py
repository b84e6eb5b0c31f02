"""Fake kernels trace a host cache used from CUDA (torch.compile with a pinned cache), even without a GPU."""

from __future__ import annotations

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from smartfrz import ops
from smartfrz.ops import _fake


def test_fake_kernels_accept_a_host_cache_with_cuda_indices() -> None:
    """Fake tensors are never pinned, so the fake kernels must not ask: shapes and devices come out right."""
    with FakeTensorMode():
        cache, scales = torch.empty(8, 4, dtype=torch.float16), torch.empty(8)
        valid = torch.empty(8, dtype=torch.bool)
        idx = torch.empty(3, dtype=torch.int64, device="cuda")
        out = _fake.cache_gather_fake(cache, scales, valid, idx, torch.float32)
        _fake.cache_store_fake(cache, scales, valid, torch.empty(3, 4, device="cuda"), idx)
    assert out.shape == (3, 4) and out.device.type == "cuda" and out.dtype == torch.float32


def test_fake_kernels_still_check_shapes() -> None:
    """Skipping the pinned question keeps every other check."""
    with FakeTensorMode(), pytest.raises(ValueError, match="must hold 3 rows"):
        cache, scales = torch.empty(8, 4), torch.empty(8)
        _fake.cache_store_fake(cache, scales, torch.empty(8, dtype=torch.bool), torch.empty(3, 5), torch.arange(3))


@pytest.mark.gpu
def test_compile_fullgraph_with_pinned_cache() -> None:
    """torch.compile(fullgraph=True) of store + gather over a pinned host cache matches eager."""
    cache = torch.zeros(16, 8, dtype=torch.float16, pin_memory=True)
    scales, valid = torch.zeros(16, pin_memory=True), torch.zeros(16, dtype=torch.bool, pin_memory=True)
    x, idx = torch.randn(4, 8, device="cuda"), torch.tensor([3, 1, 7, 0], device="cuda")

    def step(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        ops.cache_store(cache, scales, valid, x, idx, check=False)
        return ops.cache_gather(cache, scales, valid, idx, torch.float32, check=False)

    out = torch.compile(step, fullgraph=True)(x, idx)
    assert torch.allclose(out, x, atol=1e-2) and bool(valid[[3, 1, 7, 0]].all())
