"""Explanation figures over the face: scores against the motion region, mass per region over time, the facial
regions themselves (real data has no motion masks), agreement with the learned attention."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure

from merkit.viz.frames import EVENT_COLOURS, mark_events
from merkit.viz.scores import per_group_bars

#: Colours of the facial regions (merkit.explain.faces) in region figures.
REGION_COLOURS = {
    "brows": "tab:orange",
    "eyes": "tab:blue",
    "nose": "tab:green",
    "mouth": "tab:red",
    "other": "tab:gray",
}


def score_bars(
    scores: pd.DataFrame, metric: str = "mass_in_region", by: str = "label", classes: Sequence[str] | None = None
) -> Figure:
    """Explanation scores (``explain.score_methods`` output) per class, one bar per method, random included.

    The dashed line is the mean region fraction (the chance level of both scores)."""
    data = scores.copy()
    if classes is not None and by == "label":
        data[by] = [classes[int(i)] for i in data[by]]
    chance = float(scores["region_fraction"].mean()) if "region_fraction" in scores else None
    return per_group_bars(
        data,
        by,
        metric,
        hue="method",
        reference=chance,
        reference_label="region fraction (chance)",
        title=f"{metric} per {by}",
    )


def region_time_heatmap(
    region_mass: pd.DataFrame, clip: int = 0, events: Mapping[str, float] | None = None, title: str | None = None
) -> Figure:
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


def region_overlay(
    frame: np.ndarray, regions: Mapping[str, np.ndarray], *, source: str = "", title: str | None = None
) -> Figure:
    """A stored frame (s, s) or (s, s, c) with the facial regions (name -> bool (s, s)) tinted and named."""
    from matplotlib.colors import to_rgb
    from matplotlib.patches import Patch

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
        mark_events(ax, events)
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
        ax.text(
            0.5,
            0.5,
            "no learned attention in this model:\nnothing to agree with",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
    else:
        sns.boxplot(data=data, x="method", y="spearman", ax=ax, color="lightgrey", fliersize=0)
        sns.stripplot(data=data, x="method", y="spearman", ax=ax, color="black", size=3, jitter=False)
    ax.axhline(0.0, color="black", linestyle="--", linewidth=1)
    ax.set_ylim(-1.0, 1.0)
    ax.set_xlabel("attribution method")
    ax.set_ylabel("Spearman ρ with the learned attention")
    ax.set_title(title or "agreement with the attention\n(one dot per clip)", fontsize=9)
    return figure
