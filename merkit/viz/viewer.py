"""The interactive clip viewer (ipywidgets), always paired with a static figure: widgets are dead in an executed
(papermill / HTML) notebook."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from merkit.explain import Attribution
from merkit.viz.frames import display_frames
from merkit.viz.maps import montage, overlay_frame


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
            self.clips[sample],
            self.maps[method],
            frame,
            index=sample,
            opacity=opacity,
            events=events,
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
    static = montage(
        clip_list[sample],
        maps,
        index=sample,
        frames=frames,
        events=events[sample] if events is not None else None,
        title=names[sample],
    )

    frame_slider = widgets.IntSlider(value=0, min=0, max=n_frames - 1, description="frame")
    play = widgets.Play(value=0, min=0, max=n_frames - 1, interval=250, description="play")
    widgets.jslink((play, "value"), (frame_slider, "value"))
    method_box = widgets.Dropdown(options=list(maps), description="method")
    sample_box = widgets.Dropdown(
        options=[(name, i) for i, name in enumerate(names)], value=sample, description="sample"
    )
    opacity = widgets.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, description="opacity")
    output = widgets.Output()
    viewer = ClipViewer(
        widget=None,
        figure=static,
        clips=clip_list,
        maps=maps,
        events=events,
        names=names,
    )

    def redraw(*_: Any) -> None:
        figure = viewer.render(sample_box.value, method_box.value, frame_slider.value, opacity.value)
        with output:
            output.clear_output(wait=True)
            display(figure)

    for control in (frame_slider, method_box, sample_box, opacity):
        control.observe(redraw, names="value")
    viewer.widget = widgets.VBox(
        [widgets.HBox([play, frame_slider]), widgets.HBox([method_box, sample_box, opacity]), output]
    )
    redraw()
    return viewer
