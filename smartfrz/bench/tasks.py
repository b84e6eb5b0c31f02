"""Benchmark-only tasks, held out from the data behind the shipped predictor (collection preset ``default``).

* ``synth_resmlp`` (from scratch): a residual MLP (a family the predictor never saw) on a seeded
  scikit-learn ``make_classification`` problem (a data set it never saw), large enough for a
  4,000-sample validation set.
* ``digits_convnext`` (from scratch): a small ConvNeXt (depthwise 7x7 convs, LayerNorm, inverted-bottleneck
  MLPs; a family the predictor never saw) on scikit-learn's digits as 32x32 RGB images.
* ``digits_mobilenetv2_ft`` (fine-tuning): torchvision's ImageNet MobileNetV2 on scikit-learn's 8x8
  digits as 32x32 RGB images; the predictor saw MobileNetV2 only on Fashion-MNIST and digits only as
  flat features in an MLP.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from smartfrz.zoo import DataOptions, Task, TaskData, get_task, list_tasks, register_task
from smartfrz.zoo.data import IMAGENET_GREY_MEAN, IMAGENET_GREY_STD, fixed_split, make_task_data
from smartfrz.zoo.pretrained import mobilenet_v2_imagenet

SYNTH_SEED = 20230501  # the synthetic problem is fixed; run seeds only change init and data order
SYNTH_SAMPLES, SYNTH_FEATURES, SYNTH_CLASSES = 12_000, 64, 10
DIGITS_SIZE = 32


class ResidualMLPBlock(nn.Module):
    """Pre-norm residual MLP block: x + W2 GELU(W1 LN(x))."""

    def __init__(self, dim: int, expansion: int = 2) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, expansion * dim)
        self.fc2 = nn.Linear(expansion * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual update."""
        return x + self.fc2(F.gelu(self.fc1(self.norm(x))))


def residual_mlp(
    in_features: int, num_classes: int, dim: int = 256, depth: int = 6, expansion: int = 2
) -> nn.Sequential:
    """A residual MLP as an nn.Sequential: stem, ``depth`` residual blocks, norm + linear head."""
    stem = nn.Sequential(nn.Linear(in_features, dim), nn.GELU())
    blocks = [ResidualMLPBlock(dim, expansion) for _ in range(depth)]
    return nn.Sequential(stem, *blocks, nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_classes)))


class ConvNeXtBlock(nn.Module):
    """ConvNeXt block: depthwise 7x7 conv, channel LayerNorm, inverted-bottleneck MLP (GELU), residual."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual update in channels-last for the norm and MLP."""
        h = self.norm(self.dwconv(x).permute(0, 2, 3, 1))
        return x + self.fc2(F.gelu(self.fc1(h))).permute(0, 3, 1, 2)


def convnext(
    num_classes: int, in_channels: int = 3, widths: tuple[int, ...] = (32, 64), depth: int = 2
) -> nn.Sequential:
    """A small ConvNeXt as an nn.Sequential: patchify stem, stages of blocks with 2x2 downsampling, pooled head."""
    parts: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 2, stride=2)]
    for i, width in enumerate(widths):
        if i:
            parts.append(nn.Conv2d(widths[i - 1], width, 2, stride=2))
        parts += [ConvNeXtBlock(width) for _ in range(depth)]
    head = nn.Sequential(
        nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.LayerNorm(widths[-1]), nn.Linear(widths[-1], num_classes)
    )
    return nn.Sequential(*parts, head)


@functools.lru_cache(maxsize=1)
def _synthetic() -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed synthetic classification problem (standardised features, int64 labels)."""
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=SYNTH_SAMPLES,
        n_features=SYNTH_FEATURES,
        n_informative=40,
        n_redundant=12,
        n_classes=SYNTH_CLASSES,
        n_clusters_per_class=3,
        class_sep=1.5,
        flip_y=0.0,
        random_state=SYNTH_SEED,
    )
    xt = torch.tensor(x, dtype=torch.float32)
    xt = (xt - xt.mean(0)) / xt.std(0)
    return xt, torch.tensor(y, dtype=torch.int64)


def load_synthetic(opts: DataOptions) -> TaskData:
    """scikit-learn make_classification: 12,000 samples, 64 features, 10 classes; a fixed 2/3 - 1/3 split."""
    x, y = _synthetic()
    train, val = fixed_split(len(y), 1 / 3)
    return make_task_data(x[train], y[train], x[val], y[val], SYNTH_CLASSES, opts)


def load_digits_images(opts: DataOptions) -> TaskData:
    """scikit-learn's 8x8 digits as 3x32x32 images (bilinear), normalised like grey ImageNet; fixed 80/20 split."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = torch.tensor(digits.images, dtype=torch.float32).div_(16.0).unsqueeze(1)
    x = F.interpolate(x, size=(DIGITS_SIZE, DIGITS_SIZE), mode="bilinear", align_corners=False)
    x = x.sub_(IMAGENET_GREY_MEAN).div_(IMAGENET_GREY_STD).expand(-1, 3, -1, -1).contiguous()
    y = torch.tensor(digits.target, dtype=torch.int64)
    train, val = fixed_split(len(y), 0.2)
    return make_task_data(x[train], y[train], x[val], y[val], 10, opts)


BENCH_TASKS = (
    Task(
        name="synth_resmlp",
        family="resmlp",
        scenario="scratch",
        dataset="sklearn_make_classification",
        build_model=functools.partial(residual_mlp, SYNTH_FEATURES),
        load_data=load_synthetic,
        epochs=8,
        batch_size=256,
        optimizer="adamw",
        lrs=(1e-3,),
        weight_decay=1e-2,
        smoke_max_train=1024,
        default_max_train=None,
    ),
    Task(
        name="digits_convnext",
        family="convnext",
        scenario="scratch",
        dataset="digits_32rgb",
        build_model=convnext,
        load_data=load_digits_images,
        epochs=12,
        batch_size=64,
        optimizer="adamw",
        lrs=(2e-3,),
        weight_decay=5e-2,
        smoke_max_train=256,
        default_max_train=None,
    ),
    Task(
        name="digits_mobilenetv2_ft",
        family="mobilenet",
        scenario="finetune",
        dataset="digits_32rgb",
        build_model=mobilenet_v2_imagenet,
        load_data=load_digits_images,
        epochs=4,
        batch_size=64,
        optimizer="sgd",
        lrs=(0.01,),
        weight_decay=4e-5,
        smoke_max_train=256,
        default_max_train=None,
    ),
)


def register_bench_tasks() -> None:
    """Register the benchmark-only tasks in the zoo (idempotent)."""
    known = set(list_tasks())
    for task in BENCH_TASKS:
        if task.name not in known:
            register_task(task)
        elif get_task(task.name) is not task:
            raise ValueError(f"another task named {task.name!r} is already registered")


def held_out(names: list[str], training_tasks: tuple[str, ...]) -> dict[str, list[str]]:
    """Families and datasets of the benchmark tasks ``names`` that no training task uses."""
    seen_families = {get_task(t).family for t in training_tasks}
    seen_datasets = {get_task(t).dataset for t in training_tasks}
    tasks = [get_task(n) for n in names]
    return {
        "families": sorted({t.family for t in tasks} - seen_families),
        "datasets": sorted({t.dataset for t in tasks} - seen_datasets),
    }
