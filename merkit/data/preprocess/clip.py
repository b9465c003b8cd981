"""One whole clip: the temporal plan, the crop box, then resize and colour; and a region mask put through the same
crop and resize."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from merkit.data.preprocess.config import Box, PreprocessConfig, PreprocessError, PreprocessResult, describe_sample
from merkit.data.preprocess.crop import clip_crop_box, resolve_crop
from merkit.data.preprocess.temporal import resolve_apex, temporal_sample


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
            f"{describe_sample(sample)}: frames must be uint8 (T, H, W, 3) RGB, got {frames.dtype} {frames.shape}"
        )
    if numbers.shape != (frames.shape[0],):
        raise PreprocessError(f"{describe_sample(sample)}: {len(numbers)} frame numbers for {frames.shape[0]} frames")
    if len(numbers) > 1 and np.any(np.diff(numbers) <= 0):
        raise PreprocessError(f"{describe_sample(sample)}: frame numbers are not strictly increasing")
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
