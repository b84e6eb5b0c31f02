"""Pure-PyTorch reference implementations of the smartfrz ops.

They define the semantics the native kernels must match (tests compare against them) and serve
every op when the compiled extension is missing. Validation raises the same exception types as the
native kernels: TypeError for a wrong dtype, ValueError for a wrong shape/device/value, IndexError
for an index out of range.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
_CACHE_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.int8)
INT8_MAX = 127.0


def _require(cond: bool, exc: type[Exception], msg: str) -> None:
    if not cond:
        raise exc(msg)


def check_record_inputs(weights: Sequence[torch.Tensor], sample_idx: torch.Tensor, prev: torch.Tensor | None) -> None:
    """Validate the arguments of ``record_weights`` (shared by the reference and fake kernels)."""
    op = "smartfrz.record_weights"
    _require(len(weights) > 0, ValueError, f"{op}: weights must be a non-empty list of tensors")
    _require(sample_idx.dtype == torch.int64, TypeError, f"{op}: sample_idx must be int64, got {sample_idx.dtype}")
    _require(
        sample_idx.dim() == 2 and sample_idx.shape[0] == len(weights),
        ValueError,
        f"{op}: sample_idx must have shape [L={len(weights)}, K], got {tuple(sample_idx.shape)}",
    )
    _require(sample_idx.shape[1] > 0, ValueError, f"{op}: K (sample_idx.shape[1]) must be positive")
    device = sample_idx.device
    for i, w in enumerate(weights):
        _require(w.dtype in _FLOAT_DTYPES, TypeError, f"{op}: weights[{i}] has unsupported dtype {w.dtype}")
        _require(w.device == device, ValueError, f"{op}: weights[{i}] is on {w.device}, sample_idx on {device}")
        _require(w.numel() > 0, ValueError, f"{op}: weights[{i}] is empty")
    if prev is not None:
        _require(prev.dtype == torch.float32, TypeError, f"{op}: prev must be float32, got {prev.dtype}")
        _require(
            prev.shape == sample_idx.shape,
            ValueError,
            f"{op}: prev must have shape {tuple(sample_idx.shape)}, got {tuple(prev.shape)}",
        )
        _require(prev.device == device, ValueError, f"{op}: prev is on {prev.device}, sample_idx on {device}")


def record_weights(
    weights: Sequence[torch.Tensor], sample_idx: torch.Tensor, prev: torch.Tensor | None, stats: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gather K samples per layer and per-layer stats (l2_norm, delta_l2_norm, nonfinite, max_abs; [L, 0] when
    ``stats`` is False)."""
    check_record_inputs(weights, sample_idx, prev)
    if not stats:
        return _gather_samples(weights, sample_idx), sample_idx.new_empty((len(weights), 0), dtype=torch.float32)
    samples, rows = _gather_samples(weights, sample_idx), []
    for w in weights:
        wide = w.detach().reshape(-1).double()
        finite = torch.isfinite(wide)
        finite_abs = wide.abs().masked_fill(~finite, 0.0)
        rows.append(
            torch.stack(
                [
                    torch.linalg.vector_norm(wide),
                    torch.zeros((), dtype=torch.float64, device=w.device),
                    (~finite).sum().double(),
                    finite_abs.max(),
                ]
            )
        )
    stats_t = torch.stack(rows).float()
    if prev is not None:
        stats_t[:, 1] = torch.linalg.vector_norm((samples - prev).double(), dim=1).float()
    return samples, stats_t


def _gather_samples(weights: Sequence[torch.Tensor], sample_idx: torch.Tensor) -> torch.Tensor:
    """[L, K] float32: each weight's flat positions ``sample_idx[l]``; IndexError naming the layer when out of range."""
    samples = []
    for i, w in enumerate(weights):
        flat, idx = w.detach().reshape(-1), sample_idx[i]
        if bool(((idx < 0) | (idx >= flat.numel())).any()):
            raise IndexError(
                f"smartfrz.record_weights: sample_idx[{i}] out of range for weights[{i}] with {flat.numel()} elements"
            )
        samples.append(flat.index_select(0, idx).float())
    return torch.stack(samples)


def _check_cache_buffers(op: str, cache: torch.Tensor, scales: torch.Tensor, valid: torch.Tensor) -> None:
    _require(cache.dtype in _CACHE_DTYPES, TypeError, f"{op}: cache dtype {cache.dtype} is not one of {_CACHE_DTYPES}")
    _require(cache.dim() >= 2, ValueError, f"{op}: cache must have shape [N, ...] with at least 2 dims")
    _require(cache.is_contiguous(), ValueError, f"{op}: cache must be contiguous")
    n = cache.shape[0]
    _require(scales.dtype == torch.float32, TypeError, f"{op}: scales must be float32, got {scales.dtype}")
    _require(valid.dtype == torch.bool, TypeError, f"{op}: valid must be bool, got {valid.dtype}")
    _require(tuple(scales.shape) == (n,), ValueError, f"{op}: scales must have shape [{n}], got {tuple(scales.shape)}")
    _require(tuple(valid.shape) == (n,), ValueError, f"{op}: valid must have shape [{n}], got {tuple(valid.shape)}")
    _require(
        scales.device == cache.device and valid.device == cache.device,
        ValueError,
        f"{op}: cache, scales and valid must be on one device",
    )
    _require(scales.is_contiguous() and valid.is_contiguous(), ValueError, f"{op}: scales and valid must be contiguous")


def _check_idx(op: str, idx: torch.Tensor) -> None:
    _require(idx.dtype == torch.int64, TypeError, f"{op}: idx must be int64, got {idx.dtype}")
    _require(idx.dim() == 1, ValueError, f"{op}: idx must be 1-D, got shape {tuple(idx.shape)}")


def _check_devices(op: str, cache: torch.Tensor, other: torch.Tensor, pinned: bool | None = None) -> None:
    """The cache lives with the data, or in host memory read by a CUDA kernel (then it must be pinned).

    ``pinned`` None asks the tensor; fake kernels pass True, since fake tensors never report pinned
    memory (the real kernel checks it when it runs).
    """
    if cache.device == other.device:
        return
    _require(
        cache.device.type == "cpu"
        and other.device.type == "cuda"
        and (cache.is_pinned() if pinned is None else pinned),
        ValueError,
        f"{op}: cache on {cache.device} cannot serve tensors on {other.device} "
        "(a host cache used from CUDA must be in pinned memory)",
    )


def check_store_inputs(
    cache: torch.Tensor,
    scales: torch.Tensor,
    valid: torch.Tensor,
    x: torch.Tensor,
    idx: torch.Tensor,
    pinned: bool | None = None,
) -> None:
    """Validate the shapes, dtypes and devices of ``cache_store`` (values are checked separately)."""
    op = "smartfrz.cache_store"
    _check_cache_buffers(op, cache, scales, valid)
    _check_idx(op, idx)
    _require(x.dtype in _FLOAT_DTYPES, TypeError, f"{op}: x has unsupported dtype {x.dtype}")
    row = row_numel(cache)
    _require(
        x.dim() >= 1 and x.shape[0] == idx.shape[0] and x.numel() == idx.shape[0] * row,
        ValueError,
        f"{op}: x must hold {idx.shape[0]} rows of {row} elements, got shape {tuple(x.shape)}",
    )
    _require(x.device == idx.device, ValueError, f"{op}: x is on {x.device}, idx on {idx.device}")
    _check_devices(op, cache, x, pinned)


def check_gather_inputs(
    cache: torch.Tensor,
    scales: torch.Tensor,
    valid: torch.Tensor,
    idx: torch.Tensor,
    dtype: torch.dtype,
    pinned: bool | None = None,
) -> None:
    """Validate the shapes, dtypes and devices of ``cache_gather``."""
    op = "smartfrz.cache_gather"
    _check_cache_buffers(op, cache, scales, valid)
    _check_idx(op, idx)
    _require(dtype in _FLOAT_DTYPES, TypeError, f"{op}: output dtype {dtype} is not a float dtype")
    _check_devices(op, cache, idx, pinned)


def row_numel(cache: torch.Tensor) -> int:
    """Number of elements in one cache row (the product of all but the first dimension)."""
    return math.prod(cache.shape[1:])


def _check_range(op: str, idx: torch.Tensor, n: int) -> None:
    bad = (idx < 0) | (idx >= n)
    if bool(bad.any()):
        first = int(idx[bad][0])
        raise IndexError(f"{op}: index {first} out of range for a cache of {n} rows")


def quantize_rows(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric per-row int8 quantisation: q = rint(x * 127/amax), scale = amax/127 (fp32 math).

    Edge rows, identical in every kernel: amax is taken over the finite values; when 127/amax
    overflows (amax below ~3.7e-37, e.g. a subnormal row) the row stores as zeros with scale 0;
    NaN stores 0 and +-inf saturates to +-127 (non-finite values reach here only with check=False).
    """
    finite = torch.isfinite(rows)
    amax = rows.abs().masked_fill(~finite, 0.0).amax(dim=1)
    zero = torch.zeros_like(amax)
    # Tensor / tensor (IEEE division), not `scalar / amax`, which PyTorch computes as reciprocal * scalar.
    inv = torch.where(amax > 0, torch.full_like(amax, INT8_MAX) / amax, zero)
    inv = torch.where(torch.isinf(inv), zero, inv)
    q = torch.round(rows.masked_fill(~finite, 0.0) * inv[:, None]).clamp_(-INT8_MAX, INT8_MAX)
    q = torch.where(torch.isinf(rows), torch.sign(rows) * INT8_MAX, q)
    scale = torch.where(inv > 0, amax / torch.full_like(amax, INT8_MAX), zero)  # IEEE division on every device
    return q.to(torch.int8), scale


def cache_store(
    cache: torch.Tensor,
    scales: torch.Tensor,
    valid: torch.Tensor,
    x: torch.Tensor,
    idx: torch.Tensor,
    check: bool = True,
) -> None:
    """cache[idx] = x cast to the cache dtype (int8: per-row scale into scales), valid[idx] = True.

    Duplicate indices in one call are an error. With ``check=False`` rows with an out-of-range
    index are skipped and duplicates are not looked for (the caller promises unique indices).
    """
    op = "smartfrz.cache_store"
    check_store_inputs(cache, scales, valid, x, idx)
    n = cache.shape[0]
    rows = x.detach().reshape(x.shape[0], math.prod(cache.shape[1:])).to(cache.device)  # -1 fails for 0 rows
    idx = idx.to(cache.device)
    if check:
        _check_range(op, idx, n)
        if idx.unique().numel() != idx.numel():
            raise ValueError(f"{op}: idx holds duplicate indices; store each row once per call")
    else:
        keep = (idx >= 0) & (idx < n)
        rows, idx = rows[keep], idx[keep]
    flat = cache.view(n, -1)
    if cache.dtype == torch.int8:
        rows32 = rows.float()
        if check and not bool(torch.isfinite(rows32).all()):
            raise ValueError(f"{op}: an int8 cache cannot store non-finite values")
        q, s = quantize_rows(rows32)
        flat.index_copy_(0, idx, q)
        scales.index_copy_(0, idx, s)
    else:
        flat.index_copy_(0, idx, rows.to(cache.dtype))
    valid.index_fill_(0, idx, True)


def cache_gather(
    cache: torch.Tensor,
    scales: torch.Tensor,
    valid: torch.Tensor,
    idx: torch.Tensor,
    dtype: torch.dtype,
    check: bool = True,
) -> torch.Tensor:
    """Return cache[idx] cast to ``dtype`` on ``idx.device`` (int8 rows times their scale).

    Reading a row never stored, or out of range, is an error. With ``check=False`` out-of-range
    rows read as zeros and rows never stored read as whatever the buffer holds.
    """
    op = "smartfrz.cache_gather"
    check_gather_inputs(cache, scales, valid, idx, dtype)
    n = cache.shape[0]
    local = idx.to(cache.device)
    in_range = (local >= 0) & (local < n)
    if check:
        _check_range(op, local, n)
        if not bool(valid[local].all()):
            first = int(local[~valid[local]][0])
            raise ValueError(f"{op}: row {first} was never stored in the cache")
    safe = torch.where(in_range, local, torch.zeros_like(local))
    if n == 0:
        out = torch.zeros(idx.shape[0], row_numel(cache), dtype=dtype, device=cache.device)
    else:
        rows = cache.view(n, -1).index_select(0, safe)
        if cache.dtype == torch.int8:
            rows = rows.float() * scales.index_select(0, safe)[:, None]
        out = torch.where(in_range[:, None], rows.to(dtype), torch.zeros((), dtype=dtype, device=cache.device))
    return out.reshape(idx.shape[0], *cache.shape[1:]).to(idx.device)
