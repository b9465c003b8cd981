"""The preprocessing parameters (:class:`PreprocessConfig`, part of the clip store's key), the crop box, what
was done to one clip (:class:`PreprocessResult`) and the error naming the sample."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from merkit.errors import MerkitValueError

CROPS = ("auto", "dataset", "haar", "center", "none")
#: What a clip's crop turned out to be (``PreprocessResult.crop_method``, the store index's ``crop_method``).
CROP_METHODS = ("dataset", "haar", "center", "none")
COLORS = ("grey", "rgb")
TEMPORALS = ("onset_offset", "onset_apex", "apex_window", "tim")
NO_FACE = ("error", "center")
SHORT_CLIP = ("interpolate", "error")
MISSING_APEX = ("middle", "error")


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
    no_face: str = "error"  # haar/auto found no face: 'error' (PreprocessError) or 'center' (recorded fallback)
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
                raise PreprocessError(f"PreprocessConfig.{name}={getattr(self, name)!r}; expected one of {allowed}")
        if self.frames < 2:
            raise PreprocessError(f"PreprocessConfig.frames={self.frames}; need at least 2")
        if self.size < 4:
            raise PreprocessError(f"PreprocessConfig.size={self.size}; need at least 4")
        if not 0 <= self.crop_margin <= 1:
            raise PreprocessError(f"PreprocessConfig.crop_margin={self.crop_margin}; expected 0..1")
        if self.apex_window < 1:
            raise PreprocessError(f"PreprocessConfig.apex_window={self.apex_window}; need at least 1")

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
    fallback); ``crop_fallback`` True when the face detector found nothing and the centred square was used; ``apex`` the
    apex frame number used (estimated when the sheet had none); ``source_frames`` how many frames were in the selected
    range.
    """

    clip: np.ndarray
    box: Box
    crop_fallback: bool
    apex: int
    source_frames: int
    crop_method: str = ""


def describe_sample(sample: str) -> str:
    """How an error message names the clip: ``sample 'EP02_01'``, or ``clip`` when the sample has no name."""
    return f"sample {sample!r}" if sample else "clip"
