"""Figures for the notebooks: attribution montages, per-frame curves, the clip viewer, training and score plots.

Every function draws one figure and returns the matplotlib ``Figure`` (nothing is shown or saved
here: notebooks display it, ``runs`` saves it). Figures are made with the object-oriented API
(``Figure``), so they do not pile up in pyplot's global state in long loops.

Clip layouts: a torch tensor is taken as (c, t, h, w) (what ``ClipDataset`` yields); a numpy array
as (t, h, w, c) (what the clip store holds, uint8) unless ``layout`` says otherwise. Maps are
(t, h, w) arrays or :class:`merkit.explain.Attribution` objects (a batch; ``index`` picks the clip).

The :func:`clip_viewer` is interactive in JupyterLab (ipywidgets) and always also returns a static
figure, because widgets are dead in an executed (papermill / HTML) notebook.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import seaborn as sns
import torch
from matplotlib.figure import Figure

from merkit.explain import Attribution, frame_curve

__all__ = [
    "REGION_COLOURS",
    "agreement_plot",
    "crop_box_figure",
    "region_mass_heatmap",
    "region_mass_lines",
    "region_overlay",
    "ClipViewer",
    "clip_viewer",
    "comparison_bars",
    "store_sample",
    "confusion_heatmap",
    "display_frames",
    "flow_figure",
    "frame_curve_plot",
    "montage",
    "overlay_frame",
    "per_group_bars",
    "plot_history",
    "region_time_heatmap",
    "score_bars",
    "seed_spread_bars",
]

#: Colours of the onset / apex / offset markers on per-frame curves.
EVENT_COLOURS = {"onset": "tab:green", "apex": "tab:red", "offset": "tab:purple"}




def _show_figures_in_ipython() -> None:
    """Let IPython display a bare ``Figure`` (made without pyplot) as a PNG, as it does pyplot figures.

    The inline backend registers its PNG formatter only once pyplot is in use; a notebook that only
    calls merkit.viz would otherwise print ``<Figure size ...>``.
    """
    try:
        from IPython import get_ipython
        from IPython.core.pylabtools import print_figure
    except ImportError:  # pragma: no cover - IPython ships with ipykernel, a dependency
        return
    shell = get_ipython()
    if shell is None:
        return
    formatter = shell.display_formatter.formatters["image/png"]
    formatter.for_type(Figure, lambda figure: print_figure(figure, "png", bbox_inches="tight"))


_show_figures_in_ipython()


# ----------------------------------------------------------------------------------------------
# inputs to arrays


def display_frames(clip: torch.Tensor | np.ndarray, layout: str = "auto") -> np.ndarray:
    """A clip as float frames in [0, 1] for ``imshow``: (t, h, w) grey or (t, h, w, 3) colour.

    ``layout``: ``"cthw"``, ``"thwc"`` or ``"auto"`` (tensor = cthw, array = thwc when its last axis
    has 1-3 entries, else cthw). Values are rescaled by the clip's own min and max (one scale for
    all frames, so brightness changes stay visible). Two-channel clips (flow u, v) show channel 0.
    """
    values = clip.detach().float().cpu().numpy() if isinstance(clip, torch.Tensor) else np.asarray(clip)
    if values.ndim == 3 and isinstance(clip, torch.Tensor):
        values = values[:, None]  # a flow model's image (c, h, w) -> a one-frame clip (c, 1, h, w)
    if values.ndim != 4:
        raise ValueError(f"a clip has 4 axes (c, t, h, w) or (t, h, w, c); got shape {values.shape}")
    if layout == "auto":
        layout = "cthw" if isinstance(clip, torch.Tensor) or values.shape[-1] not in (1, 2, 3) else "thwc"
    if layout == "cthw":
        values = np.moveaxis(values, 0, -1)  # (c, t, h, w) -> (t, h, w, c)
    elif layout != "thwc":
        raise ValueError(f"layout must be 'auto', 'cthw' or 'thwc', got {layout!r}")
    values = values.astype(np.float64)
    low, high = values.min(), values.max()
    values = (values - low) / (high - low) if high > low else np.zeros_like(values)
    if values.shape[-1] == 3:
        return values
    return values[..., 0]  # (t, h, w, 1|2) -> (t, h, w)


def store_sample(store: Any, position: int) -> np.ndarray:
    """What a store holds for row ``position``, for :func:`montage`: the clip (T, S, S, C), or in a flow-only
    store (a flow folder) the flow image as a one-frame RGB clip (1, F, F, 3) with R = u, G = v, B = strain."""
    if getattr(store, "clips", None) is not None:
        return np.asarray(store.clips[position])
    return np.asarray(store.flow[position], dtype=np.float32)[None]  # (F, F, 3) -> (1, F, F, 3)


def _single_map(item: Attribution | torch.Tensor | np.ndarray, index: int) -> tuple[np.ndarray, bool]:
    """(t, h, w) float map of clip ``index`` and whether it is signed."""
    if isinstance(item, Attribution):
        values = item.map[index].numpy().astype(np.float64)
        return (values[None] if values.ndim == 2 else values), item.signed  # flow map (h, w) -> (1, h, w)
    values = item.detach().cpu().numpy() if isinstance(item, torch.Tensor) else np.asarray(item)
    if values.ndim == 4:
        values = values[index]  # (b, t, h, w) -> (t, h, w)
    if values.ndim != 3:
        raise ValueError(f"a map is (t, h, w) or (b, t, h, w); got shape {values.shape}")
    values = values.astype(np.float64)
    return values, bool((values < 0).any())


def _row_scale(values: np.ndarray, signed: bool) -> dict[str, Any]:
    """One colour scale for a whole row (all frames): per-frame rescaling would hide which frame matters."""
    if signed:
        bound = float(np.abs(values).max()) or 1.0
        return {"cmap": "RdBu_r", "vmin": -bound, "vmax": bound}
    high = float(values.max())
    return {"cmap": "magma", "vmin": float(min(values.min(), 0.0)), "vmax": high if high > 0 else 1.0}


def _pick_frames(n_frames: int, frames: Sequence[int] | int | None) -> list[int]:
    if frames is None:
        frames = min(n_frames, 12)
    if isinstance(frames, int):
        return sorted({int(round(i)) for i in np.linspace(0, n_frames - 1, frames)})
    picked = [int(f) for f in frames]
    if any(f < 0 or f >= n_frames for f in picked):
        raise ValueError(f"frame indices {picked} outside a clip of {n_frames} frames")
    return picked


def _mark_events(ax: Any, events: Mapping[str, float] | None) -> None:
    for name, position in (events or {}).items():
        colour = EVENT_COLOURS.get(name.split(" ")[0], "grey")  # "apex (mean)" keeps the apex colour
        ax.axvline(position, color=colour, linestyle="--", linewidth=1, label=name)


# ----------------------------------------------------------------------------------------------
# montage and curves


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
    shown = _pick_frames(n_frames, frames)
    rows = [(name, *_single_map(item, index)) for name, item in maps.items()]
    for name, values, _ in rows:
        if values.shape != images.shape[:3]:
            raise ValueError(f"map {name!r} has shape {values.shape}, the clip {images.shape[:3]}")
    n_rows = 1 + len(rows)
    timeline = bool(rows) or bool(events)  # with neither, there is nothing to draw under the frames
    height = cell * n_rows + (2.2 if rows else 1.4 if events else 0.6)
    figure = Figure(figsize=(cell * len(shown) + 1.2, height), layout="constrained")
    ratios = [1] * n_rows + ([1.6 if rows else 0.6] if timeline else [])
    grid = figure.add_gridspec(n_rows + int(timeline), len(shown) + 1, height_ratios=ratios,
                               width_ratios=[1] * len(shown) + [0.08])
    grey = {"cmap": "gray", "vmin": 0, "vmax": 1} if images.ndim == 3 else {}
    for column, frame in enumerate(shown):
        ax = figure.add_subplot(grid[0, column])
        ax.imshow(images[frame], **grey)
        ax.set_title(f"t={frame}", fontsize=8)
        ax.set_axis_off()
    for row, (name, values, signed) in enumerate(rows, start=1):
        scale = _row_scale(values, signed)
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
    _mark_events(curve_ax, events)
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
            values, _ = _single_map(item, index)
            curve = frame_curve(values)[0]
        else:
            curve = np.asarray(item, dtype=float)
        ax.plot(np.arange(len(curve)), curve, marker=".", label=name)
    _mark_events(ax, events)
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
    values, signed = _single_map(attribution, index)
    if not 0 <= frame < images.shape[0]:
        raise ValueError(f"frame {frame} outside a clip of {images.shape[0]} frames")
    figure = Figure(figsize=(6.4, 3.2), layout="constrained")
    image_ax, curve_ax = figure.subplots(1, 2, width_ratios=[1, 1.4])
    image_ax.imshow(images[frame], **({"cmap": "gray", "vmin": 0, "vmax": 1} if images.ndim == 3 else {}))
    heat = image_ax.imshow(values[frame], alpha=float(opacity), **_row_scale(values, signed))
    bar = figure.colorbar(heat, ax=image_ax, shrink=0.8)
    bar.set_label(("attribution" if signed else "weight") + " (scale fixed over the clip)", fontsize=7)
    image_ax.set_axis_off()
    image_ax.set_title(f"map on frame {frame}", fontsize=9)
    curve_ax.plot(np.arange(values.shape[0]), frame_curve(values)[0], marker=".", label="map")
    curve_ax.axvline(frame, color="black", linewidth=2, alpha=0.4, label="frame shown")
    _mark_events(curve_ax, events)
    curve_ax.set_xlabel("frame (position in the clip)")
    curve_ax.set_ylabel("share of |mass| (fraction per frame)", fontsize=8)
    curve_ax.set_title("the map's mass over time", fontsize=9)
    curve_ax.legend(fontsize=7)
    figure.suptitle(title or f"frame {frame} with its map", fontsize=10)
    return figure


# ----------------------------------------------------------------------------------------------
# the interactive viewer


@dataclass
class ClipViewer:
    """The widget (display it in JupyterLab) and a static figure (kept in executed notebooks).

    ``figure`` is the montage of the first shown sample with every method; ``render(sample, method,
    frame, opacity)`` draws the overlay figure for any setting (the widget calls it too).
    """

    widget: Any
    figure: Figure
    clips: Sequence[torch.Tensor | np.ndarray]
    maps: Mapping[str, Attribution | torch.Tensor | np.ndarray]
    events: Sequence[Mapping[str, float] | None] | None
    names: Sequence[str]

    def render(self, sample: int, method: str, frame: int, opacity: float = 0.5) -> Figure:
        """The overlay figure of ``method``'s map on frame ``frame`` of clip ``sample``."""
        events = self.events[sample] if self.events is not None else None
        return overlay_frame(
            self.clips[sample], self.maps[method], frame, index=sample, opacity=opacity, events=events,
            title=f"{self.names[sample]} · {method} · frame {frame}",
        )

    def _ipython_display_(self) -> None:  # pragma: no cover - only inside IPython
        from IPython.display import display

        display(self.widget)


def clip_viewer(
    clips: Sequence[torch.Tensor | np.ndarray] | torch.Tensor,
    maps: Mapping[str, Attribution | torch.Tensor | np.ndarray],
    *,
    events: Sequence[Mapping[str, float] | None] | None = None,
    names: Sequence[str] | None = None,
    sample: int = 0,
    frames: Sequence[int] | int | None = None,
) -> ClipViewer:
    """Interactive viewer: play button and slider over frames, method and sample selectors, opacity.

    ``clips[i]`` is clip i ((c, t, h, w) tensor or (t, h, w, c) array); ``maps[method]`` holds the
    maps of all clips (an Attribution or (n, t, h, w) array, clip i at index i). ``events[i]``
    marks onset/apex/offset of clip i; ``names[i]`` labels it. Returns a :class:`ClipViewer`:
    display ``.widget`` for the interactive view, and ``.figure`` (a montage of clip ``sample``,
    all methods) is the static record that survives notebook execution.
    """
    import ipywidgets as widgets
    from IPython.display import display

    if not maps:
        raise ValueError("clip_viewer needs at least one map (method -> maps of all clips)")
    clip_list = list(clips)
    names = list(names) if names is not None else [f"clip {i}" for i in range(len(clip_list))]
    if events is not None and len(events) != len(clip_list):
        raise ValueError(f"{len(events)} event sets for {len(clip_list)} clips")
    n_frames = display_frames(clip_list[sample]).shape[0]
    static = montage(clip_list[sample], maps, index=sample, frames=frames, events=events[sample] if events is not None else None, title=names[sample])

    frame_slider = widgets.IntSlider(value=0, min=0, max=n_frames - 1, description="frame")
    play = widgets.Play(value=0, min=0, max=n_frames - 1, interval=250, description="play")
    widgets.jslink((play, "value"), (frame_slider, "value"))
    method_box = widgets.Dropdown(options=list(maps), description="method")
    sample_box = widgets.Dropdown(options=[(name, i) for i, name in enumerate(names)], value=sample, description="sample")
    opacity = widgets.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, description="opacity")
    output = widgets.Output()
    viewer = ClipViewer(
        widget=None, figure=static, clips=clip_list, maps=maps, events=events, names=names,
    )

    def redraw(*_: Any) -> None:
        figure = viewer.render(sample_box.value, method_box.value, frame_slider.value, opacity.value)
        with output:
            output.clear_output(wait=True)
            display(figure)

    for control in (frame_slider, method_box, sample_box, opacity):
        control.observe(redraw, names="value")
    viewer.widget = widgets.VBox([widgets.HBox([play, frame_slider]), widgets.HBox([method_box, sample_box, opacity]), output])
    redraw()
    return viewer


# ----------------------------------------------------------------------------------------------
# general helpers for the notebooks


def plot_history(history: pd.DataFrame, x: str = "epoch", hue: str | None = None) -> Figure:
    """Training curves from ``train_fold``'s history (one row per epoch; several folds stacked with a
    ``fold`` column). Left panel: every column with "loss" in its name; right: accuracies / UF1 /
    other scores in [0, 1]. With ``hue`` (default "fold" when present and there are several folds)
    folds are averaged with a band of ± one standard deviation."""
    if x not in history.columns:
        raise ValueError(f"history has no {x!r} column; columns: {list(history.columns)}")
    if hue is None and "fold" in history.columns and history["fold"].nunique() > 1:
        hue = "fold"
    skip = {x, "fold", "lr", "seconds", "selected"}
    numeric = [c for c in history.columns if c not in skip and pd.api.types.is_numeric_dtype(history[c]) and not pd.api.types.is_bool_dtype(history[c])]
    losses = [c for c in numeric if "loss" in c]
    scores = [c for c in numeric if c not in losses]
    figure = Figure(figsize=(10, 3.4), layout="constrained")
    axes = figure.subplots(1, 2)
    for ax, columns, label in ((axes[0], losses, "loss"), (axes[1], scores, "score")):
        if columns:
            long = history.melt(id_vars=[x] + ([hue] if hue else []), value_vars=columns, var_name="series", value_name="value")
            sns.lineplot(data=long, x=x, y="value", hue="series", errorbar=("sd", 1) if hue else None, ax=ax, marker="o" if long[x].nunique() < 30 else None)
            ax.set_ylabel("loss (cross-entropy)" if label == "loss" else "score (0–1)")
        ax.set_xlabel(x)
        ax.set_title(label + (" (mean ± sd over folds)" if hue and columns else ""))
    figure.suptitle("training curves")
    if "selected" in history.columns and history["selected"].any() and hue is None:
        for ax in axes:
            ax.axvline(history.loc[history["selected"], x].iloc[0], color="grey", linestyle=":", label="selected")
    return figure


def confusion_heatmap(
    confusion: np.ndarray | pd.DataFrame,
    classes: Sequence[str] | None = None,
    *,
    normalise: bool = True,
    title: str | None = None,
) -> Figure:
    """Confusion matrix (rows = true class, columns = predicted) as a seaborn heatmap.

    ``normalise`` shows each row as shares of the true class (the recall per class on the diagonal)
    with the raw counts in each cell; otherwise counts only.
    """
    counts = confusion.to_numpy() if isinstance(confusion, pd.DataFrame) else np.asarray(confusion)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"a confusion matrix is square; got shape {counts.shape}")
    if classes is None:
        classes = list(confusion.index) if isinstance(confusion, pd.DataFrame) else [str(i) for i in range(len(counts))]
    counts = counts.astype(float)
    rows = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    values = shares if normalise else counts
    labels = np.array([[f"{s:.2f}\n({int(c)})" for s, c in zip(rs, rc)] for rs, rc in zip(shares, counts)]) if normalise else counts.astype(int).astype(str)
    size = 1.0 + 0.9 * len(classes)
    figure = Figure(figsize=(size + 1.2, size), layout="constrained")
    ax = figure.add_subplot()
    sns.heatmap(values, annot=labels, fmt="", cmap="Blues", vmin=0, vmax=1 if normalise else None, xticklabels=classes, yticklabels=classes, square=True, ax=ax, cbar=True)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.collections[0].colorbar.set_label("share of the true class" if normalise else "clips")
    ax.set_title(title or "confusion matrix")
    return figure


def per_group_bars(
    table: pd.DataFrame,
    group: str,
    value: str,
    *,
    hue: str | None = None,
    reference: float | None = None,
    reference_label: str = "reference",
    title: str | None = None,
) -> Figure:
    """Bars of ``value`` per ``group`` (per class, per subject, per dataset …), optionally split by ``hue``.

    Several rows per bar are averaged (seaborn's mean with a 95 % bootstrap interval); ``reference``
    draws a horizontal line (chance level, a baseline's score).
    """
    for column in (group, value, hue):
        if column is not None and column not in table.columns:
            raise ValueError(f"table has no {column!r} column; columns: {list(table.columns)}")
    n_groups = table[group].nunique()
    figure = Figure(figsize=(max(4.0, 0.5 * n_groups + 2), 3.4), layout="constrained")
    ax = figure.add_subplot()
    data = table.assign(**{group: table[group].astype(str)})
    sns.barplot(data=data, x=group, y=value, hue=hue, ax=ax, errorbar=("ci", 95) if len(data) > n_groups else None, seed=0)
    if reference is not None:
        ax.axhline(reference, color="black", linestyle="--", linewidth=1, label=reference_label)
        ax.legend(fontsize=8)
    longest = max((len(str(v)) for v in data[group].unique()), default=0)
    if n_groups > 8 or longest * n_groups > 60:  # labels that would run into each other
        ax.tick_params(axis="x", rotation=90 if n_groups > 8 else 30)
        if n_groups <= 8:
            for text in ax.get_xticklabels():
                text.set_horizontalalignment("right")
    ax.set_xlabel(group)
    ax.set_ylabel(value)
    ax.set_title(title or f"{value} per {group}")
    return figure


def score_bars(scores: pd.DataFrame, metric: str = "mass_in_region", by: str = "label", classes: Sequence[str] | None = None) -> Figure:
    """Explanation scores (``explain.score_methods`` output) per class, one bar per method, random included.

    The dashed line is the mean region fraction (the chance level of both scores)."""
    data = scores.copy()
    if classes is not None and by == "label":
        data[by] = [classes[int(i)] for i in data[by]]
    chance = float(scores["region_fraction"].mean()) if "region_fraction" in scores else None
    return per_group_bars(data, by, metric, hue="method", reference=chance, reference_label="region fraction (chance)", title=f"{metric} per {by}")


def region_time_heatmap(region_mass: pd.DataFrame, clip: int = 0, events: Mapping[str, float] | None = None, title: str | None = None) -> Figure:
    """Heatmap regions x frames of one clip's mass shares (``explain.region_mass_over_time`` output)."""
    rows = region_mass[region_mass["clip"] == clip]
    if rows.empty:
        raise ValueError(f"no rows for clip {clip} in the region-mass table")
    grid = rows.pivot(index="region", columns="frame", values="mass").reindex(rows["region"].unique())
    figure = Figure(figsize=(max(4.0, 0.35 * grid.shape[1] + 2), 2.8), layout="constrained")
    ax = figure.add_subplot()
    sns.heatmap(grid, cmap="magma", ax=ax, cbar_kws={"label": "share of |mass|"})
    for name, position in (events or {}).items():
        ax.axvline(position + 0.5, color=EVENT_COLOURS.get(name, "grey"), linestyle="--", linewidth=1.5)
    ax.set_xlabel("frame (position in the clip)")
    ax.set_ylabel("region")
    ax.set_title(title or f"mass per region and frame, clip {clip}")
    return figure


# ----------------------------------------------------------------------------------------------
# crop boxes and facial regions (real data: no motion masks)

#: Colours of the facial regions (merkit.explain_regions) in region figures.
REGION_COLOURS = {"brows": "tab:orange", "eyes": "tab:blue", "nose": "tab:green", "mouth": "tab:red", "other": "tab:gray"}


def crop_box_figure(
    frame: np.ndarray,
    box: tuple[int, int, int, int],
    *,
    method: str = "",
    truth: tuple[int, int, int, int] | None = None,
    title: str | None = None,
) -> Figure:
    """A source frame (H, W, 3) uint8 or (H, W) with the clip's crop box ``(x, y, w, h)`` drawn on it.

    ``method`` is the crop that made the box (the store index's ``crop_method``); ``truth`` an optional
    reference box (a generator's true face box) drawn dashed. On a face crop the box is the whole frame.
    """
    from matplotlib.patches import Rectangle

    height, width = frame.shape[:2]
    figure = Figure(figsize=(4.8, 4.8 * height / max(width, 1) + 0.6), layout="constrained")
    ax = figure.add_subplot()
    ax.imshow(frame, cmap="gray" if frame.ndim == 2 else None, extent=(0, width, height, 0))
    x, y, w, h = (int(v) for v in box)
    # Inset by one pixel so a whole-frame box stays visible at the image border.
    ax.add_patch(Rectangle((x + 1, y + 1), max(w - 2, 1), max(h - 2, 1), fill=False, edgecolor="yellow", linewidth=2,
                           label=f"crop box{f' ({method})' if method else ''}: {w}×{h} at ({x}, {y})"))
    if truth is not None:
        tx, ty, tw, th = (int(v) for v in truth)
        ax.add_patch(Rectangle((tx, ty), tw, th, fill=False, edgecolor="cyan", linewidth=1.5, linestyle="--", label="true face box"))
    ax.set_xlabel("x (pixels)")
    ax.set_ylabel("y (pixels)")
    ax.set_title(title or f"source frame {width}×{height} and its crop box")
    ax.legend(loc="upper left", fontsize=7, framealpha=0.85)
    return figure


def region_overlay(frame: np.ndarray, regions: Mapping[str, np.ndarray], *, source: str = "", title: str | None = None) -> Figure:
    """A stored frame (s, s) or (s, s, c) with the facial regions (name -> bool (s, s)) tinted and named."""
    from matplotlib.patches import Patch
    from matplotlib.colors import to_rgb

    image = np.asarray(frame, dtype=np.float32)
    image = image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image
    grey = image if image.ndim == 2 else image.mean(axis=-1)
    grey = (grey - grey.min()) / max(float(np.ptp(grey)), 1e-6)
    shown = np.repeat(grey[..., None], 3, axis=-1)  # (s, s) -> (s, s, 3)
    for name, mask in regions.items():
        colour = np.asarray(to_rgb(REGION_COLOURS.get(name, "white")))
        shown[mask] = 0.45 * shown[mask] + 0.55 * colour
    figure = Figure(figsize=(3.6, 3.9), layout="constrained")
    ax = figure.add_subplot()
    ax.imshow(shown)
    ax.set_xlabel("x (pixels)")
    ax.set_ylabel("y (pixels)")
    ax.set_title(title or f"facial regions{f' ({source})' if source else ''}", fontsize=9)
    handles = [Patch(color=REGION_COLOURS.get(name, "white"), label=name) for name in regions]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=len(handles), fontsize=7)
    return figure


def region_mass_lines(
    over_time: pd.DataFrame,
    events: Mapping[str, float] | None = None,
    title: str | None = None,
) -> Figure:
    """Share of each map's mass per facial region over the clip's frames, one panel per method.

    ``over_time`` is ``RegionExplanation.over_time`` (clip, method, frame, region, mass); lines are means
    over clips (in %, so the values of one panel sum to 100 over frames and regions). ``events`` marks
    onset/apex/offset positions (``explain.event_positions``) when the clips share them.
    """
    methods = list(dict.fromkeys(over_time["method"]))
    figure = Figure(figsize=(3.0 * len(methods) + 1.2, 3.2), layout="constrained")
    axes = np.atleast_1d(figure.subplots(1, len(methods), sharey=True))
    mean = over_time.groupby(["method", "region", "frame"], sort=False)["mass"].mean().reset_index()
    n_clips = over_time["clip"].nunique()
    for ax, method in zip(axes, methods):
        part = mean[mean["method"] == method]
        for region in dict.fromkeys(part["region"]):
            line = part[part["region"] == region]
            ax.plot(line["frame"], 100 * line["mass"], marker=".", color=REGION_COLOURS.get(region), label=region)
        _mark_events(ax, events)
        ax.set_title(method)
        ax.set_xlabel("frame (after temporal normalisation)")
    axes[0].set_ylabel("share of |map| mass (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside right center", fontsize=8)
    figure.suptitle(title or f"mass per facial region over time (mean of {n_clips} clip{'s' if n_clips != 1 else ''})")
    return figure


def region_mass_heatmap(summary: pd.DataFrame, value: str = "mass_over_chance", title: str | None = None) -> Figure:
    """Methods × regions heatmap of ``RegionExplanation.summary()`` (``value``: mass, or mass over chance)."""
    grid = summary.pivot(index="method", columns="region", values=value)
    grid = grid.reindex(index=list(dict.fromkeys(summary["method"])), columns=list(dict.fromkeys(summary["region"])))
    label = {"mass_over_chance": "mass / region area (1 = chance)", "mass": "share of |map| mass"}.get(value, value)
    figure = Figure(figsize=(1.0 * grid.shape[1] + 2.5, 0.5 * grid.shape[0] + 1.6), layout="constrained")
    ax = figure.add_subplot()
    centre = {"center": 1.0, "cmap": "vlag"} if value == "mass_over_chance" else {"cmap": "magma"}
    sns.heatmap(grid, annot=True, fmt=".2f", ax=ax, cbar_kws={"label": label}, **centre)
    ax.set_xlabel("facial region")
    ax.set_ylabel("method")
    ax.set_title(title or f"where the maps fall on the face ({label})", fontsize=9)
    return figure


def agreement_plot(agreement: pd.DataFrame, title: str | None = None) -> Figure:
    """Per-clip Spearman ρ of every attribution method with the learned attention (``RegionExplanation.agreement``)."""
    figure = Figure(figsize=(max(3.5, 1.1 * agreement["method"].nunique() + 1.5), 3.2), layout="constrained")
    ax = figure.add_subplot()
    data = agreement.dropna(subset=["spearman"])
    if data.empty:
        ax.text(0.5, 0.5, "no learned attention in this model:\nnothing to agree with", ha="center", va="center", transform=ax.transAxes)
    else:
        sns.boxplot(data=data, x="method", y="spearman", ax=ax, color="lightgrey", fliersize=0)
        sns.stripplot(data=data, x="method", y="spearman", ax=ax, color="black", size=3, jitter=False)
    ax.axhline(0.0, color="black", linestyle="--", linewidth=1)
    ax.set_ylim(-1.0, 1.0)
    ax.set_xlabel("attribution method")
    ax.set_ylabel("Spearman ρ with the learned attention")
    ax.set_title(title or "agreement with the attention\n(one dot per clip)", fontsize=9)
    return figure


# ----------------------------------------------------------------------------------------------
# comparisons of variants and runs


def _score_panels(n_rows: int, metrics: Sequence[str], labels: Sequence[str]) -> tuple[Figure, Any]:
    """One horizontal panel per metric sharing the y axis: long names sit on the y axis and never overlap."""
    longest = max((len(str(label)) for label in labels), default=8)
    figure = Figure(figsize=(min(4.0, 1.0 + 0.085 * longest) + 3.2 * len(metrics), 1.2 + 0.42 * n_rows),
                    layout="constrained")
    axes = figure.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    return figure, axes


def _finish_score_axis(ax: Any, metric: str, reference: float | None, reference_label: str, first: bool) -> None:
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"{metric.upper() if metric in ('uf1', 'uar') else metric} (pooled over folds, 0–1)")
    ax.set_title(metric.upper() if metric in ("uf1", "uar") else metric)
    ax.grid(axis="x", alpha=0.3)
    if reference is not None:
        ax.axvline(reference, color="black", linestyle="--", linewidth=1, label=reference_label)
    if first and ax.get_legend_handles_labels()[0]:
        ax.figure.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=3, fontsize=8)


def comparison_bars(
    table: pd.DataFrame,
    label: str,
    metrics: Sequence[str] = ("uf1", "uar"),
    *,
    reference: float | None = None,
    reference_label: str = "chance",
    title: str | None = None,
) -> Figure:
    """Horizontal bars of pooled scores, one row per ``label`` (variant, run), one panel per metric.

    Error bars span ``<metric>_low`` .. ``<metric>_high`` (a bootstrap interval) where the table has them;
    rows without an interval get a bare bar. ``reference`` draws a vertical line (chance level).
    """
    for column in (label, *metrics):
        if column not in table.columns:
            raise ValueError(f"table has no {column!r} column; columns: {list(table.columns)}")
    labels = [str(v) for v in table[label]]
    figure, axes = _score_panels(len(table), metrics, labels)
    positions = np.arange(len(table))
    for i, (ax, metric) in enumerate(zip(axes, metrics)):
        values = pd.to_numeric(table[metric], errors="coerce").to_numpy(float)
        ax.barh(positions, np.nan_to_num(values), color=sns.color_palette("deep")[0], alpha=0.8)
        low_col, high_col = f"{metric}_low", f"{metric}_high"
        if low_col in table.columns and high_col in table.columns:
            low = pd.to_numeric(table[low_col], errors="coerce").to_numpy(float)
            high = pd.to_numeric(table[high_col], errors="coerce").to_numpy(float)
            has = np.isfinite(low) & np.isfinite(high) & np.isfinite(values)
            if has.any():
                errors = np.vstack([values[has] - low[has], high[has] - values[has]]).clip(min=0)  # (2, n_with)
                ax.errorbar(values[has], positions[has], xerr=errors, fmt="none", ecolor="black", capsize=3,
                            label="95 % interval")
        _finish_score_axis(ax, metric, reference, reference_label, i == 0)
    axes[0].set_yticks(positions, labels)
    axes[0].invert_yaxis()  # first row on top, as in the table
    axes[0].set_ylabel(label)
    figure.suptitle(title or f"{', '.join(m.upper() for m in metrics)} per {label}")
    return figure


def seed_spread_bars(
    table: pd.DataFrame,
    label: str,
    metrics: Sequence[str] = ("uf1", "uar"),
    *,
    reference: float | None = None,
    reference_label: str = "chance",
    title: str | None = None,
) -> Figure:
    """Runs grouped by ``label`` (a setting repeated over seeds): bar = mean, error bar = ± one sd, dots = runs."""
    for column in (label, *metrics):
        if column not in table.columns:
            raise ValueError(f"table has no {column!r} column; columns: {list(table.columns)}")
    groups = list(dict.fromkeys(str(v) for v in table[label]))
    figure, axes = _score_panels(len(groups), metrics, groups)
    keys = table[label].astype(str)
    for i, (ax, metric) in enumerate(zip(axes, metrics)):
        values = pd.to_numeric(table[metric], errors="coerce")
        means = np.array([values[keys == g].mean() for g in groups])
        sds = np.array([values[keys == g].std(ddof=1) if (keys == g).sum() > 1 else 0.0 for g in groups])
        positions = np.arange(len(groups))
        ax.barh(positions, np.nan_to_num(means), xerr=np.nan_to_num(sds), capsize=3,
                color=sns.color_palette("deep")[0], alpha=0.7, label="mean ± sd")
        for position, group in zip(positions, groups):
            runs = values[keys == group].to_numpy(float)
            ax.scatter(runs, np.full(len(runs), position), color="black", s=14, zorder=3)
        _finish_score_axis(ax, metric, reference, reference_label, i == 0)
    axes[0].set_yticks(np.arange(len(groups)), groups)
    axes[0].invert_yaxis()
    axes[0].set_ylabel(label)
    figure.suptitle(title or f"{', '.join(m.upper() for m in metrics)}: mean ± sd over seeds")
    return figure


# ----------------------------------------------------------------------------------------------
# optical flow


def flow_figure(frame: np.ndarray, flow: np.ndarray, strain: np.ndarray | None = None, *, title: str | None = None) -> Figure:
    """The apex frame, the flow's u (→) and v (↓) in pixels and the optical strain (unitless), each with a colour bar.

    ``frame`` is (h, w) or (h, w, 3); ``flow`` (h, w, 2) displacements in pixels; ``strain`` (h, w). u and v
    share one symmetric scale (a displacement of +1 px looks the same in both); strain starts at 0.
    """
    flow = np.asarray(flow, dtype=np.float64)
    if flow.ndim != 3 or flow.shape[-1] != 2:
        raise ValueError(f"flow is (h, w, 2); got shape {flow.shape}")
    panels = 3 + int(strain is not None)
    figure = Figure(figsize=(3.2 * panels, 3.3), layout="constrained")
    axes = figure.subplots(1, panels)
    picture = np.asarray(frame)
    axes[0].imshow(picture, **({"cmap": "gray"} if picture.ndim == 2 else {}))
    axes[0].set_title("apex frame", fontsize=9)
    bound = float(np.abs(flow).max()) or 1.0
    for ax, channel, name in ((axes[1], 0, "u (→), px"), (axes[2], 1, "v (↓), px")):
        image = ax.imshow(flow[..., channel], cmap="RdBu_r", vmin=-bound, vmax=bound)
        ax.set_title(f"flow {name}", fontsize=9)
        figure.colorbar(image, ax=ax, shrink=0.8).set_label("displacement (pixels)", fontsize=8)
    if strain is not None:
        values = np.asarray(strain, dtype=np.float64)
        image = axes[3].imshow(values, cmap="magma", vmin=0.0, vmax=float(values.max()) or 1.0)
        axes[3].set_title("optical strain", fontsize=9)
        figure.colorbar(image, ax=axes[3], shrink=0.8).set_label("strain (unitless)", fontsize=8)
    for ax in axes:
        ax.set_axis_off()
    figure.suptitle(title or "onset → apex optical flow")
    return figure
