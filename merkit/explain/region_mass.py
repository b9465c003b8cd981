"""Explain on real data: attribution and attention mass per facial region (brows, eyes, nose, mouth) over time.

A real dataset has no true motion mask, so the maps cannot be scored against the region that moved. What can
be said is *where on the face* each map puts its mass, frame by frame, and how far each attribution method
agrees with the model's learned attention. :func:`explain_regions` gives both, for a clip store with or
without masks (SynthME's stores get the same tables, next to their mask scores); the regions come from
:func:`merkit.explain.faces.store_regions`.

Axis letters: n clips, t frames, s store side (pixels), r regions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import cv2
import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from merkit.data.inputs import input_adapter
from merkit.explain.faces import RegionSet, store_regions
from merkit.explain.maps import ExplainError
from merkit.explain.methods import attribute
from merkit.explain.scores import agreement, event_positions

__all__ = ["RegionExplanation", "explain_regions", "shared_events"]


@dataclass
class RegionExplanation:
    """What :func:`explain_regions` found.

    ``over_time``: clip, method, frame, region, mass (share of the clip's |map| mass; per clip and method
    the shares over frames and regions, ``other`` included, sum to 1). ``scores``: clip, method, region,
    mass (summed over frames), region_fraction (share of the frame the region covers: what a map that
    knows nothing puts there), mass_over_chance. ``agreement``: clip, method, spearman (rank correlation
    of |map| with the learned attention; NaN without attention). ``sources``: how each clip's regions
    were placed (see :func:`store_regions`).
    """

    over_time: pd.DataFrame
    scores: pd.DataFrame
    agreement: pd.DataFrame
    sources: pd.DataFrame

    def summary(self) -> pd.DataFrame:
        """Mean mass, region fraction and mass over chance per method and region (clip counts added)."""
        grouped = self.scores.groupby(["method", "region"], sort=False)
        table = grouped[["mass", "region_fraction"]].mean()
        table["mass_over_chance"] = table["mass"] / table["region_fraction"]
        table["clips"] = grouped.size()
        return table.reset_index()


def _region_table(
    maps: np.ndarray, regions: Sequence[RegionSet], clips: np.ndarray, method: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-frame and whole-clip region mass of |maps| (b, t, s, s)."""
    b, t, h, w = maps.shape
    total = maps.sum(axis=(1, 2, 3))
    total = np.where(total > 0, total, 1.0)
    over_time, scores = [], []
    for k in range(b):
        covered = np.zeros((h, w), dtype=bool)
        named = [(name, _fit(mask, h, w)) for name, mask in regions[k].masks.items()]
        for _, mask in named:
            covered |= mask
        named.append(("other", ~covered))
        for name, mask in named:
            per_frame = (maps[k] * mask).sum(axis=(1, 2)) / total[k]  # (t, s, s) -> (t,)
            over_time.append(
                pd.DataFrame(
                    {"clip": clips[k], "method": method, "frame": np.arange(t), "region": name, "mass": per_frame}
                )
            )
            fraction = float(mask.mean())
            mass = float(per_frame.sum())
            scores.append(
                {
                    "clip": clips[k],
                    "method": method,
                    "region": name,
                    "mass": mass,
                    "region_fraction": fraction,
                    "mass_over_chance": mass / fraction if fraction > 0 else np.nan,
                }
            )
    return pd.concat(over_time, ignore_index=True), pd.DataFrame(scores)


def _fit(mask: np.ndarray, h: int, w: int) -> np.ndarray:
    """A region mask on a map of another size (a flow model's F×F image): nearest-neighbour resize."""
    if mask.shape == (h, w):
        return mask
    return cv2.resize(mask.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST).astype(bool)


def _magnitude(attribution: Any) -> np.ndarray:
    values = attribution.magnitude().numpy().astype(np.float64)
    return values if values.ndim == 4 else values[:, None]  # a flow map (b, h, w) -> (b, 1, h, w)


def explain_regions(
    model: nn.Module,
    store: Any,
    positions: Sequence[int] | np.ndarray,
    methods: Sequence[str] = ("ig", "gradcam", "attention"),
    *,
    regions: Sequence[RegionSet] | None = None,
    sources: pd.DataFrame | None = None,
    data_root: str | os.PathLike | None = None,
    target: str = "label",
    batch_size: int = 4,
    method_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    dataset_factory: Any = None,
    progress: bool = True,
    device: str | torch.device = "cpu",
) -> RegionExplanation:
    """Mass per facial region over time of every method (and the learned attention) on store clips.

    Works on any clip store: masks are not needed. ``regions`` (one :class:`RegionSet` per position, from
    :func:`store_regions`) default to ``store_regions(store, positions, data_root)``. The learned
    attention is always computed when the model has one (also when ``methods`` omits it), since it is
    the reference of the agreement table, and its mass per region is reported like every method's; a
    model without it gets NaN agreements. ``target="label"``
    explains the true class (the prediction for clips without a label), ``"pred"`` the predicted one.
    """
    if target not in ("label", "pred"):
        raise ExplainError(f"target must be 'label' or 'pred', got {target!r}")
    positions = np.asarray(positions, dtype=np.int64)
    if regions is None:
        regions, sources = store_regions(store, positions, data_root)
    if len(regions) != len(positions):
        raise ExplainError(f"{len(regions)} region sets for {len(positions)} clips: they must align")
    if dataset_factory is None:
        dataset = input_adapter(model).dataset(store, positions)  # clips, or a flow model's own flow images
    else:
        dataset = dataset_factory(store, positions)
    method_kwargs = dict(method_kwargs or {})
    wanted = list(dict.fromkeys([*methods, "attention"]))
    has_attention = True
    model = model.to(device).eval()
    over_time, scores, agreements = [], [], []
    for start in tqdm(range(0, len(positions), batch_size), desc="explain regions", disable=not progress):
        stop = min(start + batch_size, len(positions))
        items = [dataset[i] for i in range(start, stop)]
        x = torch.stack([torch.as_tensor(item[0]) for item in items]).to(device)  # b x (c, t, s, s) -> (b, c, t, s, s)
        labels = torch.as_tensor([int(item[1]) for item in items])
        with torch.no_grad():
            preds = model(x).argmax(dim=1).cpu()
        explained = preds if target == "pred" else torch.where(labels >= 0, labels, preds)
        maps: dict[str, Any] = {}
        for method in wanted:
            if method == "attention" and not has_attention:
                continue
            try:
                maps[method] = attribute(model, x, method, target=explained, **method_kwargs.get(method, {}))
            except ValueError:
                if method != "attention":
                    raise
                has_attention = False  # a baseline or an ablation without spatio-temporal attention
        clips = positions[start:stop]
        for method, attribution in maps.items():
            timed, whole = _region_table(_magnitude(attribution), regions[start:stop], clips, method)
            over_time.append(timed)
            scores.append(whole)
        for method, attribution in maps.items():
            if method == "attention":
                continue
            rho = agreement(maps["attention"], attribution) if "attention" in maps else np.full(len(items), np.nan)
            agreements.append(pd.DataFrame({"clip": clips, "method": method, "spearman": rho}))
    if sources is None:
        sources = pd.DataFrame({"clip": positions, "region_source": [r.source for r in regions]})
    return RegionExplanation(
        over_time=pd.concat(over_time, ignore_index=True),
        scores=pd.concat(scores, ignore_index=True),
        agreement=pd.concat(agreements, ignore_index=True)
        if agreements
        else pd.DataFrame(columns=["clip", "method", "spearman"]),
        sources=sources,
    )


def shared_events(rows: pd.DataFrame, n_frames: int, model: nn.Module | None = None) -> dict[str, float]:
    """Onset / apex / offset positions of several store clips on their ``n_frames`` stored frames, for
    curves averaged over those clips: an event at the same position in every clip keeps its name; one
    that differs (the apex, usually) is marked at its mean position as ``"apex (mean)"``. ``rows`` are
    store index rows (``onset``, ``apex_used``, ``offset``); the span is onset→offset, as in
    :func:`merkit.explain.event_positions`. For a flow ``model`` (or a flow-folder store): ``{"apex": 0.0}``."""
    if not input_adapter(model).has_frames or "apex_used" not in rows:
        return {"apex": 0.0}  # a flow model reads one onset→apex image: its one "frame" is the apex
    per_clip = [
        event_positions(int(r["onset"]), int(r["apex_used"]), int(r["offset"]), n_frames) for _, r in rows.iterrows()
    ]
    events: dict[str, float] = {}
    for name in ("onset", "apex", "offset"):
        values = [e[name] for e in per_clip if name in e]
        if len(values) != len(per_clip) or not values:
            continue
        same = max(values) - min(values) < 1e-9
        events[name if same else f"{name} (mean)"] = float(np.mean(values))
    return events
