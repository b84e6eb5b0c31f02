"""Kernel benchmark: the fused smartfrz ops against the plain PyTorch way, measured side by side.

For each workload both versions run in the same process on the same inputs (checked to agree
first), timed with torch.utils.benchmark (median of blocked runs, CUDA synchronised). The table
gives plain/fused (above 1: the fused op is faster) and, on CUDA, the bandwidth the cache ops
achieve next to a device-to-device copy of the same number of bytes. The predictor's forward is
timed against its eager reference on the shipped predictor's sizes.

    python benchmarks/bench_ops.py --device cpu --quick
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch.utils.benchmark import Timer
from tqdm import tqdm

import smartfrz.ops as ops
from smartfrz.ops import predictor as predictor_ref
from smartfrz.ops import reference


@dataclass
class Row:
    """One line of the result table."""

    op: str
    case: str
    fused_ms: float
    plain_ms: float
    fused_gbs: float | None = None
    copy_gbs: float | None = None


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        default="cuda" if torch.cuda.is_available() else "cpu",
        help="where to run (default: cuda when available)",
    )
    parser.add_argument("--quick", action="store_true", help="small workloads and short timings (a smoke run)")
    parser.add_argument("--layers", type=int, default=None, help="tensors per record_weights call (default 400)")
    parser.add_argument("--k", type=int, default=1024, help="samples per layer (default 1024)")
    parser.add_argument("--min-time", type=float, default=None, help="seconds per measurement (default 1.0)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def median_ms(fn: Callable[[], object], min_time: float) -> float:
    """Median time of one call in milliseconds (Timer synchronises CUDA around each block)."""
    timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_time).median * 1e3


def copy_gbs(nbytes: int, device: str, min_time: float) -> float:
    """Achieved bandwidth (read + write) of `torch.empty_like(x).copy_(x)` on a buffer of nbytes."""
    x = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    ms = median_ms(lambda: torch.empty_like(x).copy_(x), min_time)
    return 2 * x.numel() * 4 / (ms * 1e6)


# ---- record_weights -----------------------------------------------------------------------------


def model_like_weights(n: int, max_numel: int, dtypes: list[torch.dtype], device: str, gen) -> list[torch.Tensor]:
    """n tensors with log-uniform sizes in [16, max_numel] (biases to big matrices), cycling dtypes."""
    logs = torch.rand(n, generator=gen) * (math.log(max_numel) - math.log(16)) + math.log(16)
    sizes = logs.exp().long().tolist()
    return [torch.randn(s, generator=gen).to(dtypes[i % len(dtypes)]).to(device) for i, s in enumerate(sizes)]


def plain_record(weights: list[torch.Tensor], idx_rows: list[torch.Tensor], prev: torch.Tensor):
    """The plain way to get what the fused op is used for: norms, samples and their change."""
    norms = torch.stack([n.float() for n in torch._foreach_norm(weights)])
    samples = plain_samples(weights, idx_rows)
    return samples, norms, torch.linalg.vector_norm(samples - prev, dim=1)


def plain_record_all_stats(weights: list[torch.Tensor], idx_rows: list[torch.Tensor], prev: torch.Tensor):
    """plain_record plus the two statistics the fused op also gives: non-finite count, finite max |w|."""
    samples, norms, delta = plain_record(weights, idx_rows, prev)
    nonfinite = torch.stack([(~torch.isfinite(w)).sum() for w in weights])
    max_abs = torch.stack([w.abs().nan_to_num(0.0, 0.0, 0.0).amax().float() for w in weights])
    return samples, norms, delta, nonfinite, max_abs


def bench_record(args: argparse.Namespace, device: str, min_time: float, gen) -> list[Row]:
    n = args.layers or (200 if args.quick else 400)
    max_numel = (1 << 18 if args.quick else 1 << 20) if device == "cpu" else (1 << 21 if args.quick else 1 << 23)
    rows = []
    cases = [("fp32", [torch.float32]), ("mixed fp32/bf16/fp16", [torch.float32, torch.bfloat16, torch.float16])]
    for case, dtypes in cases:
        weights = model_like_weights(n, max_numel, dtypes, device, gen)
        idx = torch.stack([torch.randint(0, w.numel(), (args.k,), generator=gen) for w in weights]).to(device)
        idx_rows = list(idx.unbind(0))
        prev = torch.randn(n, args.k, generator=gen).to(device)
        samples, stats = ops.record_weights(weights, idx, prev)
        want = plain_record(weights, idx_rows, prev)
        assert torch.equal(samples, want[0]), "fused and plain samples differ"
        rtol = 1e-4 if dtypes == [torch.float32] else 1e-2  # _foreach_norm of bf16/fp16 rounds to bf16/fp16
        torch.testing.assert_close(stats[:, 0], want[1], rtol=rtol, atol=1e-5)
        torch.testing.assert_close(stats[:, 1], want[2], rtol=1e-4, atol=1e-5)
        numel = sum(w.numel() for w in weights)
        fused = median_ms(lambda w=weights, i=idx, p=prev: ops.record_weights(w, i, p), min_time)
        for label, plain in [("norm+samples+delta", plain_record), ("all 4 stats", plain_record_all_stats)]:
            plain_ms = median_ms(lambda f=plain, w=weights, r=idx_rows, p=prev: f(w, r, p), min_time)
            title = f"{n} tensors {case}, {numel / 1e6:.1f}M el, vs {label}"
            rows.append(Row("record_weights", title, fused, plain_ms))
        only, _ = ops.record_weights(weights, idx, stats=False)  # the runtime recorder's call
        assert torch.equal(only, want[0]), "samples-only and plain samples differ"
        fused_only = median_ms(lambda w=weights, i=idx: ops.record_weights(w, i, stats=False), min_time)
        plain_only = median_ms(lambda w=weights, r=idx_rows: plain_samples(w, r), min_time)
        title = f"{n} tensors {case}, samples only (stats=False), vs index_select per tensor"
        rows.append(Row("record_weights", title, fused_only, plain_only))
    return rows


def plain_samples(weights: list[torch.Tensor], idx_rows: list[torch.Tensor]) -> torch.Tensor:
    """The plain way to gather K samples per tensor, as the runtime recorder needs them."""
    return torch.stack([w.reshape(-1).index_select(0, i).float() for w, i in zip(weights, idx_rows, strict=True)])


# ---- cache_store / cache_gather -----------------------------------------------------------------


def plain_store(cache, scales, valid, x, idx) -> None:
    """index_copy_ with a cast (int8: the reference quantisation) and index_fill_ of the flags."""
    if cache.dtype == torch.int8:
        q, s = reference.quantize_rows(x.float().reshape(x.shape[0], -1))
        cache.index_copy_(0, idx, q.view_as(x))
        scales.index_copy_(0, idx, s)
    else:
        cache.index_copy_(0, idx, x.to(cache.dtype))
    valid.index_fill_(0, idx, True)


def plain_gather(cache, scales, idx, dtype: torch.dtype) -> torch.Tensor:
    """index_select with a cast (int8: times the row scales); a host cache goes through a copy."""
    local = idx.to(cache.device)
    rows = cache.index_select(0, local)
    if cache.dtype == torch.int8:
        rows = rows.float() * scales.index_select(0, local)[:, None]
    return rows.to(idx.device).to(dtype)


def new_cache(n: int, d: int, dtype: torch.dtype, place: str, device: str) -> list[torch.Tensor]:
    """cache [n, d], scales [n], valid [n] on the device, or in pinned host memory."""
    where = "cpu" if place == "pinned" else device
    buffers = [
        torch.zeros(n, d, dtype=dtype, device=where),
        torch.zeros(n, device=where),
        torch.zeros(n, dtype=torch.bool, device=where),
    ]
    return [t.pin_memory() for t in buffers] if place == "pinned" else buffers


def bench_cache_case(
    x: torch.Tensor, idx: torch.Tensor, buffers: list[torch.Tensor], min_time: float, copy: float | None
) -> list[Row]:
    """Store x into a cache and gather it back as fp32, fused (check off and on) and plain."""
    device = x.device.type
    cache, scales, valid = buffers
    plain_buffers = [t.clone() for t in buffers]
    host = cache.device.type == "cpu" and device == "cuda"
    ops.cache_store(cache, scales, valid, x, idx)
    plain_store(*plain_buffers, x.to(cache.device), idx.to(cache.device))
    if device == "cuda":
        torch.cuda.synchronize()
    # Scales may differ by one ulp: on CUDA, PyTorch computes `amax / 127` as amax * (1/127).
    ulp = {"rtol": 1e-6, "atol": 0.0}
    assert torch.equal(cache, plain_buffers[0]) and torch.equal(valid, plain_buffers[2]), "stores differ"
    torch.testing.assert_close(scales, plain_buffers[1], **ulp)
    got = ops.cache_gather(*buffers, idx, torch.float32)
    torch.testing.assert_close(got, plain_gather(cache, scales, idx, torch.float32), **ulp)

    b, d = x.shape
    name = f"{str(cache.dtype).removeprefix('torch.')} cache" + (" (pinned host)" if host else "")
    store_bytes = b * d * (x.element_size() + cache.element_size())
    gather_bytes = b * d * (cache.element_size() + 4)
    plain_store_ms = median_ms(lambda: plain_store(*plain_buffers, x.to(cache.device), idx.to(cache.device)), min_time)
    plain_gather_ms = median_ms(lambda: plain_gather(cache, scales, idx, torch.float32), min_time)
    rows = []
    for check in (False, True):
        ms = median_ms(lambda c=check: ops.cache_store(*buffers, x, idx, c), min_time)
        label = f"{b}x{d} fp32 -> {name}, check={check}"
        rows.append(Row("cache_store", label, ms, plain_store_ms, gbs(store_bytes, ms, device), copy))
    for check in (False, True):
        ms = median_ms(lambda c=check: ops.cache_gather(*buffers, idx, torch.float32, c), min_time)
        label = f"{b}x{d} {name} -> fp32, check={check}"
        rows.append(Row("cache_gather", label, ms, plain_gather_ms, gbs(gather_bytes, ms, device), copy))
    return rows


def bench_cache(args: argparse.Namespace, device: str, min_time: float, gen) -> list[Row]:
    if device == "cpu":
        n, b, d = (1024, 128, 4096) if args.quick else (4096, 256, 16384)
    else:
        n, b, d = (4096, 256, 16384) if args.quick else (8192, 512, 65536)
    x = torch.randn(b, d, generator=gen).to(device)
    idx = torch.randperm(n, generator=gen)[:b].to(device)
    copy = copy_gbs(b * d * 4, device, min_time) if device == "cuda" else None
    places = [device] + (["pinned"] if device == "cuda" else [])
    rows = []
    for cache_dtype in (torch.float16, torch.int8):
        for place in places:
            rows += bench_cache_case(x, idx, new_cache(n, d, cache_dtype, place, device), min_time, copy)
    return rows


# ---- predictor_logits ---------------------------------------------------------------------------


def bench_predictor(args: argparse.Namespace, device: str, min_time: float, gen) -> list[Row]:
    """The fused predictor forward against the eager one (its reference), on the shipped predictor's sizes."""
    from smartfrz.predictor import AttentionPredictorNet, ModelConfig

    net = AttentionPredictorNet(ModelConfig()).eval().to(device)
    params, heads = [p.detach() for p in net.op_params()], net.cfg.heads  # inference, as FreezePredictor under no_grad
    rows = []
    for n in (14, 100) if args.quick else (14, 100, 500):
        emb = torch.randn(n, net.cfg.window, net.cfg.embed_dim, generator=gen).cumsum(dim=1).to(device)
        valid = torch.ones(n, net.cfg.window, dtype=torch.bool, device=device)
        context = torch.rand(n, len(net.cfg.context), generator=gen).to(device)
        fused_fn = lambda e=emb, v=valid, c=context: ops.predictor_logits(e, v, c, params, heads)  # noqa: E731
        plain_fn = lambda e=emb, v=valid, c=context: predictor_ref.predictor_logits(e, v, c, params, heads)  # noqa: E731
        torch.testing.assert_close(fused_fn(), plain_fn(), rtol=1e-4, atol=1e-4)
        title = f"{n} windows (W={net.cfg.window}, D={net.cfg.embed_dim}, H={net.cfg.hidden}), vs the eager forward"
        rows.append(Row("predictor_logits", title, median_ms(fused_fn, min_time), median_ms(plain_fn, min_time)))
    return rows


def gbs(nbytes: int, ms: float, device: str) -> float | None:
    """Achieved GB/s of moving nbytes (read + write) in ms, reported on CUDA only."""
    return nbytes / (ms * 1e6) if device == "cuda" else None


def print_table(rows: list[Row], device: str) -> None:
    if device == "cuda":
        print("| op | case | fused ms | plain ms | plain/fused | fused GB/s | D2D copy GB/s |")
        print("|---|---|---:|---:|---:|---:|---:|")
    else:
        print("| op | case | fused ms | plain ms | plain/fused |")
        print("|---|---|---:|---:|---:|")
    for r in rows:
        line = f"| {r.op} | {r.case} | {r.fused_ms:.3f} | {r.plain_ms:.3f} | {r.plain_ms / r.fused_ms:.2f} |"
        if device == "cuda":
            line += "".join(f" {'-' if v is None else f'{v:.0f}'} |" for v in (r.fused_gbs, r.copy_gbs))
        print(line)


def main() -> None:
    args = parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is available")
    min_time = args.min_time or (0.2 if args.quick else 1.0)
    gen = torch.Generator().manual_seed(args.seed)
    backends = {op: devices[args.device] for op, devices in ops.backends().items()}
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"smartfrz kernel benchmark on {where}, torch {torch.__version__}; backends: {backends}\n")
    rows = []
    for bench in tqdm([bench_record, bench_cache, bench_predictor], desc="benchmarks", leave=False):
        rows += bench(args, args.device, min_time, gen)
    print_table(rows, args.device)


if __name__ == "__main__":
    main()
