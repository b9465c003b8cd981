"""K STSTNets over one shared batch as ONE wide network: the fast path of the fold-batched trainer.

:mod:`merkit.training.batched.stack` runs any model as K stacked copies with ``torch.func.vmap``. For STSTNet, a single
conv stage (three 3×3 branches over the same input) + pooling + one linear layer, the K folds' models can
instead be written as one plain network, no ``vmap``:

- the three branches of all K folds are ONE convolution with K·16 output channels (the branches share their
  input and kernel size; the fold's ``cat`` order is kept, so channel ``k·16 + j`` is fold k's j-th channel):
  one wide GEMM over the shared batch instead of 3K small ones;
- ReLU, max-pool, dropout and average-pool act per channel, so on (b, K·16, ...) they are already per fold
  (dropout masks are drawn per element, hence per fold);
- BatchNorm is per (fold, channel) and *masked*: its batch mean and variance over fold k's channels use only
  the rows of fold k's training clips (``torch.where``, so a held-out clip's values never enter its fold's
  statistics, running statistics included; tested bit-for-bit);
- the K heads are one ``einsum`` (k, b, 400) × (k, c, 400), and each fold's loss masks the other rows.

The parameters stay the stacked per-fold tensors of :class:`merkit.training.batched.stack._FoldStack` (names as
``STSTNet.state_dict()``), so the optimiser, schedules, idle-fold handling and the per-fold state dicts are
unchanged; only the step function differs. It computes the same function as the vmapped step (tested to
1e-4 on weights after several steps, dropout off) and is measured faster (``docs/performance.md``).

BatchNorm is one ``addcmul`` with a per-(fold, channel) scale and shift from masked two-pass statistics.

Axis letters: k folds, b batch, f channels of one fold (16 for STSTNet), c classes.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from merkit.models.baselines import STSTNet

__all__ = ["wide_step_for", "ststnet_layout", "masked_loss", "running_updates"]

StepFn = Callable[..., tuple[torch.Tensor, torch.Tensor, dict]]


def ststnet_layout(model: nn.Module) -> dict | None:
    """How an STSTNet-shaped model is built (conv padding, BN, dropout p), or None for any other model."""
    if type(model) is not STSTNet:
        return None
    branches = list(model.branches)
    convs, bns, drops = [], [], []
    for branch in branches:
        layers = list(branch)
        conv = layers[0]
        if (
            not isinstance(conv, nn.Conv2d)
            or conv.kernel_size != (3, 3)
            or conv.stride != (1, 1)
            or conv.bias is None
            or conv.groups != 1
            or conv.dilation != (1, 1)
        ):
            return None
        convs.append(conv)
        kinds = [type(m) for m in layers[1:]]
        if kinds not in (
            [nn.ReLU, nn.BatchNorm2d, nn.MaxPool2d, nn.Dropout],
            [nn.ReLU, nn.BatchNorm2d, nn.MaxPool2d],
            [nn.ReLU, nn.MaxPool2d, nn.Dropout],
            [nn.ReLU, nn.MaxPool2d],
        ):
            return None
        pool = next(m for m in layers if isinstance(m, nn.MaxPool2d))
        if (pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.ceil_mode) != (3, 3, 1, 1, False):
            return None
        bns.append(next((m for m in layers if isinstance(m, nn.BatchNorm2d)), None))
        drops.append(next((m.p for m in layers if isinstance(m, nn.Dropout)), 0.0))
    if len({c.padding for c in convs}) != 1 or len({b is None for b in bns}) != 1 or len(set(drops)) != 1:
        return None
    if bns[0] is not None and any(b.momentum is None or not b.affine or not b.track_running_stats for b in bns):
        return None
    pool = model.avgpool
    if (pool.kernel_size, pool.stride) not in ((2, 2), ((2, 2), (2, 2))) or pool.padding not in (0, (0, 0)):
        return None
    return {
        "padding": convs[0].padding,
        "filters": [c.out_channels for c in convs],
        "bn": bns[0] is not None,
        "eps": bns[0].eps if bns[0] is not None else 0.0,
        "momentum": bns[0].momentum if bns[0] is not None else 0.0,
        "dropout": drops[0],
    }


def wide_step_for(model: nn.Module, cfg_loss: dict) -> StepFn | None:
    """The wide step for ``model`` (an STSTNet as the kit builds it), or None when the model is not one.

    The returned function has the vmapped step's contract: ``step(params, buffers, x, y, mask, weight)`` with
    stacked ``params``/``buffers`` (leading axis k, names as the model's state dict), one shared batch
    ``x`` (b, C, H, W), labels ``y`` (b,), ``mask`` (k, b) bool and class weights ``weight`` (k, c); it returns
    per-fold losses (k,), logits (k, b, c) detached, and the new BN running statistics by buffer name.
    ``cfg_loss``: ``loss`` ("ce" | "focal"), ``label_smoothing``, ``focal_gamma``, ``num_classes``,
    ``autocast`` (a context factory or None).
    """
    layout = ststnet_layout(model)
    if layout is None:
        return None
    n_branch = len(layout["filters"])

    def step(
        params: dict, buffers: dict, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict]:
        k, b = mask.shape
        conv_w = torch.cat([params[f"branches.{i}.0.weight"] for i in range(n_branch)], 1)  # (k, f, C, 3, 3)
        conv_b = torch.cat([params[f"branches.{i}.0.bias"] for i in range(n_branch)], 1)  # (k, f)
        f = conv_w.shape[1]
        with cfg_loss["autocast"]():
            z = F.conv2d(x, conv_w.flatten(0, 1), conv_b.flatten(), padding=layout["padding"])  # (b, k·f, h, w)
        r = torch.relu(z.float())
        updates: dict[str, torch.Tensor] = {}
        if layout["bn"]:
            pooled, updates = _masked_bn_pool(r, params, buffers, mask, k, f, layout)  # (b, k·f, h', w')
        else:
            pooled = F.max_pool2d(r, 3, 3, 1)
        if layout["dropout"] > 0:  # uniform draws, not bernoulli_: cheaper on CPU, same law
            p = layout["dropout"]
            pooled = pooled * ((torch.rand_like(pooled) >= p).to(pooled.dtype) / (1.0 - p))
        feats = F.avg_pool2d(pooled, 2, 2)  # (b, k·f, h', w') -> (b, k·f, h'', w'')
        feats = feats.view(b, k, -1)  # (b, k·f, h'', w'') -> (b, k, f·h''·w''), the model's flatten order
        logits = torch.einsum("bkn,kcn->kbc", feats, params["head.weight"]) + params["head.bias"][:, None, :]
        losses = masked_loss(logits, y, mask, weight, cfg_loss)
        return losses, logits.detach(), updates

    return step


def _masked_bn_pool(
    r: torch.Tensor, params: dict, buffers: dict, mask: torch.Tensor, k: int, f: int, layout: dict
) -> tuple[torch.Tensor, dict]:
    """Per-(fold, channel) masked BatchNorm of ``r`` (b, k·f, h, w) followed by the 3/3/1 max-pool.

    Statistics of fold k use only rows with ``mask[k]`` (mean and biased variance normalise, the unbiased
    variance updates the running statistics, PyTorch's rule); a fold with no row keeps its running statistics.
    """
    b, _, h, w = r.shape
    n_branch = len(layout["filters"])
    count = mask.sum(1).to(r.dtype) * (h * w)  # (k,) values per fold and channel
    gamma = torch.cat([params[f"branches.{i}.2.weight"] for i in range(n_branch)], 1)  # (k, f)
    beta = torch.cat([params[f"branches.{i}.2.bias"] for i in range(n_branch)], 1)  # (k, f)
    pooled, mean, var = _MaskedBNPool.apply(r, gamma, beta, mask, layout["eps"])
    return pooled, running_updates(mean, var, count, buffers, layout)


def running_updates(
    mean: torch.Tensor, var: torch.Tensor, count: torch.Tensor, buffers: dict, layout: dict
) -> dict[str, torch.Tensor]:
    """New BN running statistics by buffer name from each fold's batch ``mean``/biased ``var`` (k, f) over
    ``count`` (k,) values: PyTorch's rule (momentum, unbiased variance); a fold with no value in the batch
    keeps its own (and one value leaves the variance as it was)."""
    m = layout["momentum"]
    mean, var = mean.detach(), var.detach()
    unbiased = var * count[:, None] / (count[:, None] - 1).clamp_min(1)
    has, has2 = (count > 0)[:, None], (count > 1)[:, None]
    updates, start = {}, 0
    for i, width in enumerate(layout["filters"]):
        part = slice(start, start + width)
        name = f"branches.{i}.2"
        rm, rv = buffers[f"{name}.running_mean"], buffers[f"{name}.running_var"]
        updates[f"{name}.running_mean"] = torch.where(has, (1 - m) * rm + m * mean[:, part], rm)
        updates[f"{name}.running_var"] = torch.where(has2, (1 - m) * rv + m * unbiased[:, part], rv)
        start += width
    return updates


class _MaskedBNPool(torch.autograd.Function):
    """Masked per-(fold, channel) BatchNorm then the 3/3/1 max-pool, with a hand-written backward.

    Forward: ``r`` (b, k·f, h, w), ``gamma``/``beta`` (k, f), ``mask`` (k, b) -> pooled (b, k·f, h', w'),
    batch mean and biased variance (k, f) (no gradient: they feed the running statistics). Backward uses
    that the pool keeps one position per window: the gradient of gamma and beta needs only the pooled
    positions (gathered), and the gradient of ``r`` is the pooled gradient scattered back plus BatchNorm's
    dense term, which is affine in ``r`` per (row, fold, channel): one full-size pass instead of autograd's
    chain of full-size products. Rows outside ``mask[k]`` get exactly zero gradient in fold k's channels.
    """

    @staticmethod
    def forward(ctx, r, gamma, beta, mask, eps):  # type: ignore[override]
        b, kf, h, w = r.shape
        k, f = gamma.shape
        keep = mask.t()[:, :, None]  # (k, b) -> (b, k, 1)
        n = mask.sum(1).to(r.dtype) * (h * w)  # (k,)
        denom = n.clamp_min(1)[:, None]  # (k, 1)
        r5 = r.view(b, k, f, h * w)  # (b, k·f, h, w) -> (b, k, f, h·w)
        mean = torch.where(keep, r5.sum(3), 0.0).sum(0) / denom  # (k, f)
        # two passes, not E[x²] - E[x]²: a flow PNG's flat 0..255 background makes that cancel badly
        row_sq = torch.linalg.vector_norm(r5 - mean[None, :, :, None], dim=3).square()  # (b, k, f)
        var = torch.where(keep, row_sq, 0.0).sum(0) / denom  # (k, f) biased
        invstd = torch.rsqrt(var + eps)
        scale = gamma * invstd  # (k, f)
        shift = beta - mean * scale
        normalised = torch.addcmul(shift.reshape(1, kf, 1, 1), r, scale.reshape(1, kf, 1, 1))
        pooled, idx = F.max_pool2d_with_indices(normalised, 3, 3, 1)  # (b, k·f, h', w')
        ctx.save_for_backward(r, idx, mean, invstd, gamma, mask, n)
        ctx.mark_non_differentiable(mean, var)
        return pooled, mean, var

    @staticmethod
    def backward(ctx, g, _g_mean, _g_var):  # type: ignore[override]
        r, idx, mean, invstd, gamma, mask, n = ctx.saved_tensors
        b, kf, h, w = r.shape
        k, f = gamma.shape
        keep = mask.t().to(r.dtype)[:, :, None]  # (b, k, 1)
        g = g.reshape(b, k, f, -1) * keep[..., None]  # (b, k·f, h', w') -> (b, k, f, h'·w'), own rows only
        flat_idx = idx.reshape(b, kf, -1)  # (b, k·f, h'·w') positions in the h·w plane
        r_at = r.reshape(b, kf, h * w).gather(2, flat_idx).view(b, k, f, -1)  # r at the pooled positions
        xhat_at = (r_at - mean[None, :, :, None]) * invstd[None, :, :, None]
        grad_beta = g.sum((0, 3))  # (k, f)
        grad_gamma = (g * xhat_at).sum((0, 3))
        # d r = invstd·gamma·g(scattered) − invstd/n · (Σ dx̂ + x̂ · Σ dx̂·x̂), dx̂ = gamma·g, on own rows
        coef = invstd / n.clamp_min(1)[:, None]  # (k, f)
        a = gamma * grad_beta  # Σ dx̂
        c = gamma * grad_gamma  # Σ dx̂·x̂
        slope = -coef * c * invstd  # (k, f): coefficient of r
        offset = -coef * a + coef * c * invstd * mean  # (k, f): the constant
        slope_rows = (keep * slope[None]).reshape(b, kf, 1, 1)  # (b, k, f) -> (b, k·f, 1, 1)
        offset_rows = (keep * offset[None]).reshape(b, kf, 1, 1)
        grad_r = torch.addcmul(offset_rows, r, slope_rows)  # (b, k·f, h, w)
        sparse = (g * (gamma * invstd)[None, :, :, None]).reshape(b, kf, -1)  # (b, k·f, h'·w')
        grad_r.view(b, kf, h * w).scatter_add_(2, flat_idx, sparse)
        return grad_r, grad_gamma, grad_beta, None, None


def masked_loss(
    logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor, cfg_loss: dict
) -> torch.Tensor:
    """Per-fold weighted loss (k,) over the rows of ``mask`` (k, b): the vmapped step's formula, batched."""
    logp = torch.log_softmax(logits.float(), dim=2)  # (k, b, c)
    nll = -logp.gather(2, y[None, :, None].expand(logp.shape[0], -1, 1))[..., 0]  # (k, b, c) -> (k, b)
    w = torch.where(mask, torch.gather(weight, 1, y[None, :].expand(mask.shape[0], -1)), 0.0)  # (k, b)
    nll = torch.where(mask, nll, 0.0)
    if cfg_loss["loss"] == "focal":
        nll = (1.0 - (-nll).exp()) ** cfg_loss["focal_gamma"] * nll
    total = w.sum(1).clamp_min(1e-12)  # (k,)
    loss = (w * nll).sum(1) / total
    smoothing = cfg_loss["label_smoothing"]
    if smoothing > 0:
        smooth = torch.where(mask, -(logp * weight[:, None, :]).sum(2), 0.0).sum(1) / total
        loss = (1 - smoothing) * loss + smoothing / cfg_loss["num_classes"] * smooth
    return loss
