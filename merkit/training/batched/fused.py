"""K STSTNets' conv → ReLU → BatchNorm → max-pool → dropout → average-pool stage as cache-sized GEMMs: the fastest
fold-batched step.

:mod:`merkit.training.batched.wide` writes K STSTNets as one network, but its eager step still moves every
full-resolution activation (b, K·16, 30, 30) through memory ~18 times (conv, ReLU, BN statistics, BN, pool,
and back), and on a CPU that, not arithmetic, is the step's cost (``docs/performance.md``). This module
computes the same function without ever holding a full-resolution activation of the whole batch:

- the 3×3 convolution is a GEMM of each clip's patches (``unfold``: (positions, C·9 + 1), the last column 1
  for the bias) with all K folds' kernels at once (C·9 + 1, K·16), run over a few clips at a time (a *chunk*
  whose output fits the caches); the patch rows are ordered **window by window** of the 3/3/1 max-pool, so
  the pool is one ``amax`` over 9 consecutive rows;
- BatchNorm is applied *after* the pools: for a positive scale γ/σ, max-pool(BN(r)) = BN(max-pool(r)), and
  the 2/2 average pool of dropout(BN(p)) is (scale·avg-pool(keep·p) + shift·avg-pool(keep)) / (1 − rate) for
  dropout's 0/1 keep mask. So the chunk also applies the keep mask and the average pool, and what leaves it
  is small: avg-pool(keep·p) and avg-pool(keep) (1/36 of the conv positions) and, per clip and channel, the
  sum and the centred sum of squares of the ReLU output over all conv positions, from which the masked
  per-fold BatchNorm statistics follow exactly (Chan's pairwise combination, no E[x²] − E[x]² cancellation).
  A fold group with any γ ≤ 0 takes the wide step instead, for that step (the published recipe keeps γ near 1);
- the backward recomputes each chunk's GEMM and its window maxima (cheaper than storing them) and forms the
  conv weight gradient from the features' gradient (spread over each cell's kept windows, to the window's
  maximum), the BatchNorm statistics' dense term and the ReLU mask, in one more GEMM per chunk.

Window slots outside the conv output (the pool's padding) are **zero patch rows**: their ReLU output is 0,
which never beats a window's maximum of non-negative values and adds nothing to the weight gradient; the
statistics discount them exactly. Conv positions that no window covers (the last row and column of the
authors' 30×30 map) are extra rows that only feed the statistics.

Same per-fold function as the wide and the vmapped steps (tested to 1e-4 on weights after several steps),
same contract as :func:`merkit.training.batched.wide.wide_step_for`, and the same leak-proofing: a held-out clip's
values only ever reach its fold through terms masked with ``torch.where`` or multiplied by an exact zero
gradient (tested bit for bit). Under ``precision: bf16`` the three GEMMs take bf16 operands (fp32 sums); its
speed and its gradients against fp32 are in docs/performance.md.

The two per-chunk epilogues (ReLU + pools + dropout + statistics; the backward's gradient algebra) can be compiled with
``torch.compile`` (``compiled=True``): faster than their eager form, at a one-off compile per process and
shape, so the trainer only asks for it on long runs (docs/performance.md).

Axis letters: k folds, b batch, f channels of one fold, r patch rows, q patch columns (C·9 + 1),
w max-pool windows, n average-pool cells (2×2 windows each), c classes.
"""

from __future__ import annotations

import math
import warnings
from functools import lru_cache
from typing import Any, Callable

import torch
from torch import nn
from torch.nn import functional as F

from merkit.training.batched.wide import masked_loss, running_updates, ststnet_layout, wide_step_for
from merkit.training.fold import as_train_config
from merkit.training.precision import resolve_precision

__all__ = ["fused_step_for", "fused_fold_bytes", "fused_trainable", "CHUNK_BYTES", "BANK_LIMIT_BYTES"]

StepFn = Callable[..., tuple[torch.Tensor, torch.Tensor, dict]]

BANK_LIMIT_BYTES = 512 * 1024 * 1024  # a cached group's patch rows (the full composite's fit well under it)
CHUNK_BYTES = 4 * 1024 * 1024  # one chunk's GEMM output: sized to stay in the last-level cache


# ------------------------------------------------------------------------------------------ geometry


@lru_cache(maxsize=8)
def _geometry(side: int) -> tuple[torch.Tensor, int, int, int]:
    """Patch-row order for a conv output of ``side``²: (rows, windows per axis, zero slots, real positions).

    ``rows`` (r,) indexes the side² conv positions (``side²`` = a zero row): first every pool window's 9
    slots (window-major, slots in the pool's scan order), then the positions no window covers.
    """
    n_win = (side + 2 - 3) // 3 + 1  # max-pool 3, stride 3, padding 1
    slots_1d = [[p if 0 <= p < side else -1 for p in (3 * i - 1, 3 * i, 3 * i + 1)] for i in range(n_win)]
    rows, covered = [], set()
    for wy in slots_1d:
        for wx in slots_1d:
            for py in wy:
                for px in wx:
                    if py < 0 or px < 0:
                        rows.append(side * side)
                    else:
                        rows.append(py * side + px)
                        covered.add(py * side + px)
    extra = [p for p in range(side * side) if p not in covered]
    n_zero = sum(1 for r in rows if r == side * side)
    return torch.tensor(rows + extra), n_win, n_zero, side * side


def _patches(x: torch.Tensor, padding: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Images (b, C, H, W) → patch rows (b, r, C·9 + 1) in :func:`_geometry`'s order, bias column 1, as
    ``dtype`` (bf16 holds the authors' 0..255 integer pixels exactly)."""
    b, _, h, _ = x.shape
    side = h + 2 * padding - 2
    rows, _, _, _ = _geometry(side)
    cols = F.unfold(x.float(), 3, padding=padding)  # (b, C·9, side²)
    cols = torch.cat([cols, torch.ones(b, 1, side * side)], 1)  # (b, q, side²): the bias column
    cols = torch.cat([cols, torch.zeros(b, cols.shape[1], 1)], 2)  # (b, q, side² + 1): a zero position last
    return cols[:, :, rows].transpose(1, 2).to(dtype).contiguous()  # (b, q, r) -> (b, r, q)


# ------------------------------------------------------------------------------------------ epilogues


def _cells(t: torch.Tensor, n_win: int) -> torch.Tensor:
    """The 2/2 average pool (floor) of a window map: (bc, w, k·f) → (bc, n, k·f), cells row by row."""
    bc, _, kf = t.shape
    h = n_win // 2
    grid = t.view(bc, n_win, n_win, kf)[:, : 2 * h, : 2 * h]  # an odd last row and column of windows is dropped
    return grid.reshape(bc, h, 2, h, 2, kf).mean((2, 4)).reshape(bc, h * h, kf)  # (bc, h, 2, h, 2, kf) -> (bc, n, kf)


def _spread(g: torch.Tensor, n_win: int) -> torch.Tensor:
    """The average pool's backward: a cell gradient (bc, n, k·f) → each of its windows' share (bc, w, k·f)."""
    bc, _, kf = g.shape
    h = n_win // 2
    # (bc, n, kf) -> (bc, h, 1, h, 1, kf) -> (bc, h, 2, h, 2, kf) -> (bc, 2h, 2h, kf)
    share = (g / 4).view(bc, h, 1, h, 1, kf).expand(bc, h, 2, h, 2, kf).reshape(bc, 2 * h, 2 * h, kf)
    if 2 * h < n_win:  # the dropped last row and column get no gradient
        share = F.pad(share, (0, 0, 0, n_win - 2 * h, 0, n_win - 2 * h))
    return share.reshape(bc, n_win * n_win, kf)  # (bc, n_win, n_win, kf) -> (bc, w, kf)


def _forward_epilogue(
    z: torch.Tensor, keep: torch.Tensor | None, n_win: int, n_zero: int, n_real: int, stats: bool
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """One chunk's GEMM output z (bc, r, k·f) and dropout's keep mask (bc, w, k·f) uint8 0/1, or None →
    avg-pool(keep·max-pool(ReLU z)) (bc, n, k·f), avg-pool(keep) (bc, n, k·f) or None, and per clip
    Σr and Σ(r − mean)² (bc, k·f) (None without ``stats``)."""
    bc, _, kf = z.shape
    r = torch.relu(z.float())  # a bf16 GEMM's output is summed in fp32
    slots = n_win * n_win * 9
    pooled = torch.amax(r[:, :slots].reshape(bc, n_win * n_win, 9, kf), 2)  # (bc, w·9, kf) -> (bc, w, kf)
    if keep is None:
        feats, kept = _cells(pooled, n_win), None
    else:
        feats, kept = _cells(pooled * keep, n_win), _cells(keep.float(), n_win)
    if not stats:
        return feats, kept, None, None
    s1 = r.sum(1)
    mean = s1 / n_real
    m2 = (r - mean[:, None, :]).square().sum(1) - n_zero * mean * mean  # the zero slots' (0 − mean)² removed
    return feats, kept, s1, m2


def _backward_epilogue(
    z: torch.Tensor,
    g_feats: torch.Tensor,
    keep: torch.Tensor | None,
    a: torch.Tensor | None,
    b2: torch.Tensor | None,
    n_win: int,
) -> torch.Tensor:
    """dL/dz of one chunk: (the window's share of its cell's gradient, kept, at the window maximum + a + b2·r)
    where z > 0.

    ``g_feats`` (bc, n, k·f): the gradient of avg-pool(keep·p); ``a``, ``b2`` (bc, k·f): the statistics'
    gradient, d/dr of g_s1·Σr + g_m2·Σ(r − mean)² = a + b2·r. The window maxima are recomputed from ``z``
    (the forward's GEMM, recomputed bit for bit). Ties at a window's maximum all get its gradient; a
    positive tie has probability zero and a zero one (every slot ≤ 0) is cancelled by the ReLU mask, so this
    equals the max-pool's single-index rule.
    """
    bc, rows, kf = z.shape
    dtype, z = z.dtype, z.float()
    r = torch.relu(z)
    slots = n_win * n_win * 9
    window = r[:, :slots].reshape(bc, n_win * n_win, 9, kf)  # (bc, w·9, kf) -> (bc, w, 9, kf)
    pooled = torch.amax(window, 2)  # (bc, w, kf)
    g_pool = _spread(g_feats, n_win)
    if keep is not None:
        g_pool = g_pool * keep
    hit = (window == pooled[:, :, None, :]).to(z.dtype) * g_pool[:, :, None, :]
    d = hit.reshape(bc, slots, kf)  # (bc, w, 9, kf) -> (bc, w·9, kf)
    if rows > slots:
        d = torch.cat([d, torch.zeros(bc, rows - slots, kf, dtype=z.dtype)], 1)
    if a is not None:
        d = d + a[:, None, :] + b2[:, None, :] * r
    return torch.where(z > 0, d, 0.0).to(dtype)  # the kernel-gradient GEMM's operand type


@lru_cache(maxsize=1)
def _compiled_epilogues() -> tuple[Callable, Callable] | None:
    """The two epilogues under ``torch.compile`` (static shapes), or None (with a warning) if it fails here."""
    try:
        fwd = torch.compile(_forward_epilogue, dynamic=False, fullgraph=True)
        bwd = torch.compile(_backward_epilogue, dynamic=False, fullgraph=True)
        z = torch.randn(1, 36, 2)  # trial compiles of both: a machine without a C++ compiler fails here
        keep = torch.ones(1, 4, 2, dtype=torch.uint8)
        feats, _kept, _s1, _m2 = fwd(z, keep, 2, 0, 36, True)
        bwd(z, torch.ones_like(feats), keep, torch.ones(1, 2), torch.ones(1, 2), 2)
        return fwd, bwd
    except Exception as err:  # noqa: BLE001 - any failure means: run the eager epilogues
        warnings.warn(
            f"torch.compile of the fused STSTNet epilogues failed ({type(err).__name__}: {err}); running them eagerly",
            RuntimeWarning,
            stacklevel=2,
        )
        return None


class _ConvStage(torch.autograd.Function):
    """Patch rows P (b, r, q) @ kernels W (q, k·f) → ReLU → max-pool → dropout's keep mask → 2/2 average pool,
    chunk by chunk (module docstring).

    ``keep`` (b, w, k·f) uint8 0/1, or None without dropout. Returns avg-pool(keep·max-pool) (b, n, k·f),
    avg-pool(keep) (b, n, k·f) (zeros without ``keep``) and, when ``stats``, per clip and channel Σr (b, k·f)
    and Σ(r − mean)² (b, k·f) over the ``n_real`` conv positions. Only ``W`` gets a gradient.
    """

    @staticmethod
    def forward(ctx, P, W, keep, chunk, geometry, stats, epilogues):  # type: ignore[override]
        n_win, n_zero, n_real = geometry
        fwd = epilogues[0] if epilogues else _forward_epilogue
        b, rows, q = P.shape
        kernels = W.to(P.dtype)  # bf16 patch rows: bf16 GEMM operands, fp32 accumulation inside the GEMM
        out = torch.empty(min(chunk, b) * rows, W.shape[1], dtype=P.dtype)  # reused: no page faults per chunk
        parts = [
            fwd(
                torch.mm(P[s : s + chunk].reshape(-1, q), kernels, out=out[: min(chunk, b - s) * rows]).view(
                    -1, rows, W.shape[1]
                ),
                None if keep is None else keep[s : s + chunk],
                n_win,
                n_zero,
                n_real,
                stats,
            )
            for s in range(0, b, chunk)
        ]  # (bc·r, q) @ (q, kf) -> (bc, r, kf)
        feats = torch.cat([p[0] for p in parts])
        kept = torch.cat([p[1] for p in parts]) if keep is not None else torch.zeros_like(feats)
        s1 = torch.cat([p[2] for p in parts]) if stats else torch.zeros(b, W.shape[1])
        m2 = torch.cat([p[3] for p in parts]) if stats else torch.zeros(b, W.shape[1])
        ctx.save_for_backward(P, W, keep, s1)
        ctx.chunk, ctx.geometry, ctx.stats, ctx.epilogues = chunk, geometry, stats, epilogues
        ctx.mark_non_differentiable(kept, *(() if stats else (s1, m2)))
        return feats, kept, s1, m2

    @staticmethod
    def backward(ctx, g_feats, _g_kept, g_s1, g_m2):  # type: ignore[override]
        P, W, keep, s1 = ctx.saved_tensors
        n_win, _n_zero, n_real = ctx.geometry
        bwd = ctx.epilogues[1] if ctx.epilogues else _backward_epilogue
        b, rows, q = P.shape
        kf = W.shape[1]
        a = b2 = None
        if ctx.stats:  # d/dr [g_s1·Σr + g_m2·Σ(r − m)²] = g_s1 + 2·g_m2·(r − m): Σ(r − m) = 0 drops dm/dr
            b2 = 2 * g_m2
            a = g_s1 - b2 * (s1 / n_real)
        g_feats = g_feats.contiguous()
        grad_w = torch.zeros_like(W)
        out = torch.empty(min(ctx.chunk, b) * rows, kf, dtype=P.dtype)
        kernels = W.to(P.dtype)
        for s in range(0, b, ctx.chunk):
            chunk = P[s : s + ctx.chunk].reshape(-1, q)  # (bc, r, q) -> (bc·r, q)
            z = torch.mm(chunk, kernels, out=out[: chunk.shape[0]]).view(-1, rows, kf)  # recomputed, not kept
            part = slice(s, s + ctx.chunk)
            dz = bwd(
                z,
                g_feats[part],
                None if keep is None else keep[part],
                None if a is None else a[part],
                None if b2 is None else b2[part],
                n_win,
            )
            if P.dtype == grad_w.dtype:
                grad_w.addmm_(chunk.t(), dz.view(-1, kf))  # (q, bc·r) @ (bc·r, kf)
            else:  # a bf16 product per chunk, summed over the chunks in fp32
                grad_w.add_(torch.mm(chunk.t(), dz.view(-1, kf)))
        return None, grad_w, None, None, None, None, None


# ------------------------------------------------------------------------------------------ the step


def _chunk_clips(rows: int, kf: int, batch: int) -> int:
    """Clips per chunk: a GEMM output of about CHUNK_BYTES (at least one clip, at most the batch)."""
    chunk = max(1, CHUNK_BYTES // (rows * kf * 4))
    return min(chunk, batch)


def fused_fold_bytes(model: nn.Module, batch_size: int) -> int | None:
    """Training memory of one fold under the fused step, or None for another model: dropout's keep mask (a
    byte per clip, window and channel), about 8 fp32 maps of the average-pool cells (the stage's two outputs,
    their gradients and the tail's temporaries), weights and Adam state. The chunk buffers and the group's
    patch rows are shared by the folds and not counted."""
    layout = ststnet_layout(model)
    if layout is None:
        return None
    side = model.input_spec.size + 2 * layout["padding"][0] - 2
    _rows, n_win, _z, _n = _geometry(side)
    f = sum(layout["filters"])
    weights = sum(p.numel() for p in model.parameters()) * 4 * 4
    cells = (n_win // 2) ** 2
    return int(batch_size * n_win * n_win * f + 8 * batch_size * cells * f * 4 + weights)


def fused_trainable(model: nn.Module, cfg: Any, device: torch.device) -> bool:
    """Whether ``train_folds`` (mechanism auto) runs ``model`` with the fused step: an STSTNet as the kit
    builds it, trained on CPU in fp32 or bf16."""
    precision = resolve_precision(as_train_config(cfg).precision, device, model)
    return device.type == "cpu" and precision in (None, torch.bfloat16) and ststnet_layout(model) is not None


def fused_step_for(model: nn.Module, cfg_loss: dict, compiled: bool = False) -> StepFn | None:
    """The fused step for ``model`` (an STSTNet as the kit builds it), or None for any other model.

    Under bf16 autocast (``cfg_loss["autocast_dtype"]``) the GEMMs take bf16 operands (the patch rows, held
    exactly for 0..255 pixels, and the kernels rounded) and accumulate in fp32; everything else stays fp32.

    Contract of :func:`merkit.training.batched.wide.wide_step_for`, plus: ``x`` may be the images (b, C, H, W) or a
    pair (images, patch rows (b, r, q)) with the rows from the returned function's ``patch_bank`` (the
    trainer computes those once per group for cached data; the images serve the wide step a group with a
    BatchNorm scale <= 0 falls back to). ``compiled``: run the chunk epilogues under ``torch.compile``.
    """
    layout = ststnet_layout(model)
    gemm_dtype = cfg_loss.get("autocast_dtype") or torch.float32
    if layout is None or gemm_dtype not in (torch.float32, torch.bfloat16):
        return None
    wide = wide_step_for(model, cfg_loss)
    n_branch = len(layout["filters"])
    padding = layout["padding"][0]
    size = model.input_spec.size
    side = size + 2 * padding - 2
    _rows_index, n_win, n_zero, n_real = _geometry(side)
    epilogues = _compiled_epilogues() if compiled else None
    tail = _tail  # compiled, it measured slower than eager (docs/performance.md)

    def step(
        params: dict, buffers: dict, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, dict]:
        k, b = mask.shape
        images, patches = x if isinstance(x, tuple) else (x, None)
        gamma = None
        if layout["bn"]:
            gamma = torch.cat([params[f"branches.{i}.2.weight"] for i in range(n_branch)], 1)  # (k, f)
            if not bool((gamma > 0).all()):  # max-pool and BN commute only for a positive scale
                return wide(params, buffers, images, y, mask, weight)
        if patches is None:
            patches = _patches(images, padding, gemm_dtype)  # (b, r, q)
        conv_w = torch.cat([params[f"branches.{i}.0.weight"] for i in range(n_branch)], 1)  # (k, f, C, 3, 3)
        conv_b = torch.cat([params[f"branches.{i}.0.bias"] for i in range(n_branch)], 1)  # (k, f)
        f = conv_w.shape[1]
        # (k, f, C, 3, 3) -> (k·f, C·9), with the bias as one more column -> (q, k·f)
        kernels = torch.cat([conv_w.reshape(k * f, -1), conv_b.reshape(k * f, 1)], 1).t()
        rows = patches.shape[1]
        chunk = _chunk_clips(rows, k * f, b)
        n_pad = (-b) % chunk if epilogues is not None else 0
        keep = None
        if layout["dropout"] > 0:
            keep = _keep_mask((b, n_win * n_win, k * f), layout["dropout"])  # drawn per (clip, window, fold, channel)
        if n_pad:  # equal chunks for the compiled epilogues: zero rows, masked out of every fold
            patches = torch.cat([patches, patches.new_zeros(n_pad, rows, patches.shape[2])])
            keep = None if keep is None else torch.cat([keep, keep.new_zeros(n_pad, *keep.shape[1:])])
        feats, kept, s1, m2 = _ConvStage.apply(
            patches, kernels, keep, chunk, (n_win, n_zero, n_real), layout["bn"], epilogues
        )  # (b', n, k·f), (b', n, k·f), (b', k·f), (b', k·f)
        if n_pad:  # (a slice records a backward that writes a zero-filled copy: only when needed)
            feats, kept, s1, m2 = feats[:b], kept[:b], s1[:b], m2[:b]
        beta = None
        if layout["bn"]:
            beta = torch.cat([params[f"branches.{i}.2.bias"] for i in range(n_branch)], 1)  # (k, f)
        losses, logits, mean, var = tail(
            feats,
            kept if keep is not None else None,
            s1.view(b, k, f),
            m2.view(b, k, f),
            gamma,
            beta,
            params["head.weight"],
            params["head.bias"],
            y,
            mask,
            weight,
            n_win // 2,
            n_real,
            layout["eps"],
            layout["dropout"],
            cfg_loss["loss"],
            cfg_loss["label_smoothing"],
            cfg_loss["focal_gamma"],
            cfg_loss["num_classes"],
        )
        count = mask.sum(1).to(mean.dtype) * n_real  # (k,) values per fold and channel
        updates = running_updates(mean, var, count, buffers, layout) if layout["bn"] else {}
        return losses, logits.detach(), updates

    def patch_bank(images: torch.Tensor) -> torch.Tensor | None:
        """Every clip's patch rows (n, r, q), or None when they would exceed BANK_LIMIT_BYTES."""
        n, _, h, _ = images.shape
        rows = _geometry(h + 2 * padding - 2)[0].numel()
        if n * rows * (images.shape[1] * 9 + 1) * gemm_dtype.itemsize > BANK_LIMIT_BYTES:
            return None
        return _patches(images, padding, gemm_dtype)

    step.patch_bank = patch_bank  # type: ignore[attr-defined]
    return step


def _tail(
    feats: torch.Tensor,
    kept: torch.Tensor | None,
    s1: torch.Tensor,
    m2: torch.Tensor,
    gamma: torch.Tensor | None,
    beta: torch.Tensor | None,
    head_w: torch.Tensor,
    head_b: torch.Tensor,
    y: torch.Tensor,
    mask: torch.Tensor,
    weight: torch.Tensor,
    n_half: int,
    n_real: int,
    eps: float,
    dropout: float,
    loss: str,
    smoothing: float,
    focal_gamma: float,
    num_classes: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Everything after the pools: masked BatchNorm, dropout's scale, the K heads and losses.

    ``feats`` (b, n, k·f): avg-pool(keep·max-pool) over ``n`` = n_half² cells; ``kept`` (b, n, k·f): avg-pool(keep)
    (None without dropout); ``s1``/``m2`` (b, k, f) per clip Σr and Σ(r − clip mean)² over ``n_real`` positions;
    ``gamma``/``beta`` (k, f) or None without BatchNorm; ``head_w`` (k, c, f·n). Fold k's batch mean and biased
    variance use only its own clips (``torch.where``): Chan's combination, var = Σ [m2 + n_real·(clip mean −
    mean)²] / N. Returns per-fold losses (k,), logits (k, b, c) and the batch mean and variance (k, f) (zeros
    without BatchNorm).
    """
    b, k, f = s1.shape
    if dropout > 0:  # avg-pool(dropout(scale·p + shift)) = (scale·avg-pool(keep·p) + shift·avg-pool(keep)) / (1 − rate)
        feats = feats / (1.0 - dropout)
        kept = kept / (1.0 - dropout) if kept is not None else None
    mean = var = torch.zeros(k, f)
    if gamma is not None and beta is not None:
        keep_rows = mask.t()[:, :, None]  # (k, b) -> (b, k, 1)
        denom = (mask.sum(1).to(s1.dtype) * n_real).clamp_min(1)[:, None]  # (k, 1) values per fold and channel
        mean = torch.where(keep_rows, s1, 0.0).sum(0) / denom  # (k, f)
        clip_mean = s1 / n_real  # (b, k, f)
        var = torch.where(keep_rows, m2 + n_real * (clip_mean - mean[None]).square(), 0.0).sum(0) / denom
        var = var.clamp_min(0.0)  # a flat map's m2 may round a hair below 0
        scale = gamma * torch.rsqrt(var + eps)  # (k, f): positive (the step checked gamma)
        shift = (beta - mean * scale).reshape(k * f)
        feats = feats * scale.reshape(k * f) + (shift if kept is None else kept * shift)  # BN after the pools
    feats = feats.view(b, n_half, n_half, k, f).permute(0, 3, 4, 1, 2)  # (b, n, k·f) -> (b, k, f, n_half, n_half)
    feats = feats.reshape(b, k, f * n_half * n_half)  # the model's (f, y, x) flatten
    logits = torch.einsum("bkn,kcn->kbc", feats, head_w) + head_b[:, None, :]
    losses = masked_loss(
        logits,
        y,
        mask,
        weight,
        {"loss": loss, "label_smoothing": smoothing, "focal_gamma": focal_gamma, "num_classes": num_classes},
    )
    return losses, logits, mean.detach(), var.detach()


def _keep_mask(shape: tuple[int, ...], dropout: float) -> torch.Tensor:
    """Dropout's keep mask (uint8 0/1): independent Bernoulli(1 − dropout) draws from torch's generator.

    For the usual 0.5, one random bit per element (64-bit draws unpacked): cheaper on CPU than
    ``rand_like(...) >= p``, same law. Other rates draw uniforms.
    """
    n = math.prod(shape)
    if dropout != 0.5:
        return (torch.rand(shape) >= dropout).to(torch.uint8)
    words = torch.randint(-(2**63), 2**63 - 1, (-(-n // 64),), dtype=torch.int64)  # 64 random bits each
    bits = (words.view(torch.uint8)[:, None] >> torch.arange(8, dtype=torch.uint8)) & 1  # (n/8, 8) bit planes
    return bits.view(-1)[:n].view(shape)
