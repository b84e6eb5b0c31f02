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
