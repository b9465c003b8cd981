"""What every attribution shares: the :class:`Attribution` result, the baselines, the layer and target rules.

Axis letters: b batch, c channels, t frames, h height, w width, m attention modules.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from merkit.data.inputs import ClipInput, FlowInput, InputAdapter, input_adapter
from merkit.errors import MerkitValueError

__all__ = [
    "Attribution",
    "ExplainError",
    "blur_clip",
    "check_clip_batch",
    "default_stdev",
    "eval_mode",
    "explained_input",
    "ig_baseline",
    "last_conv2d_name",
    "last_conv3d_name",
    "resolve_layer",
    "resolve_target",
    "upsample_volume",
]


class ExplainError(MerkitValueError):
    """An attribution cannot be computed as asked (unknown method or baseline, a batch or layer that does not
    fit the model, a store without what the scores need); the message says what would work."""


@dataclass(frozen=True)
class Attribution:
    """One attribution (or attention) map per clip of a batch.

    ``map`` is float32 (b, t, h, w) on the CPU, aligned with the input clip frame by frame and pixel
    by pixel; for a flow model's image batch it is (b, h, w) (``meta["input"] == "flow"``). ``signed`` says whether
    negative values mean evidence against the target class (IG, occlusion, ablation) or the map is non-negative by
    construction (Grad-CAM with ReLU, attention). ``target`` is the class explained for each clip, (b,) int64, or None
    for the learned attention (it does not depend on a class). ``delta`` is IG's convergence delta (b,) or (b *
    nt_samples,) under a noise tunnel, None for other methods. ``meta`` holds the method's settings and extras
    (Grad-CAM layer name, attention channel weights, ...).
    """

    map: Tensor
    method: str
    signed: bool
    target: Tensor | None = None
    delta: Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def magnitude(self) -> Tensor:
        """The non-negative map used for scores and figures: |map| for signed maps."""
        return self.map.abs() if self.signed else self.map


# ----------------------------------------------------------------------------------------------
# baselines, layers, targets


def _gaussian_kernel1d(sigma: float) -> Tensor:
    radius = max(1, int(math.ceil(3.0 * sigma)))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return kernel / kernel.sum()


def blur_clip(x: Tensor, sigma: float = 4.0) -> Tensor:
    """Gaussian blur of every frame of a clip batch in space only (frames stay apart).

    ``x`` is (b, c, t, h, w); the result has the same shape and dtype. Reflect padding, so the
    borders keep their brightness. Used as the "blur" IG baseline: the face is still there, the fine
    motion is gone.
    """
    if x.dim() != 5:
        raise ExplainError(f"blur_clip expects (b, c, t, h, w), got shape {tuple(x.shape)}")
    b, c, t, h, w = x.shape
    kernel = _gaussian_kernel1d(sigma).to(x.dtype).to(x.device)
    k = kernel.numel()
    pad = k // 2
    # Reflect padding needs pad < size; clamp for tiny frames.
    pad_h, pad_w = min(pad, h - 1), min(pad, w - 1)
    frames = x.reshape(b * c * t, 1, h, w)  # (b, c, t, h, w) -> (b*c*t, 1, h, w)
    frames = F.pad(frames, (0, 0, pad_h, pad_h), mode="reflect") if pad_h else frames
    frames = F.conv2d(frames, kernel[pad - pad_h : pad + pad_h + 1].reshape(1, 1, -1, 1))
    frames = F.pad(frames, (pad_w, pad_w, 0, 0), mode="reflect") if pad_w else frames
    frames = F.conv2d(frames, kernel[pad - pad_w : pad + pad_w + 1].reshape(1, 1, 1, -1))
    return frames.reshape(b, c, t, h, w)  # (b*c*t, 1, h, w) -> (b, c, t, h, w)


def ig_baseline(x: Tensor, kind: str | Tensor | float = "onset", *, blur_sigma: float = 4.0) -> Tensor:
    """The reference clip that IG (and occlusion / ablation) compare ``x`` (b, c, t, h, w) against.

    ``"onset"`` (default): the first (neutral, onset) frame repeated over time, so the attribution
    answers "which change from the neutral face made this class", the micro-expression question.
    ``"zeros"``: an all-zero clip. ``"blur"``: every frame blurred in space (:func:`blur_clip`).
    A tensor broadcastable to ``x`` or a number is used as given.
    """
    if x.dim() == 4:  # a flow-image batch (b, c, h, w): no frames, so no onset frame
        if isinstance(kind, str) and kind == "onset":
            raise ExplainError(
                "a flow-image batch (b, c, h, w) has no onset frame: use baseline 'zeros', 'blur', a number or a tensor"
            )
        if isinstance(kind, str) and kind == "blur":
            return blur_clip(x[:, :, None], blur_sigma)[:, :, 0]  # (b, c, h, w) -> (b, c, 1, h, w) -> back
    if isinstance(kind, Tensor):
        return kind.to(x.dtype).to(x.device).expand_as(x)
    if isinstance(kind, (int, float)):
        return torch.full_like(x, float(kind))
    if kind == "onset":
        return x[:, :, :1].expand_as(x).contiguous()  # (b, c, 1, h, w) -> (b, c, t, h, w)
    if kind == "zeros":
        return torch.zeros_like(x)
    if kind == "blur":
        return blur_clip(x, blur_sigma)
    raise ExplainError(f"unknown baseline {kind!r}: use 'onset', 'zeros', 'blur', a number or a tensor")


def _last_conv_name(model: nn.Module, conv: type[nn.Module]) -> str:
    names = [name for name, module in model.named_modules() if isinstance(module, conv)]
    # A one-channel conv (an attention gate's) has no channels for Grad-CAM to weigh: skip those.
    names = [n for n in names if dict(model.named_modules())[n].out_channels > 1] or names
    if not names:
        raise ExplainError(f"{type(model).__name__} has no {conv.__name__} layer: Grad-CAM needs a named conv layer")
    return names[-1]


def last_conv3d_name(model: nn.Module) -> str:
    """Name (as in ``model.named_modules()``) of the last Conv3d with more than one output channel.

    Grad-CAM's default layer for clip models without a ``cam_layer`` attribute (MERANet has one).
    """
    return _last_conv_name(model, nn.Conv3d)


def last_conv2d_name(model: nn.Module) -> str:
    """Name of the last Conv2d with more than one output channel: Grad-CAM's default for flow models."""
    return _last_conv_name(model, nn.Conv2d)


def resolve_layer(
    model: nn.Module, layer: str | nn.Module | None, conv: type[nn.Module] = nn.Conv3d
) -> tuple[str, nn.Module]:
    """The Grad-CAM layer: a module, a name, the model's ``cam_layer``, else its last ``conv`` (Conv3d for
    clips, Conv2d for flow images) with more than one channel."""
    if isinstance(layer, nn.Module):
        for name, module in model.named_modules():
            if module is layer:
                return name, module
        raise ExplainError(f"layer {type(layer).__name__} is not a submodule of {type(model).__name__}")
    if layer is None and isinstance(getattr(model, "cam_layer", None), nn.Module):
        # Models name their own Grad-CAM layer (MERANet: the last residual module).
        return resolve_layer(model, model.cam_layer)
    name = _last_conv_name(model, conv) if layer is None else layer
    modules = dict(model.named_modules())
    if name not in modules:
        conv_names = [n for n, m in modules.items() if isinstance(m, conv)]
        raise ExplainError(f"{type(model).__name__} has no layer named {name!r}; {conv.__name__} layers: {conv_names}")
    return name, modules[name]


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Evaluate in eval mode (no dropout noise, fixed batch-norm statistics), then restore the mode."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def check_clip_batch(x: Tensor) -> None:
    """Raises :class:`ExplainError` unless ``x`` is a clip batch (b, c, t, h, w)."""
    if not isinstance(x, Tensor) or x.dim() != 5:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ExplainError(f"attributions need a clip batch (b, c, t, h, w), got {shape}")


def explained_input(model: nn.Module, x: Tensor) -> InputAdapter:
    """The input adapter (``merkit.data.inputs``) of ``model`` for the batch ``x``, after checking that ``x`` is a
    clip batch (b, c, t, h, w) of a clip model or a flow-image batch (b, c, h, w) of a flow model.

    The model's ``input_spec`` decides; a toy model without one is a clip model when it has a Conv3d, else a
    flow model. Raises :class:`ExplainError` (a ValueError) when the batch does not fit.
    """
    if not isinstance(x, Tensor) or x.dim() not in (4, 5):
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ExplainError(
            f"attributions need a clip batch (b, c, t, h, w) or a flow-image batch (b, c, h, w), got {shape}"
        )
    if getattr(model, "input_spec", None) is not None:
        adapter = input_adapter(model)
    else:  # toy models without a spec: any Conv3d makes it a clip model
        adapter = ClipInput(None) if any(isinstance(m, nn.Conv3d) for m in model.modules()) else FlowInput(None)
    try:
        adapter.check_batch(x, type(model).__name__)
    except ValueError as error:
        raise ExplainError(str(error)) from None
    return adapter


def resolve_target(model: nn.Module, x: Tensor, target: int | Sequence[int] | Tensor | None) -> Tensor:
    """The class explained per clip: given, or the model's prediction when ``target`` is None."""
    b = x.shape[0]
    if target is None:
        with torch.no_grad():
            return model(x).argmax(dim=1).cpu()
    target_tensor = torch.as_tensor(target, dtype=torch.long).reshape(-1).cpu()
    if target_tensor.numel() == 1:
        target_tensor = target_tensor.expand(b).clone()
    if target_tensor.numel() != b:
        raise ExplainError(f"target has {target_tensor.numel()} entries for a batch of {b} clips")
    return target_tensor


def upsample_volume(volume: Tensor, size: tuple[int, int, int]) -> Tensor:
    """Trilinear resize of (b, 1, t', h', w') to (b, t, h, w)."""
    if volume.dim() != 5:
        raise ExplainError(f"expected a (b, 1, t, h, w) volume, got shape {tuple(volume.shape)}")
    resized = F.interpolate(volume.float(), size=size, mode="trilinear", align_corners=False)
    return resized[:, 0]  # (b, 1, t, h, w) -> (b, t, h, w)


def default_stdev(x: Tensor) -> float:
    """The noise tunnel's default standard deviation: 15 % of ``x``'s value range (0.15 for a constant ``x``)."""
    # SmoothGrad's recommendation: noise at 10-20 % of the input's value range.
    value_range = float(x.max() - x.min())
    return 0.15 * value_range if value_range > 0 else 0.15
