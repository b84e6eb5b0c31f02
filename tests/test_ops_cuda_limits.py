"""GPU-only checks of issue 13: pinned-buffer lifetime, tensors past 2**31 elements, and kernel bandwidth."""

from __future__ import annotations

import pytest
import torch

import smartfrz.ops as ops

pytestmark = pytest.mark.gpu


def test_freed_pinned_cache_is_not_reused_while_a_kernel_uses_it() -> None:
    """Store and gather with check=False on a delayed stream, free the pinned cache, allocate the same size:
    the new block must not be the one the queued kernels still write (the stream is recorded with the allocator)."""
    n, d = 4096, 256
    x = torch.randn(n, d, device="cuda")
    idx = torch.arange(n, device="cuda")
    cache = torch.zeros(n, d, dtype=torch.float16, pin_memory=True)
    scales = torch.zeros(n, pin_memory=True)
    valid = torch.zeros(n, dtype=torch.bool, pin_memory=True)
    torch.cuda._sleep(200_000_000)  # keep the stream busy so the kernels below run after the frees
    ops.cache_store(cache, scales, valid, x, idx, check=False)
    out = ops.cache_gather(cache, scales, valid, idx, torch.float32, check=False)
    del cache, scales, valid
    others = [torch.empty(n, d, dtype=torch.float16, pin_memory=True).fill_(7) for _ in range(2)]
    torch.cuda.synchronize()
    assert all(bool((o == 7).all()) for o in others)
    assert torch.allclose(out, x, atol=1e-2, rtol=1e-2)


def test_record_weights_past_2_31_elements() -> None:
    """A weight of more than 2**31 elements: the last element is sampled correctly."""
    w = torch.zeros(2**31 + 64, dtype=torch.float16, device="cuda")
    w[-1] = 3.0
    sample = torch.tensor([[0, 2**31 + 63]], device="cuda")
    samples, stats = ops.record_weights([w], sample)
    assert samples.tolist() == [[0.0, 3.0]] and stats[0, 3].item() == 3.0


@pytest.mark.parametrize("dtype", [torch.int8, torch.float16])
def test_cache_with_more_than_2_31_elements(dtype: torch.dtype) -> None:
    """A cache of N*d > 2**31 elements: the last row stores and gathers exactly where it should."""
    d = 1024
    n = 2**31 // d + 2
    cache = torch.zeros(n, d, dtype=dtype, device="cuda")
    scales, valid = torch.zeros(n, device="cuda"), torch.zeros(n, dtype=torch.bool, device="cuda")
    x = torch.linspace(-1, 1, d, device="cuda")[None]
    last = torch.tensor([n - 1], device="cuda")
    ops.cache_store(cache, scales, valid, x, last)
    got = ops.cache_gather(cache, scales, valid, last, torch.float32)
    assert torch.allclose(got, x, atol=1e-2) and bool(valid[-1]) and not bool(valid[:-1].any())
