"""Figures for the notebooks: attribution montages, per-frame curves, the clip viewer, training and score plots.

Every function draws one figure and returns the matplotlib ``Figure`` (nothing is shown or saved
here: notebooks display it, ``runs`` saves it). Figures are made with the object-oriented API
(``Figure``), so they do not pile up in pyplot's global state in long loops.

Clip layouts: a torch tensor is taken as (c, t, h, w) (what ``ClipDataset`` yields); a numpy array
as (t, h, w, c) (what the clip store holds, uint8) unless ``layout`` says otherwise. Maps are
(t, h, w) arrays or :class:`merkit.explain.Attribution` objects (a batch; ``index`` picks the clip).

The :func:`clip_viewer` is interactive in JupyterLab (ipywidgets) and always also returns a static
figure, because widgets are dead in an executed (papermill / HTML) notebook.

Rooms: `frames` (clips and maps to arrays; also lets IPython show a bare Figure), `maps` (montage, per-frame
curves, one frame with its map), `viewer` (the ipywidgets clip viewer), `scores` (training curves, confusion,
bars per group, variants and runs compared), `regions` (explanation scores and facial regions), `data`
(a crop box on its source frame, optical flow).
"""

from merkit.viz.data import crop_box_figure, flow_figure
from merkit.viz.frames import EVENT_COLOURS, display_frames, store_sample
from merkit.viz.maps import frame_curve_plot, montage, overlay_frame
from merkit.viz.regions import (
    REGION_COLOURS,
    agreement_plot,
    region_mass_heatmap,
    region_mass_lines,
    region_overlay,
    region_time_heatmap,
    score_bars,
)
from merkit.viz.scores import comparison_bars, confusion_heatmap, per_group_bars, plot_history, seed_spread_bars
from merkit.viz.viewer import ClipViewer, clip_viewer

__all__ = [
    "EVENT_COLOURS",
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
