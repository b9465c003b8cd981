"""How the fold-batched trainer (:mod:`merkit.training.batched.stack`) reads its clips: the group's dataset cached once
as tensors, epochs of shuffled item numbers drawn exactly as a ``DataLoader`` would, and per-fold batches
zipped into one (k, b, ...) batch for ``sampling="per_fold"``.

Axis letters: k folds, b batch.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset


class _Indexed(Dataset):
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


def _cached(ds: Dataset) -> Dataset:
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
    return _TensorItems(torch.stack([torch.as_tensor(x) for x in xs]), np.asarray(ys, dtype=np.int64))


class _TensorItems(Dataset):
    def __init__(self, x: torch.Tensor, labels: np.ndarray) -> None:
        self.x, self.labels = x, labels
        self.y = torch.as_tensor(labels, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, int]:
        return self.x[item], int(self.labels[item])


def _shuffled_batches(loader: DataLoader) -> list[torch.Tensor]:
    """The item numbers of one epoch of ``loader`` (shuffle=True, a generator, no workers), drawn from its
    generator exactly as iterating it would (one seed draw, two ``randperm``), without building any item:
    indexing the cached tensors with them replaces ~n Python ``__getitem__`` calls per epoch."""
    generator = loader.generator
    torch.empty((), dtype=torch.int64).random_(generator=generator)  # the DataLoader iterator's base seed
    n = len(loader.dataset)  # type: ignore[arg-type]
    order = torch.randperm(n, generator=generator)
    torch.randperm(n, generator=generator)  # RandomSampler's trailing `[: num_samples % n]` permutation
    return list(order.split(int(loader.batch_size or 1)))


def _zip_fold_batches(loaders: Sequence[DataLoader], batch_size: int):
    """Per-fold batches as one (k, b, ...) batch; folds that ran out (or have a short last batch) are padded
    with masked rows, so every fold steps exactly as its own DataLoader says."""
    iters = [iter(dl) for dl in loaders]
    while True:
        got = [next(it, None) for it in iters]
        if all(g is None for g in got):
            return
        ref = next(g for g in got if g is not None)
        xs, ys, masks = [], [], []
        for g in got:
            x = torch.zeros((batch_size, *ref[0].shape[1:])) if g is None else g[0].float()
            y = torch.zeros(batch_size, dtype=torch.long) if g is None else torch.as_tensor(g[1], dtype=torch.long)
            n = 0 if g is None else x.shape[0]
            pad = batch_size - x.shape[0]
            if pad > 0:
                x = torch.cat([x, torch.zeros((pad, *x.shape[1:]))])
                y = torch.cat([y, torch.zeros(pad, dtype=torch.long)])
            xs.append(x)
            ys.append(y)
            masks.append(torch.arange(batch_size) < n)
        yield torch.stack(xs), torch.stack(ys), torch.stack(masks)  # (k, b, ...), (k, b), (k, b)
