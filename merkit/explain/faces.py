"""Facial regions (brows, eyes, nose, mouth) of a preprocessed face crop, placed by geometry or by OpenCV.

Axis letters: n clips, t frames, h/w or s (store side) pixels.

Regions, per clip, in the store's (s, s) frame:

- **cascade**: OpenCV's bundled eye cascade (``haarcascade_eye.xml``) and smile cascade
  (``haarcascade_smile.xml``; the mouth cascade ``haarcascade_mcs_mouth.xml`` is not in the opencv-contrib
  4.x wheels, and is used when a system install has it) run on the clip's onset frame, read from the
  dataset at full resolution and cut with the clip's crop box from the store index. Eyes are the box
  around the detected eyes, brows the band above them, the mouth the detected mouth, the nose what lies
  between eyes and mouth. A region whose cascade does not fire plausibly falls back to the geometry.
- **geometry**: :data:`FACE_REGIONS`, rough proportions of a centred frontal face, placed in
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
from torch import Tensor

from merkit.data.io import ClipReadError, read_clip

__all__ = [
    "FACE_REGIONS",
    "REGION_NAMES",
    "FaceBox",
    "RegionSet",
    "cascade_regions",
    "clip_regions",
    "face_region_masks",
    "region_time_feature_mask",
    "store_regions",
]


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
# regions per clip of a store: the cascades where they fire, else the geometry

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


def _detect(
    cascade_names: Sequence[str], grey: np.ndarray, min_side: int, neighbours: int
) -> list[tuple[int, int, int, int]]:
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
    and nose are derived from eyes (and mouth): the upper third of the eye windows (plus a little above) is brows, the
    rest eyes; nose the middle third between the eyes' bottom and the mouth's top (or 0.68 of the crop without a mouth).
    """
    grey = face if face.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(face), cv2.COLOR_RGB2GRAY)
    height, width = grey.shape
    scale = _DETECT_SIDE / max(height, width)
    grey = cv2.resize(
        grey, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_LINEAR
    )
    # No histogram equalisation: measured on emulated CASME II raw crops it halves how often the eyes are found.
    h, w = grey.shape
    found: dict[str, Fractions] = {}
    eyes = [
        e for e in _detect(_EYE_CASCADES, grey, max(8, w // 16), 5) if e[1] + e[3] / 2 < 0.55 * h and e[2] < 0.45 * w
    ]
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
    mouths = [
        m
        for m in _detect(_MOUTH_CASCADES, grey, max(8, w // 8), 15)
        if m[1] / h > max(0.5, eyes_bottom) and m[2] < 0.8 * w
    ]
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
            fractions[name] = (
                geometry_box.top + top * box_h,
                geometry_box.left + left * box_w,
                geometry_box.top + bottom * box_h,
                geometry_box.left + right * box_w,
            )
            detail[name] = "geometry"
    masks = face_region_masks(size, FaceBox(), fractions)
    kinds = set(detail.values())
    source = "cascade" if kinds == {"cascade"} else "geometry" if kinds == {"geometry"} else "cascade+geometry"
    return RegionSet(masks=masks, source=source, detail=detail)


def _onset_face(row: Mapping[str, Any], data_root: str | os.PathLike) -> np.ndarray | None:
    """The clip's onset frame cut with its stored crop box, or None when the frames cannot be read."""
    try:
        clip = read_clip(
            Path(data_root) / str(row["path"]), int(row["onset"]), int(row["onset"]), sample=str(row["sample"])
        )
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
        rows.append(
            {
                "clip": int(position),
                "subject": row.get("subject"),
                "sample": row.get("sample"),
                "crop_method": method,
                "region_source": regions.source,
                **{f"{name}_source": how for name, how in regions.detail.items()},
            }
        )
    return sets, pd.DataFrame(rows)
