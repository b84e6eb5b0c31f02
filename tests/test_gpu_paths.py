"""GPU-only paths: the Freezer and its cache end to end on CUDA, NCCL DDP, the CUDA scalar cache path.

Every test is marked ``gpu`` and skips without a CUDA device (tests/conftest.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from test_runtime_ddp import STEPS, RankDependentPolicy
from test_runtime_support import data, free_port, mlp
from torch.nn.parallel import DistributedDataParallel as DDP

import smartfrz.ops as ops
from smartfrz.ops import reference
from smartfrz.runtime import CacheConfig, FreezeOut, Freezer

pytestmark = pytest.mark.gpu
CUDA = "cuda"
SCALAR_TILE = 256 * 1 * 2  # kThreads * V * kVecsPerThread elements of a row per step on the scalar path (V = 1)


def _train_on_cuda(cache: CacheConfig | None, steps: int = 30) -> tuple[list[float], Freezer]:
    model = mlp().to(CUDA)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    freezer = Freezer(model, opt, FreezeOut(total_steps=steps, t0=0.3), cache=cache, deterministic_inputs=True)
    x, y = (t.to(CUDA) for t in data())
    losses = []
    model.train()
    for step in range(steps):
        idx = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(step))[:16].to(CUDA)
        torch.manual_seed(step)
        loss = F.cross_entropy(freezer(x[idx], idx), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        freezer.step()
        losses.append(loss.item())
    return losses, freezer


@pytest.mark.parametrize("location", ["device", "host"])
@pytest.mark.parametrize(("dtype", "tol"), [("float32", 1e-5), ("float16", 5e-3), ("int8", 1.2e-2)])
def test_freezer_with_cache_end_to_end_on_cuda(location: str, dtype: str, tol: float) -> None:
    reference_losses, plain = _train_on_cuda(None)
    cached, freezer = _train_on_cuda(CacheConfig(dtype=dtype, location=location))
    assert plain.num_frozen == freezer.num_frozen == 3
    assert freezer.cache is not None and freezer.cache.hits > 0 and freezer.cache.rows == 96
    assert max(abs(a - b) for a, b in zip(reference_losses, cached, strict=True)) <= tol


@pytest.mark.parametrize("cache_dtype", [torch.float32, torch.float16, torch.bfloat16, torch.int8])
@pytest.mark.parametrize("misaligned", [False, True])
def test_cuda_scalar_path_with_rows_longer_than_one_tile(cache_dtype: torch.dtype, misaligned: bool) -> None:
    """Rows not a multiple of 8 elements (or a misaligned source) take the scalar kernels, over several tiles."""
    d = 3 * SCALAR_TILE + (8 if misaligned else 5)  # 8: vector-sized rows, but the source starts 4 bytes off
    gen = torch.Generator().manual_seed(0)
    x = torch.empty(37 * d + 1, device=CUDA)[1:].view(37, d) if misaligned else torch.empty(37, d, device=CUDA)
    x.copy_(torch.randn(37, d, generator=gen))
    x_cpu = x.cpu()
    idx = torch.randperm(50, generator=gen)[:37]
    got = (
        torch.zeros(50, d, dtype=cache_dtype, device=CUDA),
        torch.zeros(50, device=CUDA),
        torch.zeros(50, dtype=torch.bool, device=CUDA),
    )
    want = tuple(t.cpu() for t in got)
    ops.cache_store(*got, x, idx.to(CUDA))
    reference.cache_store(*want, x_cpu, idx)
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a.cpu(), b)
    back = idx[torch.randperm(37, generator=gen)]
    out = ops.cache_gather(*got, back.to(CUDA), torch.float32)
    assert torch.equal(out.cpu(), reference.cache_gather(*want, back, torch.float32))


def _nccl_worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", rank=rank, world_size=2)
    try:
        model = mlp(seed=0).to(CUDA)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        freezer = Freezer(
            DDP(model, device_ids=[rank]),
            opt,
            RankDependentPolicy(),
            cache=CacheConfig("float32"),
            deterministic_inputs=True,
        )
        x, y = (t.to(CUDA) for t in data(n=64, seed=rank))
        for step in range(STEPS):
            idx = torch.randperm(64, generator=torch.Generator().manual_seed(step))[:16].to(CUDA)
            loss = F.cross_entropy(freezer(x[idx], idx), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            freezer.step()
        result = {
            "events": [(e.step, e.block) for e in freezer.events.events],
            "params": [p.detach().cpu() for p in model.parameters()],
        }
        torch.save(result, Path(out) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(torch.cuda.device_count() < 2 or not dist.is_nccl_available(), reason="needs a CUDA GPU pair")
def test_nccl_ddp_ranks_freeze_together(tmp_path: Path) -> None:
    mp.spawn(_nccl_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["events"] == r1["events"] == [(3, 0), (6, 1)]
    assert all(torch.equal(p, q) for p, q in zip(r0["params"], r1["params"], strict=True))
