"""Host syncs of a cached step, counted on CPU by proxy (ops that make CUDA wait), and on a GPU for real."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_runtime_support import FreezeAt, data, mlp
from torch.utils._python_dispatch import TorchDispatchMode

from smartfrz.runtime import CacheConfig, Freezer

# aten ops that read device values on the host (or size their output from them): each is a sync on CUDA.
SYNC_OPS = {
    "aten::_local_scalar_dense",  # .item(), int(t), bool(t)
    "aten::nonzero",
    "aten::unique_dim",
    "aten::_unique2",
    "aten::unique_consecutive",
    "aten::masked_select",
    "aten::equal",
    "aten::is_nonzero",
    "aten::repeat_interleave",
}


class CountSyncs(TorchDispatchMode):
    """Counts sync-causing aten ops; a boolean-mask index counts too (it runs nonzero)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name
        masks = name in ("aten::index", "aten::index_put", "aten::index_put_") and any(
            t is not None and t.dtype == torch.bool for t in (args[1] if len(args) > 1 else ())
        )
        if name in SYNC_OPS or masks:
            self.count += 1
            self.ops.append(name)
        return func(*args, **(kwargs or {}))


def _step(freezer: Freezer, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor) -> int:
    """One training step; returns the syncs counted during the freezer's forward."""
    opt = freezer.optimizer
    with CountSyncs() as counter:
        out = freezer(x[idx], idx)
    loss = F.cross_entropy(out, y[idx])
    opt.zero_grad()
    loss.backward()
    opt.step()
    freezer.step()
    return counter.count


@pytest.mark.parametrize("dtype", ["float16", "int8"])
def test_cached_forward_syncs_by_proxy(dtype: str) -> None:
    """An all-hit cached forward runs no sync-causing op; a miss forward none either (float fields)."""
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    freezer = Freezer(model, opt, FreezeAt(1, 2), cache=CacheConfig(dtype=dtype), deterministic_inputs=True)
    x, y = data()
    model.train()
    _step(freezer, x, y, torch.arange(16))  # first step: FLOP measurement and the split check
    miss = _step(freezer, x, y, torch.arange(16))  # frozen now: every row is a miss, stored
    hit = _step(freezer, x, y, torch.arange(16).flip(0))  # all hits
    mixed = _step(freezer, x, y, torch.arange(8, 24))  # half hits
    assert freezer.cache is not None and freezer.cache.hits == 24
    assert (miss, hit, mixed) == (0, 0, 0)


def test_integer_field_costs_one_sync_per_miss_step() -> None:
    """An integer field (a mask) is checked exact in float32 with one host read per miss step, none on hits."""
    from smartfrz.runtime.cache import ActivationCache

    cache = ActivationCache(CacheConfig(dtype="float16"), deterministic_inputs=True)
    hidden, mask = torch.randn(4, 3, 2), torch.ones(4, 3, dtype=torch.int64)
    with CountSyncs() as miss:
        cache.fetch((hidden, mask), [0, 1, 2, 3], lambda a: a)
    with CountSyncs() as hit:
        cache.fetch((hidden, mask), [3, 2, 1, 0], lambda a: a)
    assert (miss.count, hit.count) == (1, 0)


@pytest.mark.gpu
@pytest.mark.parametrize("location", ["device", "host"])
@pytest.mark.parametrize("dtype", ["float16", "int8"])
def test_all_hit_step_has_no_sync_on_cuda(location: str, dtype: str) -> None:
    """On a GPU the all-hit cached forward passes torch.cuda.set_sync_debug_mode('error')."""
    model = mlp().cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    cfg = CacheConfig(dtype=dtype, location=location)
    freezer = Freezer(model, opt, FreezeAt(1, 2), cache=cfg, deterministic_inputs=True)
    x, y = (t.cuda() for t in data())
    model.train()
    for _ in range(2):
        _step(freezer, x, y, torch.arange(16))
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with torch.no_grad():
            freezer(x[:16], torch.arange(16))  # CPU indices, as a DataLoader gives them
    finally:
        torch.cuda.set_sync_debug_mode("default")
