"""DistributedDataParallel (gloo, 2 CPU processes): rank 0 decides, every rank freezes alike, training goes on."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from test_runtime_support import data, free_port, mlp
from torch.nn.parallel import DistributedDataParallel as DDP

from smartfrz.runtime import CacheConfig, Freezer, Policy

STEPS = 10
FROZEN_PARAMS = 6  # blocks 0 (Linear) and 1 (Linear + BatchNorm) of test_runtime_support.mlp


class RankDependentPolicy(Policy):
    """Would freeze differently on each rank: only rank 0's answer may count."""

    name = "rank_dependent"

    def is_stage(self, step: int) -> bool:
        return step in (3, 6)

    def decide(self, step: int, num_frozen: int) -> int:
        if dist.get_rank() != 0:
            return 3  # a rank deciding for itself would freeze everything at step 3
        self.block_scores = {num_frozen: 0.75}
        return {3: 1, 6: 2}[step]


def _run(rank: int, cache: bool) -> dict[str, Any]:
    model = mlp(seed=0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    ddp = DDP(model)
    freezer = Freezer(
        ddp, opt, RankDependentPolicy(), cache=CacheConfig("float32") if cache else None, deterministic_inputs=True
    )
    x, y = data(n=64, seed=rank)  # each rank its own shard
    snapshots = []
    for step in range(STEPS):
        idx = torch.randperm(64, generator=torch.Generator().manual_seed(step))[:16]
        loss = F.cross_entropy(freezer(x[idx], idx), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        freezer.step()
        snapshots.append([p.detach().clone() for p in model.parameters()])
    return {
        "events": [(e.step, e.block, e.score) for e in freezer.events.events],
        "num_frozen": freezer.num_frozen,
        "requires_grad": [p.requires_grad for p in model.parameters()],
        "params": snapshots,
        "head_step": float(opt.state[model[3].weight]["step"]),
        "frozen_state": sum(p in opt.state for b in (model[0], model[1]) for p in b.parameters()),
        "hits": 0 if freezer.cache is None else freezer.cache.hits,
    }


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        torch.save({"plain": _run(rank, cache=False), "cache": _run(rank, cache=True)}, Path(out) / f"rank{rank}.pt")
        dist.barrier()  # both ranks done with every collective before either tears gloo down
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch.distributed gloo missing")
def test_ddp_ranks_freeze_together_and_keep_training(tmp_path: Path) -> None:
    """Same events on both ranks (rank 0's), synced parameters after the freezes, optimizer state kept."""
    mp.spawn(_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    for variant in ("plain", "cache"):
        a, b = r0[variant], r1[variant]
        assert a["events"] == b["events"] == [(3, 0, 0.75), (6, 1, 0.75)], variant
        assert a["num_frozen"] == b["num_frozen"] == 2
        assert a["requires_grad"] == b["requires_grad"] == [False] * FROZEN_PARAMS + [True] * 4
        for step in range(STEPS):  # the ranks saw different data, DDP kept them equal throughout
            assert all(torch.equal(p, q) for p, q in zip(a["params"][step], b["params"][step], strict=True))
        last, before = a["params"][-1], a["params"][6]
        n = FROZEN_PARAMS
        assert all(torch.equal(p, q) for p, q in zip(last[:n], before[:n], strict=True))  # frozen stay put
        assert not any(torch.equal(p, q) for p, q in zip(last[n:], before[n:], strict=True))  # the rest trains
        assert a["head_step"] == b["head_step"] == STEPS and a["frozen_state"] == b["frozen_state"] == 0
    assert r0["cache"]["hits"] > 0 and r1["cache"]["hits"] > 0
