"""The attribution methods, one options object per Captum method, and :func:`attribute`, which dispatches.

Axis letters: b batch, c channels, t frames, h height, w width.

Every method works on a clip volume (b, c, t, h, w). A flow model's image batch (b, c, h, w) is lifted once,
by :func:`_lift` through the model's input adapter (``merkit.data.inputs.FlowInput``): the image becomes a
one-frame clip (b, c, 1, h, w), the model is called on the frame, windows and masks gain a time axis of one,
and the map loses it again at the end. So no method knows which kind of input it explains.

Each Captum method is a frozen dataclass of its own options (:class:`MethodOptions`, as Captum gives every method
its own object), so an option of another method cannot slip through unnoticed. Its ``plan`` takes the
:class:`LiftedBatch` and returns a :class:`MethodPlan`: the Captum explainer, the keywords of its ``attribute`` call,
the settings recorded in ``Attribution.meta``, and how the raw attribution (b, c, t, h, w) becomes a map
(b, t, h, w). :func:`attribute` resolves the target, wraps the
explainer in a NoiseTunnel when asked, runs it and puts the map back in the input's layout.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Callable, Sequence

import torch
from captum.attr import FeatureAblation, IntegratedGradients, LayerGradCam, NoiseTunnel, Occlusion
from torch import Tensor, nn

from merkit.data.inputs import InputAdapter
from merkit.explain.faces import region_time_feature_mask
from merkit.explain.maps import (
    Attribution,
    ExplainError,
    check_clip_batch,
    default_stdev,
    eval_mode,
    explained_input,
    ig_baseline,
    resolve_layer,
    resolve_target,
    upsample_volume,
)

__all__ = [
    "ATTRIBUTION_METHODS",
    "CAPTUM_METHODS",
    "AblationOptions",
    "GradCamOptions",
    "IntegratedGradientsOptions",
    "LiftedBatch",
    "MethodOptions",
    "MethodPlan",
    "OcclusionOptions",
    "attribute",
    "learned_attention",
    "method_options",
    "options_for",
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
    check_clip_batch(x)
    if not hasattr(model, "attention_maps"):
        raise ExplainError(
            f"{type(model).__name__} has no attention_maps(): only MERANet-style models have learned attention"
        )
    size = tuple(x.shape[2:])
    with eval_mode(model), torch.no_grad():
        maps = list(model.attention_maps(x, upsample=False))
    volumes, modules, grids, channel = [], [], [], []
    for index, item in enumerate(maps):
        channel.append(None if item.channel is None else item.channel.detach().float().cpu())
        if item.spatiotemporal is not None:
            volumes.append(upsample_volume(item.spatiotemporal.detach(), size).cpu())  # (b, t, h, w)
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
# the Captum methods: one options object per method


class MethodOptions:
    """The options of one Captum method of :func:`attribute`, as a frozen dataclass per method (its fields are the
    method's options, each with its default). ``plan`` turns a :class:`LiftedBatch` into the :class:`MethodPlan`.

    A new method is a subclass (a frozen dataclass with a ``plan``) entered in :data:`CAPTUM_METHODS` under its name.
    """

    def plan(self, lifted: LiftedBatch) -> MethodPlan:
        raise NotImplementedError(f"{type(self).__name__} does not say how to plan its method")


@dataclass(frozen=True)
class IntegratedGradientsOptions(MethodOptions):
    """Integrated Gradients (``"ig"``, signed), summed over channels so the map sums to f(x) - f(baseline).

    ``baseline``: None = the input's default ("onset" for clips, "zeros" for flow images), or "onset", "zeros",
    "blur" (:func:`ig_baseline`, ``blur_sigma``), a number or a tensor. ``internal_batch_size`` bounds memory:
    unset, all b * n_steps clips go through the model at once (benchmarks/bench_explain.py measures the trade-off).
    """

    baseline: str | Tensor | float | None = None
    n_steps: int = 32
    internal_batch_size: int | None = 8
    blur_sigma: float = 4.0

    def plan(self, lifted: LiftedBatch) -> MethodPlan:
        baselines, name = lifted.baseline(self.baseline, self.blur_sigma)
        internal_batch_size = self.internal_batch_size
        if internal_batch_size is not None:
            # Captum counts internal batches in expanded examples and needs at least one per clip (per clip and
            # noise sample under a noise tunnel); below that it warns and ignores us.
            internal_batch_size = max(internal_batch_size, lifted.volume.shape[0] * lifted.samples)
        kwargs = {
            "baselines": baselines,
            "n_steps": self.n_steps,
            "internal_batch_size": internal_batch_size,
            "return_convergence_delta": True,
        }
        return MethodPlan(
            IntegratedGradients(lifted.forward),
            kwargs,
            {"baseline": name, "n_steps": self.n_steps},
            True,
            _sum_channels,
            returns_delta=True,
        )


@dataclass(frozen=True)
class GradCamOptions(MethodOptions):
    """Grad-CAM (``"gradcam"``) on a named conv layer (default: the model's ``cam_layer``, else its last Conv3d, or
    Conv2d for flow images), upsampled (tri)linearly to the input; ``relu`` keeps only positive evidence."""

    layer: str | nn.Module | None = None
    relu: bool = True

    def plan(self, lifted: LiftedBatch) -> MethodPlan:
        adapter, relu = lifted.adapter, self.relu
        layer_name, layer_module = resolve_layer(lifted.model, self.layer, adapter.cam_conv)
        size = tuple(lifted.volume.shape[2:])

        def reduce(raw: Tensor) -> Tensor:
            raw = adapter.to_volume(raw)  # a Conv2d map (b, 1, h', w') -> (b, 1, 1, h', w'); a volume stays
            if raw.dim() != 5:
                raise ExplainError(
                    f"Grad-CAM layer {layer_name!r} gives shape {tuple(raw.shape)}; "
                    f"pick a {adapter.cam_conv.__name__} layer"
                )
            heat = upsample_volume(raw, size)  # (b, 1, t', h', w') -> (b, t, h, w)
            # interpolation of non-negative values stays non-negative; guard rounding
            return heat.clamp(min=0) if relu else heat

        return MethodPlan(
            LayerGradCam(lifted.forward, layer_module),
            {"relu_attributions": relu},
            {"layer": layer_name, "relu": relu},
            not relu,
            reduce,
        )


@dataclass(frozen=True)
class OcclusionOptions(MethodOptions):
    """Occlusion (``"occlusion"``, signed) with 3-D (t, h, w) windows (2-D (h, w) for flow images); occluded pixels
    take the baseline. Default window (t/2, h/4, w/4), stride = window: 2 x 4 x 4 = 32 windows, and the cost is
    linear in their count."""

    window: Sequence[int] | None = None
    stride: Sequence[int] | None = None
    baseline: str | Tensor | float | None = None
    perturbations_per_eval: int = 8
    blur_sigma: float = 4.0

    def plan(self, lifted: LiftedBatch) -> MethodPlan:
        adapter = lifted.adapter
        _, c, t, h, w = lifted.volume.shape
        default = (max(1, t // 2), max(1, h // 4), max(1, w // 4))
        window = adapter.volume_shape(self.window) if self.window is not None else default
        stride = adapter.volume_shape(self.stride) if self.stride is not None else window
        baselines, _ = lifted.baseline(self.baseline, self.blur_sigma)
        kwargs = {
            "sliding_window_shapes": (c, *window),
            "strides": (c, *stride),
            "baselines": baselines,
            "perturbations_per_eval": self.perturbations_per_eval,
        }
        meta = {"window": adapter.input_shape(window), "stride": adapter.input_shape(stride)}
        return MethodPlan(Occlusion(lifted.forward), kwargs, meta, True, _mean_channels)


@dataclass(frozen=True)
class AblationOptions(MethodOptions):
    """Feature ablation (``"ablation"``, signed) over ``feature_mask`` groups (int64 ids, broadcastable to the
    input) or, by default, facial regions x ``segments`` time segments (:func:`region_time_feature_mask`); ablated
    groups take the baseline."""

    feature_mask: Tensor | None = None
    segments: int = 4
    baseline: str | Tensor | float | None = None
    perturbations_per_eval: int = 8
    blur_sigma: float = 4.0

    def plan(self, lifted: LiftedBatch) -> MethodPlan:
        _, _, t, h, w = lifted.volume.shape
        if self.feature_mask is None:
            mask = region_time_feature_mask(t, (h, w), self.segments)
        else:
            given = self.feature_mask
            mask = lifted.adapter.to_volume(given) if given.dim() == 4 else given
        baselines, _ = lifted.baseline(self.baseline, self.blur_sigma)
        kwargs = {
            "feature_mask": mask.to(lifted.volume.device),
            "baselines": baselines,
            "perturbations_per_eval": self.perturbations_per_eval,
        }
        meta = {"segments": min(self.segments, t) if self.feature_mask is None else None}
        return MethodPlan(FeatureAblation(lifted.forward), kwargs, meta, True, _mean_channels)


#: The Captum methods of :func:`attribute`: name -> its options class (whose ``plan`` builds the explainer).
CAPTUM_METHODS: dict[str, type[MethodOptions]] = {
    "ig": IntegratedGradientsOptions,
    "gradcam": GradCamOptions,
    "occlusion": OcclusionOptions,
    "ablation": AblationOptions,
}

#: Methods accepted by :func:`attribute` as the kit ships it (a method added to CAPTUM_METHODS is accepted too).
ATTRIBUTION_METHODS: tuple[str, ...] = (*CAPTUM_METHODS, "attention")


def _known_method(method: str) -> None:
    if method not in CAPTUM_METHODS and method != "attention":
        raise ExplainError(f"unknown attribution method {method!r}; choose one of {(*CAPTUM_METHODS, 'attention')}")


def method_options(method: str) -> frozenset[str]:
    """The option names of ``method`` (the fields of its options class; none for ``"attention"``)."""
    _known_method(method)
    if method == "attention":
        return frozenset()
    return frozenset(field.name for field in fields(CAPTUM_METHODS[method]))


def options_for(method: str, **options: Any) -> MethodOptions:
    """The options object of a Captum method from keywords. An option the method does not take is an
    :class:`ExplainError` naming the method and the option (an option of another method included)."""
    _known_method(method)
    own = method_options(method)
    foreign = sorted(set(options) - own)
    if foreign:
        takes = ", ".join(sorted(own)) or "no options"
        raise ExplainError(f"method {method!r} takes no option {', '.join(map(repr, foreign))} (its options: {takes})")
    if method == "attention":
        raise ExplainError("method 'attention' has no options object: it reads the model's own attention")
    return CAPTUM_METHODS[method](**options)


def _method_name(options: MethodOptions) -> str:
    names = [name for name, kind in CAPTUM_METHODS.items() if type(options) is kind]
    if not names:
        raise ExplainError(f"{type(options).__name__} is not a method of CAPTUM_METHODS; enter it there by name")
    return names[0]


# ----------------------------------------------------------------------------------------------
# the dispatcher


def attribute(
    model: nn.Module,
    x: Tensor,
    method: str | MethodOptions = "ig",
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

    ``method``: a name, ``"ig"``, ``"gradcam"``, ``"occlusion"``, ``"ablation"`` (:data:`CAPTUM_METHODS`) or
    ``"attention"`` (the learned attention, :func:`learned_attention`; class-independent, ``target`` ignored), or
    the options object of a Captum method (``IntegratedGradientsOptions(n_steps=64)``). ``target``: class per clip
    (int, sequence or tensor); None explains the predicted class. ``options``: keywords of the named method's
    options class, which documents them (``attribute(model, x, "ig", n_steps=64)`` is
    ``attribute(model, x, IntegratedGradientsOptions(n_steps=64))``):

    - ``"ig"`` (:class:`IntegratedGradientsOptions`): ``baseline``, ``n_steps`` (32), ``internal_batch_size`` (8),
      ``blur_sigma``. The convergence delta is in ``Attribution.delta``.
    - ``"gradcam"`` (:class:`GradCamOptions`): ``layer``, ``relu``.
    - ``"occlusion"`` (:class:`OcclusionOptions`): ``window``, ``stride``, ``baseline``, ``perturbations_per_eval``,
      ``blur_sigma``.
    - ``"ablation"`` (:class:`AblationOptions`): ``feature_mask``, ``segments``, ``baseline``,
      ``perturbations_per_eval``, ``blur_sigma``.
    - ``"attention"``: no options.
    - ``noise_tunnel``: wrap the Captum method in NoiseTunnel (``nt_type``, ``nt_samples``, ``nt_stdevs``;
      default 15 % of x's value range); not for ``"attention"``.

    The model is put in eval mode for the call and restored afterwards; nothing is modified in place.
    Raises :class:`ExplainError` (a ValueError) for an unknown method, an option the method does not take (naming
    both), or a batch that does not fit the model.
    """
    adapter = explained_input(model, x)
    if isinstance(method, MethodOptions):
        if options:
            raise ExplainError(
                f"attribute() got an options object ({type(method).__name__}) and the keyword option(s) "
                f"{sorted(options)}; give the options in one place"
            )
        name, chosen = _method_name(method), method
    else:
        name = method
        chosen = None if method == "attention" and not options else options_for(method, **options)
    if name == "attention":
        if noise_tunnel:
            raise ExplainError("method 'attention' takes no noise tunnel: the learned attention has no gradient")
        if not adapter.can_attend:
            raise ExplainError(
                f"{type(model).__name__} is a {adapter.kind} model and has no learned attention; "
                f"use one of {tuple(CAPTUM_METHODS)}"
            )
        return learned_attention(model, x)
    with eval_mode(model):
        target_tensor = resolve_target(model, x, target)
        lifted = _lift(model, x, adapter, nt_samples if noise_tunnel else 1)
        plan = chosen.plan(lifted)
        kwargs = {**plan.kwargs, "target": target_tensor.to(lifted.volume.device)}
        meta: dict[str, Any] = {"noise_tunnel": noise_tunnel, "input": adapter.kind, **plan.meta}
        if noise_tunnel:
            stdevs = default_stdev(lifted.volume) if nt_stdevs is None else nt_stdevs
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
        method=name,
        signed=plan.signed,
        target=target_tensor,
        delta=None if delta is None else delta.detach().cpu(),
        meta=meta,
    )
