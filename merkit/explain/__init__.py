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

Each Captum method has its own options object (``IntegratedGradientsOptions``, ``GradCamOptions``,
``OcclusionOptions``, ``AblationOptions``); ``attribute(model, x, "ig", n_steps=64)`` builds it from keywords,
``attribute(model, x, IntegratedGradientsOptions(n_steps=64))`` takes it as it is. An option the method does not
take (``attribute(model, x, "gradcam", n_steps=64)``) is an :class:`ExplainError` naming the method and the option.

Each returns an :class:`Attribution` whose ``map`` is (b, t, h, w) on the CPU, so every method can be
compared, scored and drawn the same way.

Flow models (``ststnet``, ``offapexnet``: ``input_spec.kind == "flow"``) take one onset→apex flow image per
sample, x of shape (b, c, h, w). ``attribute`` accepts that too for ``"ig"``, ``"gradcam"`` (on a named
Conv2d), ``"occlusion"`` (2-D (h, w) windows) and ``"ablation"`` (facial regions, no time segments), and
returns a map of shape (b, h, w). There is no time axis, so the ``"onset"`` baseline does not exist for
them (default ``"zeros"``), and they have no learned ``"attention"``. Channel reduction: gradient methods
(IG) are *summed* over channels, which keeps IG's completeness (the map sums to f(x) - f(baseline));
perturbation methods (occlusion, ablation) give every channel inside a window the same value, so they are
*averaged* over channels.

The package, one room per idea:

- :mod:`~merkit.explain.maps`: :class:`Attribution`, the baselines, layer and target rules, :class:`ExplainError`.
- :mod:`~merkit.explain.methods`: one options class per Captum method (:data:`CAPTUM_METHODS`), the learned
  attention, and :func:`attribute`, which dispatches; a flow image is lifted to a one-frame clip in one place,
  through the model's input adapter (``merkit.data.inputs``).
- :mod:`~merkit.explain.faces`: facial regions (geometry, OpenCV cascades, per store clip).
- :mod:`~merkit.explain.localisation`: the offset-free scores (``rank_auc``, ``mass_above_median``) and bootstrap
  intervals over clips (``bootstrap_interval``, ``interval_table``).
- :mod:`~merkit.explain.scores`: ``region_scores``, ``module_scores`` (per attention module), ``random_baseline``,
  ``agreement``, ``frame_curve``, ``region_mass_over_time``, ``event_positions`` (maps as tensors or numpy arrays).
- :mod:`~merkit.explain.store_runner`: ``score_methods`` over a dataset with known motion masks,
  ``explain_store`` over store rows (clip or flow models alike), ``summarise_scores``; ``attention_module_scores``
  and ``summarise_modules``, the learned attention module by module.
- :mod:`~merkit.explain.region_mass`: ``explain_regions``, mass per facial region over time on any dataset.
"""

from merkit.explain.faces import (
    FACE_REGIONS,
    REGION_NAMES,
    FaceBox,
    RegionSet,
    cascade_regions,
    clip_regions,
    face_region_masks,
    region_time_feature_mask,
    store_regions,
)
from merkit.explain.localisation import bootstrap_interval, interval_table, mass_above_median, rank_auc
from merkit.explain.maps import (
    Attribution,
    ExplainError,
    blur_clip,
    explained_input,
    ig_baseline,
    last_conv2d_name,
    last_conv3d_name,
)
from merkit.explain.methods import (
    ATTRIBUTION_METHODS,
    CAPTUM_METHODS,
    AblationOptions,
    GradCamOptions,
    IntegratedGradientsOptions,
    LiftedBatch,
    MethodOptions,
    MethodPlan,
    OcclusionOptions,
    attribute,
    learned_attention,
    method_options,
    options_for,
)
from merkit.explain.region_mass import RegionExplanation, explain_regions, shared_events
from merkit.explain.scores import (
    agreement,
    agreement_table,
    event_positions,
    frame_curve,
    module_scores,
    random_baseline,
    region_mass_over_time,
    region_scores,
)
from merkit.explain.store_runner import (
    attention_module_scores,
    explain_flow_store,
    explain_store,
    flow_regions,
    model_inputs,
    score_methods,
    store_events,
    summarise_modules,
    summarise_scores,
)

__all__ = [
    "ATTRIBUTION_METHODS",
    "CAPTUM_METHODS",
    "AblationOptions",
    "GradCamOptions",
    "IntegratedGradientsOptions",
    "MethodOptions",
    "OcclusionOptions",
    "FACE_REGIONS",
    "REGION_NAMES",
    "Attribution",
    "ExplainError",
    "FaceBox",
    "LiftedBatch",
    "MethodPlan",
    "RegionExplanation",
    "RegionSet",
    "agreement",
    "agreement_table",
    "attention_module_scores",
    "attribute",
    "bootstrap_interval",
    "blur_clip",
    "cascade_regions",
    "clip_regions",
    "event_positions",
    "explain_flow_store",
    "explain_regions",
    "explain_store",
    "explained_input",
    "face_region_masks",
    "flow_regions",
    "frame_curve",
    "ig_baseline",
    "interval_table",
    "last_conv2d_name",
    "last_conv3d_name",
    "learned_attention",
    "mass_above_median",
    "method_options",
    "options_for",
    "model_inputs",
    "module_scores",
    "random_baseline",
    "rank_auc",
    "region_mass_over_time",
    "region_scores",
    "region_time_feature_mask",
    "score_methods",
    "shared_events",
    "store_events",
    "store_regions",
    "summarise_modules",
    "summarise_scores",
]
