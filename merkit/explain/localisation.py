"""Localisation scores that are fair to every kind of map: rank AUC, mass above the map's own median, intervals.

Axis letters: b batch, m attention modules, t frames, h height, w width.

"Share of the map's mass inside the true region" (``mass_in_region``) suits a signed attribution, whose mass is
evidence. A sigmoid gate has a baseline: a gate of 0.6 everywhere and 0.9 inside the region has nearly all its
mass outside a small region and scores near chance although it ranks the region first. The scores here do not
depend on a map's offset:

- ``auc``: the ROC-AUC of the map's values inside against outside the region (the probability that a random
  position inside outranks a random position outside; ties count one half). 1 = the region ranks first,
  0.5 = no information (a constant map), 0 = the region ranks last. Invariant to any increasing transform.
- ``mass_above_median``: the share inside the region of the map's mass above its own median,
  ``max(map - median, 0)``: offset-free, and read against ``region_fraction`` like ``mass_in_region``.

:func:`merkit.explain.scores.region_scores` reports both beside the pointing game and ``mass_in_region``;
:func:`bootstrap_interval` and :func:`interval_table` give percentile intervals over clips.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from merkit.explain.maps import ExplainError

__all__ = ["bootstrap_interval", "interval_table", "mass_above_median", "rank_auc"]


def rank_auc(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """ROC-AUC of each clip's map values inside vs outside its region, (b,) from maps and bool masks (b, n).

    ``maps`` and ``masks`` are flattened per clip (any trailing shape). Ties share their average rank, so a
    constant map gives 0.5 exactly. NaN for a clip whose region is empty or covers everything.
    """
    values = np.asarray(maps, dtype=np.float64).reshape(len(maps), -1)  # (b, ...) -> (b, n)
    inside = np.asarray(masks, dtype=bool).reshape(len(masks), -1)  # (b, ...) -> (b, n)
    if values.shape != inside.shape:
        raise ExplainError(f"map values {values.shape} and region masks {inside.shape} differ in shape")
    ranks = rankdata(values, method="average", axis=1)
    n_in = inside.sum(axis=1).astype(np.float64)
    n_out = inside.shape[1] - n_in
    rank_sum = (ranks * inside).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (rank_sum - n_in * (n_in + 1) / 2) / (n_in * n_out)  # Mann-Whitney U / (n_in · n_out)
    return np.where((n_in > 0) & (n_out > 0), auc, np.nan)


def mass_above_median(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Share inside the region of each clip's mass above the map's own median, (b,); NaN when none is above."""
    values = np.asarray(maps, dtype=np.float64).reshape(len(maps), -1)  # (b, ...) -> (b, n)
    inside = np.asarray(masks, dtype=bool).reshape(len(masks), -1)  # (b, ...) -> (b, n)
    above = np.clip(values - np.median(values, axis=1, keepdims=True), 0.0, None)
    total = above.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (above * inside).sum(axis=1) / np.where(total > 0, total, 1.0), np.nan)


def bootstrap_interval(
    values: Sequence[float] | np.ndarray, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """Mean of ``values`` (NaN dropped) and its percentile bootstrap interval over them: (mean, low, high)."""
    data = np.asarray(values, dtype=np.float64)
    data = data[~np.isnan(data)]
    if data.size == 0:
        return (np.nan, np.nan, np.nan)
    draws = np.random.default_rng(seed).integers(0, data.size, size=(n_boot, data.size))
    means = data[draws].mean(axis=1)  # (n_boot, n) -> (n_boot,)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return (float(data.mean()), float(low), float(high))


def interval_table(
    table: pd.DataFrame,
    columns: Sequence[str] = ("auc", "pointing_hit", "mass_above_median"),
    by: Sequence[str] = ("module",),
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """Mean and 95 % bootstrap interval over clips of each score per group: ``<col>``, ``<col>_lo``, ``<col>_hi``,
    and ``n_clips``. ``pointing_hit`` is reported as ``pointing`` (a hit rate)."""
    rows = []
    for key, part in table.groupby(list(by), sort=False, dropna=False):
        row = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        for column in columns:
            name = "pointing" if column == "pointing_hit" else column
            mean, low, high = bootstrap_interval(part[column].astype(float), n_boot=n_boot, seed=seed)
            row.update({name: mean, f"{name}_lo": low, f"{name}_hi": high})
        row["n_clips"] = int(part["clip"].nunique()) if "clip" in part else len(part)
        rows.append(row)
    return pd.DataFrame(rows)
