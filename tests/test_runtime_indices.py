"""Safe dataset indices: checked once per call on the host, a bounded index table, the split checked early."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_runtime_support import FreezeAt, data, mlp
from torch import nn

from smartfrz.runtime import CacheConfig, FreezeOut, Freezer
from smartfrz.runtime.cache import ActivationCache


def _cached(dataset_size: int | None = None) -> tuple[Freezer, nn.Module]:
    model = mlp()
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    cache = CacheConfig(dtype="float32", dataset_size=dataset_size)
    return Freezer(model, opt, FreezeAt(at=1, n=2), cache=cache, deterministic_inputs=True), model


@pytest.mark.parametrize(
    ("idx", "error", "message"),
    [
        (torch.tensor([0.0, 1.0, 2.0, 3.0]), TypeError, "must be integers, got a torch.float32"),
        (torch.tensor([True, False, True, True]), TypeError, "must be integers, got a torch.bool"),
        (torch.zeros(4, 2, dtype=torch.int64), ValueError, r"must be 1-D, got a tensor of shape \(4, 2\)"),
        (torch.tensor([0, 1, 2]), ValueError, "got 3 dataset indices for a batch of 4 samples"),
        (torch.tensor([0, -1, 2, 3]), ValueError, "must be >= 0, got -1"),
        (torch.tensor([5, 1, 5, 3]), ValueError, "dataset index 5 appears twice in one batch"),
        ([0, 1, 2.5, 3], TypeError, "must be integers"),
        ("0123", TypeError, "a 1-D integer tensor or a list, got str"),
        (torch.tensor([0, 1, 2, 96]), ValueError, "dataset index 96 is out of range for dataset_size=96"),
    ],
)
def test_bad_indices_get_a_one_line_answer(idx: object, error: type[Exception], message: str) -> None:
    """Each malformed index batch is refused on the host with a message naming the problem."""
    freezer, model = _cached(dataset_size=96)
    x, _ = data()
    model.train()
    with pytest.raises(error, match=message):
        freezer(x[:4], idx)


def test_huge_index_allocates_nothing_large() -> None:
    """idx = 2**40 maps to one table entry, not to an 8 TB array sized by the largest index."""
    cache = ActivationCache(CacheConfig(dtype="float32"), deterministic_inputs=True)
    x = torch.randn(2, 8)
    assert cache.store(x, torch.tensor([2**40, 3])) == 2
    assert cache.nbytes < 2**20
    assert torch.equal(cache.gather([2**40]), x[:1])
    assert cache.contains(torch.tensor([2**40, 2**40 + 1])).tolist() == [True, False]


def test_dataset_size_sizes_the_storage_once() -> None:
    """With dataset_size the storage is allocated once at min(budget, dataset) rows and never regrown."""
    cache = ActivationCache(CacheConfig(dtype="float32", dataset_size=300), deterministic_inputs=True)
    cache.store(torch.randn(10, 8), torch.arange(10))
    assert cache.capacity == 300 and cache._fields is not None and cache._fields[0].allocated == 300
    first = cache._fields[0].data
    cache.store(torch.randn(290, 8), torch.arange(10, 300))
    assert cache._fields[0].data is first and cache.rows == 300


def test_freezer_refuses_a_model_input_passed_as_idx_without_cache() -> None:
    """freezer(ids, mask) without a cache is refused (the mask is not dropped); extra inputs pass through."""

    class TwoInputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Linear(6, 6)
            self.head = nn.Linear(6, 2)

        def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
            h = self.body(x)
            return self.head(h if mask is None else h * mask)

    model = TwoInputs()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    freezer = Freezer(model, opt, None, blocks=["body", "head"], measure_flops=False)
    x, mask = torch.randn(4, 6), torch.tensor([[1, 1, 1, 0, 0, 0]] * 4)
    with pytest.raises(ValueError, match=r"must be 1-D, got a tensor of shape \(4, 6\).*freezer\(ids, idx, mask\)"):
        freezer(x, mask)
    assert torch.equal(freezer(x, torch.arange(4), mask), model(x, mask))
    assert torch.equal(freezer(x, None, mask), model(x, mask))


def test_wrong_split_is_refused_on_the_first_cached_forward() -> None:
    """A block list that does not compose to the model's forward fails at step 1, before any freeze."""

    class Residual(nn.Sequential):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self[1](self[0](x) + x)

    model = Residual(nn.Linear(12, 12), nn.Linear(12, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    freezer = Freezer(model, opt, FreezeOut(total_steps=10, t0=0.5), cache=True, deterministic_inputs=True)
    x, _ = data()
    model.train()
    with pytest.raises(ValueError, match="differs from the model's forward"):
        freezer(x[:8], torch.arange(8))
    assert freezer.step_count == 0 and freezer.num_frozen == 0


def test_cached_training_with_list_indices() -> None:
    """Python lists work as indices; a batch seen again after the freeze is served from the cache."""
    freezer, model = _cached(dataset_size=96)
    opt = freezer.optimizer
    x, y = data()
    model.train()
    for step in range(8):
        idx = list(range((step % 6) * 16, (step % 6) * 16 + 16))
        loss = F.cross_entropy(freezer(x[idx], idx), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        freezer.step()
    assert freezer.cache is not None and freezer.cache.rows == 96
    assert freezer.cache.hits == 16  # steps 1-6 fill the cache (frozen from step 1); step 7 repeats step 1
