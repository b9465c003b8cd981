"""Clips and maps as arrays for ``imshow``, the shared colour scale of a map row, frame picks and event marks.

Clip layouts: a torch tensor is taken as (c, t, h, w) (what ``ClipDataset`` yields); a numpy array
as (t, h, w, c) (what the clip store holds, uint8) unless ``layout`` says otherwise. Maps are
(t, h, w) arrays or :class:`merkit.explain.Attribution` objects (a batch; ``index`` picks the clip).
Importing this module (any of `merkit.viz`) lets IPython display a bare ``Figure``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure

from merkit.explain import Attribution

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


def single_map(item: Attribution | torch.Tensor | np.ndarray, index: int) -> tuple[np.ndarray, bool]:
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


def row_scale(values: np.ndarray, signed: bool) -> dict[str, Any]:
    """One colour scale for a whole row (all frames): per-frame rescaling would hide which frame matters."""
    if signed:
        bound = float(np.abs(values).max()) or 1.0
        return {"cmap": "RdBu_r", "vmin": -bound, "vmax": bound}
    high = float(values.max())
    return {"cmap": "magma", "vmin": float(min(values.min(), 0.0)), "vmax": high if high > 0 else 1.0}


def pick_frames(n_frames: int, frames: Sequence[int] | int | None) -> list[int]:
    """Frame positions to draw: the given ones (checked in range), that many evenly spread (an int), or up to 12."""
    if frames is None:
        frames = min(n_frames, 12)
    if isinstance(frames, int):
        return sorted({int(round(i)) for i in np.linspace(0, n_frames - 1, frames)})
    picked = [int(f) for f in frames]
    if any(f < 0 or f >= n_frames for f in picked):
        raise ValueError(f"frame indices {picked} outside a clip of {n_frames} frames")
    return picked


def mark_events(ax: Any, events: Mapping[str, float] | None) -> None:
    """Dashed vertical lines at the event positions (onset, apex, offset), coloured as in :data:`EVENT_COLOURS`."""
    for name, position in (events or {}).items():
        colour = EVENT_COLOURS.get(name.split(" ")[0], "grey")  # "apex (mean)" keeps the apex colour
        ax.axvline(position, color=colour, linestyle="--", linewidth=1, label=name)
