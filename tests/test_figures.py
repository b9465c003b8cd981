"""Every figure of merkit.viz is readable: a title, labelled axes, and a colour bar for every image whose colour
carries a value. Checked on the matplotlib Figure objects (titles, labels, colour bars, label boxes), not on pixels."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from merkit import viz
from merkit.explain import Attribution

GREY = {"gray", "grey", "Greys", "Greys_r", "gray_r"}


def _colorbars(figure: Figure) -> list:
    found = []
    for ax in figure.axes:
        for artist in [*ax.images, *ax.collections]:
            bar = getattr(artist, "colorbar", None)
            if bar is not None and bar not in found:
                found.append(bar)
    return found


def _is_colorbar_axes(ax) -> bool:
    return any(ax is bar.ax for bar in _colorbars(ax.figure))


def assert_readable(figure: Figure) -> None:
    """Title, axis labels on every data axes, a labelled colour bar on the scale of every value-carrying image."""
    FigureCanvasAgg(figure).draw()  # lay out, so label boxes are real
    suptitle = figure._suptitle.get_text() if figure._suptitle is not None else ""
    bars = _colorbars(figure)
    scales = {(bar.mappable.get_cmap().name, tuple(np.round(bar.mappable.get_clim(), 9))) for bar in bars}
    for bar in bars:
        assert bar.ax.get_ylabel() or bar.ax.get_xlabel(), "every colour bar says what its colour means"
    for ax in figure.axes:
        if _is_colorbar_axes(ax):
            continue
        assert suptitle or ax.get_title(), "every figure has a title"
        for image in ax.images:
            if image.get_array().ndim == 2 and image.get_cmap().name not in GREY:
                key = (image.get_cmap().name, tuple(np.round(image.get_clim(), 9)))
                assert key in scales, f"image {ax.get_title() or ax.get_ylabel()!r} has no colour bar of its scale"
        for mesh in ax.collections:
            if type(mesh).__name__ == "QuadMesh":  # a seaborn heatmap
                assert mesh.colorbar is not None, "heatmap without a colour bar"
        if ax.axison and (ax.lines or ax.patches or ax.collections):
            assert ax.get_xlabel(), f"axes {ax.get_title()!r} has no x label"
            if any(label.get_visible() and label.get_text() for label in ax.get_yticklabels()):  # not a shared axis
                assert ax.get_ylabel(), f"axes {ax.get_title()!r} has no y label"


def assert_labels_apart(ax, axis: str) -> None:
    """Tick labels of one axis do not overlap each other (their drawn boxes)."""
    ax.figure.canvas.draw()
    labels = ax.get_xticklabels() if axis == "x" else ax.get_yticklabels()
    boxes = [label.get_window_extent() for label in labels if label.get_text()]
    for first, second in zip(boxes, boxes[1:]):
        assert not first.overlaps(second), "tick labels overlap"


@pytest.fixture()
def clip_and_maps():
    generator = torch.Generator().manual_seed(0)
    clip = torch.rand(1, 8, 16, 16, generator=generator)  # (c, t, h, w)
    signed = Attribution(torch.randn(2, 8, 16, 16, generator=generator), "ig", signed=True, target=torch.tensor([0, 1]))
    unsigned = Attribution(
        torch.rand(2, 8, 16, 16, generator=generator), "attention", signed=False, target=torch.tensor([0, 1])
    )
    return clip, {"ig": signed, "attention": unsigned}


def test_montage_with_maps_is_readable(clip_and_maps):
    clip, maps = clip_and_maps
    assert_readable(viz.montage(clip, maps, events={"onset": 0, "apex": 4, "offset": 7}))


def test_montage_without_maps_draws_a_timeline_not_an_empty_score_axis(clip_and_maps):
    clip, _ = clip_and_maps
    figure = viz.montage(clip, {}, events={"onset": 0, "apex": 4, "offset": 7}, title="one clip")
    assert_readable(figure)
    bottom = figure.axes[-1]
    assert "mass" not in bottom.get_ylabel()
    assert {line.get_label() for line in bottom.lines} >= {"onset", "apex", "offset"}
    plain = viz.montage(clip, {}, title="no events")  # neither maps nor events: frames only
    assert all(ax.images for ax in plain.axes), "no axes without a picture"
    assert_readable(plain)


def test_overlay_and_curve_are_readable(clip_and_maps):
    clip, maps = clip_and_maps
    assert_readable(viz.overlay_frame(clip, maps["ig"], 4, events={"apex": 4}))
    assert_readable(viz.frame_curve_plot({"ig": maps["ig"]}, {"apex": 4}))


def test_clip_viewer_static_figures_are_readable(clip_and_maps):
    clip, maps = clip_and_maps
    viewer = viz.clip_viewer([clip, clip], maps, names=["a", "b"])
    assert_readable(viewer.figure)
    assert_readable(viewer.render(1, "attention", 3))


def test_flow_figure_has_colour_bars_in_pixels_and_unitless_strain():
    rng = np.random.default_rng(0)
    flow = rng.normal(size=(16, 16, 2))
    figure = viz.flow_figure(rng.random((16, 16)), flow, np.abs(rng.normal(size=(16, 16))))
    assert_readable(figure)
    labels = sorted(bar.ax.get_ylabel() for bar in _colorbars(figure))
    assert labels == ["displacement (pixels)", "displacement (pixels)", "strain (unitless)"]


def test_training_confusion_and_bar_figures_are_readable():
    history = pd.DataFrame({"epoch": [1, 2, 3], "loss": [1.0, 0.8, 0.6], "train_acc": [0.3, 0.5, 0.6]})
    assert_readable(viz.plot_history(history))
    assert_readable(viz.confusion_heatmap(np.array([[3, 1], [0, 4]]), ["negative", "positive"]))
    subjects = pd.DataFrame({"subject": [f"s{i:02d}" for i in range(12)], "accuracy": np.linspace(0, 1, 12)})
    figure = viz.per_group_bars(subjects, "subject", "accuracy", reference=0.33)
    assert_readable(figure)
    assert_labels_apart(figure.axes[0], "x")


def test_explain_figures_are_readable():
    scores = pd.DataFrame(
        {
            "method": ["ig", "random"] * 4,
            "label": [0, 0, 1, 1] * 2,
            "mass_in_region": np.linspace(0.1, 0.8, 8),
            "region_fraction": [0.1] * 8,
        }
    )
    assert_readable(viz.score_bars(scores, classes=["negative", "positive"]))
    region_mass = pd.DataFrame(
        {
            "clip": 0,
            "region": np.repeat(["brows", "mouth"], 4),
            "frame": list(range(4)) * 2,
            "mass": np.linspace(0, 1, 8),
        }
    )
    assert_readable(viz.region_time_heatmap(region_mass, events={"apex": 2}))


def test_comparison_bars_keep_long_names_apart_and_show_intervals():
    names = [
        "meranet_small (this run)",
        "meranet_small:none",
        "meranet_small:channel",
        "meranet_small:spatiotemporal",
        "stcnn",
    ]
    table = pd.DataFrame({"variant": names, "uf1": [0.8, 0.7, 0.75, 0.72, 0.6], "uar": [0.81, 0.7, 0.74, 0.7, 0.62]})
    for metric in ("uf1", "uar"):
        table[f"{metric}_low"], table[f"{metric}_high"] = table[metric] - 0.1, table[metric] + 0.05
    figure = viz.comparison_bars(table, "variant", ("uf1", "uar"), reference=1 / 3)
    assert_readable(figure)
    first = figure.axes[0]
    assert [label.get_text() for label in first.get_yticklabels()] == names
    assert_labels_apart(first, "y")
    caps = [c for c in first.collections if type(c).__name__ == "LineCollection"]
    assert caps, "error bars (the intervals) are drawn"
    segments = caps[0].get_segments()  # one horizontal segment per row: low .. high
    np.testing.assert_allclose(sorted(s[0][0] for s in segments), sorted(table["uf1_low"]))


def test_seed_spread_bars_are_readable():
    table = pd.DataFrame({"setting": ["a", "a", "b", "b"], "uf1": [0.5, 0.7, 0.4, 0.6], "uar": [0.5, 0.6, 0.4, 0.5]})
    figure = viz.seed_spread_bars(table, "setting", reference=1 / 3)
    assert_readable(figure)
    assert [t.get_text() for t in figure.axes[0].get_yticklabels()] == ["a", "b"]
