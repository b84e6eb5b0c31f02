"""A dataset wrapper that adds each sample's index to its item, so the activation cache can key on it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch.utils.data import Dataset


class IndexedDataset(Dataset):
    """``dataset[i]`` with ``i`` appended: tuples get one more item, dicts a ``key`` entry, others ``(item, i)``.

    The default collate turns the indices into an int64 tensor, ready for ``freezer(x, idx)``.
    """

    def __init__(self, dataset: Any, key: str = "idx") -> None:
        self.dataset = dataset
        self.key = key

    def __len__(self) -> int:
        """The wrapped dataset's length."""
        return len(self.dataset)

    def __getitem__(self, i: int) -> Any:
        """The wrapped item with its index."""
        item = self.dataset[i]
        if isinstance(item, Mapping):
            if self.key in item:
                raise KeyError(f"the dataset's items already have a {self.key!r} entry; pass another key")
            return {**item, self.key: i}
        if isinstance(item, tuple | list):
            return (*item, i)
        return item, i


def with_index(dataset: Any, key: str = "idx") -> IndexedDataset:
    """``dataset`` whose items also carry their index (see :class:`IndexedDataset`)."""
    return IndexedDataset(dataset, key)
