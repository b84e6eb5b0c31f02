"""Shared pytest configuration: GPU tests skip without a GPU."""

import pytest
import torch


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


def pytest_configure(config):
    """One intra-op thread: on a small shared CI machine, oversubscribed threads make tiny models crawl."""
    torch.set_num_threads(1)


@pytest.fixture
def tiny_bert():
    """Factory of a seeded 2-layer BERT classifier (vocab 40, hidden 16, 2 labels); kwargs override the config."""
    transformers = pytest.importorskip("transformers", reason="transformers not installed (pip install transformers)")

    def make(**overrides):
        config = transformers.BertConfig(
            vocab_size=40,
            hidden_size=16,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=16,
            num_labels=2,
            **overrides,
        )
        torch.manual_seed(0)
        return transformers.BertForSequenceClassification(config)

    return make
