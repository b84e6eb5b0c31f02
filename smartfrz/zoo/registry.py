"""The task registry: a task names its model, data, and training recipe, so collect/bench can run it by name."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.data import Dataset

OPTIMIZERS = ("sgd", "adam", "adamw")
SCENARIOS = ("scratch", "finetune")


@dataclass(frozen=True)
class DataOptions:
    """Where the data lives and how much of it to use (`seed` picks the training subset when capped)."""

    root: str | None = None
    max_train: int | None = None
    max_val: int | None = None
    seed: int = 0


@dataclass
class TaskData:
    """Train and validation sets of `(x, y)` items (x float features/images or int64 token ids, y int64 scalar)."""

    train: Dataset
    val: Dataset
    num_classes: int


@dataclass(frozen=True)
class Task:
    """A model, a dataset, and the recipe that trains the model to a real accuracy on CPU in a few minutes."""

    name: str
    family: str
    scenario: str
    dataset: str
    build_model: Callable[[int], nn.Module]
    load_data: Callable[[DataOptions], TaskData]
    epochs: int
    batch_size: int
    optimizer: str
    lrs: tuple[float, ...]
    weight_decay: float = 0.0
    smoke_max_train: int = 512
    default_max_train: int | None = None
    prepare: Callable[[DataOptions], None] | None = None
    """Fetches what ``build_model`` needs from the run's data options (a pretrained source model); None: nothing."""

    def __post_init__(self) -> None:
        """Reject recipes that could only fail later, naming the task."""
        if self.scenario not in SCENARIOS:
            raise ValueError(f"task {self.name!r}: scenario must be one of {SCENARIOS}, got {self.scenario!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"task {self.name!r}: optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if not self.lrs or any(lr <= 0 for lr in self.lrs):
            raise ValueError(f"task {self.name!r}: lrs must be a non-empty tuple of positive numbers, got {self.lrs}")
        if self.epochs < 1 or self.batch_size < 1 or self.smoke_max_train < 1:
            raise ValueError(f"task {self.name!r}: epochs, batch_size and smoke_max_train must be positive")


_TASKS: dict[str, Task] = {}


def register_task(task: Task) -> None:
    """Add a task to the registry; a second task under the same name is an error."""
    if task.name in _TASKS:
        raise ValueError(f"a task named {task.name!r} is already registered")
    _TASKS[task.name] = task


def get_task(name: str) -> Task:
    """The registered task called `name`, or a KeyError listing the known ones."""
    try:
        return _TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; registered tasks: {', '.join(list_tasks())}") from None


def list_tasks() -> list[str]:
    """Names of all registered tasks, sorted."""
    return sorted(_TASKS)


def make_optimizer(
    task: Task, params: Iterable[nn.Parameter], lr: float, optimizer: str | None = None
) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum 0.9, Adam (L2 weight decay) or AdamW; the task's own unless ``optimizer`` says.

    Weight decay comes from the task.
    """
    name = optimizer or task.optimizer
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}")
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=task.weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=task.weight_decay)
    return torch.optim.AdamW(params, lr=lr, weight_decay=task.weight_decay)
