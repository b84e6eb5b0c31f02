"""DDP rebuilt after a freeze keeps the user's settings and communication hooks (gloo, 2 CPU processes)."""

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


class FreezeAt3(Policy):
    """Freeze one block at step 3."""

    name = "freeze_at_3"

    def is_stage(self, step: int) -> bool:
        return step == 3

    def decide(self, step: int, num_frozen: int) -> int:
        return 1


class Counter:
    """State of a comm hook: how many buckets it reduced."""

    def __init__(self) -> None:
        self.calls = 0


def counting_hook(state, bucket):
    """All-reduce the bucket mean, counting calls (unannotated: DDP checks real, not string, annotations)."""
    state.calls += 1
    buf = bucket.buffer().div_(dist.get_world_size())
    return dist.all_reduce(buf, async_op=True).get_future().then(lambda fut: fut.value()[0])


def _run(rank: int, cache: bool) -> dict[str, Any]:
    model = mlp(seed=0, bn=False)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    ddp = DDP(model, forward_sync_buffers=False, static_graph=True, gradient_as_bucket_view=True, bucket_cap_mb=1)
    state = Counter()
    ddp.register_comm_hook(state, counting_hook)
    freezer = Freezer(ddp, opt, FreezeAt3(), cache=CacheConfig("float32") if cache else None, deterministic_inputs=True)
    x, y = data(n=64, seed=rank)
    calls_after_freeze = 0
    for step in range(6):
        idx = torch.arange(16) + 16 * (step % 4)
        loss = F.cross_entropy(freezer(x[idx], idx), y[idx])
        opt.zero_grad()
        before = state.calls
        loss.backward()
        if step >= 3:
            calls_after_freeze += state.calls - before
        opt.step()
        freezer.step()
    new = freezer.model
    assert isinstance(new, DDP) and new is not ddp
    return {
        "settings": (new.forward_sync_buffers, new.static_graph, new.gradient_as_bucket_view, new.bucket_bytes_cap),
        "hooks": [(h.__name__, s is state) for h, s in new._comm_hooks],
        "calls_after_freeze": calls_after_freeze,
    }


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        torch.save({"plain": _run(rank, False), "cache": _run(rank, True)}, Path(out) / f"rank{rank}.pt")
        dist.barrier()  # both ranks done with every collective before either tears gloo down
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="torch.distributed gloo missing")
def test_rebuilt_ddp_keeps_settings_and_comm_hooks(tmp_path: Path) -> None:
    """forward_sync_buffers, static_graph, gradient_as_bucket_view, bucket size and the comm hook survive."""
    mp.spawn(_worker, args=(free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        result = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        for variant in ("plain", "cache"):
            r = result[variant]
            assert r["settings"] == (False, True, True, 2**20), variant
            assert r["hooks"] == [("counting_hook", True)], variant
            assert r["calls_after_freeze"] > 0, variant
