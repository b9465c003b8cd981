"""The attribution methods, one small function per Captum method, and :func:`attribute`, which dispatches.

Axis letters: b batch, c channels, t frames, h height, w width.

Every method works on a clip volume (b, c, t, h, w). A flow model's image batch (b, c, h, w) is lifted once,
by :func:`_lift` through the model's input adapter (``merkit.data.inputs.FlowInput``): the image becomes a
one-frame clip (b, c, 1, h, w), the model is called on the frame, windows and masks gain a time axis of one,
and the map loses it again at the end. So no method knows which kind of input it explains.

A method function takes the :class:`LiftedBatch` and its own keyword options and returns a :class:`MethodPlan`: the
Captum explainer, the keywords of its ``attribute`` call, the settings recorded in ``Attribution.meta``, and how the
raw attribution (b, c, t, h, w) becomes a map (b, t, h, w). :func:`attribute` resolves the target, wraps the
explainer in a NoiseTunnel when asked, runs it and puts the map back in the input's layout.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from captum.attr import FeatureAblation, IntegratedGradients, LayerGradCam, NoiseTunnel, Occlusion
from torch import Tensor, nn

from merkit.data.inputs import InputAdapter
from merkit.explain.faces import region_time_feature_mask
from merkit.explain.maps import (
    Attribution,
    ExplainError,
    _check_clip_batch,
    _default_stdev,
    _eval_mode,
    _resolve_layer,
    _resolve_target,
    _upsample_volume,
    explained_input,
    ig_baseline,
)

__all__ = [
    "ATTRIBUTION_METHODS",
    "CAPTUM_METHODS",
    "LiftedBatch",
    "MethodPlan",
    "attribute",
    "feature_ablation",
    "grad_cam",
    "integrated_gradients",
    "learned_attention",
    "method_options",
    "occlusion",
]


# ----------------------------------------------------------------------------------------------
# the learned attention (not a Captum method: class-independent, read from the model)


def learned_attention(model: nn.Module, x: Tensor) -> Attribution:
    """MERANet's own attention, at input resolution.

    Calls ``model.attention_maps(x, upsample=False)`` (one ``AttentionMaps`` per residual attention
    module). Every module's spatio-temporal map (b, 1, t', h', w') is resized trilinearly
    (align_corners=False) to the input's (t, h, w) and the modules are averaged with equal weight:
    each module's map is a sigmoid gate in [0, 1] (or, with ``st_normalise="softmax"``, a map of mean 1
    per frame), so the mean stays in that range, and no module (early, high-resolution or late, coarse)
    dominates by size. Modules whose spatio-temporal
    attention is ablated (``None``) are skipped. ``meta["per_module"]`` keeps the upsampled maps
    (b, m, t, h, w); ``meta["channel"]`` the channel weights (b, c_i) per module (``None`` where
    ablated); ``meta["modules"]`` the indices of the modules averaged; ``meta["grids"]`` their native
    ``t'×h'×w'`` grids. The mean is what the kit shows; :func:`merkit.explain.module_scores` scores each
    module on its own (a module whose gate is *lower* on the region and one that ranks it first can average
    to a map that shows neither).

    Raises ValueError when the model has no ``attention_maps`` or no module has a spatio-temporal map.
    """
    _check_clip_batch(x)
    if not hasattr(model, "attention_maps"):
        raise ExplainError(
            f"{type(model).__name__} has no attention_maps(): only MERANet-style models have learned attention"
        )
    size = tuple(x.shape[2:])
    with _eval_mode(model), torch.no_grad():
        maps = list(model.attention_maps(x, upsample=False))
    volumes, modules, grids, channel = [], [], [], []
    for index, item in enumerate(maps):
        channel.append(None if item.channel is None else item.channel.detach().float().cpu())
        if item.spatiotemporal is not None:
            volumes.append(_upsample_volume(item.spatiotemporal.detach(), size).cpu())  # (b, t, h, w)
            modules.append(index)
            grids.append("×".join(str(n) for n in item.spatiotemporal.shape[2:]))  # native t'×h'×w'
    if not volumes:
        name = getattr(model, "name", type(model).__name__)
        setting = getattr(model, "attention", None)
        raise ExplainError(
            f"model {name!r}{f' (attention={setting!r})' if setting else ''} has no spatio-temporal attention: "
            "there is no attention map to show or score; use a model with attention 'both' or 'spatiotemporal'"
        )
    per_module = torch.stack(volumes, dim=1)  # m x (b, t, h, w) -> (b, m, t, h, w)
    return Attribution(
        map=per_module.mean(dim=1),
        method="attention",
        signed=False,
        target=None,
        meta={"per_module": per_module, "channel": channel, "modules": modules, "grids": grids},
    )


# ----------------------------------------------------------------------------------------------
# the lifted batch every Captum method sees


@dataclass(frozen=True)
class LiftedBatch:
    """A batch as the methods see it. ``x`` is the input as given, (b, c, t, h, w) or a flow image batch
    (b, c, h, w); ``volume`` its clip view (b, c, t, h, w); ``forward`` the model as a function of the volume;
    ``samples`` the model passes per clip (``nt_samples`` under a noise tunnel, else 1)."""

    model: nn.Module
    adapter: InputAdapter
    x: Tensor
    volume: Tensor
    forward: Callable[[Tensor], Tensor]
    samples: int = 1

    def baseline(self, kind: str | Tensor | float | None, blur_sigma: float) -> tuple[Tensor, str]:
        """The baseline volume (b, c, t, h, w), made on the input's own layout (:func:`ig_baseline`; a flow
        image has no onset frame), and its name for ``meta`` ("custom" for a tensor or number)."""
        kind = self.adapter.default_baseline if kind is None else kind
        values = self.adapter.to_volume(ig_baseline(self.x, kind, blur_sigma=blur_sigma))
        return values, kind if isinstance(kind, str) else "custom"


def _lift(model: nn.Module, x: Tensor, adapter: InputAdapter, samples: int) -> LiftedBatch:
    """The one place that lifts a flow image batch to a one-frame clip (a clip batch stays as it is)."""
    x = x.detach()
    return LiftedBatch(model, adapter, x, adapter.to_volume(x), adapter.forward(model), samples)


@dataclass
class MethodPlan:
    """What a method function returns: the Captum ``explainer``, the keywords of its ``attribute`` call (the
    target is added later), the ``meta`` settings, whether the map is ``signed`` and ``reduce``, the raw
    attribution (b, c, t, h, w) (or Grad-CAM's layer map) to the map (b, t, h, w)."""

    explainer: Any
    kwargs: dict[str, Any]
    meta: dict[str, Any]
    signed: bool
    reduce: Callable[[Tensor], Tensor]
    returns_delta: bool = False


def _sum_channels(raw: Tensor) -> Tensor:
    return raw.float().sum(dim=1)  # (b, c, t, h, w) -> (b, t, h, w): IG's completeness kept


def _mean_channels(raw: Tensor) -> Tensor:
    return raw.float().mean(dim=1)  # (b, c, t, h, w) -> (b, t, h, w): same value per channel of a window


# ----------------------------------------------------------------------------------------------
# the Captum methods


def integrated_gradients(
    lifted: LiftedBatch,
    *,
    baseline: str | Tensor | float | None = None,
    n_steps: int = 32,
    internal_batch_size: int | None = 8,
    blur_sigma: float = 4.0,
) -> MethodPlan:
    """Integrated Gradients (signed), summed over channels so the map sums to f(x) - f(baseline).

    ``internal_batch_size`` bounds memory: unset, all b * n_steps clips go through the model at once
    (benchmarks/bench_explain.py measured on meranet, 2 clips of 16 x 64 x 64: unset 16 s / 2.2 GB peak,
    8 -> 7 s / 0.8 GB, 2 -> 7.8 s / 0.5 GB).
    """
    baselines, name = lifted.baseline(baseline, blur_sigma)
    if internal_batch_size is not None:
        # Captum counts internal batches in expanded examples and needs at least one per clip (per clip and
        # noise sample under a noise tunnel); below that it warns and ignores us.
        internal_batch_size = max(internal_batch_size, lifted.volume.shape[0] * lifted.samples)
    kwargs = {
        "baselines": baselines,
        "n_steps": n_steps,
        "internal_batch_size": internal_batch_size,
        "return_convergence_delta": True,
    }
    return MethodPlan(
        IntegratedGradients(lifted.forward),
        kwargs,
        {"baseline": name, "n_steps": n_steps},
        True,
        _sum_channels,
        returns_delta=True,
    )


def grad_cam(lifted: LiftedBatch, *, layer: str | nn.Module | None = None, relu: bool = True) -> MethodPlan:
    """Grad-CAM on a named conv layer (default: the model's ``cam_layer``, else its last Conv3d, or Conv2d for
    flow images), upsampled (tri)linearly to the input; ``relu`` keeps only positive evidence."""
    adapter = lifted.adapter
    layer_name, layer_module = _resolve_layer(lifted.model, layer, adapter.cam_conv)
    size = tuple(lifted.volume.shape[2:])

    def reduce(raw: Tensor) -> Tensor:
        raw = adapter.to_volume(raw)  # a Conv2d map (b, 1, h', w') -> (b, 1, 1, h', w'); a volume stays
        if raw.dim() != 5:
            raise ExplainError(
                f"Grad-CAM layer {layer_name!r} gives shape {tuple(raw.shape)}; "
                f"pick a {adapter.cam_conv.__name__} layer"
            )
        heat = _upsample_volume(raw, size)  # (b, 1, t', h', w') -> (b, t, h, w)
        # interpolation of non-negative values stays non-negative; guard rounding
        return heat.clamp(min=0) if relu else heat

    return MethodPlan(
        LayerGradCam(lifted.forward, layer_module),
        {"relu_attributions": relu},
        {"layer": layer_name, "relu": relu},
        not relu,
        reduce,
    )


def occlusion(
    lifted: LiftedBatch,
    *,
    window: Sequence[int] | None = None,
    stride: Sequence[int] | None = None,
    baseline: str | Tensor | float | None = None,
    perturbations_per_eval: int = 8,
    blur_sigma: float = 4.0,
) -> MethodPlan:
    """Occlusion with 3-D (t, h, w) windows (2-D (h, w) for flow images), signed; occluded pixels take the
    baseline. Default window (t/2, h/4, w/4), stride = window: 2 x 4 x 4 = 32 windows, and the cost is
    linear in their count (~70 ms per window for 2 meranet clips of 16 x 64 x 64 on one thread)."""
    adapter = lifted.adapter
    _, c, t, h, w = lifted.volume.shape
    window = adapter.volume_shape(window) if window is not None else (max(1, t // 2), max(1, h // 4), max(1, w // 4))
    stride = adapter.volume_shape(stride) if stride is not None else window
    baselines, _ = lifted.baseline(baseline, blur_sigma)
    kwargs = {
        "sliding_window_shapes": (c, *window),
        "strides": (c, *stride),
        "baselines": baselines,
        "perturbations_per_eval": perturbations_per_eval,
    }
    meta = {"window": adapter.input_shape(window), "stride": adapter.input_shape(stride)}
    return MethodPlan(Occlusion(lifted.forward), kwargs, meta, True, _mean_channels)


def feature_ablation(
    lifted: LiftedBatch,
    *,
    feature_mask: Tensor | None = None,
    segments: int = 4,
    baseline: str | Tensor | float | None = None,
    perturbations_per_eval: int = 8,
    blur_sigma: float = 4.0,
) -> MethodPlan:
    """Feature ablation (signed) over ``feature_mask`` groups (int64 ids, broadcastable to the input) or, by
    default, facial regions x ``segments`` time segments (:func:`region_time_feature_mask`); ablated
    groups take the baseline."""
    _, _, t, h, w = lifted.volume.shape
    if feature_mask is None:
        mask = region_time_feature_mask(t, (h, w), segments)
    else:
        mask = lifted.adapter.to_volume(feature_mask) if feature_mask.dim() == 4 else feature_mask
    baselines, _ = lifted.baseline(baseline, blur_sigma)
    kwargs = {
        "feature_mask": mask.to(lifted.volume.device),
        "baselines": baselines,
        "perturbations_per_eval": perturbations_per_eval,
    }
    meta = {"segments": min(segments, t) if feature_mask is None else None}
    return MethodPlan(FeatureAblation(lifted.forward), kwargs, meta, True, _mean_channels)


#: The Captum methods of :func:`attribute`, by name.
CAPTUM_METHODS: dict[str, Callable[..., MethodPlan]] = {
    "ig": integrated_gradients,
    "gradcam": grad_cam,
    "occlusion": occlusion,
    "ablation": feature_ablation,
}

#: Methods accepted by :func:`attribute` as the kit ships it (a method added to CAPTUM_METHODS is accepted too).
ATTRIBUTION_METHODS: tuple[str, ...] = (*CAPTUM_METHODS, "attention")


def method_options(method: str) -> frozenset[str]:
    """The keyword options of a Captum method of :data:`CAPTUM_METHODS` (its function's keywords)."""
    return frozenset(p for p in inspect.signature(CAPTUM_METHODS[method]).parameters if p != "lifted")


# ----------------------------------------------------------------------------------------------
# the dispatcher


def attribute(
    model: nn.Module,
    x: Tensor,
    method: str = "ig",
    target: int | Sequence[int] | Tensor | None = None,
    *,
    noise_tunnel: bool = False,
    nt_samples: int = 8,
    nt_type: str = "smoothgrad",
    nt_stdevs: float | None = None,
    **options: Any,
) -> Attribution:
    """Attribute the class score of ``model`` on clips ``x`` (b, c, t, h, w) to frames and pixels, or of a
    flow model on flow images ``x`` (b, c, h, w) to pixels (the map is then (b, h, w)).

    ``method``: ``"ig"``, ``"gradcam"``, ``"occlusion"``, ``"ablation"`` (:data:`CAPTUM_METHODS`) or
    ``"attention"`` (the learned attention, :func:`learned_attention`; class-independent, ``target``
    ignored). ``target``: class per clip (int, sequence or tensor); None explains the predicted class.
    ``options`` go to the method's function, which documents them; an option of another method is ignored:

    - ``"ig"`` (:func:`integrated_gradients`): ``baseline`` (None = "onset" for clips, "zeros" for flow
      images; "onset", "zeros", "blur", number or tensor; :func:`ig_baseline`), ``n_steps`` (32),
      ``internal_batch_size`` (8), ``blur_sigma``. The convergence delta is in ``Attribution.delta``.
    - ``"gradcam"`` (:func:`grad_cam`): ``layer``, ``relu``.
    - ``"occlusion"`` (:func:`occlusion`): ``window``, ``stride``, ``baseline``, ``perturbations_per_eval``.
    - ``"ablation"`` (:func:`feature_ablation`): ``feature_mask``, ``segments``, ``baseline``,
      ``perturbations_per_eval``.
    - ``noise_tunnel``: wrap the Captum method in NoiseTunnel (``nt_type``, ``nt_samples``, ``nt_stdevs``;
      default 15 % of x's value range).

    The model is put in eval mode for the call and restored afterwards; nothing is modified in place.
    Raises :class:`ExplainError` (a ValueError) for an unknown method or a batch that does not fit the model,
    TypeError for an option no method takes.
    """
    adapter = explained_input(model, x)
    if method not in CAPTUM_METHODS and method != "attention":
        raise ExplainError(f"unknown attribution method {method!r}; choose one of {(*CAPTUM_METHODS, 'attention')}")
    # An option of another method is ignored (one settings dict can serve every method); a typo is not.
    known = frozenset().union(*(method_options(name) for name in CAPTUM_METHODS))
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"attribute() got unknown option(s) {unknown}; the methods take {sorted(known)}")
    if method == "attention":
        if not adapter.can_attend:
            raise ExplainError(
                f"{type(model).__name__} is a {adapter.kind} model and has no learned attention; "
                f"use one of {tuple(CAPTUM_METHODS)}"
            )
        return learned_attention(model, x)
    with _eval_mode(model):
        target_tensor = _resolve_target(model, x, target)
        lifted = _lift(model, x, adapter, nt_samples if noise_tunnel else 1)
        own = method_options(method)
        plan = CAPTUM_METHODS[method](lifted, **{k: v for k, v in options.items() if k in own})
        kwargs = {**plan.kwargs, "target": target_tensor.to(lifted.volume.device)}
        meta: dict[str, Any] = {"noise_tunnel": noise_tunnel, "input": adapter.kind, **plan.meta}
        if noise_tunnel:
            stdevs = _default_stdev(lifted.volume) if nt_stdevs is None else nt_stdevs
            meta.update(nt_type=nt_type, nt_samples=nt_samples, nt_stdevs=stdevs)
            result = NoiseTunnel(plan.explainer).attribute(
                lifted.volume, nt_type=nt_type, nt_samples=nt_samples, stdevs=stdevs, **kwargs
            )
        else:
            result = plan.explainer.attribute(lifted.volume, **kwargs)
    raw, delta = result if plan.returns_delta else (result, None)
    heat = plan.reduce(raw.detach())  # (b, t, h, w)
    return Attribution(
        map=adapter.from_volume(heat).cpu(),
        method=method,
        signed=plan.signed,
        target=target_tensor,
        delta=None if delta is None else delta.detach().cpu(),
        meta=meta,
    )
