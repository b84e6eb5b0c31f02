"""The smartfrz ops against their pure-PyTorch reference, opcheck, and every error case (CPU).

Run against whatever backend `smartfrz.ops` loaded: the setup.py build by default, the CMake build
with SMARTFRZ_LIBRARY set (tests/test_cmake_build.py does that in a subprocess).
"""

from __future__ import annotations

import os

import pytest
import torch

import smartfrz.ops as ops
from smartfrz.ops import reference
from smartfrz.ops._schemas import SCHEMAS

FLOATS = [torch.float32, torch.float16, torch.bfloat16, torch.float64]
CACHE_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.int8]
ROW_SHAPES = [(1,), (7,), (64,), (3, 5, 5)]


def _weights(shapes, dtypes, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen).to(dt) for s, dt in zip(shapes, dtypes, strict=True)]


def _indices(weights, k, seed=0):
    gen = torch.Generator().manual_seed(seed + 1)
    return torch.stack([torch.randint(0, w.numel(), (k,), generator=gen) for w in weights])


def _assert_record_matches(weights, idx, prev):
    samples, stats = ops.record_weights(weights, idx, prev)
    ref_samples, ref_stats = reference.record_weights(weights, idx, prev)
    assert samples.dtype == torch.float32 and stats.dtype == torch.float32
    assert torch.equal(samples, ref_samples)  # pure data movement: exact
    torch.testing.assert_close(stats, ref_stats, rtol=1e-5, atol=1e-6, equal_nan=True)
    assert torch.equal(stats[:, 2], ref_stats[:, 2])  # non-finite counts: exact
    only, none = ops.record_weights(weights, idx, prev, stats=False)  # the runtime's samples-only call
    assert torch.equal(only, ref_samples) and none.shape == (len(weights), 0) and none.dtype == torch.float32


def test_native_backend_loaded():
    """Else every test here compares the reference with itself: fail unless the reference was asked for."""
    if os.environ.get("SMARTFRZ_NATIVE") == "0" or os.environ.get("SMARTFRZ_ALLOW_REFERENCE") == "1":
        pytest.skip("reference ops requested (SMARTFRZ_NATIVE=0 or SMARTFRZ_ALLOW_REFERENCE=1)")
    for op, devices in ops.backends().items():
        assert devices["cpu"].startswith("native"), (op, devices, "SMARTFRZ_ALLOW_REFERENCE=1 tests the reference")


def test_schemas_match_native_definitions():
    for name, schema in SCHEMAS.items():
        op = getattr(torch.ops.smartfrz, name).default
        assert op._schema == torch._C.parse_schema(f"smartfrz::{schema}")


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("k", [1, 16, 1024])
@pytest.mark.parametrize("with_prev", [False, True])
def test_record_weights_matches_reference(dtype, k, with_prev):
    shapes = [(3,), (17, 5), (64, 3, 3, 3), (70000,), (5, 1)]  # several layers smaller than K
    weights = _weights(shapes, [dtype] * len(shapes), seed=k)
    idx = _indices(weights, k, seed=k)
    prev = torch.randn(len(shapes), k) if with_prev else None
    _assert_record_matches(weights, idx, prev)


def test_record_weights_many_mixed_tensors_in_one_call():
    gen = torch.Generator().manual_seed(7)
    n = 600
    sizes = torch.randint(1, 5000, (n,), generator=gen).tolist()
    shapes = [(s,) if i % 3 else (s, 2) for i, s in enumerate(sizes)]
    weights = _weights(shapes, [FLOATS[i % len(FLOATS)] for i in range(n)], seed=3)
    idx = _indices(weights, 256, seed=3)
    _assert_record_matches(weights, idx, torch.randn(n, 256))


def test_record_weights_non_contiguous_and_large():
    big = torch.randn(300, 700).t()  # non-contiguous: flat positions are in row-major logical order
    weights = [big, torch.randn(4, 1 << 20)]
    _assert_record_matches(weights, _indices(weights, 512), None)


def test_record_weights_reports_non_finite():
    w = torch.randn(1000)
    w[3], w[10], w[500] = float("inf"), float("nan"), -float("inf")
    finite = torch.randn(50)
    _, stats = ops.record_weights([w, finite], torch.zeros(2, 4, dtype=torch.long))
    assert stats[0, 2].item() == 3 and stats[1, 2].item() == 0
    assert torch.isnan(stats[0, 0])  # the norm is not hidden
    assert stats[0, 3].item() == pytest.approx(w[torch.isfinite(w)].abs().max().item())
    _assert_record_matches([w, finite], _indices([w, finite], 64), None)


def test_record_weights_huge_finite_weights_keep_exact_stats():
    """Squares past float's range are still summed right, and a far-away maximum is found.

    The CPU kernel sums squares in float first and falls back to an exact pass when that overflows:
    (1e20) ** 2 overflows float32, the norm (about 1e20) does not.
    """
    w = torch.randn(5000)
    w[1234], w[4999] = -1e20, 3.0
    weights = [w, torch.randn(3000)]
    _, stats = ops.record_weights(weights, torch.zeros(2, 4, dtype=torch.long))
    assert torch.isfinite(stats[0, 0]) and stats[0, 2].item() == 0
    assert stats[0, 0].item() == pytest.approx(1e20, rel=1e-6)
    assert stats[0, 3].item() == pytest.approx(1e20, rel=1e-6)
    _assert_record_matches(weights, _indices(weights, 64), None)


def test_record_weights_is_deterministic_across_thread_counts():
    weights = _weights([(1 << 21,), (1000, 300)], [torch.float32, torch.bfloat16])
    idx = _indices(weights, 1024)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.record_weights(weights, idx)
        torch.set_num_threads(max(2, threads))
        many = ops.record_weights(weights, idx)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one[0], many[0]) and torch.equal(one[1], many[1])


@pytest.mark.parametrize(
    ("make_args", "exc", "match"),
    [
        (lambda: ([], torch.zeros(0, 4, dtype=torch.long), None), ValueError, "non-empty"),
        (lambda: ([torch.randn(5)], torch.zeros(1, 4, dtype=torch.int32), None), TypeError, "int64"),
        (lambda: ([torch.randn(5)], torch.zeros(2, 4, dtype=torch.long), None), ValueError, "shape"),
        (lambda: ([torch.randn(5)], torch.zeros(1, 0, dtype=torch.long), None), ValueError, "K"),
        (lambda: ([torch.arange(5)], torch.zeros(1, 4, dtype=torch.long), None), TypeError, "dtype"),
        (lambda: ([torch.randn(0)], torch.zeros(1, 4, dtype=torch.long), None), ValueError, "empty"),
        (lambda: ([torch.randn(5)], torch.tensor([[0, 5]]), None), IndexError, "out of range"),
        (lambda: ([torch.randn(5)], torch.tensor([[-1, 0]]), None), IndexError, "out of range"),
        (lambda: ([torch.randn(5)], torch.tensor([[0, 1]]), torch.zeros(1, 3)), ValueError, "prev"),
        (lambda: ([torch.randn(5)], torch.tensor([[0, 1]]), torch.zeros(1, 2).double()), TypeError, "prev"),
    ],
)
def test_record_weights_errors(make_args, exc, match):
    weights, idx, prev = make_args()
    for stats in (True, False):  # the samples-only call checks its inputs the same way
        with pytest.raises(exc, match=match):
            ops.record_weights(weights, idx, prev, stats=stats)
        with pytest.raises(exc, match=match):
            reference.record_weights(weights, idx, prev, stats)


def _new_cache(n, row_shape, dtype):
    return (
        torch.zeros((n, *row_shape), dtype=dtype),
        torch.zeros(n, dtype=torch.float32),
        torch.zeros(n, dtype=torch.bool),
    )


def _clone(buffers):
    return tuple(b.clone() for b in buffers)


def _round_trip_tolerance(dtype):
    return {torch.float32: 0.0, torch.float16: 1e-3, torch.bfloat16: 8e-3, torch.int8: 1.0 / 127}[dtype]


@pytest.mark.parametrize("cache_dtype", CACHE_DTYPES)
@pytest.mark.parametrize("x_dtype", FLOATS)
@pytest.mark.parametrize("row_shape", ROW_SHAPES)
def test_cache_store_and_gather_match_reference(cache_dtype, x_dtype, row_shape):
    gen = torch.Generator().manual_seed(11)
    n, b = 50, 13
    x = (torch.randn((b, *row_shape), generator=gen) * 3).to(x_dtype)
    idx = torch.randperm(n, generator=gen)[:b]
    native = _new_cache(n, row_shape, cache_dtype)
    ref = _clone(native)
    ops.cache_store(*native, x, idx)
    reference.cache_store(*ref, x, idx)
    for got, want in zip(native, ref, strict=True):
        assert torch.equal(got, want)  # data movement and int8 quantisation: bit exact
    for out_dtype in FLOATS:
        got = ops.cache_gather(*native, idx.flip(0), out_dtype)
        want = reference.cache_gather(*ref, idx.flip(0), out_dtype)
        assert got.dtype == out_dtype and got.shape == (b, *row_shape)
        assert torch.equal(got, want)
    back = ops.cache_gather(*native, idx, torch.float32)
    tol = _round_trip_tolerance(cache_dtype)
    x32 = x.float()
    bound = tol * x32.abs().flatten(1).amax(1) if cache_dtype == torch.int8 else tol * x32.abs().flatten(1)
    err = (back - x32).abs().flatten(1)
    assert bool((err <= bound.reshape(b, -1) + 1e-6).all())


def test_cache_handles_non_contiguous_x_and_empty_batch():
    cache = _new_cache(10, (6,), torch.float16)
    x = torch.randn(6, 4).t()  # [4, 6], non-contiguous
    idx = torch.tensor([9, 0, 4, 2])
    ops.cache_store(*cache, x, idx)
    assert torch.equal(ops.cache_gather(*cache, idx, torch.float32), x.half().float())
    ops.cache_store(*cache, torch.empty(0, 6), torch.empty(0, dtype=torch.long))
    assert ops.cache_gather(*cache, torch.empty(0, dtype=torch.long), torch.float32).shape == (0, 6)


def test_cache_store_check_false_skips_out_of_range_rows():
    cache = _new_cache(5, (3,), torch.float32)
    ops.cache_store(*cache, torch.ones(2, 3), torch.tensor([1, 7]), check=False)
    assert cache[2].tolist() == [False, True, False, False, False]
    out = ops.cache_gather(*cache, torch.tensor([1, -3, 99]), torch.float32, check=False)
    assert out.tolist() == [[1.0, 1.0, 1.0], [0.0] * 3, [0.0] * 3]


def test_int8_zero_row_and_scales():
    cache = _new_cache(4, (5,), torch.int8)
    x = torch.tensor([[0.0] * 5, [1.0, -2.0, 0.5, 0.0, 2.0]])
    ops.cache_store(*cache, x, torch.tensor([0, 3]))
    assert cache[1][0].item() == 0.0 and cache[1][3].item() == pytest.approx(2.0 / 127)
    assert cache[0][3].tolist() == [64, -127, 32, 0, 127]


def _cache_errors():
    good = _new_cache(8, (4,), torch.float16)
    x, idx = torch.randn(2, 4), torch.tensor([1, 2])
    strided = torch.zeros(4, 8, dtype=torch.float16).t()
    return [
        ("store", (*good, x, torch.tensor([1, 8])), IndexError, "out of range"),
        ("store", (*good, x, torch.tensor([-1, 2])), IndexError, "out of range"),
        ("store", (*good, x, torch.tensor([3, 3])), ValueError, "duplicate"),
        ("store", (*good, x, idx.int()), TypeError, "int64"),
        ("store", (*good, x, idx[None]), ValueError, "1-D"),
        ("store", (*good, torch.randn(2, 5), idx), ValueError, "rows"),
        ("store", (*good, torch.randn(3, 4), idx), ValueError, "rows"),
        ("store", (*good, torch.ones(2, 4, dtype=torch.long), idx), TypeError, "x has"),
        ("store", (good[0].double(), good[1], good[2], x, idx), TypeError, "cache dtype"),
        ("store", (strided, good[1], good[2], x, idx), ValueError, "contiguous"),
        ("store", (good[0], torch.zeros(7), good[2], x, idx), ValueError, "scales"),
        ("store", (good[0], good[1], torch.zeros(8, dtype=torch.uint8), x, idx), TypeError, "valid"),
        ("store", (good[0], good[1].double(), good[2], x, idx), TypeError, "scales"),
        ("store", (torch.zeros(8, dtype=torch.float16), good[1], good[2], x, idx), ValueError, "2 dims"),
        (
            "store",
            (*_new_cache(8, (4,), torch.int8), torch.tensor([[1.0, float("inf"), 0, 0]] * 2), idx),
            ValueError,
            "non-finite",
        ),
        ("gather", (*good, torch.tensor([0]), torch.float32), ValueError, "never stored"),
        ("gather", (*good, torch.tensor([8]), torch.float32), IndexError, "out of range"),
        ("gather", (*good, idx, torch.int32), TypeError, "float dtype"),
        ("gather", (*good, idx.float(), torch.float32), TypeError, "int64"),
    ]


@pytest.mark.parametrize("case", range(len(_cache_errors())))
@pytest.mark.parametrize("impl", ["native", "reference"])
def test_cache_errors(case, impl):
    kind, args, exc, match = _cache_errors()[case]
    module = ops if impl == "native" else reference
    fn = module.cache_store if kind == "store" else module.cache_gather
    before = [a.clone() for a in args[:3]]
    with pytest.raises(exc, match=match):
        fn(*args)
    for now, then in zip(args[:3], before, strict=True):  # cache data, scales and valid
        if now.shape == then.shape and now.dtype == then.dtype:
            assert torch.equal(now, then)  # a rejected call writes nothing


def test_opcheck_record_weights():
    weights = _weights([(5, 3), (100,), (2, 2, 2)], [torch.float32, torch.float16, torch.bfloat16])
    idx = _indices(weights, 8)
    torch.library.opcheck(torch.ops.smartfrz.record_weights.default, (weights, idx, None))
    torch.library.opcheck(torch.ops.smartfrz.record_weights.default, (weights, idx, torch.randn(3, 8)))
    torch.library.opcheck(torch.ops.smartfrz.record_weights.default, (weights, idx, torch.randn(3, 8), False))


@pytest.mark.parametrize("cache_dtype", CACHE_DTYPES)
def test_opcheck_cache_ops(cache_dtype):
    cache = _new_cache(16, (3, 4), cache_dtype)
    x, idx = torch.randn(5, 3, 4), torch.tensor([0, 15, 3, 8, 9])
    torch.library.opcheck(torch.ops.smartfrz.cache_store.default, (*cache, x, idx, True))
    ops.cache_store(*cache, x, idx)
    torch.library.opcheck(torch.ops.smartfrz.cache_gather.default, (*cache, idx, torch.bfloat16, True))


def test_ops_trace_under_torch_compile():
    cache = _new_cache(16, (8,), torch.float16)
    ops.cache_store(*cache, torch.randn(4, 8), torch.arange(4))
    weights = [torch.randn(10, 3), torch.randn(7)]
    idx = _indices(weights, 5)

    def step(w0, w1, rows):
        samples, stats = ops.record_weights([w0, w1], idx)
        return ops.cache_gather(*cache, rows, torch.float32).sum() + samples.sum() + stats[:, 0].sum()

    compiled = torch.compile(step, backend="aot_eager", fullgraph=True)
    rows = torch.tensor([3, 1])
    torch.testing.assert_close(compiled(*weights, rows), step(*weights, rows))
