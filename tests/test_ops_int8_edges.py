"""int8 edge rows: subnormal and tiny amax, NaN and inf with check=False; native and reference agree bit for bit."""

from __future__ import annotations

import pytest
import torch

from smartfrz import ops
from smartfrz.ops import reference

NATIVE_CPU = ops.backends()["cache_store"]["cpu"].startswith("native")
TINY = 1e-37  # a normal float whose 127/amax overflows
SUB = 1e-40  # subnormal


def _edge_rows() -> torch.Tensor:
    inf, nan = float("inf"), float("nan")
    return torch.tensor(
        [
            [0.0, SUB, -SUB, 0.0],  # subnormal amax
            [0.0, TINY, -TINY / 2, 0.0],  # normal amax, 127/amax overflows
            [1.0, nan, -2.0, 0.5],  # NaN among finite values
            [inf, -1.0, 3.0, -inf],  # infinities among finite values
            [nan, inf, 0.0, -inf],  # nothing finite but zero
            [0.0, 0.0, 0.0, 0.0],
            [1e-30, -3e-30, 2e-30, 0.0],  # small but representable scale
        ]
    )


def _store(fn, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    n = x.shape[0]
    cache, scales, valid = torch.zeros(n, 4, dtype=torch.int8), torch.full((n,), -1.0), torch.zeros(n, dtype=torch.bool)
    fn(cache, scales, valid, x, torch.arange(n), False)
    return cache, scales, valid


def test_reference_defines_the_edge_rows() -> None:
    """Tiny rows store as zeros with scale 0 (no NaN, no -127); NaN stores 0; inf saturates."""
    cache, scales, valid = _store(reference.cache_store, _edge_rows())
    assert cache[:2].eq(0).all() and scales[:2].eq(0).all() and valid.all()
    assert cache[2].tolist() == [64, 0, -127, 32] and scales[2].item() == pytest.approx(2 / 127)
    assert cache[3].tolist() == [127, -42, 127, -127]
    assert cache[4].tolist() == [0, 127, 0, -127] and scales[4].item() == 0.0
    assert cache[6].abs().max().item() == 127 and scales[6].item() > 0
    out = reference.cache_gather(cache, scales, valid, torch.arange(7), torch.float32, True)
    assert torch.isfinite(out).all() and out[:2].eq(0).all()


@pytest.mark.skipif(not NATIVE_CPU, reason="the native CPU kernels are not built")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_native_cpu_matches_reference_bit_for_bit(dtype: torch.dtype) -> None:
    """The CPU kernel and the reference store the same bytes and scales for every edge row."""
    x = _edge_rows().to(dtype)
    want = _store(reference.cache_store, x)
    got = _store(torch.ops.smartfrz.cache_store, x)
    for g, w in zip(got, want, strict=True):
        assert torch.equal(
            g.view(torch.uint8) if g.dtype == torch.int8 else g, w.view(torch.uint8) if w.dtype == torch.int8 else w
        )
    assert torch.equal(got[1].view(torch.int32), want[1].view(torch.int32))  # scales: same bits


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_matches_reference_bit_for_bit(dtype: torch.dtype) -> None:
    """The CUDA kernel stores the reference's bytes and scales for every edge row."""
    x = _edge_rows().to(dtype)
    want = _store(reference.cache_store, x)
    n = x.shape[0]
    cache = torch.zeros(n, 4, dtype=torch.int8, device="cuda")
    scales, valid = torch.full((n,), -1.0, device="cuda"), torch.zeros(n, dtype=torch.bool, device="cuda")
    torch.ops.smartfrz.cache_store(cache, scales, valid, x.cuda(), torch.arange(n, device="cuda"), False)
    assert torch.equal(cache.cpu(), want[0]) and torch.equal(scales.cpu().view(torch.int32), want[1].view(torch.int32))
