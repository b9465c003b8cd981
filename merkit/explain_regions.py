"""Explain on real data: attribution and attention mass per facial region (brows, eyes, nose, mouth) over time.

A real dataset has no true motion mask, so the maps of :mod:`merkit.explain` cannot be scored against the
region that moved. What can be said is *where on the face* each map puts its mass, frame by frame, and how
far each attribution method agrees with the model's learned attention. This module gives both, for a
clip store with or without masks (SynthME's stores get the same tables, next to their mask scores).

Axis letters: n clips, t frames, s store side (pixels), r regions.

Regions, per clip, in the store's (s, s) frame:

- **cascade**: OpenCV's bundled eye cascade (``haarcascade_eye.xml``) and smile cascade
  (``haarcascade_smile.xml``; the mouth cascade ``haarcascade_mcs_mouth.xml`` is not in the opencv-contrib
  4.x wheels, and is used when a system install has it) run on the clip's onset frame, read from the
  dataset at full resolution and cut with the clip's crop box from the store index. Eyes are the box
  around the detected eyes, brows the band above them, the mouth the detected mouth, the nose what lies
  between eyes and mouth. A region whose cascade does not fire plausibly falls back to the geometry.
- **geometry**: :data:`merkit.explain.FACE_REGIONS`, rough proportions of a centred frontal face, placed in
  the face box of the crop (the whole frame for a dataset crop; inside the margin for a Haar crop).

``RegionSet.source`` says which was used for each clip (``cascade``, ``cascade+geometry`` when some
regions fell back, ``geometry``). Assumption, labelled as such: the face is frontal and does not move much
between onset and offset (the crop box is held for the clip, as the preprocessing does).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

import cv2
import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from merkit.explain import FACE_REGIONS, FaceBox, agreement, attribute, face_region_masks

__all__ = [
    "REGION_NAMES",
    "RegionSet",
    "RegionExplanation",
    "cascade_regions",
    "clip_regions",
    "store_regions",
    "explain_regions",
    "shared_events",
]

#: The facial regions scored, in drawing order; pixels in none of them are "other".
REGION_NAMES: tuple[str, ...] = tuple(FACE_REGIONS)

_EYE_CASCADES = ("haarcascade_eye.xml",)
_MOUTH_CASCADES = ("haarcascade_mcs_mouth.xml", "haarcascade_smile.xml")
_CASCADE_DIRS = (
    "/usr/share/opencv4/haarcascades",
    "/usr/share/opencv/haarcascades",
    "/usr/local/share/opencv4/haarcascades",
)
# The cascades are trained on faces of ~100 px and more: a crop is upscaled to this side before detection.
_DETECT_SIDE = 256

Fractions = tuple[float, float, float, float]  # (top, left, bottom, right) as fractions of the face crop


@dataclass(frozen=True)
class RegionSet:
    """The facial-region masks of one clip in the store's frame: ``masks[name]`` bool (s, s), disjoint.

    ``source`` is ``"cascade"``, ``"cascade+geometry"`` or ``"geometry"``; ``detail`` says per region
    which one placed it.
    """

    masks: dict[str, np.ndarray]
    source: str
    detail: dict[str, str]


def _find_cascade(names: Sequence[str]) -> str | None:
    folders = [Path(cv2.data.haarcascades)] if hasattr(cv2, "data") else []
    folders += [Path(d) for d in _CASCADE_DIRS]
    for name in names:
        for folder in folders:
            if (folder / name).is_file():
                return str(folder / name)
    return None


@lru_cache(maxsize=4)
def _cascade(path: str) -> cv2.CascadeClassifier | None:
    cascade = cv2.CascadeClassifier(path)
    return None if cascade.empty() else cascade


def _detect(cascade_names: Sequence[str], grey: np.ndarray, min_side: int, neighbours: int) -> list[tuple[int, int, int, int]]:
    path = _find_cascade(cascade_names)
    cascade = _cascade(path) if path else None
    if cascade is None:
        return []
    found = cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=neighbours, minSize=(min_side, min_side))
    return [tuple(int(v) for v in r) for r in found]


def cascade_regions(face: np.ndarray) -> dict[str, Fractions]:
    """Facial regions found by OpenCV's eye and mouth cascades on one face crop (RGB or grey uint8).

    Returns fractions (top, left, bottom, right) of the crop for the regions it could place plausibly
    (eyes in the upper half, the mouth in the lower half below the eyes); missing keys did not fire. Brows
    and nose are derived from eyes (and mouth): the upper third of the eye windows (plus a little above) is brows, the rest eyes; nose the
    middle third between the eyes' bottom and the mouth's top (or 0.68 of the crop without a mouth).
    """
    grey = face if face.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(face), cv2.COLOR_RGB2GRAY)
    height, width = grey.shape
    scale = _DETECT_SIDE / max(height, width)
    grey = cv2.resize(grey, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_LINEAR)
    # No histogram equalisation: measured on emulated CASME II raw crops it halves how often the eyes are found.
    h, w = grey.shape
    found: dict[str, Fractions] = {}
    eyes = [e for e in _detect(_EYE_CASCADES, grey, max(8, w // 16), 5) if e[1] + e[3] / 2 < 0.55 * h and e[2] < 0.45 * w]
    eyes = sorted(eyes, key=lambda e: e[2] * e[3], reverse=True)[:2]
    if eyes:
        top = min(e[1] for e in eyes) / h
        bottom = max(e[1] + e[3] for e in eyes) / h
        left = min(e[0] for e in eyes) / w
        right = max(e[0] + e[2] for e in eyes) / w
        if len(eyes) == 1:  # one eye: mirror it about the vertical midline (frontal face assumed)
            left, right = min(left, 1 - right), max(right, 1 - left)
        # The cascade's eye window takes in the brow at its top: its upper third is brow, the rest eye.
        eye_height = bottom - top
        split = top + 0.35 * eye_height
        found["eyes"] = (split, left, bottom, right)
        found["brows"] = (max(0.0, top - 0.3 * eye_height), left, split, right)
    eyes_bottom = found["eyes"][2] if "eyes" in found else 0.45
    mouths = [m for m in _detect(_MOUTH_CASCADES, grey, max(8, w // 8), 15)
              if m[1] / h > max(0.5, eyes_bottom) and m[2] < 0.8 * w]
    if mouths:
        x, y, mw, mh = max(mouths, key=lambda m: m[2] * m[3])
        found["mouth"] = (y / h, x / w, min(1.0, (y + mh) / h), (x + mw) / w)
    if "eyes" in found:
        mouth_top = found["mouth"][0] if "mouth" in found else 0.68
        eyes_left, eyes_right = found["eyes"][1], found["eyes"][3]
        third = (eyes_right - eyes_left) / 3
        if mouth_top > eyes_bottom:
            found["nose"] = (eyes_bottom, eyes_left + third, mouth_top, eyes_right - third)
    return found


def _face_box(crop_method: str, margin: float) -> FaceBox:
    """Where the face sits in the stored frame under the geometry: inside the margin of a Haar crop."""
    return FaceBox.from_margin(margin) if crop_method == "haar" else FaceBox()


def clip_regions(
    size: int,
    onset_face: np.ndarray | None = None,
    *,
    crop_method: str = "dataset",
    crop_margin: float = 0.1,
    use_cascades: bool = True,
) -> RegionSet:
    """The regions of one clip in its stored (size, size) frame.

    ``onset_face`` is the onset frame cut with the clip's crop box, at source resolution (None: geometry
    only). Cascade regions are fractions of that crop, which the store resized to (size, size), so they
    map straight onto the stored frame; the rest come from :data:`FACE_REGIONS` in the face box.
    """
    geometry_box = _face_box(crop_method, crop_margin)
    found = cascade_regions(onset_face) if (use_cascades and onset_face is not None and onset_face.size) else {}
    # Geometric regions expressed as fractions of the stored frame, so both kinds go through one rasteriser.
    box_h, box_w = geometry_box.bottom - geometry_box.top, geometry_box.right - geometry_box.left
    fractions: dict[str, Fractions] = {}
    detail: dict[str, str] = {}
    for name in REGION_NAMES:
        if name in found:
            fractions[name], detail[name] = found[name], "cascade"
        else:
            top, left, bottom, right = FACE_REGIONS[name]
            fractions[name] = (geometry_box.top + top * box_h, geometry_box.left + left * box_w,
                               geometry_box.top + bottom * box_h, geometry_box.left + right * box_w)
            detail[name] = "geometry"
    masks = face_region_masks(size, FaceBox(), fractions)
    kinds = set(detail.values())
    source = "cascade" if kinds == {"cascade"} else "geometry" if kinds == {"geometry"} else "cascade+geometry"
    return RegionSet(masks=masks, source=source, detail=detail)


def _onset_face(row: Mapping[str, Any], data_root: str | os.PathLike) -> np.ndarray | None:
    """The clip's onset frame cut with its stored crop box, or None when the frames cannot be read."""
    from merkit.data.io import ClipReadError, read_clip

    try:
        clip = read_clip(Path(data_root) / str(row["path"]), int(row["onset"]), int(row["onset"]), sample=str(row["sample"]))
    except (ClipReadError, OSError, ValueError):
        return None
    frame = clip.frames[0]
    x, y, w, h = (int(row[c]) for c in ("crop_x", "crop_y", "crop_w", "crop_h"))
    return frame[y : y + h, x : x + w]


def store_regions(
    store: Any,
    positions: Sequence[int] | np.ndarray,
    data_root: str | os.PathLike | None = None,
    *,
    use_cascades: bool = True,
) -> tuple[list[RegionSet], pd.DataFrame]:
    """Regions of the store clips at ``positions`` and a table saying how each was placed.

    ``data_root`` is where the store's frames came from (``prepared.data_root``); None (or frames that
    cannot be read) leaves the geometry. Returns the :class:`RegionSet` per position and a DataFrame
    ``clip, subject, sample, crop_method, region_source`` plus one ``<region>_source`` column per region.
    """
    flow_only = getattr(store, "clips", None) is None  # a flow folder: F×F images, no frames to detect on
    # ASSUMPTION for a flow folder: its images are flow of centred face crops (as the community makes them),
    # so the regions are the centred-crop geometry on the F×F grid.
    size = int(store.flow.shape[1]) if flow_only else int(store.clips.shape[2])
    margin = float(getattr(store.config, "crop_margin", 0.1))
    sets: list[RegionSet] = []
    rows = []
    for position in np.asarray(positions, dtype=np.int64):
        row = store.index.iloc[int(position)]
        method = "dataset" if flow_only else (str(row.get("crop_method", store.config.crop)) or "dataset")
        readable = use_cascades and data_root is not None and not flow_only
        face = _onset_face(row, data_root) if readable else None
        regions = clip_regions(size, face, crop_method=method, crop_margin=margin, use_cascades=use_cascades)
        sets.append(regions)
        rows.append({"clip": int(position), "subject": row.get("subject"), "sample": row.get("sample"),
                     "crop_method": method, "region_source": regions.source,
                     **{f"{name}_source": how for name, how in regions.detail.items()}})
    return sets, pd.DataFrame(rows)


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


def _region_table(maps: np.ndarray, regions: Sequence[RegionSet], clips: np.ndarray, method: str) -> tuple[pd.DataFrame, pd.DataFrame]:
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
            over_time.append(pd.DataFrame({"clip": clips[k], "method": method, "frame": np.arange(t), "region": name, "mass": per_frame}))
            fraction = float(mask.mean())
            mass = float(per_frame.sum())
            scores.append({"clip": clips[k], "method": method, "region": name, "mass": mass, "region_fraction": fraction,
                           "mass_over_chance": mass / fraction if fraction > 0 else np.nan})
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
        raise ValueError(f"target must be 'label' or 'pred', got {target!r}")
    positions = np.asarray(positions, dtype=np.int64)
    if regions is None:
        regions, sources = store_regions(store, positions, data_root)
    if len(regions) != len(positions):
        raise ValueError(f"{len(regions)} region sets for {len(positions)} clips: they must align")
    if dataset_factory is None:
        from merkit.explain import _model_input_dataset

        dataset = _model_input_dataset(model, store, positions)  # clips, or a flow model's own flow images
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
        agreement=pd.concat(agreements, ignore_index=True) if agreements else pd.DataFrame(columns=["clip", "method", "spearman"]),
        sources=sources,
    )


def shared_events(rows: pd.DataFrame, n_frames: int, model: nn.Module | None = None) -> dict[str, float]:
    """Onset / apex / offset positions of several store clips on their ``n_frames`` stored frames, for
    curves averaged over those clips: an event at the same position in every clip keeps its name; one
    that differs (the apex, usually) is marked at its mean position as ``"apex (mean)"``. ``rows`` are
    store index rows (``onset``, ``apex_used``, ``offset``); the span is onset→offset, as in
    :func:`merkit.explain.event_positions`. For a flow ``model`` (or a flow-folder store): ``{"apex": 0.0}``."""
    from merkit.explain import event_positions

    if getattr(getattr(model, "input_spec", None), "kind", "clip") == "flow" or "apex_used" not in rows:
        return {"apex": 0.0}  # a flow model reads one onset→apex image: its one "frame" is the apex
    per_clip = [event_positions(int(r["onset"]), int(r["apex_used"]), int(r["offset"]), n_frames) for _, r in rows.iterrows()]
    events: dict[str, float] = {}
    for name in ("onset", "apex", "offset"):
        values = [e[name] for e in per_clip if name in e]
        if len(values) != len(per_clip) or not values:
            continue
        same = max(values) - min(values) < 1e-9
        events[name if same else f"{name} (mean)"] = float(np.mean(values))
    return events
