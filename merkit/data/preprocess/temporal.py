"""Temporal normalisation: the apex a clip uses, and the plan that resamples its frames to T by frame number
(linear over onset..offset, onset..apex, an apex window, or TIM)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from merkit.data.preprocess.config import PreprocessConfig, PreprocessError, describe_sample


def _is_missing(value: Any) -> bool:
    """None, NaN and pandas.NA (a nullable Int64 cell) all mean "no apex in the sheet"."""
    return value is None or bool(pd.isna(value))


def resolve_apex(onset: int, apex: Any, offset: int, config: PreprocessConfig, *, sample: str = "") -> int:
    """The apex frame number to use: the sheet's, or the estimate when it is missing (see module doc)."""
    if onset > offset:
        raise PreprocessError(f"{describe_sample(sample)}: onset {onset} is after offset {offset}")
    if _is_missing(apex):
        if config.missing_apex == "error":
            raise PreprocessError(f"{describe_sample(sample)}: no apex frame and missing_apex='error'")
        return int(onset + (offset - onset) // 2)
    apex = int(apex)
    if not onset <= apex <= offset:
        raise PreprocessError(f"{describe_sample(sample)}: apex {apex} outside onset..offset {onset}..{offset}")
    return apex


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
            f"{describe_sample(sample)}: frames {int(start)}..{int(end)} needed for temporal={config.temporal!r}, "
            f"but the clip holds frame numbers {have}"
        )
    inside = np.flatnonzero((numbers >= start) & (numbers <= end))
    if len(inside) < 2:
        raise PreprocessError(
            f"{describe_sample(sample)}: only {len(inside)} frame(s) in {int(start)}..{int(end)} "
            f"(temporal={config.temporal!r}); at least 2 are needed"
        )
    if len(inside) < config.frames and config.short_clip == "error":
        raise PreprocessError(
            f"{describe_sample(sample)}: {len(inside)} frames in {int(start)}..{int(end)}, "
            f"fewer than T={config.frames} "
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
