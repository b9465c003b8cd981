"""Train several folds at once as one stacked model (``torch.func``): the fold-batched trainer.

K copies of a model (one per fold, each built under its own fold seed) are stacked parameter by parameter
(``torch.func.stack_module_state``) and run with ``vmap(functional_call(...))``. One optimiser over the
stacked tensors is exactly K per-fold optimisers: Adam/AdamW/SGD updates are elementwise and all folds take
the same number of steps under the same schedule, so each fold keeps its own moments and learning rate.

How the stack is fed: one shuffled batch of the group's clips goes to every fold, and each fold only counts
the clips of its own training set (a per-fold mask over the batch). The first layer then sees one input for
all folds (``vmap`` with ``in_dims=None``: one wide convolution instead of K small ones) and the clips are
loaded and augmented once per group, not once per fold. A fold still sees every training clip once per epoch,
in batches of at most ``batch_size`` of its own clips, but *which* clips share a batch differs from the
sequential trainer: the results are statistically equivalent, not bit-equal (tests check the same pooled
predictions on a separable toy set, and, where every fold trains on the whole batch, the sequential trainer's
weights within float tolerance).

What never leaks: a held-out clip of fold k (mask 0 for k) contributes exactly zero
to fold k's loss and so to its gradients; ``BatchNorm`` layers are replaced by :class:`MaskedBatchNorm`,
whose batch statistics and running-statistics updates use only the fold's own clips (``torch.where``, so even
a non-finite held-out pixel cannot reach them). Dropout draws different masks per fold
(``vmap(randomness="different")``).

How the stacked step is computed (``mechanism``): ``"vmap"`` runs any model through
``vmap(functional_call(...))``; ``"wide"`` (:mod:`merkit.training.batched.wide`, STSTNet only)
writes the K models as one plain network (one convolution with K·16 output channels, masked per-fold
BatchNorm, one einsum for the K heads) over the same stacked parameters; ``"fused"``
(:mod:`merkit.training.batched.fused`, an STSTNet on CPU in fp32 or bf16) computes that network's conv
→ ReLU → BN → max-pool stage as cache-sized patch GEMMs without any full-resolution activation of the batch (the
fastest form measured, ``docs/performance.md``); ``"auto"`` takes ``"fused"``, then ``"wide"``, where the
model has that form, else ``"vmap"``. All compute the same per-fold function (tested to 1e-4).

``check_stackable(model, example)`` says why a model cannot be stacked (None when it can): a trial vmapped
step is run, so anything ``vmap`` does not support is found before a run starts, and the executor falls back to
the sequential trainer with that reason.

Axis letters: k folds, b batch, c classes.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from torch.utils.data import DataLoader, Dataset

from merkit.errors import MerkitValueError
from merkit.training.batched.data import IndexedItems, TensorItems, cache_items, shuffled_batches
from merkit.training.batched.fused import fused_fold_bytes, fused_step_for, fused_trainable
from merkit.training.batched.wide import wide_step_for
from merkit.training.fold import (
    as_train_config,
    autocast_for,
    class_weights,
    dataset_labels,
    make_optimizer,
    make_scheduler,
    resolve_device,
    seed_everything,
)
from merkit.training.precision import resolve_precision

__all__ = [
    "MaskedBatchNorm",
    "StackError",
    "check_stackable",
    "fold_memory_bytes",
    "fused_trainable",
    "plan_fold_batch",
    "train_folds",
    "MECHANISMS",
]

MECHANISMS = ("auto", "vmap", "wide", "fused")
# fold-steps (group steps × folds) from which the fused step compiles its epilogues: compiling costs a one-off
# wait per process that only a long run earns back (docs/performance.md)
COMPILE_MIN_FOLD_STEPS = 1000


class StackError(MerkitValueError):
    """The models (or the training config) cannot be trained as one stack; the message says why."""


# ------------------------------------------------------------------------------------------ masked BN


class MaskedBatchNorm(nn.Module):
    """BatchNorm whose batch statistics use only the rows where ``self.mask`` is True.

    Same parameter and buffer names as ``nn.BatchNorm{1,2,3}d`` (state dicts load both ways). In training the
    batch mean and (biased) variance over the masked rows normalise the batch; the running statistics are not
    written in place (that cannot work under ``vmap``) but left in ``self.updates`` for the trainer to copy,
    with PyTorch's rule: ``(1 - momentum) · running + momentum · stat``, variance unbiased by ``n / (n - 1)``.
    A batch with no masked row leaves the running statistics unchanged.
    """

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm) -> None:
        super().__init__()
        if bn.momentum is None or not bn.track_running_stats or not bn.affine:
            raise StackError(
                f"{type(bn).__name__} with momentum=None, no running stats or affine=False is not "
                "supported by the fold-batched trainer"
            )
        self.eps, self.momentum = bn.eps, bn.momentum
        self.weight = nn.Parameter(bn.weight.detach().clone())
        self.bias = nn.Parameter(bn.bias.detach().clone())
        self.register_buffer("running_mean", bn.running_mean.detach().clone())
        self.register_buffer("running_var", bn.running_var.detach().clone())
        self.register_buffer("num_batches_tracked", bn.num_batches_tracked.detach().clone())
        self.mask: torch.Tensor | None = None  # (b,) bool, set by the trainer before each forward
        self.updates: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)  # per-channel values broadcast over (b, c, ...)
        if not self.training:
            mean, var = self.running_mean, self.running_var
        else:
            if self.mask is None:
                raise RuntimeError("MaskedBatchNorm in training needs .mask set by the fold-batched trainer")
            keep = self.mask.view((-1,) + (1,) * (x.dim() - 1))  # (b,) -> (b, 1, ...)
            dims = [0] + list(range(2, x.dim()))
            per_row = math.prod(x.shape[2:])
            n = self.mask.sum() * per_row
            xs = x.float()
            mean = torch.where(keep, xs, 0.0).sum(dims) / n.clamp_min(1)
            var = torch.where(keep, (xs - mean.view(shape)) ** 2, 0.0).sum(dims) / n.clamp_min(1)
            unbiased = var * n / (n - 1).clamp_min(1)
            m = self.momentum
            new_mean = torch.where(n > 0, (1 - m) * self.running_mean + m * mean.detach(), self.running_mean)
            new_var = torch.where(n > 1, (1 - m) * self.running_var + m * unbiased.detach(), self.running_var)
            self.updates = (new_mean, new_var)
        y = (x - mean.view(shape).to(x.dtype)) * torch.rsqrt(var.view(shape).to(x.dtype) + self.eps)
        return y * self.weight.view(shape) + self.bias.view(shape)


def _mask_batchnorm(model: nn.Module) -> tuple[nn.Module, dict[str, MaskedBatchNorm]]:
    """A copy of ``model`` with every BatchNorm replaced by a MaskedBatchNorm; returns it and the BN layers."""
    model = copy.deepcopy(model)
    replaced: dict[str, MaskedBatchNorm] = {}
    for name, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                masked = MaskedBatchNorm(child)
                setattr(module, child_name, masked)
                replaced[f"{name}.{child_name}" if name else child_name] = masked
    return model, replaced


# -------------------------------------------------------------------------------------------- the stack


class _FoldStack:
    """K models as stacked tensors, one optimiser and schedule over them, and one vmapped training step."""

    def __init__(
        self,
        models: Sequence[nn.Module],
        cfg: Any,
        labels: Sequence[np.ndarray],
        num_classes: int,
        device: torch.device,
        mechanism: str = "auto",
        compiled: bool = False,
    ) -> None:
        self.k = len(models)
        cfg = as_train_config(cfg)
        self.cfg, self.device, self.num_classes = cfg, device, num_classes
        self.base, self.bns = _mask_batchnorm(models[0])
        self.base = self.base.to(device)
        params, buffers = stack_module_state([m.to(device) for m in models])
        self.holder = nn.Module()  # owns the stacked leaves so make_optimizer applies the kit's rules unchanged
        self.names = list(params)
        self.holder.stacked = nn.ParameterList([nn.Parameter(params[n].detach().clone()) for n in self.names])
        self.buffers = {n: b.detach().clone() for n, b in buffers.items()}
        self.optimizer = make_optimizer(self.holder, cfg)
        self.scheduler = make_scheduler(self.optimizer, cfg, int(cfg.epochs))
        self.grad_clip = float(cfg.grad_clip or 0.0)
        self.autocast_dtype = resolve_precision(cfg.precision, device, models[0])
        weighted = bool(cfg.class_weighted)
        self.weights = torch.stack(
            [class_weights(lab, num_classes) if weighted else torch.ones(num_classes) for lab in labels]
        ).to(device)  # (k, c)
        self.loss_name = cfg.loss
        self.smoothing = float(cfg.label_smoothing)
        self.gamma = float(cfg.focal_gamma)
        # one shared batch for every fold: x and y are not mapped over k (in_dims None)
        self._step = vmap(self._fold_loss, in_dims=(0, 0, None, None, 0, 0), randomness="different")
        self.mechanism = "vmap"
        cfg_loss = {
            "loss": self.loss_name,
            "label_smoothing": self.smoothing,
            "focal_gamma": self.gamma,
            "num_classes": num_classes,
            "autocast": lambda: autocast_for(device, self.autocast_dtype),
            "autocast_dtype": self.autocast_dtype,
        }
        if mechanism in ("auto", "fused") and device.type == "cpu":  # fp32 or bf16
            fused = fused_step_for(models[0], cfg_loss, compiled=compiled)
            if fused is not None:
                self._step, self.mechanism = fused, "fused"
            elif mechanism == "fused":
                raise StackError(
                    f"{type(models[0]).__name__} has no fused form (an STSTNet on CPU only); "
                    "use mechanism='wide' or 'vmap'"
                )
        if self.mechanism == "vmap" and mechanism in ("auto", "wide"):
            wide = wide_step_for(models[0], cfg_loss)
            if wide is not None:
                self._step, self.mechanism = wide, "wide"
            elif mechanism == "wide":
                raise StackError(f"{type(models[0]).__name__} has no wide (one-network) form; use mechanism='vmap'")

    # one fold's loss, written for a single fold and vmapped over k
    def _fold_loss(
        self, params: dict, buffers: dict, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict]:
        for bn in self.bns.values():
            bn.mask = mask
        with autocast_for(self.device, self.autocast_dtype):
            logits = functional_call(self.base, (params, buffers), (x,))  # (b, c)
        logp = torch.log_softmax(logits.float(), dim=1)  # (b, c)
        nll = -logp.gather(1, y[:, None])[:, 0]  # (b, c) -> (b,)
        w = torch.where(mask, weight[y], 0.0)  # (b,): class weight of each kept row, 0 for the others
        nll = torch.where(mask, nll, 0.0)
        if self.loss_name == "focal":
            nll = (1.0 - (-nll).exp()) ** self.gamma * nll
        loss = (w * nll).sum() / w.sum().clamp_min(1e-12)
        if self.smoothing > 0:  # torch's weighted label smoothing: mean of -w_c log p_c over classes
            smooth = torch.where(mask, -(logp * weight[None, :]).sum(1), 0.0).sum() / w.sum().clamp_min(1e-12)
            loss = (1 - self.smoothing) * loss + self.smoothing / self.num_classes * smooth
        updates = {}
        for name, bn in self.bns.items():
            if bn.updates is not None:
                updates[f"{name}.running_mean"], updates[f"{name}.running_var"] = bn.updates
                bn.updates = None
        return loss, logits.detach().float(), updates

    def params(self) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, self.holder.stacked))

    def train_step(self, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimiser step of every fold; returns per-fold losses (k,) and logits (k, b, c).

        ``mask`` (k, b) says which rows count for which fold. A fold with no row in this batch keeps its weights
        and per-element optimiser state (moments) as they were; the optimiser's scalar step counter is shared
        by the stack and still advances (so Adam's bias correction of that fold is one step ahead).
        """
        self.base.train()
        idle = ~mask.any(dim=1)  # (k,)
        saved = self._snapshot(idle) if bool(idle.any()) else None
        self.optimizer.zero_grad(set_to_none=True)
        weights = self.weights
        losses, logits, updates = self._step(self.params(), self.buffers, x, y, mask, weights)
        if not bool(torch.isfinite(losses).all()):
            raise FloatingPointError(f"training loss is {losses.tolist()} in a fold group; lower cfg.lr or use fp32")
        losses.sum().backward()  # fold k's parameters only get fold k's gradient
        if self.grad_clip > 0:
            self._clip_per_fold()
        self.optimizer.step()
        with torch.no_grad():
            for name, value in updates.items():
                self.buffers[name].copy_(value)
            for name in self.bns:
                self.buffers[f"{name}.num_batches_tracked"] += (~idle).to(torch.int64)
        if saved is not None:
            self._restore(idle, saved)
        return losses.detach(), logits

    def _clip_per_fold(self) -> None:
        grads = [p.grad for p in self.holder.stacked if p.grad is not None]
        norms = torch.sqrt(sum(g.detach().float().pow(2).flatten(1).sum(1) for g in grads))  # (k,)
        coef = (self.grad_clip / (norms + 1e-6)).clamp(max=1.0)  # as nn.utils.clip_grad_norm_, per fold
        for g in grads:
            g.mul_(coef.view((-1,) + (1,) * (g.dim() - 1)).to(g.dtype))

    def _snapshot(self, idle: torch.Tensor) -> dict:
        state = {}
        for p in self.holder.stacked:
            st = self.optimizer.state.get(p, {})
            state[p] = (
                p.detach()[idle].clone(),
                {
                    k: v[idle].clone()
                    for k, v in st.items()
                    if torch.is_tensor(v) and v.dim() > 0 and v.shape[0] == self.k
                },
            )
        return state

    def _restore(self, idle: torch.Tensor, saved: dict) -> None:
        with torch.no_grad():
            for p, (value, st) in saved.items():
                p[idle] = value
                for k, v in st.items():
                    self.optimizer.state[p][k][idle] = v

    def state_dicts(self) -> list[dict[str, torch.Tensor]]:
        """Per-fold state dicts (CPU), keys as the original model's."""
        out = []
        for i in range(self.k):
            sd = {n: p.detach()[i].cpu().clone() for n, p in self.params().items()}
            sd.update({n: b[i].cpu().clone() for n, b in self.buffers.items()})
            out.append(sd)
        return out


# ------------------------------------------------------------------------------------------ planning


def check_stackable(model: nn.Module, example: torch.Tensor, cfg: Any = None) -> str | None:
    """Why ``model`` cannot be trained by the fold-batched trainer, or None when it can.

    ``example`` is one input batch of the model (b >= 2). Refused: a training config with an inner
    validation split (the batched trainer trains fixed epochs only), BatchNorm without running statistics or
    with cumulative momentum, and anything a trial vmapped step over two copies fails on (in-place writes
    into inputs, unsupported ops).
    """
    if cfg is not None and float(as_train_config(cfg).val_fraction) > 0:
        return "an inner validation split (val_fraction > 0) is trained by the sequential trainer only"
    try:
        models = [copy.deepcopy(model), copy.deepcopy(model)]
        stack = _FoldStack(
            models,
            as_train_config(cfg),
            [np.array([0, 1])] * 2,
            _num_outputs(model, example),
            torch.device("cpu"),
        )
        y = torch.zeros(example.shape[0], dtype=torch.long)
        stack.train_step(example.float(), y, torch.ones(2, example.shape[0], dtype=torch.bool))
    except Exception as err:  # noqa: BLE001 - any failure of the trial step is the reason to fall back
        return f"{type(model).__name__} cannot be stacked with torch.func ({type(err).__name__}: {err})"
    return None


def _num_outputs(model: nn.Module, example: torch.Tensor) -> int:
    n = getattr(model, "num_classes", None)
    if isinstance(n, int) and n > 0:
        return n
    with torch.no_grad():
        return int(copy.deepcopy(model).eval()(example[:1].float()).shape[1])


def fold_memory_bytes(model: nn.Module, example: torch.Tensor, batch_size: int, fused: bool = False) -> int:
    """Estimated training memory of one fold: activations (outputs of every leaf module, twice: kept for
    backward and their gradients) at ``batch_size``, plus weights, gradients and two Adam moments.

    ``fused``: the fold will be trained by the fused step (:func:`fused_trainable`).
    An estimate (allocator slack and temporaries are not counted): the budget it is compared with should
    leave room. ``example`` is one input (b = 1 or more; scaled to ``batch_size``). A model the fused step
    trains (an STSTNet on CPU) holds no full-resolution activation: its estimate is the fused one.
    """
    if fused:
        return int(fused_fold_bytes(model, batch_size) or 0)
    total = 0

    def count(_module: nn.Module, _inputs: Any, output: Any) -> None:
        nonlocal total
        if torch.is_tensor(output):
            total += output.numel() * 4

    probe = copy.deepcopy(model).train()  # a copy: the probe's BatchNorm updates must not touch the caller's
    for m in probe.modules():
        if not list(m.children()):
            m.register_forward_hook(count)
    with torch.no_grad():
        probe(example.float())
    per_sample = total / max(1, example.shape[0])
    weights = sum(p.numel() for p in model.parameters()) * 4 * 4
    return int(2 * per_sample * batch_size + weights)


def plan_fold_batch(n_folds: int, fold_batch: int, per_fold_bytes: int, budget_bytes: int) -> tuple[int, str]:
    """Folds per group and a sentence saying why.

    ``fold_batch`` > 0 is taken as asked (clamped to ``n_folds``, said so); 0 takes as few groups as the budget
    allows and spreads the folds evenly over them (68 folds with room for 36: two groups of 34, not 36 and 32), so
    no group is a small remainder and every full group has one shape (the fused step compiles once per shape). A
    budget too small for one fold raises :class:`StackError` with both figures.
    """
    mb = 1024 * 1024
    if per_fold_bytes > budget_bytes:
        raise StackError(
            f"a memory budget of {budget_bytes / mb:.0f} MB is too small for one fold "
            f"({per_fold_bytes / mb:.0f} MB estimated); raise protocol.memory_budget_mb or lower "
            "train.batch_size"
        )
    if fold_batch > 0:
        if fold_batch > n_folds:
            return n_folds, f"fold_batch={fold_batch} is more than the {n_folds} folds to run: clamped to {n_folds}"
        return fold_batch, f"fold_batch={fold_batch} as configured"
    fit = max(1, min(n_folds, budget_bytes // max(1, per_fold_bytes)))
    groups = math.ceil(n_folds / fit)
    k = math.ceil(n_folds / groups)
    return k, (
        f"fold_batch=0: {fit} folds fit the memory budget of {budget_bytes / mb:.0f} MB "
        f"({per_fold_bytes / mb:.1f} MB per fold estimated): {groups} group{'s' if groups > 1 else ''} of "
        f"{'at most ' if k * groups > n_folds else ''}{k}"
    )


# -------------------------------------------------------------------------------------------- training


def train_folds(
    models: Sequence[nn.Module],
    cfg: Any,
    *,
    seeds: Sequence[int],
    num_classes: int,
    shared: Dataset,
    members: np.ndarray,
    group_seed: int = 0,
    mechanism: str = "auto",
    compile_step: bool | None = None,
    progress: bool = False,
    on_epoch: Callable[[int], None] | None = None,
) -> list[tuple[nn.Module, pd.DataFrame]]:
    """Train ``models`` (one per fold, already initialised under their fold seeds) together; returns
    ``[(model, history), ...]`` in the same order, each model holding its fold's final weights.

    ``shared`` is one dataset over the group's clips and ``members`` (k, n) bool says which of its items are in
    fold k's training set (False for the fold's held-out clips); batches are drawn from ``shared`` with
    ``group_seed``. ``seeds`` are the folds' own seeds (one per model; their models were built under them).
    ``mechanism``: ``"auto"`` | ``"vmap"`` | ``"wide"`` | ``"fused"`` (module docstring); ``"wide"`` or
    ``"fused"`` for a model without that form raises :class:`StackError`. ``compile_step``: compile the
    fused step's chunk epilogues (``torch.compile``, once per process and shape); None = when the run has at
    least ``COMPILE_MIN_FOLD_STEPS`` group steps × folds, where the saving exceeds the compile time.
    ``on_epoch(epoch)`` is told after each epoch (1-based) that it is done (a progress report; it sees nothing
    of the training). History columns as ``train_fold``'s (epoch, loss, train_acc, lr, seconds, selected);
    ``seconds`` is the group's epoch time divided by k. Fixed epochs only, the final epoch selected.
    """
    k = len(models)
    if k == 0 or len(seeds) != k:
        raise ValueError(f"train_folds needs one seed per model, got {len(seeds)} seeds for {k} models")
    if mechanism not in MECHANISMS:
        raise ValueError(f"mechanism={mechanism!r}; use one of {MECHANISMS}")
    cfg = as_train_config(cfg)
    epochs = int(cfg.epochs)
    batch_size = int(cfg.batch_size)
    device = resolve_device(cfg.device)
    seed_everything(int(group_seed), deterministic=bool(cfg.deterministic))

    members_t = torch.as_tensor(np.asarray(members, dtype=bool))
    if members_t.shape != (k, len(shared)):  # type: ignore[arg-type]
        raise ValueError(f"members must be (k, n) = ({k}, {len(shared)}), got {tuple(members_t.shape)}")
    for i in range(k):
        if not members_t[i].any():
            raise ValueError(f"fold {i} of the group has no training clip")
    shared = cache_items(shared)
    all_labels = dataset_labels(shared)
    labels = [all_labels[members_t[i].numpy()] for i in range(k)]
    loader = DataLoader(
        IndexedItems(shared),
        batch_size=batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(int(group_seed)),
        num_workers=int(cfg.num_workers),
    )

    steps = epochs * math.ceil(len(shared) / batch_size)  # type: ignore[arg-type]
    stack = _FoldStack(
        models,
        cfg,
        labels,
        num_classes,
        device,
        mechanism=mechanism,
        compiled=steps * k >= COMPILE_MIN_FOLD_STEPS if compile_step is None else bool(compile_step),
    )
    bank = None
    if stack.mechanism == "fused" and isinstance(shared, TensorItems):
        bank = stack._step.patch_bank(shared.x.float())  # (n, r, q): every clip's patch rows, once per group
        # (None when too large: then each batch's rows are computed from its images)
    rows: list[list[dict]] = [[] for _ in range(k)]
    from tqdm.auto import tqdm

    for epoch in tqdm(range(1, epochs + 1), desc=f"train {k} folds", unit="epoch", disable=not progress, leave=False):
        start = time.perf_counter()
        lr = stack.optimizer.param_groups[0]["lr"]
        loss_sum, correct, seen = torch.zeros(k), torch.zeros(k), torch.zeros(k)
        if bank is not None:
            batches = (
                ((shared.x[idx], bank[idx]), shared.y[idx], members_t[:, idx])  # type: ignore[union-attr]
                for idx in shuffled_batches(loader)
            )
        elif isinstance(shared, TensorItems):
            batches = ((shared.x[idx], shared.y[idx], members_t[:, idx]) for idx in shuffled_batches(loader))
        else:
            loader.dataset.set_epoch(epoch)  # type: ignore[attr-defined]
            batches = ((x, y, members_t[:, idx]) for x, y, idx in loader)
        for x, y, mask in batches:
            x = (
                (x[0].to(device=device, dtype=torch.float32), x[1].to(device=device))
                if isinstance(x, tuple)
                else x.to(device=device, dtype=torch.float32)
            )  # (images, patch rows): rows keep their GEMM dtype
            y = y.to(device=device, dtype=torch.long)
            mask = mask.to(device)
            losses, logits = stack.train_step(x, y, mask)
            n = mask.sum(1).cpu().float()  # (k,)
            hits = (logits.argmax(-1) == y).cpu() & mask.cpu()  # (k, b)
            loss_sum += losses.cpu().float() * n
            correct += hits.sum(1).float()
            seen += n
        if stack.scheduler is not None:
            stack.scheduler.step()
        seconds = (time.perf_counter() - start) / k
        for i in range(k):
            rows[i].append(
                {
                    "epoch": epoch,
                    "loss": float(loss_sum[i] / seen[i]),
                    "train_acc": float(correct[i] / seen[i]),
                    "lr": lr,
                    "seconds": seconds,
                }
            )
        if on_epoch is not None:
            on_epoch(epoch)

    out = []
    for model, state, fold_rows in zip(models, stack.state_dicts(), rows):
        model.load_state_dict(state)
        history = pd.DataFrame(fold_rows)
        history["selected"] = history["epoch"] == epochs
        out.append((model, history))
    return out
