"""How the fold-batched trainer (:mod:`merkit.training.batched.stack`) reads its clips: the group's dataset cached once
as tensors (:func:`cache_items`), items that carry their item number (:class:`IndexedItems`), and epochs of
shuffled item numbers drawn exactly as a ``DataLoader`` would (:func:`shuffled_batches`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

__all__ = ["CACHE_LIMIT_BYTES", "IndexedItems", "TensorItems", "cache_items", "shuffled_batches"]


class IndexedItems(Dataset):
    """``(x, label, item)``: the item number tells the trainer which folds a row belongs to."""

    def __init__(self, ds: Dataset) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)  # type: ignore[arg-type]

    def __getitem__(self, item: int) -> tuple[Any, Any, int]:
        x, y = self.ds[item]
        return x, y, item

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.ds, "set_epoch"):
            self.ds.set_epoch(epoch)


CACHE_LIMIT_BYTES = 256 * 1024 * 1024


def cache_items(ds: Dataset) -> Dataset:
    """An unaugmented dataset materialised once as tensors (each item is then read once per group, not once
    per epoch); augmented ones, or ones over ``CACHE_LIMIT_BYTES``, are left as they are."""
    known = hasattr(ds, "augment") or hasattr(ds, "augmentation")  # the kit's Flow/ClipDataset say it
    augmented = bool(getattr(ds, "augment", False)) or getattr(ds, "augmentation", None) is not None
    if not known or augmented or len(ds) == 0:  # type: ignore[arg-type]
        return ds
    x0, _ = ds[0]
    if torch.as_tensor(x0).numel() * 4 * len(ds) > CACHE_LIMIT_BYTES:  # type: ignore[arg-type]
        return ds
    xs, ys = zip(*(ds[i] for i in range(len(ds))))  # type: ignore[arg-type]
    return TensorItems(torch.stack([torch.as_tensor(x) for x in xs]), np.asarray(ys, dtype=np.int64))


class TensorItems(Dataset):
    """A dataset held as tensors: ``x`` (n, ...) and its labels (n,), as :func:`cache_items` builds it."""

    def __init__(self, x: torch.Tensor, labels: np.ndarray) -> None:
        self.x, self.labels = x, labels
        self.y = torch.as_tensor(labels, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, int]:
        return self.x[item], int(self.labels[item])


def shuffled_batches(loader: DataLoader) -> list[torch.Tensor]:
    """The item numbers of one epoch of ``loader`` (shuffle=True, a generator, no workers), drawn from its
    generator exactly as iterating it would (one seed draw, two ``randperm``), without building any item:
    indexing the cached tensors with them replaces ~n Python ``__getitem__`` calls per epoch."""
    generator = loader.generator
    torch.empty((), dtype=torch.int64).random_(generator=generator)  # the DataLoader iterator's base seed
    n = len(loader.dataset)  # type: ignore[arg-type]
    order = torch.randperm(n, generator=generator)
    torch.randperm(n, generator=generator)  # RandomSampler's trailing `[: num_samples % n]` permutation
    return list(order.split(int(loader.batch_size or 1)))
