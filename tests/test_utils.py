"""The neutral helpers: nested-batch walking and the eval-mode context manager."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from smartfrz.utils.batches import batch_len, first_tensor, take, to_device
from smartfrz.utils.modes import eval_mode


def test_batch_helpers_walk_nested_tuples_lists_and_dicts():
    batch = {"ids": torch.arange(6).view(3, 2), "extra": [torch.zeros(3), (torch.zeros(3, 4), "tag")]}
    assert batch_len(batch) == 3
    assert first_tensor(batch) is batch["ids"]
    moved = to_device(batch, torch.device("meta"))
    assert moved["ids"].device.type == "meta" and moved["extra"][1][1] == "tag"
    rows = take(batch, torch.tensor([2, 0]))
    assert torch.equal(rows["ids"], torch.tensor([[4, 5], [0, 1]])) and rows["extra"][1][0].shape == (2, 4)


@pytest.mark.parametrize(("batch", "n"), [(torch.zeros(0, 2), 0), ((torch.tensor(3.0), torch.zeros(5)), 5), ("x", 0)])
def test_batch_len_skips_scalars_and_empty_leading_dims(batch, n):
    assert batch_len(batch) == n


def test_eval_mode_restores_each_submodule_mode_even_on_error():
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(), nn.Linear(2, 2))
    model[1].eval()  # a frozen block stays in eval after the context
    with pytest.raises(RuntimeError), eval_mode(model):
        assert not any(m.training for m in model.modules())
        raise RuntimeError("boom")
    assert [m.training for m in model.modules()] == [True, True, False, True]
