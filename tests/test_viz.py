"""merkit.viz: every figure function returns a drawable Figure with the right content; the viewer builds."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import torch
from helpers_explain import ToyAttentionModel, toy_clips
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from merkit import explain, viz


def _render(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=40)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def toy_maps():
    torch.manual_seed(0)  # the toy model's weights must not depend on which tests ran before
    model = ToyAttentionModel(channels=1)
    x = toy_clips(batch=3, channels=1, frames=8, size=16)
    maps = {
        "IG": explain.attribute(model, x, "ig", target=0, n_steps=4),
        "Grad-CAM": explain.attribute(model, x, "gradcam", target=0),
        "attention": explain.attribute(model, x, "attention"),
    }
    return x, maps


def test_display_frames_layouts():
    tensor = torch.rand(1, 5, 8, 8)
    assert viz.display_frames(tensor).shape == (5, 8, 8)
    stored = np.random.default_rng(0).integers(0, 255, size=(5, 8, 8, 3), dtype=np.uint8)
    frames = viz.display_frames(stored)
    assert frames.shape == (5, 8, 8, 3) and frames.min() == 0.0 and frames.max() == 1.0
    with pytest.raises(ValueError, match="4 axes"):
        viz.display_frames(np.zeros((8, 8)))


def test_montage_has_one_colour_scale_per_row(toy_maps):
    x, maps = toy_maps
    figure = viz.montage(x[1], maps, index=1, frames=4, events={"onset": 0, "apex": 3, "offset": 7}, title="clip 1")
    assert isinstance(figure, Figure)
    images = [ax.images[0] for ax in figure.axes if ax.images]
    # 4 frames x (clip + 3 maps) panels
    assert len(images) == 16
    for row, (name, attr) in enumerate(maps.items(), start=1):
        limits = {im.get_clim() for im in images[row * 4 : (row + 1) * 4]}
        assert len(limits) == 1, f"row {name} uses several colour scales"
        low, high = limits.pop()
        values = attr.map[1].numpy()
        if attr.signed:
            assert high == pytest.approx(np.abs(values).max()) and low == -high
        else:
            # an all-zero map (Grad-CAM's ReLU can give one) is drawn on the scale (0, 1)
            assert high == pytest.approx(values.max() if values.max() > 0 else 1.0)
    curve_ax = figure.axes[-1]
    assert len(curve_ax.lines) == 3 + 3  # three curves, three event markers
    np.testing.assert_allclose(curve_ax.lines[0].get_ydata(), explain.frame_curve(maps["IG"])[1])
    assert _render(figure)


def test_montage_rejects_map_of_other_shape(toy_maps):
    x, maps = toy_maps
    with pytest.raises(ValueError, match="map 'bad'"):
        viz.montage(x[0], {"bad": np.zeros((4, 16, 16))})


def test_overlay_and_curve_figures(toy_maps):
    x, maps = toy_maps
    figure = viz.overlay_frame(x[0], maps["IG"], frame=3, opacity=0.3, events={"apex": 4})
    heat = figure.axes[0].images[1]
    assert heat.get_alpha() == 0.3
    curve = viz.frame_curve_plot({"IG": maps["IG"], "flat": np.full(8, 1 / 8)}, events={"apex": 4})
    assert len(curve.axes[0].lines) == 3
    assert _render(figure) and _render(curve)


def test_clip_viewer_builds_widget_and_static_figure(toy_maps):
    x, maps = toy_maps
    events = [{"onset": 0, "apex": 4, "offset": 7}] * 3
    viewer = viz.clip_viewer(list(x), maps, events=events, names=["a", "b", "c"], sample=2, frames=3)
    assert isinstance(viewer.figure, Figure)
    assert viewer.figure.axes[0].images  # the montage of sample 2
    controls = viewer.widget.children[0].children + viewer.widget.children[1].children
    descriptions = {c.description for c in controls}
    assert {"play", "frame", "method", "sample", "opacity"} <= descriptions
    slider = next(c for c in controls if c.description == "frame")
    assert slider.max == 7
    slider.value = 5  # triggers a redraw through the observer
    rendered = viewer.render(sample=1, method="Grad-CAM", frame=5, opacity=0.8)
    assert "b · Grad-CAM · frame 5" in rendered.get_suptitle()
    with pytest.raises(ValueError, match="event sets"):
        viz.clip_viewer(list(x), maps, events=events[:1])


def test_plot_history_single_fold_and_folds():
    history = pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "loss": [1.0, 0.8, 0.6],
            "train_acc": [0.3, 0.5, 0.6],
            "lr": [1e-3] * 3,
            "seconds": [1.0] * 3,
            "val_loss": [1.1, 0.9, 0.95],
            "val_uf1": [0.2, 0.4, 0.35],
            "selected": [False, True, False],
        }
    )
    figure = viz.plot_history(history)
    loss_ax, score_ax = figure.axes[:2]
    assert {t.get_text() for t in loss_ax.get_legend().get_texts()} == {"loss", "val_loss"}
    assert {t.get_text() for t in score_ax.get_legend().get_texts()} == {"train_acc", "val_uf1"}
    folds = pd.concat([history.assign(fold=0), history.assign(fold=1, loss=history.loss + 0.2)])
    assert "mean" in viz.plot_history(folds).axes[0].get_title()
    with pytest.raises(ValueError, match="no 'step' column"):
        viz.plot_history(history, x="step")


def test_confusion_heatmap_shows_row_shares():
    counts = np.array([[3, 1, 0], [0, 2, 2], [1, 0, 0]])
    figure = viz.confusion_heatmap(counts, ["happiness", "disgust", "surprise"])
    texts = [t.get_text() for t in figure.axes[0].texts]
    assert texts[0] == "0.75\n(3)" and texts[4] == "0.50\n(2)" and texts[6] == "1.00\n(1)"
    raw = viz.confusion_heatmap(counts, normalise=False)
    assert [t.get_text() for t in raw.axes[0].texts][:3] == ["3", "1", "0"]
    with pytest.raises(ValueError, match="square"):
        viz.confusion_heatmap(np.zeros((2, 3)))


def test_per_group_bars_and_score_bars():
    table = pd.DataFrame({"subject": ["01", "02", "03"], "uf1": [0.5, 0.7, 0.2]})
    figure = viz.per_group_bars(table, "subject", "uf1", reference=1 / 3)
    heights = [p.get_height() for p in figure.axes[0].patches]
    assert heights == pytest.approx([0.5, 0.7, 0.2])
    with pytest.raises(ValueError, match="no 'uar' column"):
        viz.per_group_bars(table, "subject", "uar")
    scores = pd.DataFrame(
        {
            "clip": [0, 0, 1, 1],
            "label": [0, 0, 1, 1],
            "method": ["ig", "random"] * 2,
            "mass_in_region": [0.6, 0.1, 0.4, 0.1],
            "pointing_hit": [1.0, 0.0, 1.0, 0.1],
            "region_fraction": [0.1] * 4,
        }
    )
    bars = viz.score_bars(scores, classes=["happiness", "disgust"])
    assert [t.get_text() for t in bars.axes[0].get_xticklabels()] == ["happiness", "disgust"]
    assert _render(bars)


def test_score_bars_legend_covers_no_bar():
    """04_explain's per-label score bars: the legend (methods and the chance line) sits clear of every bar."""
    rng = np.random.default_rng(0)
    methods = ["attention", "ig", "gradcam", "occlusion", "random"]
    rows = [
        {
            "clip": clip,
            "label": clip % 3,
            "method": method,
            "mass_in_region": 0.05 if method == "random" else rng.uniform(0.7, 0.95),  # tall bars, as a good map gives
            "region_fraction": 0.06,
        }
        for clip in range(12)
        for method in methods
    ]
    figure = viz.score_bars(pd.DataFrame(rows), classes=["negative", "positive", "surprise"])
    canvas = FigureCanvasAgg(figure)
    canvas.draw()  # lay out, so the boxes are the drawn ones
    renderer = canvas.get_renderer()
    legends = [*figure.legends, *(ax.get_legend() for ax in figure.axes if ax.get_legend() is not None)]
    assert len(legends) == 1
    texts = [text.get_text() for text in legends[0].get_texts()]
    assert set(methods) <= set(texts) and "region fraction (chance)" in texts
    box = legends[0].get_window_extent(renderer)
    bars = [patch for patch in figure.axes[0].patches if patch.get_height() > 0]
    assert len(bars) == 3 * len(methods)
    covered = [bar.get_x() for bar in bars if box.overlaps(bar.get_window_extent(renderer))]
    assert not covered, f"the legend covers {len(covered)} bars"


def test_region_time_heatmap():
    maps = np.zeros((1, 4, 16, 16))
    maps[0, 2, 12, 8] = 1.0  # a mouth pixel at frame 2
    table = explain.region_mass_over_time(maps)
    figure = viz.region_time_heatmap(table, clip=0, events={"apex": 2})
    assert [t.get_text() for t in figure.axes[0].get_yticklabels()] == ["brows", "eyes", "nose", "mouth", "other"]
    with pytest.raises(ValueError, match="clip 3"):
        viz.region_time_heatmap(table, clip=3)
