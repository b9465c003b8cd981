"""Figures of the data itself: a clip's crop box on its source frame, the onset → apex optical flow and strain."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure


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
    ax.add_patch(
        Rectangle(
            (x + 1, y + 1),
            max(w - 2, 1),
            max(h - 2, 1),
            fill=False,
            edgecolor="yellow",
            linewidth=2,
            label=f"crop box{f' ({method})' if method else ''}: {w}×{h} at ({x}, {y})",
        )
    )
    if truth is not None:
        tx, ty, tw, th = (int(v) for v in truth)
        ax.add_patch(
            Rectangle(
                (tx, ty), tw, th, fill=False, edgecolor="cyan", linewidth=1.5, linestyle="--", label="true face box"
            )
        )
    ax.set_xlabel("x (pixels)")
    ax.set_ylabel("y (pixels)")
    ax.set_title(title or f"source frame {width}×{height} and its crop box")
    ax.legend(loc="upper left", fontsize=7, framealpha=0.85)
    return figure


def flow_figure(
    frame: np.ndarray, flow: np.ndarray, strain: np.ndarray | None = None, *, title: str | None = None
) -> Figure:
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
