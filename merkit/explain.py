"""Explain clip and flow models: Captum attributions beside MERANet's learned attention, and scores for both.

Axis letters used in shape comments: b batch, c channels, t frames, h height, w width, m attention
modules, r facial regions, s time segments.

One entry point computes every kind of map on a 5-D clip batch ``x`` of shape (b, c, t, h, w):

    attribute(model, x, "ig")          Integrated Gradients (signed), baseline "onset" | "zeros" | "blur"
    attribute(model, x, "gradcam")     Grad-CAM on a named Conv3d layer, upsampled to (t, h, w)
    attribute(model, x, "occlusion")   Occlusion with 3-D (t, h, w) windows (signed)
    attribute(model, x, "ablation")    Feature ablation over facial regions x time segments (signed)
    attribute(model, x, "attention")   the model's own spatio-temporal attention (see learned_attention)
    attribute(..., noise_tunnel=True)  SmoothGrad (NoiseTunnel) around any Captum method

Each returns an :class:`Attribution` whose ``map`` is (b, t, h, w) on the CPU, so every method can be
compared, scored and drawn the same way.

Flow models (``ststnet``, ``offapexnet``: ``input_spec.kind == "flow"``) take one onset→apex flow image per
sample, x of shape (b, c, h, w). ``attribute`` accepts that too for ``"ig"``, ``"gradcam"`` (on a named
Conv2d), ``"occlusion"`` (2-D (h, w) windows) and ``"ablation"`` (facial regions, no time segments), and
returns a map of shape (b, h, w). There is no time axis, so the ``"onset"`` baseline does not exist for
them (default ``"zeros"``), and they have no learned ``"attention"``. Channel reduction: gradient methods (IG) are *summed* over
channels, which keeps IG's completeness (the map sums to f(x) - f(baseline)); perturbation methods
(occlusion, ablation) give every channel inside a window the same value, so they are *averaged* over
channels.

Scores (``region_scores``, ``random_baseline``, ``agreement``, ``region_mass_over_time``,
``frame_curve``) accept maps as tensors or numpy arrays; ``score_methods`` runs everything over a
dataset with known motion masks (SynthME) and returns one long DataFrame for the explain notebook;
``explain_store`` does the same for clips of a clip store; ``summarise_scores`` gives per-class means.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from torch import Tensor, nn
from tqdm.auto import tqdm

__all__ = [
    "ATTRIBUTION_METHODS",
    "FACE_REGIONS",
    "Attribution",
    "FaceBox",
    "agreement",
    "agreement_table",
    "attribute",
    "blur_clip",
    "event_positions",
    "explain_flow_store",
    "explain_store",
    "face_region_masks",
    "flow_regions",
    "frame_curve",
    "ig_baseline",
    "last_conv2d_name",
    "last_conv3d_name",
    "learned_attention",
    "model_inputs",
    "random_baseline",
    "region_mass_over_time",
    "region_scores",
    "region_time_feature_mask",
    "score_methods",
    "store_events",
    "summarise_scores",
]

#: Methods accepted by :func:`attribute`.
ATTRIBUTION_METHODS: tuple[str, ...] = ("ig", "gradcam", "occlusion", "ablation", "attention")

#: Signed maps keep the sign of the evidence; the others are non-negative.
_SIGNED = {"ig": True, "gradcam": False, "occlusion": True, "ablation": True, "attention": False}


@dataclass(frozen=True)
class Attribution:
    """One attribution (or attention) map per clip of a batch.

    ``map`` is float32 (b, t, h, w) on the CPU, aligned with the input clip frame by frame and pixel
    by pixel; for a flow model's image batch it is (b, h, w) (``meta["input"] == "flow"``). ``signed`` says whether negative values mean evidence against the target class (IG,
    occlusion, ablation) or the map is non-negative by construction (Grad-CAM with ReLU, attention).
    ``target`` is the class explained for each clip, (b,) int64, or None for the learned attention
    (it does not depend on a class). ``delta`` is IG's convergence delta (b,) or (b * nt_samples,)
    under a noise tunnel, None for other methods. ``meta`` holds the method's settings and extras
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
# baselines and small helpers


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
        raise ValueError(f"blur_clip expects (b, c, t, h, w), got shape {tuple(x.shape)}")
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
            raise ValueError("a flow-image batch (b, c, h, w) has no onset frame: use baseline 'zeros', 'blur', a number or a tensor")
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
    raise ValueError(f"unknown baseline {kind!r}: use 'onset', 'zeros', 'blur', a number or a tensor")


def _last_conv_name(model: nn.Module, conv: type[nn.Module]) -> str:
    names = [name for name, module in model.named_modules() if isinstance(module, conv)]
    # A one-channel conv (an attention gate's) has no channels for Grad-CAM to weigh: skip those.
    names = [n for n in names if dict(model.named_modules())[n].out_channels > 1] or names
    if not names:
        raise ValueError(f"{type(model).__name__} has no {conv.__name__} layer: Grad-CAM needs a named conv layer")
    return names[-1]


def last_conv3d_name(model: nn.Module) -> str:
    """Name (as in ``model.named_modules()``) of the last Conv3d with more than one output channel.

    Grad-CAM's default layer for clip models without a ``cam_layer`` attribute (MERANet has one).
    """
    return _last_conv_name(model, nn.Conv3d)


def last_conv2d_name(model: nn.Module) -> str:
    """Name of the last Conv2d with more than one output channel: Grad-CAM's default for flow models."""
    return _last_conv_name(model, nn.Conv2d)


def _resolve_layer(model: nn.Module, layer: str | nn.Module | None, flow: bool = False) -> tuple[str, nn.Module]:
    if isinstance(layer, nn.Module):
        for name, module in model.named_modules():
            if module is layer:
                return name, module
        raise ValueError(f"layer {type(layer).__name__} is not a submodule of {type(model).__name__}")
    if layer is None and isinstance(getattr(model, "cam_layer", None), nn.Module):
        # Models name their own Grad-CAM layer (MERANet: the last residual module).
        return _resolve_layer(model, model.cam_layer)
    conv = nn.Conv2d if flow else nn.Conv3d
    name = _last_conv_name(model, conv) if layer is None else layer
    modules = dict(model.named_modules())
    if name not in modules:
        conv_names = [n for n, m in modules.items() if isinstance(m, conv)]
        raise ValueError(f"{type(model).__name__} has no layer named {name!r}; {conv.__name__} layers: {conv_names}")
    return name, modules[name]


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Evaluate in eval mode (no dropout noise, fixed batch-norm statistics), then restore the mode."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def _is_flow_batch(model: nn.Module, x: Tensor) -> bool:
    """True for a flow-image batch (b, c, h, w) of a flow model, False for a clip batch (b, c, t, h, w) of a
    clip model; ValueError when the batch does not fit the model (its ``input_spec``, else its conv layers)."""
    if not isinstance(x, Tensor) or x.dim() not in (4, 5):
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"attributions need a clip batch (b, c, t, h, w) or a flow-image batch (b, c, h, w), got {shape}")
    spec = getattr(model, "input_spec", None)
    if spec is not None:
        flow_model = spec.kind == "flow"
    else:  # toy models without a spec: any Conv3d makes it a clip model
        flow_model = not any(isinstance(m, nn.Conv3d) for m in model.modules())
    if flow_model and x.dim() != 4:
        raise ValueError(f"{type(model).__name__} is a flow model: it needs a flow-image batch (b, c, h, w), got {tuple(x.shape)}")
    if not flow_model and x.dim() != 5:
        raise ValueError(f"{type(model).__name__} is a clip model: it needs a clip batch (b, c, t, h, w), got {tuple(x.shape)}")
    return flow_model


def _check_clip_batch(x: Tensor) -> None:
    if not isinstance(x, Tensor) or x.dim() != 5:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"attributions need a clip batch (b, c, t, h, w), got {shape}")


def _resolve_target(model: nn.Module, x: Tensor, target: int | Sequence[int] | Tensor | None) -> Tensor:
    """The class explained per clip: given, or the model's prediction when ``target`` is None."""
    b = x.shape[0]
    if target is None:
        with torch.no_grad():
            return model(x).argmax(dim=1).cpu()
    target_tensor = torch.as_tensor(target, dtype=torch.long).reshape(-1).cpu()
    if target_tensor.numel() == 1:
        target_tensor = target_tensor.expand(b).clone()
    if target_tensor.numel() != b:
        raise ValueError(f"target has {target_tensor.numel()} entries for a batch of {b} clips")
    return target_tensor


def _upsample_volume(volume: Tensor, size: tuple[int, int, int]) -> Tensor:
    """Trilinear resize of (b, 1, t', h', w') to (b, t, h, w)."""
    if volume.dim() != 5:
        raise ValueError(f"expected a (b, 1, t, h, w) volume, got shape {tuple(volume.shape)}")
    resized = F.interpolate(volume.float(), size=size, mode="trilinear", align_corners=False)
    return resized[:, 0]  # (b, 1, t, h, w) -> (b, t, h, w)


def _default_stdev(x: Tensor) -> float:
    # SmoothGrad's recommendation: noise at 10-20 % of the input's value range.
    value_range = float(x.max() - x.min())
    return 0.15 * value_range if value_range > 0 else 0.15


# ----------------------------------------------------------------------------------------------
# facial regions (crop geometry)


@dataclass(frozen=True)
class FaceBox:
    """Where the face sits in the preprocessed frame, as fractions of height/width (top, left, bottom, right).

    The preprocessing crops to the face box (plus margin), so the default is the whole frame; pass
    the margin's box when the crop adds one.
    """

    top: float = 0.0
    left: float = 0.0
    bottom: float = 1.0
    right: float = 1.0

    @classmethod
    def from_margin(cls, margin: float) -> "FaceBox":
        """The face box inside a crop grown by ``margin`` x side on every side
        (``PreprocessConfig(crop="haar", crop_margin=margin)``)."""
        inset = margin / (1.0 + 2.0 * margin)
        return cls(top=inset, left=inset, bottom=1.0 - inset, right=1.0 - inset)


#: Facial regions as fractions (top, left, bottom, right) of the face box. Rough anthropometric
#: proportions of a frontal, aligned face crop; they are for bookkeeping of where mass falls, not
#: landmarks. Order matters: earlier regions win where boxes would overlap.
FACE_REGIONS: dict[str, tuple[float, float, float, float]] = {
    "brows": (0.12, 0.10, 0.30, 0.90),
    "eyes": (0.30, 0.10, 0.48, 0.90),
    "nose": (0.48, 0.32, 0.68, 0.68),
    "mouth": (0.68, 0.22, 0.90, 0.78),
}


def face_region_masks(
    size: int | tuple[int, int],
    face_box: FaceBox = FaceBox(),
    regions: Mapping[str, tuple[float, float, float, float]] = FACE_REGIONS,
) -> dict[str, np.ndarray]:
    """Boolean (h, w) masks of the facial regions (brows, eyes, nose, mouth) of a cropped face.

    Regions are boxes given as fractions of the face box; they are made disjoint in the given order
    (a pixel belongs to the first region that claims it). Pixels in no region belong to none.
    """
    h, w = (size, size) if isinstance(size, int) else size
    box_h, box_w = (face_box.bottom - face_box.top) * h, (face_box.right - face_box.left) * w
    taken = np.zeros((h, w), dtype=bool)
    masks: dict[str, np.ndarray] = {}
    for name, (top, left, bottom, right) in regions.items():
        r0 = int(round(face_box.top * h + top * box_h))
        r1 = int(round(face_box.top * h + bottom * box_h))
        c0 = int(round(face_box.left * w + left * box_w))
        c1 = int(round(face_box.left * w + right * box_w))
        mask = np.zeros((h, w), dtype=bool)
        mask[max(r0, 0) : max(r1, r0 + 1), max(c0, 0) : max(c1, c0 + 1)] = True
        mask &= ~taken
        taken |= mask
        masks[name] = mask
    return masks


def region_time_feature_mask(
    n_frames: int,
    size: int | tuple[int, int],
    segments: int = 4,
    regions: Mapping[str, np.ndarray] | None = None,
) -> Tensor:
    """Feature groups for :func:`attribute` ``"ablation"``: facial region x time segment.

    Returns int64 (1, 1, t, h, w), broadcastable over batch and channels. Group id =
    ``segment * (n_regions + 1) + region``, where region ``n_regions`` is "rest of the frame"
    (pixels in no facial region), so each ablation removes one region for a stretch of frames.
    ``regions`` defaults to :func:`face_region_masks` of the whole frame.
    """
    h, w = (size, size) if isinstance(size, int) else size
    regions = face_region_masks((h, w)) if regions is None else regions
    segments = max(1, min(segments, n_frames))
    region_id = np.full((h, w), len(regions), dtype=np.int64)
    for index, mask in enumerate(regions.values()):
        region_id[np.asarray(mask, dtype=bool)] = index
    # Frames split into `segments` nearly equal consecutive runs.
    segment_of_frame = (np.arange(n_frames) * segments) // n_frames
    ids = segment_of_frame[:, None, None] * (len(regions) + 1) + region_id[None]  # (t, h, w)
    return torch.from_numpy(ids).reshape(1, 1, n_frames, h, w)  # (t, h, w) -> (1, 1, t, h, w)


# ----------------------------------------------------------------------------------------------
# the learned attention


def learned_attention(model: nn.Module, x: Tensor) -> Attribution:
    """MERANet's own attention, at input resolution.

    Calls ``model.attention_maps(x, upsample=False)`` (one ``AttentionMaps`` per residual attention
    module). Every module's spatio-temporal map (b, 1, t', h', w') is resized trilinearly
    (align_corners=False) to the input's (t, h, w) and the modules are averaged with equal weight:
    each module's map is a sigmoid gate in [0, 1], so the mean is a gate in [0, 1] too, and no
    module (early, high-resolution or late, coarse) dominates by size. Modules whose spatio-temporal
    attention is ablated (``None``) are skipped. ``meta["per_module"]`` keeps the upsampled maps
    (b, m, t, h, w); ``meta["channel"]`` the channel weights (b, c_i) per module (``None`` where
    ablated); ``meta["modules"]`` the indices of the modules averaged.

    Raises ValueError when the model has no ``attention_maps`` or no module has a spatio-temporal map.
    """
    _check_clip_batch(x)
    if not hasattr(model, "attention_maps"):
        raise ValueError(f"{type(model).__name__} has no attention_maps(): only MERANet-style models have learned attention")
    size = tuple(x.shape[2:])
    with _eval_mode(model), torch.no_grad():
        maps = list(model.attention_maps(x, upsample=False))
    volumes, modules, channel = [], [], []
    for index, item in enumerate(maps):
        channel.append(None if item.channel is None else item.channel.detach().float().cpu())
        if item.spatiotemporal is not None:
            volumes.append(_upsample_volume(item.spatiotemporal.detach(), size).cpu())  # (b, t, h, w)
            modules.append(index)
    if not volumes:
        raise ValueError(f"{type(model).__name__}: every module's spatio-temporal attention is ablated; nothing to show")
    per_module = torch.stack(volumes, dim=1)  # m x (b, t, h, w) -> (b, m, t, h, w)
    return Attribution(
        map=per_module.mean(dim=1),
        method="attention",
        signed=False,
        target=None,
        meta={"per_module": per_module, "channel": channel, "modules": modules},
    )


# ----------------------------------------------------------------------------------------------
# Captum wrappers


def attribute(
    model: nn.Module,
    x: Tensor,
    method: str = "ig",
    target: int | Sequence[int] | Tensor | None = None,
    *,
    baseline: str | Tensor | float | None = None,
    n_steps: int = 32,
    internal_batch_size: int | None = 8,
    layer: str | nn.Module | None = None,
    relu: bool = True,
    window: tuple[int, int, int] | None = None,
    stride: tuple[int, int, int] | None = None,
    feature_mask: Tensor | None = None,
    segments: int = 4,
    perturbations_per_eval: int = 8,
    noise_tunnel: bool = False,
    nt_samples: int = 8,
    nt_type: str = "smoothgrad",
    nt_stdevs: float | None = None,
    blur_sigma: float = 4.0,
) -> Attribution:
    """Attribute the class score of ``model`` on clips ``x`` (b, c, t, h, w) to frames and pixels, or of a
    flow model on flow images ``x`` (b, c, h, w) to pixels (the map is then (b, h, w); see the module doc).

    ``method``: ``"ig"``, ``"gradcam"``, ``"occlusion"``, ``"ablation"`` or ``"attention"`` (the
    learned attention, :func:`learned_attention`; class-independent, ``target`` ignored).
    ``target``: class per clip (int, sequence or tensor); None explains the predicted class.

    - IG: ``baseline`` (None = "onset" for clips, "zeros" for flow images; "onset", "zeros", "blur",
      number or tensor; :func:`ig_baseline`),
      ``n_steps`` (32), ``internal_batch_size`` (8; bounds memory: unset, all b * n_steps clips go
      through the model at once; benchmarks/bench_explain.py measured on meranet, 2 clips of
      16 x 64 x 64: unset 16 s / 2.2 GB peak, 8 -> 7 s / 0.8 GB, 2 -> 7.8 s / 0.5 GB).
      The convergence delta is returned in ``Attribution.delta``.
    - Grad-CAM: ``layer`` (name in ``model.named_modules()``, a module, or None = the model's
      ``cam_layer`` when it has one, else the last Conv3d, :func:`last_conv3d_name`, or for a flow
      model the last Conv2d, :func:`last_conv2d_name`); ``relu`` keeps only positive evidence (classic
      Grad-CAM). Upsampled (tri)linearly to (t, h, w), or (h, w) for flow images.
    - Occlusion: 3-D ``window`` (t, h, w) and ``stride`` (2-D (h, w) for flow images, default (h/4, w/4));
      default window (t/2, h/4, w/4) with stride
      = window, i.e. 2 x 4 x 4 = 32 non-overlapping windows: cost is linear in the window count
      (~70 ms per window for 2 meranet clips of 16 x 64 x 64 on one thread).
      Occluded pixels take the ``baseline`` values (onset frame by default).
    - Ablation: ``feature_mask`` (broadcastable to x, int64 group ids) or, by default, facial regions
      x ``segments`` time segments (:func:`region_time_feature_mask`); ablated groups take ``baseline``.
    - ``noise_tunnel``: wrap the Captum method in NoiseTunnel (``nt_type``, ``nt_samples``,
      ``nt_stdevs``; default 15 % of x's value range).

    The model is put in eval mode for the call and restored afterwards; nothing is modified in place.
    """
    flow = _is_flow_batch(model, x)
    if method not in ATTRIBUTION_METHODS:
        raise ValueError(f"unknown attribution method {method!r}; choose one of {ATTRIBUTION_METHODS}")
    if method == "attention":
        if flow:
            raise ValueError(f"{type(model).__name__} is a flow model and has no learned attention; "
                             "use 'ig', 'gradcam', 'occlusion' or 'ablation'")
        return learned_attention(model, x)
    if baseline is None:
        baseline = "zeros" if flow else "onset"
    meta_baseline = baseline if isinstance(baseline, str) else "custom"
    x = x.detach()
    forward: Callable[[Tensor], Tensor] = model
    if flow:
        # A flow image is handled as a one-frame clip, so every method below runs unchanged; the model
        # sees its own 4-D input. Baselines are made on the 4-D image ("onset" is refused there).
        baselines_4d = ig_baseline(x, baseline, blur_sigma=blur_sigma)
        if window is not None:
            window = (1, *window[-2:])
        if stride is not None:
            stride = (1, *stride[-2:])
        if feature_mask is not None and feature_mask.dim() == 4:
            feature_mask = feature_mask[:, :, None]  # (b, c, h, w) -> (b, c, 1, h, w)

        def forward(clip: Tensor) -> Tensor:
            return model(clip[:, :, 0])  # (b, c, 1, h, w) -> (b, c, h, w)

    with _eval_mode(model):
        target_tensor = _resolve_target(model, x, target)
        if flow:
            x = x[:, :, None]  # (b, c, h, w) -> (b, c, 1, h, w)
            baseline = baselines_4d[:, :, None]  # (b, c, h, w) -> (b, c, 1, h, w)
        b, c, t, h, w = x.shape
        meta: dict[str, Any] = {"noise_tunnel": noise_tunnel, "input": "flow" if flow else "clip"}
        delta: Tensor | None = None
        target_arg = target_tensor.to(x.device)
        from captum.attr import FeatureAblation, IntegratedGradients, LayerGradCam, NoiseTunnel, Occlusion

        kwargs: dict[str, Any] = {"target": target_arg}
        if method == "ig":
            explainer: Any = IntegratedGradients(forward)
            kwargs.update(
                baselines=ig_baseline(x, baseline, blur_sigma=blur_sigma),
                n_steps=n_steps,
                internal_batch_size=internal_batch_size,
                return_convergence_delta=True,
            )
            meta.update(baseline=meta_baseline, n_steps=n_steps)
        elif method == "gradcam":
            layer_name, layer_module = _resolve_layer(model, layer, flow)
            explainer = LayerGradCam(forward, layer_module)
            kwargs.update(relu_attributions=relu)
            meta.update(layer=layer_name, relu=relu)
        elif method == "occlusion":
            window = window or (max(1, t // 2), max(1, h // 4), max(1, w // 4))
            stride = stride or window
            explainer = Occlusion(forward)
            kwargs.update(
                sliding_window_shapes=(c, *window),
                strides=(c, *stride),
                baselines=ig_baseline(x, baseline, blur_sigma=blur_sigma),
                perturbations_per_eval=perturbations_per_eval,
            )
            meta.update(window=tuple(window[-2:] if flow else window), stride=tuple(stride[-2:] if flow else stride))
        else:  # ablation
            mask = region_time_feature_mask(t, (h, w), segments) if feature_mask is None else feature_mask
            explainer = FeatureAblation(forward)
            kwargs.update(
                feature_mask=mask.to(x.device),
                baselines=ig_baseline(x, baseline, blur_sigma=blur_sigma),
                perturbations_per_eval=perturbations_per_eval,
            )
            meta.update(segments=min(segments, t) if feature_mask is None else None)

        if method == "ig" and internal_batch_size is not None:
            # Captum counts internal batches in expanded examples and needs at least one per clip
            # (per clip and noise sample under a noise tunnel); below that it warns and ignores us.
            clips_per_pass = b * (nt_samples if noise_tunnel else 1)
            kwargs["internal_batch_size"] = max(internal_batch_size, clips_per_pass)
        if noise_tunnel:
            stdevs = _default_stdev(x) if nt_stdevs is None else nt_stdevs
            meta.update(nt_type=nt_type, nt_samples=nt_samples, nt_stdevs=stdevs)
            result = NoiseTunnel(explainer).attribute(x, nt_type=nt_type, nt_samples=nt_samples, stdevs=stdevs, **kwargs)
        else:
            result = explainer.attribute(x, **kwargs)

    if method == "ig":
        raw, delta = result
        delta = delta.detach().cpu()
    else:
        raw = result
    raw = raw.detach()
    if method == "gradcam":
        if flow and raw.dim() == 4:
            raw = raw[:, :, None]  # (b, 1, h', w') -> (b, 1, 1, h', w'): a one-frame volume
        if raw.dim() != 5:
            kind = "Conv2d" if flow else "Conv3d"
            raise ValueError(f"Grad-CAM layer {meta['layer']!r} gives shape {tuple(raw.shape)}; pick a {kind} layer")
        heat = _upsample_volume(raw, (t, h, w))  # (b, 1, t', h', w') -> (b, t, h, w)
        if relu:
            heat = heat.clamp(min=0)  # interpolation of non-negative values stays non-negative; guard rounding
    elif method == "ig":
        heat = raw.float().sum(dim=1)  # (b, c, t, h, w) -> (b, t, h, w): completeness kept
    else:
        heat = raw.float().mean(dim=1)  # (b, c, t, h, w) -> (b, t, h, w): same value per channel
    if flow:
        heat = heat[:, 0]  # (b, 1, h, w) -> (b, h, w): the flow image's one "frame"
    return Attribution(
        map=heat.cpu(),
        method=method,
        signed=_SIGNED[method] if method != "gradcam" else not relu,
        target=target_tensor,
        delta=delta,
        meta=meta,
    )


# ----------------------------------------------------------------------------------------------
# scores


def _as_maps(attribution: Attribution | Tensor | np.ndarray) -> np.ndarray:
    """Non-negative float64 (b, t, h, w) from an Attribution, tensor or array of (b,t,h,w)/(t,h,w)/(h,w)."""
    if isinstance(attribution, Attribution):
        values = attribution.magnitude().numpy()
        if values.ndim == 3:  # a flow model's map (b, h, w), not one clip's (t, h, w)
            values = values[:, None]  # (b, h, w) -> (b, 1, h, w)
    elif isinstance(attribution, Tensor):
        values = attribution.detach().abs().cpu().numpy()
    else:
        values = np.abs(np.asarray(attribution))
    values = values.astype(np.float64)
    if values.ndim == 2:
        values = values[None, None]  # (h, w) -> (1, 1, h, w)
    elif values.ndim == 3:
        values = values[None]  # (t, h, w) -> (1, t, h, w)
    if values.ndim != 4:
        raise ValueError(f"attribution maps must be (b, t, h, w), (t, h, w) or (h, w); got {values.shape}")
    return values


def _as_masks(mask: Tensor | np.ndarray, batch: int, shape: tuple[int, int, int]) -> np.ndarray:
    """Boolean (b, t, h, w) masks from (h, w), (b, h, w) or (b, t, h, w) (spatial masks hold for every frame)."""
    values = mask.detach().cpu().numpy() if isinstance(mask, Tensor) else np.asarray(mask)
    values = values.astype(bool)
    t, h, w = shape
    if values.ndim == 2:
        values = values[None, None]  # (h, w) -> (1, 1, h, w)
    elif values.ndim == 3:
        values = values[:, None]  # (b, h, w) -> (b, 1, h, w)
    if values.ndim != 4 or values.shape[-2:] != (h, w):
        raise ValueError(f"mask shape {values.shape} does not match attribution frames {(h, w)}")
    return np.broadcast_to(values, (batch, values.shape[1] if values.shape[1] != 1 else t, h, w))


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Square dilation of boolean (..., h, w) masks by ``radius`` pixels (pointing-game tolerance)."""
    if radius <= 0:
        return mask
    h, w = mask.shape[-2:]
    padded = np.pad(mask, [(0, 0)] * (mask.ndim - 2) + [(radius, radius), (radius, radius)])
    grown = np.zeros_like(mask)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            grown |= padded[..., dy : dy + h, dx : dx + w]
    return grown


def region_scores(
    attribution: Attribution | Tensor | np.ndarray,
    mask: Tensor | np.ndarray,
    tolerance: int = 0,
) -> pd.DataFrame:
    """How well each clip's map finds the true region: one row per clip.

    ``attribution``: (b, t, h, w) (also (t, h, w) or (h, w)); absolute values are scored.
    ``mask``: boolean true region, (h, w), (b, h, w) (same region in every frame, SynthME's motion
    mask) or (b, t, h, w).

    Columns: ``mass_in_region``, the share of the clip's absolute attribution mass inside the region
    (1.0 when all mass is inside, ≈ region fraction for a map that knows nothing); ``pointing_hit``,
    whether the pixel of largest time-summed mass lies in the region (dilated by ``tolerance``
    pixels), the pointing game; ``region_fraction``, the share of the clip's volume inside the
    region, which is what both scores equal at chance. A map with zero mass scores NaN / False.
    """
    maps = _as_maps(attribution)
    b, t, h, w = maps.shape
    masks = _as_masks(mask, b, (t, h, w))
    total = maps.sum(axis=(1, 2, 3))
    inside = (maps * masks).sum(axis=(1, 2, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        mass = np.where(total > 0, inside / np.where(total > 0, total, 1.0), np.nan)
    energy = maps.sum(axis=1).reshape(b, h * w)  # (b, t, h, w) -> (b, h*w): where over the clip
    peak = energy.argmax(axis=1)
    hit_region = _dilate(masks.any(axis=1), tolerance).reshape(b, h * w)  # (b, h, w) -> (b, h*w)
    hits = hit_region[np.arange(b), peak] & (total > 0)
    fraction = masks.reshape(b, -1).mean(axis=1)  # (b, t, h, w) -> (b, t*h*w)
    return pd.DataFrame({"mass_in_region": mass, "pointing_hit": hits, "region_fraction": fraction})


def random_baseline(
    mask: Tensor | np.ndarray,
    n_frames: int = 1,
    draws: int = 32,
    seed: int = 0,
    smooth_sigma: float = 0.0,
    tolerance: int = 0,
) -> pd.DataFrame:
    """Scores of random maps against the same masks: the chance level each method must beat.

    For every clip (mask (b, h, w), (h, w) or (b, t, h, w)) draws ``draws`` maps of i.i.d. uniform
    noise of ``n_frames`` frames (optionally Gaussian-smoothed in space by ``smooth_sigma`` pixels,
    to mimic the blobby look of real maps) and averages :func:`region_scores` over the draws.
    Returns one row per clip with ``mass_in_region`` and ``pointing_hit`` (a rate in [0, 1]) and
    ``region_fraction``.
    """
    values = mask.detach().cpu().numpy() if isinstance(mask, Tensor) else np.asarray(mask)
    if values.ndim == 2:
        values = values[None]  # (h, w) -> (1, h, w)
    if values.ndim == 4:
        n_frames = values.shape[1]
    b, h, w = values.shape[0], values.shape[-2], values.shape[-1]
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for draw in range(draws):
        noise = torch.rand((b, 1, n_frames, h, w), generator=generator)
        if smooth_sigma > 0:
            noise = blur_clip(noise, smooth_sigma)
        scores = region_scores(noise[:, 0], values, tolerance=tolerance)  # (b, 1, t, h, w) -> (b, t, h, w)
        scores["draw"] = draw
        scores["clip"] = np.arange(b)
        rows.append(scores)
    table = pd.concat(rows, ignore_index=True)
    table["pointing_hit"] = table["pointing_hit"].astype(float)
    return table.groupby("clip")[["mass_in_region", "pointing_hit", "region_fraction"]].mean().reset_index(drop=True)


def agreement(a: Attribution | Tensor | np.ndarray, b: Attribution | Tensor | np.ndarray) -> np.ndarray:
    """Spearman rank correlation between two maps of the same clips, one value per clip (b,).

    Absolute values are ranked (where a method looks, not which sign it gives). NaN when a map is
    constant (no ranking).
    """
    first, second = _as_maps(a), _as_maps(b)
    if first.shape != second.shape:
        raise ValueError(f"maps differ in shape: {first.shape} vs {second.shape}")
    out = np.empty(first.shape[0])
    for index in range(first.shape[0]):
        x_flat, y_flat = first[index].ravel(), second[index].ravel()
        if np.ptp(x_flat) == 0 or np.ptp(y_flat) == 0:
            out[index] = np.nan
        else:
            out[index] = spearmanr(x_flat, y_flat).statistic
    return out


def agreement_table(attributions: Mapping[str, Attribution], reference: str = "attention") -> pd.DataFrame:
    """Rank correlation of every method with ``reference`` (the learned attention): rows clip x method."""
    if reference not in attributions:
        raise ValueError(f"reference {reference!r} not among the maps {list(attributions)}")
    rows = []
    for name, attr in attributions.items():
        if name == reference:
            continue
        for clip, rho in enumerate(agreement(attributions[reference], attr)):
            rows.append({"clip": clip, "method": name, "reference": reference, "spearman": rho})
    return pd.DataFrame(rows, columns=["clip", "method", "reference", "spearman"])


def frame_curve(attribution: Attribution | Tensor | np.ndarray) -> np.ndarray:
    """Share of each clip's absolute attribution mass per frame, (b, t); rows sum to 1 (0 for empty maps)."""
    maps = _as_maps(attribution)
    per_frame = maps.sum(axis=(2, 3))  # (b, t, h, w) -> (b, t)
    total = per_frame.sum(axis=1, keepdims=True)
    return np.divide(per_frame, total, out=np.zeros_like(per_frame), where=total > 0)


def region_mass_over_time(
    attribution: Attribution | Tensor | np.ndarray,
    regions: Mapping[str, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Share of each clip's absolute mass per facial region and frame (long table).

    ``regions`` defaults to :func:`face_region_masks` of the frame size; pixels in no region are
    reported as ``"other"``. Columns: clip, frame, region, mass (shares over regions and frames of
    one clip sum to 1).
    """
    maps = _as_maps(attribution)
    b, t, h, w = maps.shape
    regions = face_region_masks((h, w)) if regions is None else regions
    total = maps.sum(axis=(1, 2, 3))
    total = np.where(total > 0, total, 1.0)
    named = list(regions.items())
    covered = np.zeros((h, w), dtype=bool)
    for _, mask in named:
        covered |= np.asarray(mask, dtype=bool)
    named.append(("other", ~covered))
    frames = []
    for name, mask in named:
        mass = (maps * np.asarray(mask, dtype=bool)).sum(axis=(2, 3)) / total[:, None]  # (b, t)
        clips, frame_index = np.meshgrid(np.arange(b), np.arange(t), indexing="ij")
        frames.append(pd.DataFrame({"clip": clips.ravel(), "frame": frame_index.ravel(), "region": name, "mass": mass.ravel()}))
    return pd.concat(frames, ignore_index=True)


def event_positions(
    onset: int,
    apex: int | None,
    offset: int,
    n_frames: int,
    span: tuple[float, float] | None = None,
) -> dict[str, float]:
    """Where onset, apex and offset (sheet frame numbers) fall among the clip's ``n_frames`` positions.

    The temporal normalisation samples frame numbers ``span = (first, last)`` linearly onto positions
    0..n_frames-1; the default span is (onset, offset), what ``PreprocessConfig(temporal="onset_offset")``
    and ``"tim"`` sample. For ``"onset_apex"`` pass ``span=(onset, apex)``. Events outside the span
    and a missing apex (SMIC) are left out.
    """
    first, last = (float(onset), float(offset)) if span is None else (float(span[0]), float(span[1]))
    scale = (n_frames - 1) / max(last - first, 1.0)
    events: dict[str, float] = {}
    for name, frame in (("onset", onset), ("apex", apex), ("offset", offset)):
        if frame is None or pd.isna(frame) or not first <= float(frame) <= last:
            continue
        events[name] = float((float(frame) - first) * scale)
    return events


# ----------------------------------------------------------------------------------------------
# dataset-level scoring (one call for the explain notebook)


def score_methods(
    model: nn.Module,
    dataset: Sequence[tuple[Tensor, int]],
    masks: Tensor | np.ndarray,
    methods: Sequence[str] = ("ig", "gradcam", "attention"),
    *,
    target: str = "label",
    batch_size: int = 4,
    random_draws: int = 32,
    tolerance: int = 0,
    method_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool = True,
    device: str | torch.device = "cpu",
) -> pd.DataFrame:
    """Score every method (and random maps) against the true motion masks, over a whole dataset.

    ``dataset[i]`` gives ``(x (c, t, h, w), label)`` (e.g. ``ClipDataset``); ``masks[i]`` is clip
    i's true region (h, w) in the same preprocessed space (e.g. ``store.masks[positions]``).
    ``target="label"`` explains the true class, ``"pred"`` the predicted one. ``"attention"`` is
    skipped for models without learned spatio-temporal attention (baselines, ablations).
    ``method_kwargs`` passes settings per method, e.g. ``{"ig": {"n_steps": 16}}``.

    Returns a long DataFrame, one row per clip x method (``"random"`` included): clip, label, pred,
    method, mass_in_region, pointing_hit, region_fraction, and ``spearman_attention`` (agreement
    with the learned attention, NaN when the model has none). Summarise with :func:`summarise_scores`.
    """
    if target not in ("label", "pred"):
        raise ValueError(f"target must be 'label' or 'pred', got {target!r}")
    method_kwargs = dict(method_kwargs or {})
    masks_array = masks.detach().cpu().numpy() if isinstance(masks, Tensor) else np.asarray(masks)
    if len(masks_array) != len(dataset):
        raise ValueError(f"{len(masks_array)} masks for {len(dataset)} clips: masks must align with the dataset")
    usable = list(methods)
    model = model.to(device)
    tables = []
    starts = range(0, len(dataset), batch_size)
    for start in tqdm(starts, desc="explain", disable=not progress):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        x = torch.stack([torch.as_tensor(item[0]) for item in items]).to(device)  # b x (c, t, h, w) -> (b, c, t, h, w)
        labels = torch.as_tensor([int(item[1]) for item in items])
        with _eval_mode(model), torch.no_grad():
            preds = model(x).argmax(dim=1).cpu()
        explained = labels if target == "label" else preds
        batch_masks = masks_array[start : start + len(items)]
        maps: dict[str, Attribution] = {}
        for method in list(usable):
            try:
                maps[method] = attribute(model, x, method, target=explained, **method_kwargs.get(method, {}))
            except ValueError:
                if method != "attention":
                    raise
                usable.remove(method)  # no learned attention (baseline, or every module ablated)
        scored = {name: region_scores(attr, batch_masks, tolerance=tolerance) for name, attr in maps.items()}
        frames = x.shape[2] if x.dim() == 5 else 1  # a flow-image batch (b, c, h, w) has one "frame"
        scored["random"] = random_baseline(batch_masks, n_frames=frames, draws=random_draws, seed=start, tolerance=tolerance)
        for name, table in scored.items():
            table = table.copy()
            table.insert(0, "method", name)
            table.insert(0, "pred", preds.numpy())
            table.insert(0, "label", labels.numpy())
            table.insert(0, "clip", np.arange(start, start + len(items)))
            if "attention" in maps and name not in ("attention", "random"):
                table["spearman_attention"] = agreement(maps["attention"], maps[name])
            else:
                table["spearman_attention"] = np.nan
            table["pointing_hit"] = table["pointing_hit"].astype(float)
            tables.append(table)
    return pd.concat(tables, ignore_index=True)


def explain_store(
    model: nn.Module,
    store: Any,
    positions: Sequence[int] | np.ndarray | None = None,
    methods: Sequence[str] = ("ig", "gradcam", "attention"),
    *,
    dataset_factory: Callable[[Any, np.ndarray], Sequence[tuple[Tensor, int]]] | None = None,
    **kwargs: Any,
) -> pd.DataFrame:
    """:func:`score_methods` over clips of a clip store that holds true motion masks (SynthME).

    A flow model (``input_spec.kind == "flow"``) is handed to :func:`explain_flow_store`.

    ``store`` is a ``merkit.data.store.ClipStore`` with ``masks`` (N, S, S) and ``index`` (one row
    per clip); ``positions`` selects clips (default all; e.g. a fold's held-out subject).
    ``dataset_factory(store, positions)`` builds the torch dataset (default
    ``merkit.data.torch_dataset.ClipDataset`` without augmentation, the one the model trained on).
    Other keyword arguments go to :func:`score_methods`. The result carries the store's
    ``dataset``, ``subject``, ``sample`` and ``emotion`` columns next to each clip's scores, and
    ``clip`` is the position in the store.
    """
    positions_array = np.arange(len(store.index)) if positions is None else np.asarray(positions, dtype=np.int64)
    if getattr(getattr(model, "input_spec", None), "kind", "clip") == "flow":
        return explain_flow_store(model, store, positions_array, methods, dataset_factory=dataset_factory, **kwargs)
    masks = getattr(store, "masks", None)
    if masks is None:
        raise ValueError(
            "the clip store has no motion masks (only SynthME stores do): cannot score against a true region; "
            "merkit.explain_regions.explain_regions reads the maps against facial regions instead"
        )
    if dataset_factory is None:
        from merkit.data.torch_dataset import ClipDataset

        def dataset_factory(clip_store: Any, chosen: np.ndarray) -> Any:
            return ClipDataset(clip_store, chosen)

    dataset = dataset_factory(store, positions_array)
    scores = score_methods(model, dataset, np.asarray(masks)[positions_array], methods, **kwargs)
    from merkit.progress import pause_point

    pause_point("explain.running")  # test hook (merkit.progress): a kill during 04_explain
    info_columns = [c for c in ("dataset", "subject", "sample", "emotion") if c in store.index.columns]
    info = store.index.iloc[positions_array][info_columns].reset_index(drop=True)  # row k = dataset item k
    scores = scores.join(info, on="clip")
    scores["clip"] = positions_array[scores["clip"].to_numpy()]
    return scores


def summarise_scores(scores: pd.DataFrame, by: Sequence[str] = ("method", "label")) -> pd.DataFrame:
    """Mean scores of :func:`score_methods` per method and class (or any grouping), with clip counts.

    Adds ``mass_over_chance``: mean mass in region divided by mean region fraction (1 = chance).
    """
    grouped = scores.groupby(list(by), dropna=False)
    summary = grouped[["mass_in_region", "pointing_hit", "region_fraction", "spearman_attention"]].mean()
    summary["clips"] = grouped.size()
    summary["mass_over_chance"] = summary["mass_in_region"] / summary["region_fraction"]
    return summary.reset_index()



# ----------------------------------------------------------------------------------------------
# flow models over a store's flow images (a clip store built with flow, or a flow-folder store)


def flow_regions(store: Any, positions: np.ndarray, *, top_fraction: float = 0.1) -> tuple[np.ndarray, str]:
    """The region each flow image is scored against: bool (n, F, F), and where it came from.

    With true motion masks in the store (SynthME) they are resized (nearest) from the clip side to the flow
    side: the flow is computed on the same face crop, so the two frames line up (``"motion mask"``). Without
    them (a real dataset, a flow folder) the region is the ``top_fraction`` of pixels that move most,
    ``sqrt(u² + v²)`` about each image's median (the still face): ``"largest flow"``. That asks whether the
    model looks where the face moves, not whether the motion is the expression's (no ground truth exists).
    """
    import cv2

    flow = np.asarray(store.flow[np.asarray(positions)], dtype=np.float32)  # (n, F, F, 3)
    side = flow.shape[1]
    masks = getattr(store, "masks", None)
    if masks is not None:
        chosen = np.asarray(masks[np.asarray(positions)], dtype=np.uint8)  # (n, S, S)
        resized = [cv2.resize(m, (side, side), interpolation=cv2.INTER_NEAREST) for m in chosen]
        return np.stack(resized).astype(bool), "motion mask"
    centred = flow[..., :2] - np.median(flow[..., :2], axis=(1, 2), keepdims=True)
    magnitude = np.hypot(centred[..., 0], centred[..., 1]).reshape(len(flow), -1)  # (n, F, F) -> (n, F·F)
    cut = np.quantile(magnitude, 1.0 - top_fraction, axis=1, keepdims=True)
    return (magnitude >= cut).reshape(len(flow), side, side), "largest flow"


def explain_flow_store(
    model: nn.Module,
    store: Any,
    positions: Sequence[int] | np.ndarray | None = None,
    methods: Sequence[str] = ("ig", "gradcam", "occlusion"),
    *,
    dataset_factory: Callable[[Any, np.ndarray], Sequence[tuple[Tensor, int]]] | None = None,
    **kwargs: Any,
) -> pd.DataFrame:
    """:func:`score_methods` for a flow model over the store's flow images (``store.flow``).

    The images reach the model exactly as in training (``merkit.protocols.model_dataset``: the model's own
    channels and value encoding). Each is scored against :func:`flow_regions` (true motion masks when the
    store has them, else the pixels that move most); the ``region_source`` column says which. ``"attention"``
    is skipped (flow models have none). Same columns as :func:`explain_store`.
    """
    if getattr(store, "flow", None) is None:
        raise ValueError(f"{store!r} has no flow images: build it with flow (prepare_data(..., flow='tvl1'))")
    chosen = np.arange(len(store.index)) if positions is None else np.asarray(positions, dtype=np.int64)
    if dataset_factory is None:
        dataset = _model_input_dataset(model, store, chosen)
    else:
        dataset = dataset_factory(store, chosen)
    regions, source = flow_regions(store, chosen)
    usable = [m for m in methods if m != "attention"]
    scores = score_methods(model, dataset, regions, usable, **kwargs)
    info_columns = [c for c in ("dataset", "subject", "sample", "emotion") if c in store.index.columns]
    info = store.index.iloc[chosen][info_columns].reset_index(drop=True)
    scores = scores.join(info, on="clip")
    scores["clip"] = chosen[scores["clip"].to_numpy()]
    scores["region_source"] = source
    return scores


def _model_input_dataset(model: nn.Module, store: Any, positions: np.ndarray) -> Any:
    """The unaugmented dataset ``model`` reads (what ``merkit.runner.model_dataset`` gives for evaluation):
    clips, or flow images in the model's channels and value encoding."""
    from merkit.data.torch_dataset import FLOW_CHANNELS, ClipDataset, FlowDataset

    spec = getattr(model, "input_spec", None)
    if spec is None or spec.kind == "clip":
        return ClipDataset(store, positions)
    return FlowDataset(store, positions, channels=FLOW_CHANNELS[: spec.channels], encoding=spec.encoding)


def model_inputs(model: nn.Module, store: Any, positions: Sequence[int] | np.ndarray) -> Tensor:
    """The inputs ``model`` reads for store rows ``positions``, stacked: clips (n, c, t, h, w) for a clip
    model, flow images (n, c, h, w) for a flow model (its channels and encoding), without augmentation."""
    dataset = _model_input_dataset(model, store, np.asarray(positions, dtype=np.int64))
    return torch.stack([dataset[i][0] for i in range(len(dataset))])  # n x (c, [t,] h, w) -> (n, c, [t,] h, w)


def store_events(
    store: Any, positions: Sequence[int] | np.ndarray, n_frames: int, model: nn.Module | None = None
) -> list[dict[str, float]]:
    """Onset/apex/offset positions of each row among a clip's ``n_frames`` (:func:`event_positions`). For a
    flow model (or a flow-only store) the input is one onset→apex flow image, whose one frame stands for the
    apex: ``{"apex": 0.0}``."""
    rows = store.index.iloc[np.asarray(positions, dtype=np.int64)]
    flow_model = getattr(getattr(model, "input_spec", None), "kind", "clip") == "flow"
    if flow_model or getattr(store, "clips", None) is None or "apex_used" not in rows:
        return [{"apex": 0.0} for _ in range(len(rows))]
    return [event_positions(int(r["onset"]), int(r["apex_used"]), int(r["offset"]), n_frames) for _, r in rows.iterrows()]
