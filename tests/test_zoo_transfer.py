"""smartfrz.zoo.transfer: models the zoo pretrains itself, cached, for fine-tuning runs."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from smartfrz.zoo import DataOptions, Task, TaskData, get_task, list_tasks, register_task, transfer
from smartfrz.zoo.tasks import FINETUNE_TASKS

SOURCE = "test_transfer_source"
SEEN_ROOTS: list[str | None] = []  # the data roots the source task's loader was asked for


def _source_data(opts) -> TaskData:
    SEEN_ROOTS.append(opts.root)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(96, 6, generator=gen)
    y = (x[:, 0] > 0).long() + 2 * (x[:, 1] > 0).long()
    return TaskData(TensorDataset(x[:64], y[:64]), TensorDataset(x[64:], y[64:]), 4)


def _source_model(num_classes: int) -> nn.Module:
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, num_classes))


if SOURCE not in list_tasks():
    register_task(
        Task(
            name=SOURCE,
            family="testmlp",
            scenario="scratch",
            dataset="synthetic",
            build_model=_source_model,
            load_data=_source_data,
            epochs=3,
            batch_size=16,
            optimizer="adam",
            lrs=(1e-2,),
        )
    )


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(transfer.PRETRAINED_DIR_ENV, str(tmp_path))
    return tmp_path


def test_pretrained_model_has_trained_weights_and_a_fresh_classifier(cache_dir):
    model = transfer.pretrained_on(SOURCE, 7)
    assert model[-1].out_features == 7
    fresh = _source_model(4)
    trained = torch.load(transfer.cache_path(SOURCE, transfer.DEFAULT_RECIPE), weights_only=True)
    assert trained["num_classes"] == 4
    assert torch.equal(model[0].weight, trained["state_dict"]["0.weight"])  # the body is the pretrained one
    assert not torch.equal(trained["state_dict"]["0.weight"], fresh[0].weight)


def test_pretraining_is_cached_and_leaves_every_random_stream_alone(cache_dir, monkeypatch):
    """The first build trains; a second loads the file; both start the caller's run identically."""
    calls = []
    real_train = transfer._train
    monkeypatch.setattr(transfer, "_train", lambda s, r, root=None: calls.append(s) or real_train(s, r, root))
    builds = []
    for _ in range(2):
        random.seed(1)
        np.random.seed(1)
        torch.manual_seed(1)
        model = transfer.pretrained_on(SOURCE, 3)
        builds.append((model.state_dict(), random.random(), float(np.random.rand()), float(torch.rand(()))))
    assert calls == [SOURCE]
    (first, *draws_a), (second, *draws_b) = builds
    assert draws_a == draws_b
    assert all(torch.equal(first[k], second[k]) for k in first)  # the new head's initialisation too


def test_pretraining_reads_the_fine_tuning_runs_data_root(cache_dir):
    """A fine-tuning task's prepare step pretrains its source from the run's data root, then the build reuses it."""
    SEEN_ROOTS.clear()
    transfer.prepare_source(SOURCE, DataOptions(root="/data/here"))
    transfer.pretrained_on(SOURCE, 3)  # cached now: no second pretraining under the default root
    assert SEEN_ROOTS == ["/data/here"]


def test_build_run_prepares_a_fine_tuning_task_from_the_specs_data_root(monkeypatch):
    """The collector and the probes hand ``--data-root`` to a task's prepare step before building its model."""
    from smartfrz.collection import runner
    from smartfrz.collection.grid import RunSpec

    seen: list[str | None] = []
    task = get_task("digits28_lenet_ft")
    monkeypatch.setattr(
        runner,
        "get_task",
        lambda name: dataclasses.replace(
            task, prepare=lambda opts: seen.append(opts.root), build_model=lambda n: _source_model(n)
        ),
    )
    spec = RunSpec(task.name, "adam", 1e-3, 0, max_train=32, max_val=32, data_root="/my/data")
    runner.build_run(spec)
    assert seen == ["/my/data"]


def test_replace_last_linear_needs_a_linear_layer():
    with pytest.raises(ValueError, match=r"no nn\.Linear"):
        transfer.replace_last_linear(nn.Sequential(nn.Conv2d(1, 2, 3)), 5)


def test_zoo_fine_tuning_tasks_name_their_sources():
    """Each zoo fine-tuning task is fine-tuning, in its source's family, on 28x28 digits like its source's input."""
    for task in FINETUNE_TASKS:
        source = get_task(task.build_model.args[0])
        assert task.prepare is not None and task.prepare.args == (source.name,)
        assert task.scenario == "finetune" and source.scenario == "scratch"
        assert task.family == source.family and source.dataset == "fashion_mnist"


def test_the_corpus_preset_fine_tunes_every_zoo_model_under_every_recipe():
    from smartfrz.collection.grid import build_grid
    from smartfrz.collection.presets import PRESETS, RECIPES

    grid = build_grid(PRESETS["corpus"])
    assert len(grid) == 250 and len({s.run_id for s in grid}) == 250
    for task in FINETUNE_TASKS:
        runs = [s for s in grid if s.task == task.name]
        assert len(runs) == len(RECIPES) * 2 and {(s.schedule, s.warmup) for s in runs} == set(RECIPES)
