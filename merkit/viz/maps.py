"""Attribution and attention maps over a clip: the montage (frames × maps), per-frame curves, one frame with its map."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from merkit.explain import Attribution, frame_curve
from merkit.viz.frames import display_frames, mark_events, pick_frames, row_scale, single_map


def montage(
    clip: torch.Tensor | np.ndarray,
    maps: Mapping[str, Attribution | torch.Tensor | np.ndarray],
    *,
    index: int = 0,
    frames: Sequence[int] | int | None = None,
    events: Mapping[str, float] | None = None,
    title: str | None = None,
    layout: str = "auto",
    cell: float = 1.1,
) -> Figure:
    """Frames along x; rows = the clip, then one row per map (e.g. IG, Grad-CAM, learned attention).

    Every map row has ONE colour scale over the whole clip (diverging and symmetric for signed maps)
    with its colour bar on the right. Under the grid, the per-frame share of each map's absolute mass
    (:func:`merkit.explain.frame_curve`) over all frames, with onset/apex/offset ``events`` (clip
    positions, e.g. from :func:`merkit.explain.event_positions`) marked. ``frames``: indices to
    show, or how many evenly spaced ones (default up to 12). ``index`` picks the clip of batched maps.
    """
    images = display_frames(clip, layout)
    n_frames = images.shape[0]
    shown = pick_frames(n_frames, frames)
    rows = [(name, *single_map(item, index)) for name, item in maps.items()]
    for name, values, _ in rows:
        if values.shape != images.shape[:3]:
            raise ValueError(f"map {name!r} has shape {values.shape}, the clip {images.shape[:3]}")
    n_rows = 1 + len(rows)
    timeline = bool(rows) or bool(events)  # with neither, there is nothing to draw under the frames
    height = cell * n_rows + (2.2 if rows else 1.4 if events else 0.6)
    figure = Figure(figsize=(cell * len(shown) + 1.2, height), layout="constrained")
    ratios = [1] * n_rows + ([1.6 if rows else 0.6] if timeline else [])
    grid = figure.add_gridspec(
        n_rows + int(timeline), len(shown) + 1, height_ratios=ratios, width_ratios=[1] * len(shown) + [0.08]
    )
    grey = {"cmap": "gray", "vmin": 0, "vmax": 1} if images.ndim == 3 else {}
    for column, frame in enumerate(shown):
        ax = figure.add_subplot(grid[0, column])
        ax.imshow(images[frame], **grey)
        ax.set_title(f"t={frame}", fontsize=8)
        ax.set_axis_off()
    for row, (name, values, signed) in enumerate(rows, start=1):
        scale = row_scale(values, signed)
        image = None
        for column, frame in enumerate(shown):
            ax = figure.add_subplot(grid[row, column])
            image = ax.imshow(values[frame], **scale)
            ax.set_xticks([])
            ax.set_yticks([])
            if column == 0:
                ax.set_ylabel(name, fontsize=9)
        bar = figure.colorbar(image, cax=figure.add_subplot(grid[row, -1]))
        bar.set_label("attribution" if signed else "weight", fontsize=7)
    if not timeline:
        figure.suptitle(title or "clip, frame by frame")
        return figure
    curve_ax = figure.add_subplot(grid[-1, :-1])
    if rows:
        for name, values, _ in rows:
            curve_ax.plot(np.arange(n_frames), frame_curve(values)[0], marker=".", label=name)
        curve_ax.set_ylabel("share of |mass|\n(fraction per frame)", fontsize=8)
        curve_ax.set_title("how each map's mass spreads over time", fontsize=9)
    else:  # no map: a timeline of the frames shown and of onset/apex/offset, not an empty score axis
        curve_ax.scatter(shown, np.zeros(len(shown)), color="grey", s=14, label="frames shown")
        curve_ax.set_yticks([])
        curve_ax.set_ylim(-1, 1)
        curve_ax.set_title("where the frames shown and onset / apex / offset fall in the clip", fontsize=9)
    mark_events(curve_ax, events)
    curve_ax.set_xlabel("frame (position in the clip)")
    curve_ax.set_xlim(-0.5, n_frames - 0.5)
    curve_ax.legend(fontsize=7, ncol=max(1, len(rows) + len(events or {}) + 1), loc="upper right")
    figure.suptitle(title or "clip and maps, frame by frame")
    return figure


def frame_curve_plot(
    curves: Mapping[str, np.ndarray | Sequence[float] | Attribution],
    events: Mapping[str, float] | None = None,
    *,
    index: int = 0,
    title: str | None = None,
) -> Figure:
    """Per-frame attribution curves (one line each) with onset/apex/offset marked.

    Values of ``curves`` are (t,) curves, (t, h, w) maps or Attributions (reduced with
    :func:`merkit.explain.frame_curve`; ``index`` picks the clip).
    """
    figure = Figure(figsize=(6, 3), layout="constrained")
    ax = figure.add_subplot()
    for name, item in curves.items():
        if isinstance(item, Attribution) or np.ndim(item) >= 3:
            values, _ = single_map(item, index)
            curve = frame_curve(values)[0]
        else:
            curve = np.asarray(item, dtype=float)
        ax.plot(np.arange(len(curve)), curve, marker=".", label=name)
    mark_events(ax, events)
    ax.set_xlabel("frame (position in the clip)")
    ax.set_ylabel("share of |mass| (fraction per frame)")
    ax.legend(fontsize=8)
    ax.set_title(title or "attribution mass per frame")
    return figure


def overlay_frame(
    clip: torch.Tensor | np.ndarray,
    attribution: Attribution | torch.Tensor | np.ndarray,
    frame: int,
    *,
    index: int = 0,
    opacity: float = 0.5,
    events: Mapping[str, float] | None = None,
    title: str | None = None,
    layout: str = "auto",
) -> Figure:
    """One frame with the map laid over it (colour scale fixed over the clip), and the per-frame curve
    with the frame marked. What the viewer shows for one setting of its controls."""
    images = display_frames(clip, layout)
    values, signed = single_map(attribution, index)
    if not 0 <= frame < images.shape[0]:
        raise ValueError(f"frame {frame} outside a clip of {images.shape[0]} frames")
    figure = Figure(figsize=(6.4, 3.2), layout="constrained")
    image_ax, curve_ax = figure.subplots(1, 2, width_ratios=[1, 1.4])
    image_ax.imshow(images[frame], **({"cmap": "gray", "vmin": 0, "vmax": 1} if images.ndim == 3 else {}))
    heat = image_ax.imshow(values[frame], alpha=float(opacity), **row_scale(values, signed))
    bar = figure.colorbar(heat, ax=image_ax, shrink=0.8)
    bar.set_label(("attribution" if signed else "weight") + " (scale fixed over the clip)", fontsize=7)
    image_ax.set_axis_off()
    image_ax.set_title(f"map on frame {frame}", fontsize=9)
    curve_ax.plot(np.arange(values.shape[0]), frame_curve(values)[0], marker=".", label="map")
    curve_ax.axvline(frame, color="black", linewidth=2, alpha=0.4, label="frame shown")
    mark_events(curve_ax, events)
    curve_ax.set_xlabel("frame (position in the clip)")
    curve_ax.set_ylabel("share of |mass| (fraction per frame)", fontsize=8)
    curve_ax.set_title("the map's mass over time", fontsize=9)
    curve_ax.legend(fontsize=7)
    figure.suptitle(title or f"frame {frame} with its map", fontsize=10)
    return figure
