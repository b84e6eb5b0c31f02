"""Models the zoo pretrains itself, for fine-tuning runs in families that have no public checkpoint offline.

``pretrained_on(source, num_classes)`` trains the source task's model once on the source task's data with
its own recipe (fixed seed, constant learning rate), caches the weights on disk, and returns a copy with a
fresh final linear layer for ``num_classes``, as fine-tuning starts from an ImageNet checkpoint. The
pretraining leaves every random stream of the caller as it was, so a fine-tuning run starts identically
whether or not the cache existed; concurrent collector workers wait for one another on a file lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import random
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from smartfrz._version import __version__
from smartfrz.utils.seed import seed_everything
from smartfrz.zoo.registry import DataOptions, get_task, make_optimizer

PRETRAINED_DIR_ENV = "SMARTFRZ_PRETRAINED_DIR"
PRETRAIN_FORMAT = 1  # bump when _train or the cached file's layout changes


@dataclass(frozen=True)
class PretrainRecipe:
    """How a source task is pretrained: its own optimizer and epochs at its middle learning rate."""

    max_train: int = 3000
    seed: int = 7
    epochs: int | None = None  # None: the source task's epochs


DEFAULT_RECIPE = PretrainRecipe()


def pretrained_dir() -> Path:
    """Where pretrained weights are cached: $SMARTFRZ_PRETRAINED_DIR, else $XDG_CACHE_HOME/smartfrz/pretrained."""
    env = os.environ.get(PRETRAINED_DIR_ENV)
    if env:
        return Path(env)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "smartfrz" / "pretrained"


@contextmanager
def preserved_rng() -> Iterator[None]:
    """Run a block without changing Python's, numpy's or torch's random state (CPU and every CUDA device)."""
    py_state, np_state = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def _train(source: str, recipe: PretrainRecipe, root: str | None = None) -> dict[str, object]:
    """The source task's model after its recipe on its own data (CPU, read from ``root`` when given): its state
    dict and number of classes."""
    task = get_task(source)
    seed_everything(recipe.seed)
    data = task.load_data(DataOptions(root=root, max_train=recipe.max_train, seed=recipe.seed))
    model = task.build_model(data.num_classes)
    optimizer = make_optimizer(task, model.parameters(), task.lrs[len(task.lrs) // 2])
    loader = torch.utils.data.DataLoader(
        data.train, batch_size=task.batch_size, shuffle=True, generator=torch.Generator().manual_seed(recipe.seed)
    )
    model.train()
    for _ in range(recipe.epochs or task.epochs):
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return {"state_dict": state, "num_classes": data.num_classes}


def cache_path(source: str, recipe: PretrainRecipe) -> Path:
    """The cache file of a source and recipe; a change of either, of the model's parameter shapes, of torch or of
    smartfrz's version (or of ``PRETRAIN_FORMAT``, bumped when the training code changes) is a new file."""
    t = get_task(source)
    settings = (t.name, t.dataset, t.epochs, t.batch_size, t.optimizer, t.lrs, t.weight_decay)
    with preserved_rng():
        shapes = [(k, tuple(v.shape)) for k, v in t.build_model(10).state_dict().items()]
    versions = (PRETRAIN_FORMAT, __version__, torch.__version__)
    key = hashlib.sha256(repr((settings, shapes, recipe, versions)).encode()).hexdigest()[:12]
    return pretrained_dir() / f"{source}-{key}.pt"


def pretrained_weights(
    source: str, recipe: PretrainRecipe = DEFAULT_RECIPE, root: str | None = None
) -> dict[str, object]:
    """The cached ``{"state_dict", "num_classes"}`` of ``source`` after its pretraining, trained now if absent
    (on the source's data under ``root``, else where the zoo finds it by default).

    Pretraining takes 5-40 s per source task on one CPU thread (measured for the six corpus sources).
    """
    path = cache_path(source, recipe)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a second worker waits here and then loads the first one's file
        if path.is_file():
            try:
                return torch.load(path, map_location="cpu", weights_only=True)
            except Exception as err:  # a truncated or foreign file: train it again
                warnings.warn(f"{path} could not be read ({err}); pretraining {source} again", stacklevel=2)
        with preserved_rng():
            trained = _train(source, recipe, root)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        with open(tmp, "wb") as f:
            torch.save(trained, f)
            f.flush()
            os.fsync(f.fileno())  # on disk before the rename, so a crash cannot leave an empty file behind
        os.replace(tmp, path)  # atomic: a reader never sees half a file
    return trained


def replace_last_linear(model: nn.Module, num_classes: int) -> nn.Module:
    """Swap the model's last ``nn.Linear`` (its classifier) for a fresh one with ``num_classes`` outputs."""
    linears = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer to use as the classifier")
    parent_name, _, attr = linears[-1].rpartition(".")
    parent = model.get_submodule(parent_name)
    old = getattr(parent, attr)
    setattr(parent, attr, nn.Linear(old.in_features, num_classes, bias=old.bias is not None))
    return model


def prepare_source(source: str, opts: DataOptions) -> None:
    """Pretrain ``source`` now from the run's data root unless cached: a fine-tuning task's ``prepare`` step."""
    pretrained_weights(source, root=opts.root)


def pretrained_on(source: str, num_classes: int) -> nn.Module:
    """The source task's model with its pretrained weights and a fresh classifier for ``num_classes``."""
    trained = pretrained_weights(source)
    model = get_task(source).build_model(int(trained["num_classes"]))  # type: ignore[call-overload]
    model.load_state_dict(trained["state_dict"])  # type: ignore[arg-type]
    return replace_last_linear(model, num_classes)
