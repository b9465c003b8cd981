"""The one crop box of a clip: the Haar face box on the onset frame (grown by a margin, squared), the centred
square, or the whole frame, by ``PreprocessConfig.crop`` (``'auto'`` reads the clip's ``cropped`` flag)."""

from __future__ import annotations

import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from merkit.data.preprocess.config import Box, PreprocessConfig, PreprocessError, describe_sample

# Where a cascade may live when the cv2 wheel does not ship it (Debian/Ubuntu `opencv-data`, conda, brew).
_CASCADE_NAME = "haarcascade_frontalface_default.xml"
_CASCADE_DIRS = (
    "/usr/share/opencv4/haarcascades",
    "/usr/share/opencv/haarcascades",
    "/usr/local/share/opencv4/haarcascades",
    "/opt/homebrew/share/opencv4/haarcascades",
)


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
        how = (
            "crop='haar'"
            if config.crop == "haar"
            else "crop='auto' on raw frames (the manifest's cropped flag is not True)"
        )
        raise PreprocessError(
            f"{describe_sample(sample)}: no face found on the onset frame ({width}x{height}) by the Haar cascade "
            f"({how}); use no_face='center' for a recorded centre-crop fallback"
        )
    warnings.warn(
        f"{describe_sample(sample)}: no face found; using the centred square (no_face='center')", stacklevel=2
    )
    return _center_box(height, width), True
