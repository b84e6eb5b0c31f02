"""The CUDA kernels of the smartfrz ops against the pure-PyTorch reference (run on CPU copies).

Every test is marked ``gpu`` and skips without a CUDA device (tests/conftest.py). Run on a GPU
machine with ``scripts/gpu_check.sh``. A build without the CUDA kernels fails here instead of testing
the reference against itself, unless SMARTFRZ_ALLOW_REFERENCE=cuda (or 1) says that is intended.
"""

from __future__ import annotations

import os

import pytest
import torch

import smartfrz.ops as ops
from smartfrz.ops import reference

pytestmark = pytest.mark.gpu

CUDA = "cuda"
FLOATS = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
CACHE_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.int8]
# (1,), (7,) and (5, 13) (65 elements) take the element-wise path, (64,) and (3, 40, 40) the
# 8-wide vector path; (3, 40, 40) spans two 4096-element tiles per row.
ROW_SHAPES = [(1,), (7,), (64,), (5, 13), (3, 40, 40)]


def _weights(shapes, dtypes, seed=0, device=CUDA):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen).to(dt).to(device) for s, dt in zip(shapes, dtypes, strict=True)]


def _indices(weights, k, seed=0):
    gen = torch.Generator().manual_seed(seed + 1)
    return torch.stack([torch.randint(0, w.numel(), (k,), generator=gen) for w in weights]).to(CUDA)


def _cpu(tensors):
    return [t.cpu() for t in tensors]


def _assert_record_matches(weights, idx, prev):
    samples, stats = ops.record_weights(weights, idx, prev)
    assert samples.device.type == CUDA and stats.device.type == CUDA
    want_samples, want_stats = reference.record_weights(_cpu(weights), idx.cpu(), None if prev is None else prev.cpu())
    assert samples.dtype == torch.float32 and stats.dtype == torch.float32
    assert torch.equal(samples.cpu(), want_samples)  # pure data movement: exact
    torch.testing.assert_close(stats.cpu(), want_stats, rtol=1e-5, atol=1e-6, equal_nan=True)
    assert torch.equal(stats[:, 2].cpu(), want_stats[:, 2])  # non-finite counts: exact
    only, none = ops.record_weights(weights, idx, prev, stats=False)  # the runtime's samples-only call
    assert torch.equal(only.cpu(), want_samples) and none.shape == (len(weights), 0) and none.device.type == CUDA


def test_cuda_kernels_registered():
    """Else every test here compares reference-on-CUDA with the CPU reference: fail unless asked for."""
    if os.environ.get("SMARTFRZ_NATIVE") == "0" or os.environ.get("SMARTFRZ_ALLOW_REFERENCE") in ("1", "cuda"):
        pytest.skip("reference ops requested (SMARTFRZ_NATIVE=0 or SMARTFRZ_ALLOW_REFERENCE=1 or cuda)")
    for op, devices in ops.backends().items():
        assert devices["cuda"].startswith("native"), (op, devices, "SMARTFRZ_ALLOW_REFERENCE=cuda tests the reference")


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("k", [1, 16, 1024])
@pytest.mark.parametrize("with_prev", [False, True])
def test_record_weights_matches_reference(dtype, k, with_prev):
    # Layers smaller than K, one chunk, several chunks (> 16384 elements), a ragged last chunk.
    shapes = [(3,), (17, 5), (64, 3, 3, 3), (70001,), (5, 1), (2, 40000)]
    weights = _weights(shapes, [dtype] * len(shapes), seed=k)
    idx = _indices(weights, k, seed=k)
    prev = torch.randn(len(shapes), k, device=CUDA) if with_prev else None
    _assert_record_matches(weights, idx, prev)


def test_record_weights_many_mixed_tensors_in_one_call():
    gen = torch.Generator().manual_seed(7)
    n = 600
    sizes = torch.randint(1, 40000, (n,), generator=gen).tolist()
    shapes = [(s,) if i % 3 else (s, 2) for i, s in enumerate(sizes)]
    weights = _weights(shapes, [FLOATS[i % len(FLOATS)] for i in range(n)], seed=3)
    idx = _indices(weights, 256, seed=3)
    _assert_record_matches(weights, idx, torch.randn(n, 256, device=CUDA))


def test_record_weights_misaligned_and_non_contiguous_views():
    flat = torch.randn(3 * 70000 + 5, device=CUDA)
    misaligned = [flat[1 : 1 + 70000], flat[70003 : 70003 + 1000].view(10, 100)]  # not 16-byte aligned
    strided = torch.randn(300, 700, device=CUDA).t()
    halves = torch.randn(50001, device=CUDA).half()[3:]
    weights = [*misaligned, strided, halves]
    _assert_record_matches(weights, _indices(weights, 512), None)


def test_record_weights_is_deterministic_and_alignment_independent():
    base = torch.randn(1 << 20, device=CUDA)
    shifted = torch.empty(base.numel() + 1, device=CUDA)[1:]  # the same values at a misaligned address
    shifted.copy_(base)
    idx = _indices([base], 64)
    first = ops.record_weights([base], idx)
    again = ops.record_weights([base], idx)
    moved = ops.record_weights([shifted], idx)
    for a, b, c in zip(first, again, moved, strict=True):
        assert torch.equal(a, b) and torch.equal(a, c)
    want_samples, want_stats = reference.record_weights([base.cpu()], idx.cpu(), None)
    assert torch.equal(first[0].cpu(), want_samples)
    torch.testing.assert_close(first[1].cpu(), want_stats, rtol=1e-5, atol=1e-6)


def test_record_weights_reports_non_finite():
    w = torch.randn(100000)
    w[3], w[10], w[50000], w[99999] = float("inf"), float("nan"), -float("inf"), float("nan")
    finite = torch.randn(50)
    weights = [w.to(CUDA), finite.to(CUDA), w.to(CUDA).half(), w.to(CUDA).double()]
    _, stats = ops.record_weights(weights, torch.zeros(4, 4, dtype=torch.long, device=CUDA))
    assert stats[:, 2].tolist() == [4.0, 0.0, 4.0, 4.0]
    assert torch.isnan(stats[0, 0]).item()  # the norm is not hidden
    assert stats[0, 3].item() == w[torch.isfinite(w)].abs().max().item()
    _assert_record_matches(weights, _indices(weights, 64), None)


def test_record_weights_large_fp32_values_do_not_overflow():
    w = torch.full((1000,), 3e20, device=CUDA)  # squares overflow fp32, not the double accumulator
    _assert_record_matches([w], _indices([w], 8), None)


def test_record_weights_runs_on_the_current_stream():
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        weights = [torch.randn(50000, device=CUDA) * 2 for _ in range(3)]  # produced on the side stream
        idx = _indices(weights, 32)
        samples, stats = ops.record_weights(weights, idx)
    stream.synchronize()
    want_samples, want_stats = reference.record_weights(_cpu(weights), idx.cpu(), None)
    assert torch.equal(samples.cpu(), want_samples)
    torch.testing.assert_close(stats.cpu(), want_stats, rtol=1e-5, atol=1e-6)


# Each case builds its arguments lazily (collection must not touch CUDA on a machine without it).
RECORD_ERRORS = [
    (lambda w, i: ([w], i.int(), None), TypeError, "int64"),
    (lambda w, i: ([w], torch.zeros(2, 4, dtype=torch.long, device=CUDA), None), ValueError, "shape"),
    (lambda w, i: ([w], i[:, :0], None), ValueError, "K"),
    (lambda w, i: ([w.long()], i, None), TypeError, "dtype"),
    (lambda w, i: ([w[:0]], i, None), ValueError, "empty"),
    (lambda w, i: ([w], i + 4, None), IndexError, r"sample_idx\[0\] out of range for weights\[0\] with 5 elements"),
    (lambda w, i: ([w], i - 1, None), IndexError, "out of range"),
    (lambda w, i: ([w, w.repeat(2)], torch.stack([i[0], i[0] + 9]), None), IndexError, r"sample_idx\[1\]"),
    (lambda w, i: ([w, w.repeat(2)], torch.stack([i[0] + 6, i[0] + 99]), None), IndexError, r"sample_idx\[0\]"),
    (lambda w, i: ([w], i, torch.zeros(1, 3, device=CUDA)), ValueError, "prev"),
    (lambda w, i: ([w], i, torch.zeros(1, 2, device=CUDA).double()), TypeError, "prev"),
    (lambda w, i: ([w], i, torch.zeros(1, 2)), ValueError, "prev is on cpu"),
    (lambda w, i: ([w.cpu()], i, None), ValueError, "is on cpu"),
    (lambda w, i: ([w], i.cpu(), None), ValueError, "is on cuda"),
]


@pytest.mark.parametrize(("make_args", "exc", "match"), RECORD_ERRORS)
def test_record_weights_errors(make_args, exc, match):
    weights, idx, prev = make_args(torch.randn(5, device=CUDA), torch.tensor([[0, 1]], device=CUDA))
    for stats in (True, False):  # the samples-only call checks its inputs the same way
        with pytest.raises(exc, match=match):
            ops.record_weights(weights, idx, prev, stats=stats)
        with pytest.raises(exc, match=match):
            reference.record_weights(weights, idx, prev, stats)


def _new_cache(n, row_shape, dtype, device=CUDA):
    pin = device == "pinned"
    where = "cpu" if pin else device
    buffers = (
        torch.zeros((n, *row_shape), dtype=dtype, device=where),
        torch.zeros(n, dtype=torch.float32, device=where),
        torch.zeros(n, dtype=torch.bool, device=where),
    )
    return tuple(b.pin_memory() for b in buffers) if pin else buffers


def _cpu_clone(buffers):
    return tuple(b.cpu().clone() for b in buffers)


@pytest.mark.parametrize("where", [CUDA, "pinned"])
@pytest.mark.parametrize("cache_dtype", CACHE_DTYPES)
@pytest.mark.parametrize("x_dtype", FLOATS)
@pytest.mark.parametrize("row_shape", ROW_SHAPES)
def test_cache_store_and_gather_match_reference(where, cache_dtype, x_dtype, row_shape):
    gen = torch.Generator().manual_seed(11)
    n, b = 50, 13
    x = (torch.randn((b, *row_shape), generator=gen) * 3).to(x_dtype)
    idx = torch.randperm(n, generator=gen)[:b]
    native = _new_cache(n, row_shape, cache_dtype, where)
    ref = _cpu_clone(native)
    ops.cache_store(*native, x.to(CUDA), idx.to(CUDA))
    torch.cuda.synchronize()  # a pinned cache is written by the kernel: wait before reading it
    reference.cache_store(*ref, x, idx)
    for got, want in zip(native, ref, strict=True):
        assert torch.equal(got.cpu(), want)  # data movement and int8 quantisation: bit exact
    for out_dtype in FLOATS:
        got = ops.cache_gather(*native, idx.flip(0).to(CUDA), out_dtype)
        want = reference.cache_gather(*ref, idx.flip(0), out_dtype)
        assert got.device.type == CUDA and got.dtype == out_dtype and got.shape == (b, *row_shape)
        assert torch.equal(got.cpu(), want)


@pytest.mark.parametrize("cache_dtype", CACHE_DTYPES)
def test_cache_misaligned_buffers_and_many_rows(cache_dtype):
    n, b, d = 5000, 3000, 64  # more (row, tile) steps than the grid has blocks
    flat = torch.zeros(n * d + 1, dtype=cache_dtype, device=CUDA)
    cache = (flat[1:].view(n, d), torch.zeros(n, device=CUDA), torch.zeros(n, dtype=torch.bool, device=CUDA))
    x = torch.randn(b * d + 3, device=CUDA)[3:].view(b, d)  # contiguous, not 32-byte aligned
    idx = torch.randperm(n, device=CUDA)[:b]
    ref = _cpu_clone(cache)
    ops.cache_store(*cache, x, idx)
    reference.cache_store(*ref, x.cpu(), idx.cpu())
    for got, want in zip(cache, ref, strict=True):
        assert torch.equal(got.cpu(), want)
    out_flat = ops.cache_gather(*cache, idx, torch.float16)
    assert torch.equal(out_flat.cpu(), reference.cache_gather(*ref, idx.cpu(), torch.float16))


def test_cache_handles_non_contiguous_x_and_empty_batch():
    cache = _new_cache(10, (6,), torch.float16)
    x = torch.randn(6, 4, device=CUDA).t()  # [4, 6], non-contiguous
    idx = torch.tensor([9, 0, 4, 2], device=CUDA)
    ops.cache_store(*cache, x, idx)
    assert torch.equal(ops.cache_gather(*cache, idx, torch.float32), x.half().float())
    ops.cache_store(*cache, torch.empty(0, 6, device=CUDA), torch.empty(0, dtype=torch.long, device=CUDA))
    empty = ops.cache_gather(*cache, torch.empty(0, dtype=torch.long, device=CUDA), torch.float32)
    assert empty.shape == (0, 6) and empty.device.type == CUDA


@pytest.mark.parametrize("where", [CUDA, "pinned"])
@pytest.mark.parametrize("cache_dtype", [torch.float32, torch.int8])
def test_check_false_skips_out_of_range_rows(where, cache_dtype):
    cache = _new_cache(5, (3,), cache_dtype, where)
    ops.cache_store(*cache, torch.ones(2, 3, device=CUDA), torch.tensor([1, 7], device=CUDA), check=False)
    torch.cuda.synchronize()
    assert cache[2].tolist() == [False, True, False, False, False]
    out = ops.cache_gather(*cache, torch.tensor([1, -3, 99], device=CUDA), torch.float32, check=False)
    assert out.tolist() == [[1.0, 1.0, 1.0], [0.0] * 3, [0.0] * 3]


def test_check_false_does_not_synchronize_and_check_true_does():
    cache = _new_cache(64, (32,), torch.int8)
    x, idx = torch.randn(8, 32, device=CUDA), torch.arange(8, device=CUDA)
    ops.cache_store(*cache, x, idx)
    torch.cuda.synchronize()
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        ops.cache_store(*cache, x, idx, check=False)
        out = ops.cache_gather(*cache, idx, torch.float32, check=False)
        with pytest.raises(RuntimeError, match="synchroniz"):
            ops.cache_gather(*cache, idx, torch.float32, check=True)
    finally:
        torch.cuda.set_sync_debug_mode(previous)
    want = _new_cache(64, (32,), torch.int8, "cpu")
    reference.cache_store(*want, x.cpu(), idx.cpu())
    assert torch.equal(out.cpu(), reference.cache_gather(*want, idx.cpu(), torch.float32))


def test_int8_zero_row_and_scales():
    cache = _new_cache(4, (5,), torch.int8)
    x = torch.tensor([[0.0] * 5, [1.0, -2.0, 0.5, 0.0, 2.0]], device=CUDA)
    ops.cache_store(*cache, x, torch.tensor([0, 3], device=CUDA))
    assert cache[1][0].item() == 0.0 and cache[1][3].item() == pytest.approx(2.0 / 127)
    assert cache[0][3].tolist() == [64, -127, 32, 0, 127]


def test_cache_ops_run_on_the_current_stream():
    cache = _new_cache(1000, (256,), torch.float16)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())  # the cache was zeroed on the default stream
    with torch.cuda.stream(stream):
        x = torch.randn(500, 256, device=CUDA) * 5  # produced on the side stream
        idx = torch.randperm(1000, device=CUDA)[:500]
        ops.cache_store(*cache, x, idx, check=False)
        out = ops.cache_gather(*cache, idx, torch.float32, check=False)
    stream.synchronize()
    assert torch.equal(out, x.half().float())


def _i(*values):
    return torch.tensor(values, device=CUDA)


def _int8_cache():
    return _new_cache(8, (4,), torch.int8)


def _stored_cache():
    cache = _new_cache(8, (4,), torch.float16)
    cache[2][5] = True
    return cache


def _host(pinned, what="all"):
    buffers = _new_cache(8, (4,), torch.float16, "pinned" if pinned else "cpu")
    return (buffers[0], torch.zeros(8), buffers[2]) if what == "unpinned scales" else buffers


# (op, build args from (good CUDA cache, x [2, 4], idx [2])) -> exception, message.
CACHE_ERRORS = [
    ("store", lambda g, x, i: (*g, x, _i(1, 8)), IndexError, "index 8 out of range for a cache of 8 rows"),
    ("store", lambda g, x, i: (*g, x, _i(-1, 2)), IndexError, "index -1 out of range"),
    ("store", lambda g, x, i: (*g, x.repeat(2, 1), _i(0, 1, 9, -4)), IndexError, "index 9 out of range"),
    ("store", lambda g, x, i: (*g, x, _i(3, 3)), ValueError, "duplicate"),
    ("store", lambda g, x, i: (*g, x.repeat(3, 1), _i(5, 1, 7, 2, 6, 1)), ValueError, "duplicate"),
    ("store", lambda g, x, i: (*g, x, i.int()), TypeError, "int64"),
    ("store", lambda g, x, i: (*g, x, i[None]), ValueError, "1-D"),
    ("store", lambda g, x, i: (*g, torch.randn(2, 5, device=CUDA), i), ValueError, "rows"),
    ("store", lambda g, x, i: (*g, x.long(), i), TypeError, "x has"),
    ("store", lambda g, x, i: (g[0].double(), g[1], g[2], x, i), TypeError, "cache dtype"),
    ("store", lambda g, x, i: (g[0].view(4, 8).t(), g[1], g[2], x, i), ValueError, "contiguous"),
    ("store", lambda g, x, i: (g[0], g[1][:7], g[2], x, i), ValueError, "scales"),
    ("store", lambda g, x, i: (*g, x.cpu(), i), ValueError, "x is on cpu"),
    ("store", lambda g, x, i: (*g, x.cpu(), i.cpu()), ValueError, "cannot serve"),
    ("store", lambda g, x, i: (*_host(False), x, i), ValueError, "pinned memory"),
    ("store", lambda g, x, i: (*_host(True, "unpinned scales"), x, i), ValueError, "pinned memory"),
    ("store", lambda g, x, i: (*_int8_cache(), x.index_fill(1, _i(1), float("inf")), i), ValueError, "non-finite"),
    ("store", lambda g, x, i: (*_int8_cache(), x.double().index_fill(1, _i(0), 1e300), i), ValueError, "non-finite"),
    ("gather", lambda g, x, i: (*g, _i(0), torch.float32), ValueError, "row 0 was never stored"),
    ("gather", lambda g, x, i: (*_stored_cache(), _i(5, 5, 3), torch.float32), ValueError, "row 3 was never stored"),
    ("gather", lambda g, x, i: (*g, _i(8), torch.float32), IndexError, "index 8 out of range"),
    ("gather", lambda g, x, i: (*g, _i(0, -9), torch.float32), IndexError, "index -9 out of range"),
    ("gather", lambda g, x, i: (*g, i, torch.int32), TypeError, "float dtype"),
    ("gather", lambda g, x, i: (*g, i.float(), torch.float32), TypeError, "int64"),
    ("gather", lambda g, x, i: (*_host(False), i, torch.float32), ValueError, "pinned memory"),
    ("gather", lambda g, x, i: (*_host(True), _i(1), torch.float32), ValueError, "row 1 was never stored"),
]


@pytest.mark.parametrize(("kind", "make_args", "exc", "match"), CACHE_ERRORS)
@pytest.mark.parametrize("impl", ["native", "reference"])
def test_cache_errors(kind, make_args, exc, match, impl):
    args = make_args(
        _new_cache(8, (4,), torch.float16), torch.randn(2, 4, device=CUDA), torch.tensor([1, 2], device=CUDA)
    )
    if impl == "reference" and "pinned memory" in match and args[0].is_pinned():
        pytest.skip("the reference serves host scales/valid of a pinned cache itself")
    module = ops if impl == "native" else reference
    fn = module.cache_store if kind == "store" else module.cache_gather
    before = [a.clone() for a in args[:3]]
    with pytest.raises(exc, match=match):
        fn(*args)
    torch.cuda.synchronize()
    for got, want in zip(args[:3], before, strict=True):
        assert torch.equal(got, want)  # a rejected call writes nothing


def test_opcheck_record_weights():
    weights = _weights(
        [(5, 3), (100,), (2, 2, 2), (30000,)], [torch.float32, torch.float16, torch.bfloat16, torch.float64]
    )
    idx = _indices(weights, 8)
    torch.library.opcheck(torch.ops.smartfrz.record_weights.default, (weights, idx, None))
    torch.library.opcheck(torch.ops.smartfrz.record_weights.default, (weights, idx, torch.randn(4, 8, device=CUDA)))
    torch.library.opcheck(torch.ops.smartfrz.record_weights.default, (weights, idx, None, False))


@pytest.mark.parametrize("cache_dtype", CACHE_DTYPES)
def test_opcheck_cache_ops(cache_dtype):
    cache = _new_cache(16, (3, 8), cache_dtype)
    x, idx = torch.randn(5, 3, 8, device=CUDA), torch.tensor([0, 15, 3, 8, 9], device=CUDA)
    torch.library.opcheck(torch.ops.smartfrz.cache_store.default, (*cache, x, idx, True))
    ops.cache_store(*cache, x, idx)
    torch.library.opcheck(torch.ops.smartfrz.cache_gather.default, (*cache, idx, torch.bfloat16, True))
    torch.library.opcheck(torch.ops.smartfrz.cache_gather.default, (*cache, idx, torch.float32, False))
