"""Preprocessing of one clip: face crop → temporal normalisation to T frames → resize and colour.

Axis letters: T frames, H height, W width, C channels, S output side (square).

The input is what ``merkit.data.io.read_clip`` returns: RGB uint8 frames ``(T_in, H, W, 3)`` and their
absolute frame numbers ``(T_in,)`` (frame numbers as written in the annotation sheet, not list positions).
The output is uint8 ``(T, S, S, C)``, C = 1 (grey) or 3 (RGB). Every choice is a field of
:class:`PreprocessConfig`, whose ``asdict`` is part of the clip store's cache key.

Choices worth knowing:

- **Crop.** ``crop='auto'`` (default) decides per clip from the manifest's ``cropped`` flag: a clip whose
  frames are face crops (``cropped=True``: a dataset's cropped release, SynthME) is used as is, like
  ``'dataset'``; raw frames (``cropped=False``, or no flag: a hand-made manifest is taken as raw) get the
  Haar face box, like ``'haar'``. :attr:`PreprocessResult.crop_method` says which crop each clip got
  (``dataset``, ``haar``, ``center``, ``none``). ``crop='dataset'`` means the frames are already face crops (CASME II ``Cropped``, SAMM's and
  SMIC's cropped releases, SynthME): nothing is detected, the whole frame is resized. ``'haar'`` runs an
  OpenCV Haar cascade on the *onset* frame only and holds that one box (plus a margin) for the whole clip,
  because per-frame boxes jitter by more than the micro-movement itself. ``'center'`` takes the centred
  square; ``'none'`` resizes the whole frame (aspect ratio not kept).
- **No face found** (``crop='haar'``, or ``'auto'`` on raw frames): :class:`PreprocessError` naming the sample, or with
  ``no_face='center'`` the centred square, recorded as ``crop_fallback=True`` in the
  :class:`PreprocessResult` (and in the clip store's index) and warned about.
- **Haar cascade file.** The pinned opencv-contrib 4.x wheel ships the cascade XML files in
  ``cv2.data.haarcascades`` (OpenCV 5's wheels no longer do, which is why the pin stays on 4.x); other
  installs are searched in the usual system locations (Debian's ``opencv-data`` package:
  ``/usr/share/opencv4/haarcascades``), and ``haar_cascade`` gives a path.
- **Temporal normalisation** resamples the frames by *frame number* (gaps in the numbering are bridged):
  linear interpolation over onset→offset (default, first and last output frames are exactly the onset and
  offset frames), onset→apex, a window of ``±apex_window`` frames around the apex, or TIM.
- **TIM** (temporal interpolation model, Zhou et al. 2011, used for micro-expressions by Pfister et al. 2011):
  the n frames are embedded on the path graph's Laplacian eigenvectors, a continuous curve
  ``y_k(t) = sin(πkt + π(n−k)/2n)``; the linear map from curve to frames is fitted exactly and the curve is
  sampled at T evenly spaced points. With the analytic eigenvectors this is a cosine (DCT-II) interpolation,
  which is what :func:`tim_weights` computes. First and last frames are reproduced exactly.
- **Clip shorter than T** (fewer source frames than T): by default (``short_clip='interpolate'``) frames are
  upsampled by the same interpolation (linear blends between neighbours); ``short_clip='error'`` raises.
  Fewer than 2 frames in the range always raises.
- **Missing apex** (SMIC; CASME II's ``/``): ``missing_apex='middle'`` (default) uses the frame number halfway
  between onset and offset, rounded down; ``'error'`` raises.
- Per-clip or per-dataset intensity normalisation is not done here (the store keeps uint8): see
  ``merkit.data.torch_dataset.ClipDataset(normalise=...)``.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from merkit.errors import MerkitValueError

__all__ = [
    "PreprocessConfig",
    "PreprocessError",
    "PreprocessResult",
    "Box",
    "CROP_METHODS",
    "resolve_crop",
    "preprocess_clip",
    "preprocess_clip_detailed",
    "resolve_apex",
    "temporal_sample",
    "tim_weights",
    "linear_sample_plan",
    "find_haar_cascade",
    "detect_face_box",
    "clip_crop_box",
    "spatial_transform_mask",
    "output_shape",
]

CROPS = ("auto", "dataset", "haar", "center", "none")
#: What a clip's crop turned out to be (``PreprocessResult.crop_method``, the store index's ``crop_method``).
CROP_METHODS = ("dataset", "haar", "center", "none")
COLORS = ("grey", "rgb")
TEMPORALS = ("onset_offset", "onset_apex", "apex_window", "tim")
NO_FACE = ("error", "center")
SHORT_CLIP = ("interpolate", "error")
MISSING_APEX = ("middle", "error")

# Where a cascade may live when the cv2 wheel does not ship it (Debian/Ubuntu `opencv-data`, conda, brew).
_CASCADE_NAME = "haarcascade_frontalface_default.xml"
_CASCADE_DIRS = (
    "/usr/share/opencv4/haarcascades",
    "/usr/share/opencv/haarcascades",
    "/usr/local/share/opencv4/haarcascades",
    "/opt/homebrew/share/opencv4/haarcascades",
)


class PreprocessError(MerkitValueError):
    """A clip cannot be preprocessed; the message names the sample."""


@dataclass(frozen=True)
class PreprocessConfig:
    """Every preprocessing parameter; ``dataclasses.asdict(config)`` goes into the clip store's cache key."""

    frames: int = 16  # T: output frames per clip
    size: int = 64  # S: output side in pixels (square)
    color: str = "grey"  # 'grey' (C=1) or 'rgb' (C=3)
    crop: str = "auto"  # 'auto' (per clip: face crops as is, raw frames haar), 'dataset', 'haar', 'center', 'none'
    crop_margin: float = 0.1  # haar only: box grown by this fraction of its side on every side, then squared
    no_face: str = "error"  # haar (or auto on raw frames) found no face: 'error' (PreprocessError) or 'center' (recorded fallback)
    haar_cascade: str = ""  # path to a cascade XML; '' searches cv2.data.haarcascades then system dirs
    haar_min_face: float = 0.2  # smallest face side accepted, as a fraction of the frame's shorter side
    temporal: str = "onset_offset"  # 'onset_offset', 'onset_apex', 'apex_window' or 'tim'
    apex_window: int = 8  # apex_window only: frames taken on each side of the apex (by frame number)
    missing_apex: str = "middle"  # apex absent (SMIC): 'middle' = (onset + offset) // 2, or 'error'
    short_clip: str = "interpolate"  # fewer source frames than T: 'interpolate' (upsample) or 'error'

    def __post_init__(self) -> None:
        for name, allowed in (
            ("color", COLORS),
            ("crop", CROPS),
            ("no_face", NO_FACE),
            ("temporal", TEMPORALS),
            ("short_clip", SHORT_CLIP),
            ("missing_apex", MISSING_APEX),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"PreprocessConfig.{name}={getattr(self, name)!r}; expected one of {allowed}")
        if self.frames < 2:
            raise ValueError(f"PreprocessConfig.frames={self.frames}; need at least 2")
        if self.size < 4:
            raise ValueError(f"PreprocessConfig.size={self.size}; need at least 4")
        if not 0 <= self.crop_margin <= 1:
            raise ValueError(f"PreprocessConfig.crop_margin={self.crop_margin}; expected 0..1")
        if self.apex_window < 1:
            raise ValueError(f"PreprocessConfig.apex_window={self.apex_window}; need at least 1")

    @property
    def channels(self) -> int:
        """C of the output: 1 for grey, 3 for RGB."""
        return 1 if self.color == "grey" else 3

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field (JSON-serialisable), for cache keys and run records."""
        return asdict(self)


@dataclass(frozen=True)
class Box:
    """A crop box in pixels of the source frame: columns ``x:x+w``, rows ``y:y+h``."""

    x: int
    y: int
    w: int
    h: int


@dataclass
class PreprocessResult:
    """What :func:`preprocess_clip_detailed` did to one clip.

    ``clip`` uint8 (T, S, S, C); ``box`` the crop box held for the whole clip (source-frame pixels);
    ``crop_method`` the crop the clip got (one of :data:`CROP_METHODS`; ``'center'`` also for the no-face
    fallback); ``crop_fallback`` True when the face detector found nothing and the centred square was used; ``apex`` the apex frame number used
    (estimated when the sheet had none); ``source_frames`` how many frames were in the selected range.
    """

    clip: np.ndarray
    box: Box
    crop_fallback: bool
    apex: int
    source_frames: int
    crop_method: str = ""


def _name(sample: str) -> str:
    return f"sample {sample!r}" if sample else "clip"


def _is_missing(value: Any) -> bool:
    """None, NaN and pandas.NA (a nullable Int64 cell) all mean "no apex in the sheet"."""
    return value is None or bool(pd.isna(value))


def resolve_apex(onset: int, apex: Any, offset: int, config: PreprocessConfig, *, sample: str = "") -> int:
    """The apex frame number to use: the sheet's, or the estimate when it is missing (see module doc)."""
    if onset > offset:
        raise PreprocessError(f"{_name(sample)}: onset {onset} is after offset {offset}")
    if _is_missing(apex):
        if config.missing_apex == "error":
            raise PreprocessError(f"{_name(sample)}: no apex frame and missing_apex='error'")
        return int(onset + (offset - onset) // 2)
    apex = int(apex)
    if not onset <= apex <= offset:
        raise PreprocessError(f"{_name(sample)}: apex {apex} outside onset..offset {onset}..{offset}")
    return apex


# ---------------------------------------------------------------------------------------------------------
# temporal normalisation


def linear_sample_plan(numbers: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each target frame number, the index of the listed frame at or before it and the blend weight.

    Output frame i = (1 − w[i]) · frames[lo[i]] + w[i] · frames[lo[i] + 1] (the second term only when
    w[i] > 0). ``numbers`` must be strictly increasing and cover every target.
    """
    numbers = np.asarray(numbers, dtype=np.float64)
    lo = np.searchsorted(numbers, targets, side="right") - 1
    lo = np.clip(lo, 0, len(numbers) - 1)
    # A target equal to the last frame number lands on the last frame with weight 0.
    lo = np.where(lo == len(numbers) - 1, np.maximum(lo - 1, 0), lo) if len(numbers) > 1 else lo
    hi = np.minimum(lo + 1, len(numbers) - 1)
    span = numbers[hi] - numbers[lo]
    weight = np.where(span > 0, (targets - numbers[lo]) / np.where(span > 0, span, 1.0), 0.0)
    return lo.astype(np.int64), np.clip(weight, 0.0, 1.0)


def tim_weights(n: int, t: int) -> np.ndarray:
    """TIM interpolation matrix (t, n): output frames = weights @ input frames (flattened).

    The path graph on n frames has Laplacian eigenvectors v_k(j) = cos(πk(j − ½)/n), j = 1..n, k = 0..n−1
    (k = 0 the constant). Fitting the linear map from the curve (v_1..v_{n−1}) to the mean-removed frames
    and sampling the curve at positions τ in [1, n] gives
    ``W[i, j] = (1/n) · (1 + 2 Σ_k cos(πk(τ_i − ½)/n) · cos(πk(j − ½)/n))``.
    At τ = j the row is the unit vector e_j (the fit is exact at the input frames).
    """
    if n < 2:
        raise ValueError(f"TIM needs at least 2 frames, got {n}")
    tau = np.linspace(1.0, float(n), t)
    j = np.arange(1, n + 1, dtype=np.float64)
    k = np.arange(1, n, dtype=np.float64)
    curve_out = np.cos(np.pi * np.outer(tau - 0.5, k) / n)  # (t, n-1)
    curve_in = np.cos(np.pi * np.outer(k, j - 0.5) / n)  # (n-1, n)
    return (1.0 + 2.0 * curve_out @ curve_in) / n  # (t, n)


def _selected_range(
    numbers: np.ndarray, onset: int, apex: int, offset: int, config: PreprocessConfig
) -> tuple[float, float]:
    """First and last frame number that the temporal method samples between."""
    if config.temporal in ("onset_offset", "tim"):
        return float(onset), float(offset)
    if config.temporal == "onset_apex":
        return float(onset), float(apex)
    # apex_window: ±w frames around the apex, shifted (not shrunk) to stay inside onset..offset when possible.
    w = config.apex_window
    start, end = apex - w, apex + w
    if end - start >= offset - onset:
        return float(onset), float(offset)
    if start < onset:
        start, end = onset, onset + 2 * w
    if end > offset:
        start, end = offset - 2 * w, offset
    return float(start), float(end)


def temporal_sample(
    numbers: np.ndarray,
    onset: int,
    apex: int,
    offset: int,
    config: PreprocessConfig,
    *,
    sample: str = "",
) -> tuple[np.ndarray, np.ndarray]:
    """The temporal plan: ``(used, weights)`` with output frames = ``weights @ frames[used]``.

    ``used`` (U,) indexes the listed frames; ``weights`` is (T, U). Raises :class:`PreprocessError` naming
    the sample when the range is not covered by the listed frames, holds fewer than 2 frames, or (with
    ``short_clip='error'``) fewer than T.
    """
    numbers = np.asarray(numbers, dtype=np.int64)
    start, end = _selected_range(numbers, onset, apex, offset, config)
    if len(numbers) == 0 or start < numbers[0] or end > numbers[-1]:
        have = f"{numbers[0]}..{numbers[-1]}" if len(numbers) else "none"
        raise PreprocessError(
            f"{_name(sample)}: frames {int(start)}..{int(end)} needed for temporal={config.temporal!r}, "
            f"but the clip holds frame numbers {have}"
        )
    inside = np.flatnonzero((numbers >= start) & (numbers <= end))
    if len(inside) < 2:
        raise PreprocessError(
            f"{_name(sample)}: only {len(inside)} frame(s) in {int(start)}..{int(end)} "
            f"(temporal={config.temporal!r}); at least 2 are needed"
        )
    if len(inside) < config.frames and config.short_clip == "error":
        raise PreprocessError(
            f"{_name(sample)}: {len(inside)} frames in {int(start)}..{int(end)}, fewer than T={config.frames} "
            "(short_clip='error'; use short_clip='interpolate' to upsample)"
        )
    T = config.frames
    if config.temporal == "tim":
        return inside, tim_weights(len(inside), T)
    targets = np.linspace(start, end, T)
    lo, w = linear_sample_plan(numbers[inside], targets)
    weights = np.zeros((T, len(inside)), dtype=np.float64)
    rows = np.arange(T)
    weights[rows, lo] += 1.0 - w
    weights[rows, np.minimum(lo + 1, len(inside) - 1)] += w
    return inside, weights


# ---------------------------------------------------------------------------------------------------------
# spatial: crop box, resize, colour


def find_haar_cascade(path: str = "") -> Path:
    """The frontal-face cascade XML: ``path`` if given, else cv2's bundled folder, else system folders."""
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise PreprocessError(f"Haar cascade file not found: {p}")
        return p
    candidates = [Path(getattr(cv2, "data").haarcascades) / _CASCADE_NAME] if hasattr(cv2, "data") else []
    candidates += [Path(d) / _CASCADE_NAME for d in _CASCADE_DIRS]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise PreprocessError(
        f"no {_CASCADE_NAME} found (looked in {', '.join(str(c.parent) for c in candidates)}). "
        "OpenCV 5 wheels no longer bundle the cascades: install your system's opencv-data package "
        "(apt-get install opencv-data) or pass PreprocessConfig(haar_cascade='/path/to/cascade.xml')"
    )


@lru_cache(maxsize=4)
def _load_cascade(path: str) -> cv2.CascadeClassifier:
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise PreprocessError(f"Haar cascade could not be loaded: {path}")
    return cascade


def detect_face_box(frame: np.ndarray, config: PreprocessConfig = PreprocessConfig()) -> Box | None:
    """The largest face the Haar cascade finds in one RGB or grey frame, or None; no margin added."""
    cascade = _load_cascade(str(find_haar_cascade(config.haar_cascade)))
    grey = frame if frame.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)
    smallest = max(8, int(config.haar_min_face * min(grey.shape)))
    found = cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=3, minSize=(smallest, smallest))
    if len(found) == 0:
        return None
    x, y, w, h = max((tuple(int(v) for v in r) for r in found), key=lambda r: r[2] * r[3])
    return Box(x, y, w, h)


def _center_box(height: int, width: int) -> Box:
    side = min(height, width)
    return Box((width - side) // 2, (height - side) // 2, side, side)


def _grow_box(face: Box, height: int, width: int, margin: float) -> Box:
    """Square box around ``face`` grown by ``margin`` per side, shifted (then clipped) to lie inside."""
    side = int(round(max(face.w, face.h) * (1 + 2 * margin)))
    side = min(side, height, width)
    cx, cy = face.x + face.w / 2, face.y + face.h / 2
    x = int(round(cx - side / 2))
    y = int(round(cy - side / 2))
    x = min(max(x, 0), width - side)
    y = min(max(y, 0), height - side)
    return Box(x, y, side, side)


def resolve_crop(config: PreprocessConfig, cropped: Any = None) -> str:
    """The crop a clip gets: ``config.crop``, with ``'auto'`` resolved by the clip's ``cropped`` flag.

    ``cropped`` is the manifest's flag (True: the frames are face crops; False, None or NaN: raw frames,
    the safe reading of a manifest that does not say).
    """
    if config.crop != "auto":
        return config.crop
    return "dataset" if _is_cropped(cropped) else "haar"


def _is_cropped(cropped: Any) -> bool:
    if cropped is None or (not isinstance(cropped, str) and bool(pd.isna(cropped))):
        return False
    if isinstance(cropped, str):
        return cropped.strip().lower() in ("true", "1", "yes")
    return bool(cropped)


def clip_crop_box(
    onset_frame: np.ndarray, config: PreprocessConfig, *, sample: str = "", cropped: Any = None
) -> tuple[Box, bool]:
    """The one crop box for a whole clip and whether it is the no-face fallback.

    Decided on the onset frame only (haar, auto on raw frames) or by the frame shape (dataset, none,
    center, auto on face crops); ``cropped`` is the clip's manifest flag (see :func:`resolve_crop`).
    """
    height, width = onset_frame.shape[:2]
    crop = resolve_crop(config, cropped)
    if crop in ("dataset", "none"):
        return Box(0, 0, width, height), False
    if crop == "center":
        return _center_box(height, width), False
    face = detect_face_box(onset_frame, config)
    if face is not None:
        return _grow_box(face, height, width, config.crop_margin), False
    if config.no_face == "error":
        how = "crop='haar'" if config.crop == "haar" else "crop='auto' on raw frames (the manifest's cropped flag is not True)"
        raise PreprocessError(
            f"{_name(sample)}: no face found on the onset frame ({width}x{height}) by the Haar cascade "
            f"({how}); use no_face='center' for a recorded centre-crop fallback"
        )
    warnings.warn(f"{_name(sample)}: no face found; using the centred square (no_face='center')", stacklevel=2)
    return _center_box(height, width), True


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    h, w = image.shape[:2]
    shrinking = size < h or size < w
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def _spatial(frame: np.ndarray, box: Box, config: PreprocessConfig) -> np.ndarray:
    """One RGB uint8 frame → float32 (S, S, C): crop, resize, colour."""
    crop = np.ascontiguousarray(frame[box.y : box.y + box.h, box.x : box.x + box.w]).astype(np.float32)
    out = _resize(crop, config.size)
    if config.color == "grey":
        out = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)[..., None]  # (S, S) -> (S, S, 1)
    return out


def _check_frames(frames: np.ndarray, numbers: np.ndarray, sample: str) -> tuple[np.ndarray, np.ndarray]:
    frames = np.asarray(frames)
    numbers = np.asarray(numbers, dtype=np.int64)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise PreprocessError(
            f"{_name(sample)}: frames must be uint8 (T, H, W, 3) RGB, got {frames.dtype} {frames.shape}"
        )
    if numbers.shape != (frames.shape[0],):
        raise PreprocessError(f"{_name(sample)}: {len(numbers)} frame numbers for {frames.shape[0]} frames")
    if len(numbers) > 1 and np.any(np.diff(numbers) <= 0):
        raise PreprocessError(f"{_name(sample)}: frame numbers are not strictly increasing")
    return frames, numbers


def preprocess_clip_detailed(
    frames: np.ndarray,
    numbers: np.ndarray,
    onset: int,
    apex: Any,
    offset: int,
    config: PreprocessConfig,
    *,
    sample: str = "",
    cropped: Any = None,
) -> PreprocessResult:
    """:func:`preprocess_clip` plus what was decided on the way (box, crop method, fallback, apex used)."""
    frames, numbers = _check_frames(frames, numbers, sample)
    onset, offset = int(onset), int(offset)
    apex_used = resolve_apex(onset, apex, offset, config, sample=sample)
    used, weights = temporal_sample(numbers, onset, apex_used, offset, config, sample=sample)
    # The box comes from the onset frame: the listed frame at the onset number, or the first one after it.
    onset_index = int(np.searchsorted(numbers, onset, side="left"))
    box, fallback = clip_crop_box(frames[onset_index], config, sample=sample, cropped=cropped)
    method = "center" if fallback else resolve_crop(config, cropped)
    # Only frames with a non-zero weight somewhere are cropped and resized (linear plans touch ≤ 2T frames).
    needed = np.flatnonzero(np.any(weights != 0, axis=0))
    small = np.stack([_spatial(frames[used[j]], box, config) for j in needed])  # (U', S, S, C)
    mixed = np.tensordot(weights[:, needed], small, axes=(1, 0))  # (T, U') x (U', S, S, C) -> (T, S, S, C)
    clip = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
    return PreprocessResult(
        clip=clip, box=box, crop_fallback=fallback, apex=apex_used, source_frames=len(used), crop_method=method
    )


def preprocess_clip(
    frames: np.ndarray,
    numbers: np.ndarray,
    onset: int,
    apex: Any,
    offset: int,
    config: PreprocessConfig,
    *,
    sample: str = "",
    cropped: Any = None,
) -> np.ndarray:
    """Crop, temporally normalise, resize and colour one clip.

    ``frames`` uint8 RGB (T_in, H, W, 3) with absolute frame ``numbers`` (T_in,) strictly increasing;
    ``onset``/``apex``/``offset`` are frame numbers from the sheet (``apex`` may be None/NA). Returns uint8
    (T, S, S, C). ``cropped`` is the clip's manifest flag, read by ``crop='auto'`` (None: raw frames).
    Raises :class:`PreprocessError` naming ``sample`` on onset after offset, an apex outside the clip, a
    range the frames do not cover, too few frames, or no face (haar or auto on raw frames, no_face='error').
    """
    return preprocess_clip_detailed(frames, numbers, onset, apex, offset, config, sample=sample, cropped=cropped).clip


def spatial_transform_mask(
    mask: np.ndarray,
    frames_shape: tuple[int, ...],
    config: PreprocessConfig,
    box: Box | None = None,
    *,
    cropped: Any = None,
) -> np.ndarray:
    """Put a region mask through the same crop and resize as the clip's frames.

    ``mask`` (H, W) bool/0-1 in source-frame pixels; ``frames_shape`` the source frames' shape (…, H, W, 3)
    or (H, W); ``box`` the clip's crop box (required for crop='haar', where it came from detection: take it
    from :func:`preprocess_clip_detailed` or the store's index; also for crop='auto' on raw frames, i.e.
    unless ``cropped`` is True). Returns uint8 (S, S) of 0/1: a pixel is 1
    when at least half of its area was inside the mask, so the mask keeps its area under resizing.
    """
    if len(frames_shape) >= 3 and frames_shape[-1] in (1, 3):
        height, width = frames_shape[-3], frames_shape[-2]
    else:
        height, width = frames_shape[-2], frames_shape[-1]
    if mask.shape != (height, width):
        raise PreprocessError(f"mask shape {mask.shape} does not match frame size {(height, width)}")
    if box is None:
        if resolve_crop(config, cropped) == "haar":
            raise PreprocessError(f"crop={config.crop!r} needs the clip's detected box to transform its mask")
        box, _ = clip_crop_box(np.zeros((height, width, 3), np.uint8), config, cropped=cropped)
    crop = np.ascontiguousarray(mask[box.y : box.y + box.h, box.x : box.x + box.w]).astype(np.float32)
    coverage = _resize(crop, config.size)
    return (coverage >= 0.5).astype(np.uint8)


def output_shape(config: PreprocessConfig) -> tuple[int, int, int, int]:
    """(T, S, S, C) of :func:`preprocess_clip` under ``config``."""
    return (config.frames, config.size, config.size, config.channels)

