"""Scores of attribution maps: rank AUC, the pointing game, mass in a true region, chance level, agreement, mass over
time, and the same per attention module.

Axis letters: b batch, t frames, h height, w width. Every function accepts maps as an :class:`Attribution`, a
tensor or a numpy array (absolute values are scored), so methods, the learned attention and random maps are
compared the same way. A flow model's map (b, h, w) counts as one frame.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr
from torch import Tensor

from merkit.explain.faces import face_region_masks
from merkit.explain.localisation import mass_above_median, rank_auc
from merkit.explain.maps import Attribution, ExplainError, blur_clip

__all__ = [
    "agreement",
    "agreement_table",
    "event_positions",
    "module_scores",
    "frame_curve",
    "random_baseline",
    "region_mass_over_time",
    "region_scores",
]


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
        raise ExplainError(f"attribution maps must be (b, t, h, w), (t, h, w) or (h, w); got {values.shape}")
    return values


def _as_masks(mask: Tensor | np.ndarray, batch: int, shape: tuple[int, int, int]) -> np.ndarray:
    """Boolean (b, t, h, w) masks from (h, w), (b, h, w) or (b, t, h, w) (spatial masks hold for every frame).

    A mask that does not fit the maps (b, t, h, w) is an :class:`ExplainError` naming both shapes.
    """
    values = mask.detach().cpu().numpy() if isinstance(mask, Tensor) else np.asarray(mask)
    given = values.shape
    values = values.astype(bool)
    t, h, w = shape
    if values.ndim == 2:
        values = values[None, None]  # (h, w) -> (1, 1, h, w)
    elif values.ndim == 3:
        values = values[:, None]  # (b, h, w) -> (b, 1, h, w)
    fits = (
        values.ndim == 4 and values.shape[-2:] == (h, w) and values.shape[0] in (1, batch) and values.shape[1] in (1, t)
    )
    if not fits:
        raise ExplainError(
            f"region mask of shape {given} does not match the maps of shape {(batch, t, h, w)} (b, t, h, w): "
            "give (h, w), (b, h, w) or (b, t, h, w) on the same frames and pixels"
        )
    return np.broadcast_to(values, (batch, t, h, w))


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
    frames: Sequence[int] | slice | None = None,
) -> pd.DataFrame:
    """How well each clip's map finds the true region: one row per clip.

    ``attribution``: (b, t, h, w) (also (t, h, w) or (h, w)); absolute values are scored.
    ``mask``: boolean true region, (h, w), (b, h, w) (same region in every frame, SynthME's motion
    mask) or (b, t, h, w). ``frames`` (indices or a slice) scores only those frames (e.g. the
    expression's); default all.

    Columns: ``auc``, the rank ROC-AUC of the map inside against outside the region over the scored
    frames (0.5 = no information, invariant to a gate's offset and scale; :mod:`~merkit.explain.localisation`);
    ``pointing_hit``, whether the pixel of largest time-summed value lies in the region dilated by
    ``tolerance`` pixels (the pointing game; a constant map never hits); ``mass_above_median``, the
    share inside the region of the map's mass above its own median; ``mass_in_region``, the share of
    the clip's absolute mass inside the region (fair for signed attributions, dominated by a gate's
    baseline); ``region_fraction``, the share of the scored volume inside the region, what both mass
    shares equal at chance; ``pointing_tolerance``. A map with zero mass scores NaN / False.
    """
    maps = _as_maps(attribution)
    b, t, h, w = maps.shape
    masks = _as_masks(mask, b, (t, h, w))
    if frames is not None:
        maps, masks = maps[:, frames], masks[:, frames]
        if maps.shape[1] == 0:
            raise ExplainError(f"frames {frames!r} select none of the clip's {t} frames")
    total = maps.sum(axis=(1, 2, 3))
    inside = (maps * masks).sum(axis=(1, 2, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        mass = np.where(total > 0, inside / np.where(total > 0, total, 1.0), np.nan)
    energy = maps.sum(axis=1).reshape(b, h * w)  # (b, t, h, w) -> (b, h*w): where over the clip
    peak = energy.argmax(axis=1)
    hit_region = _dilate(masks.any(axis=1), tolerance).reshape(b, h * w)  # (b, h, w) -> (b, h*w)
    varies = np.ptp(energy, axis=1) > 0  # a flat map points nowhere
    hits = hit_region[np.arange(b), peak] & (total > 0) & varies
    fraction = masks.reshape(b, -1).mean(axis=1)  # (b, t, h, w) -> (b, t*h*w)
    return pd.DataFrame(
        {
            "auc": rank_auc(maps, masks),
            "pointing_hit": hits,
            "mass_above_median": mass_above_median(maps, masks),
            "mass_in_region": mass,
            "region_fraction": fraction,
            "pointing_tolerance": tolerance,
        }
    )


def module_scores(
    attribution: Attribution,
    mask: np.ndarray,
    *,
    tolerance: int = 0,
    frames: Sequence[int] | slice | None = None,
) -> pd.DataFrame:
    """Scores of every attention module's map and of their mean (the kit's summary map): rows clip × module.

    ``attribution`` is :func:`merkit.explain.learned_attention`'s result (its ``meta["per_module"]``
    (b, m, t, h, w) maps upsampled to the clip); ``mask`` as for :func:`merkit.explain.region_scores`.
    Columns: clip, module (the residual module's index, or ``"mean"``), grid (the module's native
    ``t×h×w``), then the columns of ``region_scores`` (``auc``, ``pointing_hit``, ``mass_above_median``,
    ``mass_in_region``, ``region_fraction``, ``pointing_tolerance``).
    """
    if attribution.method != "attention" or "per_module" not in attribution.meta:
        raise ExplainError(
            f"per-module scores need the learned attention (explain.learned_attention), got {attribution.method!r}"
        )
    per_module = attribution.meta["per_module"]  # (b, m, t, h, w)
    modules = list(attribution.meta.get("modules", range(per_module.shape[1])))
    grids = list(attribution.meta.get("grids", ["?"] * len(modules)))
    tables = []
    for slot, (module, grid) in enumerate(zip([*modules, "mean"], [*grids, "all"])):
        volume = attribution.map if module == "mean" else per_module[:, slot]  # (b, t, h, w)
        table = region_scores(volume, mask, tolerance=tolerance, frames=frames)
        table.insert(0, "grid", grid)
        table.insert(0, "module", str(module))
        table.insert(0, "clip", np.arange(len(table)))
        tables.append(table)
    return pd.concat(tables, ignore_index=True)


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
    Returns one row per clip with the means of :func:`region_scores`' columns (``pointing_hit`` as a rate
    in [0, 1]).
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
    columns = ["auc", "pointing_hit", "mass_above_median", "mass_in_region", "region_fraction", "pointing_tolerance"]
    return table.groupby("clip")[columns].mean().reset_index(drop=True)


def agreement(a: Attribution | Tensor | np.ndarray, b: Attribution | Tensor | np.ndarray) -> np.ndarray:
    """Spearman rank correlation between two maps of the same clips, one value per clip (b,).

    Absolute values are ranked (where a method looks, not which sign it gives). NaN when a map is
    constant (no ranking).
    """
    first, second = _as_maps(a), _as_maps(b)
    if first.shape != second.shape:
        raise ExplainError(f"maps differ in shape: {first.shape} vs {second.shape}")
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
        raise ExplainError(f"reference {reference!r} not among the maps {list(attributions)}")
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
        frames.append(
            pd.DataFrame({"clip": clips.ravel(), "frame": frame_index.ravel(), "region": name, "mass": mass.ravel()})
        )
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
