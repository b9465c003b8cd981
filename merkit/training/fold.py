"""Train one fold and predict: a plain PyTorch loop with no hidden model selection.

Public API
----------
- ``resolve_device(device)``: ``"auto"`` → cuda, then mps, then cpu; anything else is passed to ``torch.device``.
- ``seed_everything(seed, deterministic=False)``: python, numpy and torch seeds; deterministic algorithms on request.
- ``inner_validation_split(train_rows, fraction, seed)``: split the TRAINING rows by subject into
  (inner-train, inner-validation) positions.
- ``train_fold(model, train_ds, cfg, *, val_ds=None, progress=True) -> (model, history)``.
- ``predict(model, ds, ...) -> (probs (N, K) float32, preds (N,) int64)``.

Model selection never sees the held-out subject
-----------------------------------------------
Several published MER codebases train each LOSO fold, evaluate on the held-out subject after every epoch and
report the best epoch. That is selection on the test set: with folds of one to a dozen clips, picking the
luckiest of 50–100 epochs per fold inflates pooled UF1/UAR by many points and makes numbers incomparable.
Here the API makes that impossible by construction:

- ``train_fold`` receives only training data. By default it trains for a fixed number of epochs
  (``cfg.epochs``) and returns the final weights.
- Optional early selection uses ``val_ds``, which the protocol builds with ``inner_validation_split`` from the
  *training subjects only* (whole subjects are held out, so the inner split mimics the outer one). The protocol
  checks that no validation subject is the held-out subject.
- The held-out rows are given only to ``predict``, after training has finished; ``predict`` returns scores and
  never changes the model.

Precision
---------
``cfg.precision``: ``"fp32"``, ``"bf16"`` (autocast to bfloat16) or ``"auto"``, resolved for the model and device by
:func:`merkit.training.precision.choose_precision` (the rules and the evidence behind ``"auto"`` are there). With
bf16 on CPU, 5-D inputs and a clip model use ``torch.channels_last_3d``.

Axis letters: b batch, c channels, t time, h height, w width, k classes.
"""

from __future__ import annotations

import copy
import math
import os
import random
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from merkit.config import RunConfig, TrainConfig
from merkit.data.inputs import input_adapter
from merkit.errors import MerkitValueError
from merkit.evaluation.metrics import pooled_scores
from merkit.training.precision import resolve_precision

__all__ = [
    "as_train_config",
    "resolve_device",
    "seed_everything",
    "dataset_labels",
    "class_weights",
    "FocalLoss",
    "make_loss",
    "make_optimizer",
    "make_scheduler",
    "inner_validation_split",
    "train_fold",
    "predict",
    "autocast_for",
    "available_devices",
    "DeviceError",
]


# --------------------------------------------------------------------------------------------- devices


class DeviceError(MerkitValueError):
    """The device a config names is not one this machine has; the message lists the ones it has."""


def available_devices() -> list[str]:
    """The devices torch can use here: ``cpu``, then ``cuda:0`` … and ``mps`` when present."""
    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return found


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Return the torch device for ``device``; ``"auto"`` picks cuda, then mps, then cpu.

    A device this machine does not have (``cuda`` without a CUDA device, ``cuda:3`` with two) raises
    :class:`DeviceError` naming the devices it has; so does a name torch does not know.
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise DeviceError(f"unknown device {device!r}: use 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'") from exc
    have = available_devices()
    wanted = f"{resolved.type}:{resolved.index or 0}" if resolved.type == "cuda" else resolved.type
    if resolved.type in ("cuda", "mps") and wanted not in have:
        raise DeviceError(
            f"device {device!r} is not available on this machine (available: {', '.join(have)}); "
            "set device to 'auto' or one of those"
        )
    return resolved


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed python, numpy and torch; with ``deterministic`` also force deterministic torch kernels.

    On CUDA, deterministic cuBLAS needs ``CUBLAS_WORKSPACE_CONFIG`` set before the first call, so it is set here.
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


# ------------------------------------------------------------------------------------------------ config


def as_train_config(cfg: TrainConfig | Mapping[str, Any] | None) -> TrainConfig:
    """``cfg`` as a :class:`~merkit.config.TrainConfig`: one as is, a mapping of its fields (the others take
    TrainConfig's defaults, the only place they are stated), ``None`` the defaults. Unknown keys and bad values
    are a ``ConfigError`` naming them."""
    if isinstance(cfg, TrainConfig):
        return cfg
    if cfg is None:
        return TrainConfig()
    if isinstance(cfg, Mapping):
        return RunConfig.from_dict({"train": dict(cfg)}).train  # unknown keys: a ConfigError with the closest name
    raise TypeError(f"a training config must be a TrainConfig or a mapping of its fields, got {type(cfg).__name__}")


# ------------------------------------------------------------------------------------------------ loss


def dataset_labels(ds: Dataset) -> np.ndarray:
    """Integer labels of every item of ``ds``: its ``labels`` attribute when it has one, else by iterating."""
    labels = getattr(ds, "labels", None)
    if labels is not None:
        return np.asarray(labels, dtype=np.int64)
    return np.asarray([int(ds[i][1]) for i in range(len(ds))], dtype=np.int64)


def class_weights(labels: Sequence[int] | np.ndarray, num_classes: int) -> torch.Tensor:
    """Inverse-frequency class weights ``n / (k_present · n_c)``; a class absent from ``labels`` gets 0.

    With balanced classes every weight is 1. An absent class has no samples, so its weight never multiplies
    anything; 0 keeps it from inflating the normaliser.
    """
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes).astype(np.float64)
    if counts.shape[0] > num_classes:
        raise ValueError(f"label {counts.shape[0] - 1} out of range for {num_classes} classes")
    present = counts > 0
    weights = np.zeros(num_classes, dtype=np.float64)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return torch.tensor(weights, dtype=torch.float32)


class FocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017): ``-w_y (1 - p_y)^gamma log p_y``, averaged like weighted cross-entropy.

    ``gamma=0`` equals ``nn.CrossEntropyLoss(weight=weight)``.
    """

    def __init__(self, gamma: float = 2.0, weight: torch.Tensor | None = None) -> None:
        super().__init__()
        self.gamma = gamma
        self.register_buffer("weight", weight if weight is not None else None)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p = torch.log_softmax(logits.float(), dim=1)  # (b, k)
        log_p_y = log_p.gather(1, target[:, None])[:, 0]  # (b, k) -> (b,)
        p_y = log_p_y.exp()
        loss = -((1.0 - p_y) ** self.gamma) * log_p_y
        if self.weight is None:
            return loss.mean()
        w = self.weight[target]
        return (w * loss).sum() / w.sum().clamp_min(1e-12)


def make_loss(cfg: TrainConfig | Mapping[str, Any], labels: np.ndarray, num_classes: int) -> nn.Module:
    """The training criterion from ``cfg.loss`` (``"ce"`` | ``"focal"``) and ``cfg.class_weighted``."""
    cfg = as_train_config(cfg)
    weight = class_weights(labels, num_classes) if cfg.class_weighted else None
    name = cfg.loss
    if name in ("ce", "cross_entropy"):
        return nn.CrossEntropyLoss(weight=weight, label_smoothing=float(cfg.label_smoothing))
    if name == "focal":
        return FocalLoss(gamma=float(cfg.focal_gamma), weight=weight)
    raise ValueError(f"unknown loss {name!r}: use 'ce' or 'focal'")


# ------------------------------------------------------------------------------------ optimiser, schedule


def make_optimizer(model: nn.Module, cfg: TrainConfig | Mapping[str, Any]) -> torch.optim.Optimizer:
    """AdamW or SGD (with momentum) from ``cfg.optimizer``, ``cfg.lr``, ``cfg.weight_decay``."""
    cfg = as_train_config(cfg)
    name = cfg.optimizer
    lr = float(cfg.lr)
    wd = float(cfg.weight_decay)
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd, momentum=float(cfg.momentum), nesterov=True)
    raise ValueError(f"unknown optimizer {name!r}: use 'adamw' or 'sgd'")


def make_scheduler(
    optimizer: torch.optim.Optimizer, cfg: TrainConfig | Mapping[str, Any], epochs: int
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Per-epoch schedule from ``cfg.schedule``: ``"cosine"`` (to 0 over ``epochs``), ``"step"`` or ``"none"``."""
    cfg = as_train_config(cfg)
    name = cfg.schedule
    if name in ("none", None):
        return None
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, epochs))
    if name == "step":
        step = int(cfg.step_size or max(1, epochs // 3))
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step, gamma=float(cfg.step_gamma))
    raise ValueError(f"unknown schedule {name!r}: use 'cosine', 'step' or 'none'")


# ------------------------------------------------------------------------------------ inner validation


def inner_validation_split(train_rows: pd.DataFrame, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split TRAINING rows into (inner-train, inner-validation) row positions, whole subjects at a time.

    ``train_rows`` is the slice of the manifest/store index used for training in one fold (never the held-out
    rows). Subjects are keyed by ``(dataset, subject)`` when a ``dataset`` column exists. About ``fraction`` of
    the subjects (at least one, and at least one left for training) go to validation, drawn with ``seed``.
    Positions are 0-based positions into ``train_rows`` (use them with ``.iloc`` / to index the fold's
    training positions).
    """
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"inner validation fraction must be in (0, 1), got {fraction}")
    if "subject" not in train_rows.columns:
        raise ValueError("inner_validation_split needs a 'subject' column in the training rows")
    keys = _subject_keys(train_rows)
    subjects = np.array(sorted(set(keys)))
    if len(subjects) < 2:
        raise ValueError(
            f"inner validation needs at least 2 training subjects, got {len(subjects)} ({', '.join(subjects)})"
        )
    n_val = min(len(subjects) - 1, max(1, int(round(fraction * len(subjects)))))
    rng = np.random.default_rng(seed)
    val_subjects = set(rng.choice(subjects, size=n_val, replace=False).tolist())
    is_val = np.array([k in val_subjects for k in keys])
    return np.flatnonzero(~is_val), np.flatnonzero(is_val)


def _subject_keys(rows: pd.DataFrame) -> list[str]:
    """``dataset/subject`` when rows carry a dataset column, else ``subject``: ids are only unique per dataset."""
    subjects = rows["subject"].astype(str)
    if "dataset" in rows.columns:
        return (rows["dataset"].astype(str) + "/" + subjects).tolist()
    return subjects.tolist()


# --------------------------------------------------------------------------------------------- training


def train_fold(
    model: nn.Module,
    train_ds: Dataset,
    cfg: TrainConfig | Mapping[str, Any],
    *,
    val_ds: Dataset | None = None,
    progress: bool = True,
    seed: int | None = None,
    num_classes: int | None = None,
    on_epoch_end: Callable[[int, nn.Module], None] | None = None,
) -> tuple[nn.Module, pd.DataFrame]:
    """Train ``model`` on ``train_ds`` for ``cfg.epochs`` epochs and return ``(model, history)``.

    There is deliberately no test-set argument: the held-out data go to ``predict`` after this returns.

    ``cfg`` (a ``TrainConfig``, or a mapping of its fields: :func:`as_train_config`) provides epochs, batch_size, lr,
    weight_decay, optimizer, schedule, grad_clip, loss, class_weighted, precision, device, seed, deterministic,
    num_workers and ``select_best`` (only with ``val_ds``). ``seed`` overrides ``cfg.seed`` (the protocol passes a
    per-fold seed). Items of the datasets are ``(x, label)``; if a dataset has ``set_epoch(epoch)`` it is called before
    each epoch so augmentation is a function of (seed, epoch, item).

    ``val_ds`` must come from the training subjects (``inner_validation_split``). Its loss, accuracy, UF1 and
    UAR are recorded per epoch; with ``cfg.select_best`` the weights of the epoch with the best validation
    UF1 (ties: the earlier epoch) are restored at the end, and ``history["selected"]`` marks that epoch.
    Otherwise the final epoch is selected.

    ``history`` has one row per epoch: epoch, loss, train_acc, lr, seconds (and val_loss, val_acc, val_uf1,
    val_uar with ``val_ds``), plus ``selected``.

    ``on_epoch_end(epoch, snapshot)``, when given, is called after every epoch (1-based) with a deep copy of
    the model in eval mode: an observer (logging, per-epoch figures, the leakage lab of
    ``notebooks/05_leakage``) can do anything with its copy without changing the training, whose weights,
    optimiser state and random streams stay exactly as without it. Its return value is ignored; nothing it
    computes can pick the weights this function returns.
    """
    cfg = as_train_config(cfg)
    epochs = int(cfg.epochs)
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if len(train_ds) == 0:
        raise ValueError("train_fold got an empty training set")
    seed = int(cfg.seed if seed is None else seed)
    seed_everything(seed, deterministic=bool(cfg.deterministic))
    device = resolve_device(cfg.device)
    autocast_dtype = resolve_precision(cfg.precision, device, model)
    memory_format = _memory_format(device, autocast_dtype, model)

    labels = dataset_labels(train_ds)
    if num_classes is None:
        num_classes = _num_classes(model, labels)
    criterion = make_loss(cfg, labels, num_classes).to(device)
    model = model.to(device)
    if memory_format is not None:
        model = model.to(memory_format=memory_format)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, epochs)
    grad_clip = float(cfg.grad_clip or 0.0)
    select_best = bool(cfg.select_best) and val_ds is not None

    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(
        train_ds,
        batch_size=int(cfg.batch_size),
        shuffle=True,
        generator=generator,
        num_workers=int(cfg.num_workers),
        drop_last=False,
    )

    rows: list[dict[str, float]] = []
    best_score, best_state, best_epoch = -math.inf, None, epochs
    bar = tqdm(range(1, epochs + 1), desc="train", unit="epoch", disable=not progress, leave=False)
    for epoch in bar:
        start = time.perf_counter()
        if hasattr(train_ds, "set_epoch"):
            train_ds.set_epoch(epoch)
        lr = optimizer.param_groups[0]["lr"]
        model.train()
        loss_sum, correct, seen = 0.0, 0, 0
        for x, y in loader:
            x = _to_device(x, device, memory_format)
            y = y.to(device=device, dtype=torch.long)
            optimizer.zero_grad(set_to_none=True)
            with autocast_for(device, autocast_dtype):
                logits = model(x)  # (b, k)
            loss = criterion(logits.float(), y)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss is {loss.item()} at epoch {epoch}; lower cfg.lr or use fp32")
            loss.backward()
            if grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            loss_sum += float(loss.detach()) * y.shape[0]
            correct += int((logits.detach().argmax(dim=1) == y).sum())
            seen += y.shape[0]
        if scheduler is not None:
            scheduler.step()
        row = {"epoch": epoch, "loss": loss_sum / seen, "train_acc": correct / seen, "lr": lr}
        if val_ds is not None:
            row.update(_validation_scores(model, val_ds, criterion, cfg, device, num_classes))
            if select_best and row["val_uf1"] > best_score:
                best_score, best_epoch = row["val_uf1"], epoch
                best_state = copy.deepcopy(model.state_dict())
        row["seconds"] = time.perf_counter() - start
        rows.append(row)
        if on_epoch_end is not None:
            on_epoch_end(epoch, copy.deepcopy(model).eval())
        bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row['train_acc']:.2f}")

    if best_state is not None:
        model.load_state_dict(best_state)
    history = pd.DataFrame(rows)
    history["selected"] = history["epoch"] == (best_epoch if select_best else epochs)
    return model, history


def _validation_scores(
    model: nn.Module, val_ds: Dataset, criterion: nn.Module, cfg: TrainConfig, device: torch.device, num_classes: int
) -> dict[str, float]:
    """Loss, accuracy, UF1 and UAR on the inner validation set (MEGC2019 pooled definition on one pool)."""
    probs, preds = predict(model, val_ds, batch_size=int(cfg.batch_size), precision=cfg.precision)
    labels = dataset_labels(val_ds)
    with torch.no_grad():
        logp = torch.log(torch.from_numpy(probs).clamp_min(1e-12))
        # CrossEntropyLoss on log-probabilities equals NLL on them (log_softmax is idempotent on log-probs).
        loss = float(criterion(logp.to(device), torch.from_numpy(labels).to(device)))
    scores = pooled_scores(labels, preds, num_classes, warn_absent=False)
    return {"val_loss": loss, "val_acc": scores["accuracy"], "val_uf1": scores["uf1"], "val_uar": scores["uar"]}


# -------------------------------------------------------------------------------------------- predicting


@torch.no_grad()
def predict(
    model: nn.Module,
    ds: Dataset,
    *,
    batch_size: int = 16,
    precision: str = "fp32",
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Class probabilities ``(N, K)`` float32 and predicted labels ``(N,)`` int64 for every item of ``ds``.

    Runs on the device of the model's parameters in eval mode; the model's weights are not changed (the
    training mode flag is restored afterwards). Items are ``(x, label)`` or ``x``; labels are ignored.
    """
    params = next(model.parameters(), None)
    device = params.device if params is not None else torch.device("cpu")
    autocast_dtype = resolve_precision(precision, device, model)
    memory_format = _memory_format(device, autocast_dtype, model)
    was_training = model.training
    model.eval()
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=0)
    chunks = []
    for batch in tqdm(loader, desc="predict", disable=not progress, leave=False):
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        x = _to_device(x, device, memory_format)
        with autocast_for(device, autocast_dtype):
            logits = model(x)  # (b, k)
        chunks.append(torch.softmax(logits.float(), dim=1).cpu())
    model.train(was_training)
    if not chunks:
        raise ValueError("predict got an empty dataset")
    probs = torch.cat(chunks).numpy().astype(np.float32)  # (n, k)
    return probs, probs.argmax(axis=1).astype(np.int64)


# ----------------------------------------------------------------------------------------------- helpers


def _num_classes(model: nn.Module, labels: np.ndarray) -> int:
    """Classes the model predicts: ``model.num_classes`` when set, else one more than the largest label."""
    n = getattr(model, "num_classes", None)
    if isinstance(n, int) and n > 0:
        if labels.size and labels.max() >= n:
            raise ValueError(f"label {int(labels.max())} out of range for a model with {n} classes")
        return n
    return int(labels.max()) + 1


def _memory_format(
    device: torch.device, autocast_dtype: torch.dtype | None, model: nn.Module
) -> torch.memory_format | None:
    """The memory format of the model's input kind (``merkit.data.inputs``): ``channels_last_3d`` for a clip
    model in bf16 on CPU (measured 2.2× with autocast), else None. Flow models never take it:
    ``model.to(memory_format=channels_last_3d)`` raises on the 4-D weights of STSTNet and Off-ApexNet.
    """
    return input_adapter(model).memory_format(device, autocast_dtype)


def _to_device(x: torch.Tensor, device: torch.device, memory_format: torch.memory_format | None) -> torch.Tensor:
    x = x.to(device=device, dtype=torch.float32, non_blocking=True)
    if memory_format is not None and x.dim() == 5:
        x = x.contiguous(memory_format=memory_format)
    return x


def autocast_for(device: torch.device, dtype: torch.dtype | None) -> Any:
    """Autocast context for ``dtype`` on ``device``; a disabled one for fp32."""
    return torch.autocast(device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None)
