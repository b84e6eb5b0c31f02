"""Offline image and tabular datasets (Fashion-MNIST IDX files, sklearn digits, mnist1d), held in memory as tensors.

Every item is deterministic per index (no random augmentation), so a frozen prefix's outputs can be cached.
The train/validation split and the validation subset are fixed; `DataOptions.seed` only picks which
training samples a `max_train` cap keeps.
"""

from __future__ import annotations

import functools
import gzip
import os
import random
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from smartfrz.zoo.registry import DataOptions, TaskData

FASHION_MNIST_ENV = "SMARTFRZ_FASHION_MNIST"
FASHION_MNIST_SYSTEM_ROOT = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist
# scripts/setup_env.sh (via scripts/fetch_data.sh) unpacks the same Debian package here in a source checkout.
FASHION_MNIST_PROJECT_ROOT = Path(__file__).resolve().parents[2] / "data" / "fashion-mnist"
FASHION_MNIST_FILES = ("train-images", "train-labels", "t10k-images", "t10k-labels")
FASHION_MNIST_MEAN, FASHION_MNIST_STD = 0.2860, 0.3530
# Grey images replicated to 3 channels for ImageNet models: the mean of ImageNet's per-channel statistics.
IMAGENET_GREY_MEAN, IMAGENET_GREY_STD = 0.449, 0.226
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_SPLIT_SEED = 0  # fixed: the train/validation split and validation subset never depend on DataOptions.seed


def read_idx(path: str | Path) -> torch.Tensor:
    """Read one IDX file (gzip-compressed or not) into a tensor, checking its header against its size."""
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[:2] != b"\x00\x00" or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(f"{path}: IDX header says shape {shape} ({expected} bytes) but the file has {len(raw)} bytes")
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return torch.from_numpy(array.astype(dtype.newbyteorder("="), copy=True))


def fashion_mnist_root(root: str | None) -> Path:
    """The Fashion-MNIST folder: `root`, else $SMARTFRZ_FASHION_MNIST, else the system or the project copy.

    The system folder (Debian's package) wins when it exists, then the checkout's `data/fashion-mnist`;
    when neither exists the system path is returned and reading it raises a message saying what to do.
    """
    explicit = root or os.environ.get(FASHION_MNIST_ENV)
    if explicit:
        return Path(explicit)
    for candidate in (FASHION_MNIST_SYSTEM_ROOT, FASHION_MNIST_PROJECT_ROOT):
        if candidate.is_dir():
            return candidate
    return FASHION_MNIST_SYSTEM_ROOT


def _find_idx(folder: Path, prefix: str) -> Path:
    """The one IDX file in `folder` whose name starts with `prefix` (e.g. `train-images`), gz or not."""
    matches = sorted(p for p in folder.glob(f"{prefix}*") if p.is_file())
    if len(matches) != 1:
        found = "none" if not matches else ", ".join(p.name for p in matches)
        raise FileNotFoundError(
            f"Fashion-MNIST: expected one '{prefix}*' IDX file in {folder}, found {found}. Run "
            f"scripts/fetch_data.sh (part of scripts/setup_env.sh; it unpacks the Debian package into "
            f"{FASHION_MNIST_PROJECT_ROOT}), or `apt-get install dataset-fashion-mnist` (files under "
            f"{FASHION_MNIST_SYSTEM_ROOT}), or point ${FASHION_MNIST_ENV} (or DataOptions.root) at a folder holding "
            "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte "
            "(optionally .gz; https://github.com/zalandoresearch/fashion-mnist)."
        )
    return matches[0]


@functools.lru_cache(maxsize=4)
def read_fashion_mnist(folder: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Raw uint8 images [N, 28, 28] and int64 labels for the train and test files of a folder (cached)."""
    parts = [read_idx(_find_idx(folder, prefix)) for prefix in FASHION_MNIST_FILES]
    x_train, y_train, x_test, y_test = parts
    for x, y, split in ((x_train, y_train, "train"), (x_test, y_test, "t10k")):
        if x.dim() != 3 or y.dim() != 1 or x.shape[0] != y.shape[0]:
            raise ValueError(f"{folder}: {split} images {tuple(x.shape)} do not match labels {tuple(y.shape)}")
    return x_train, y_train.long(), x_test, y_test.long()


def subset_indices(n: int, limit: int | None, seed: int) -> torch.Tensor:
    """Sorted indices of a seeded random subset of `limit` out of `n` items (all of them when uncapped)."""
    if limit is None or limit >= n:
        return torch.arange(n)
    if limit < 1:
        raise ValueError(f"a sample cap must be positive, got {limit}")
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=generator)[:limit].sort().values


def fixed_split(n: int, val_fraction: float) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed seeded train/validation split of n items."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(_SPLIT_SEED))
    n_val = round(n * val_fraction)
    return order[n_val:].sort().values, order[:n_val].sort().values


def make_task_data(x_train, y_train, x_val, y_val, num_classes: int, opts: DataOptions) -> TaskData:
    """Cap both splits as the options say and wrap them as in-memory datasets."""
    train = subset_indices(len(y_train), opts.max_train, opts.seed)
    val = subset_indices(len(y_val), opts.max_val, _SPLIT_SEED)
    return TaskData(TensorDataset(x_train[train], y_train[train]), TensorDataset(x_val[val], y_val[val]), num_classes)


def _images(raw: torch.Tensor, size: int, channels: int, mean: float, std: float) -> torch.Tensor:
    """uint8 [N, H, W] -> normalised float [N, channels, size, size] (bilinear resize; channels share storage)."""
    x = raw.float().div_(255.0).unsqueeze(1)
    if size != x.shape[-1]:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return x.sub_(mean).div_(std).expand(-1, channels, -1, -1)


def load_fashion_mnist(opts: DataOptions, size: int = 28, channels: int = 1) -> TaskData:
    """Fashion-MNIST (train 60k; validation: the 10k test set) as [C, size, size] images, normalised."""
    x_train, y_train, x_test, y_test = read_fashion_mnist(fashion_mnist_root(opts.root))
    mean, std = (FASHION_MNIST_MEAN, FASHION_MNIST_STD) if channels == 1 else (IMAGENET_GREY_MEAN, IMAGENET_GREY_STD)
    train = subset_indices(len(y_train), opts.max_train, opts.seed)
    val = subset_indices(len(y_test), opts.max_val, _SPLIT_SEED)
    return TaskData(
        TensorDataset(_images(x_train[train], size, channels, mean, std), y_train[train]),
        TensorDataset(_images(x_test[val], size, channels, mean, std), y_test[val]),
        num_classes=10,
    )


def load_digits(opts: DataOptions, image: bool = False, size: int = 8) -> TaskData:
    """scikit-learn's 8x8 digits (1,797 samples) as 64 features in [0, 1] (or 1x8x8 images); a fixed 80/20 split.

    With ``image`` and ``size`` != 8 the images are resized (bilinear) and normalised like Fashion-MNIST,
    the input a model pretrained on Fashion-MNIST expects.
    """
    from sklearn.datasets import load_digits as sk_load_digits

    digits = sk_load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32) / 16.0
    if image:
        x = x.view(-1, 1, 8, 8)
        if size != 8:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
            x = x.sub_(FASHION_MNIST_MEAN).div_(FASHION_MNIST_STD)
    y = torch.tensor(digits.target, dtype=torch.int64)
    train, val = fixed_split(len(y), 0.2)
    return make_task_data(x[train], y[train], x[val], y[val], 10, opts)


@functools.lru_cache(maxsize=1)
def read_mnist1d() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """mnist1d's standard dataset (4,000 train / 1,000 test, 40 features), leaving global RNG state untouched."""
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        raise ImportError("the mnist1d task needs the mnist1d package: `pip install mnist1d`") from None
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        data = make_dataset(get_dataset_args())
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    return (
        torch.tensor(data["x"], dtype=torch.float32),
        torch.tensor(data["y"], dtype=torch.int64),
        torch.tensor(data["x_test"], dtype=torch.float32),
        torch.tensor(data["y_test"], dtype=torch.int64),
    )


def load_mnist1d(opts: DataOptions) -> TaskData:
    """mnist1d (PyPI `mnist1d`): 1-D digit signals of length 40, its own train/test split."""
    x_train, y_train, x_test, y_test = read_mnist1d()
    return make_task_data(x_train, y_train, x_test, y_test, 10, opts)
