"""What a model expects as input, and what MERANet's attention looks like.

Axis letters used across ``merkit.models``: B batch, C channels, T frames, H height, W width.

- :class:`InputSpec` is declared by every registered model (``model.input_spec``). A model checks its input
  against it at the top of ``forward`` so that a wrong clip fails with a message that states the expected
  layout, channels and size, instead of a shape error from deep inside a convolution.
- :class:`AttentionMaps` is what ``MERANet.attention_maps`` returns, one per residual module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from merkit.errors import MerkitValueError

__all__ = ["InputSpec", "AttentionMaps", "InputShapeError", "FLOW_ENCODINGS"]

#: How flow image values reach a flow model: "unit" (per channel 0..1, u, v, strain) or "bgr255" (see InputSpec).
FLOW_ENCODINGS = ("unit", "bgr255")


class InputShapeError(MerkitValueError):
    """A tensor handed to a model does not match the model's :class:`InputSpec`."""


@dataclass(frozen=True)
class InputSpec:
    """The input a model accepts.

    kind: ``"clip"`` for a video clip laid out (B, C, T, H, W); ``"flow"`` for a 2D flow image laid out
        (B, C, H, W) (e.g. onset→apex u, v, strain).
    channels: C (1 for grey clips, 3 for RGB clips or u/v/strain flow images, 2 for u/v).
    frames: T for clips; ``None`` for flow images (no time axis).
    size: H = W, the square side in pixels.
    encoding: how a flow image's values reach the model (flow only; see :data:`FLOW_ENCODINGS`):
        ``"unit"`` each channel min-max scaled to 0..1, channels in (u, v, strain) order; ``"bgr255"`` the
        8-bit PNG of the interchange format as OpenCV reads it: 0..255 values (rounded to integers, no
        scaling), channels in B, G, R order = (strain, v, u). Clips always use ``"unit"``.
    """

    kind: Literal["clip", "flow"]
    channels: int
    frames: int | None
    size: int
    encoding: str = "unit"

    def __post_init__(self) -> None:
        if self.kind not in ("clip", "flow"):
            raise ValueError(f"InputSpec.kind must be 'clip' or 'flow', got {self.kind!r}")
        if self.kind == "clip" and (self.frames is None or self.frames < 1):
            raise ValueError(f"a clip InputSpec needs frames >= 1, got {self.frames!r}")
        if self.kind == "flow" and self.frames is not None:
            raise ValueError(f"a flow InputSpec has no time axis: frames must be None, got {self.frames!r}")
        if self.channels < 1 or self.size < 1:
            raise ValueError(f"InputSpec channels and size must be >= 1, got {self.channels}, {self.size}")
        if self.encoding not in FLOW_ENCODINGS or (self.kind == "clip" and self.encoding != "unit"):
            raise ValueError(
                f"InputSpec.encoding must be one of {FLOW_ENCODINGS} ('unit' for clips), got {self.encoding!r}"
            )
        if self.encoding == "bgr255" and self.channels != 3:
            raise ValueError(f"encoding 'bgr255' is a 3-channel PNG (strain, v, u), got channels={self.channels}")

    @property
    def layout(self) -> str:
        """Axis letters of the expected tensor, e.g. ``"(B, C, T, H, W)"``."""
        return "(B, C, T, H, W)" if self.kind == "clip" else "(B, C, H, W)"

    def shape(self, batch_size: int = 1) -> tuple[int, ...]:
        """The full expected tensor shape for a batch of ``batch_size``."""
        if self.kind == "clip":
            return (batch_size, self.channels, self.frames, self.size, self.size)  # type: ignore[return-value]
        return (batch_size, self.channels, self.size, self.size)

    def describe(self) -> str:
        """One line for error messages and tables, e.g. ``clip (B, C=1, T=16, H=64, W=64)``."""
        if self.kind == "clip":
            return f"clip (B, C={self.channels}, T={self.frames}, H={self.size}, W={self.size})"
        values = ", 0..255 B,G,R = strain,v,u" if self.encoding == "bgr255" else ""
        return f"flow image (B, C={self.channels}, H={self.size}, W={self.size}{values})"

    def short(self) -> str:
        """Compact per-sample shape for tables, e.g. ``1×16×64×64``."""
        return "×".join(str(n) for n in self.shape(1)[1:])

    def example(self, batch_size: int = 1, seed: int | None = None) -> torch.Tensor:
        """A random float32 tensor of the expected shape (for summaries, tests and benchmarks)."""
        generator = None if seed is None else torch.Generator().manual_seed(seed)
        if self.encoding == "bgr255":  # 8-bit pixel values, as such a model is fed
            return torch.randint(0, 256, self.shape(batch_size), generator=generator).float()
        return torch.randn(self.shape(batch_size), generator=generator)

    def check(self, x: torch.Tensor, model_name: str) -> None:
        """Raise :class:`InputShapeError` unless ``x`` matches this spec (any batch size).

        The message names the model, the expected layout and sizes, the shape received and what differs.
        """
        if not isinstance(x, torch.Tensor):
            raise InputShapeError(f"{model_name} expects a torch.Tensor {self.describe()}, got {type(x).__name__}")
        expected = self.shape(batch_size=1)
        problems: list[str] = []
        if x.dim() != len(expected):
            problems.append(f"rank {x.dim()} instead of {len(expected)} {self.layout}")
        else:
            if x.shape[1] != self.channels:
                problems.append(f"channels {x.shape[1]} instead of {self.channels}")
            if self.kind == "clip" and x.shape[2] != self.frames:
                problems.append(f"frames T={x.shape[2]} instead of {self.frames}")
            if tuple(x.shape[-2:]) != (self.size, self.size):
                problems.append(f"size {x.shape[-2]}×{x.shape[-1]} instead of {self.size}×{self.size}")
            if x.shape[0] < 1:
                problems.append("an empty batch")
        if not problems and not torch.is_floating_point(x):
            problems.append(f"dtype {x.dtype} instead of a floating dtype")
        if problems:
            raise InputShapeError(
                f"{model_name} expects a {self.describe()}, got shape {tuple(x.shape)}: "
                + "; ".join(problems)
                + ". Set the model's input with create_model(..., in_channels=, frames=, size=) "
                "or preprocess the data to match."
            )


@dataclass(frozen=True)
class AttentionMaps:
    """The learned attention of one residual module of MERANet.

    channel: channel weights (B, C) in [0, 1]; ``None`` when channel attention is ablated.
    spatiotemporal: map (B, 1, T', H', W') in [0, 1] at the module's resolution (or at the input's
        (T, H, W) when upsampled); ``None`` when spatio-temporal attention is ablated.
    """

    channel: torch.Tensor | None
    spatiotemporal: torch.Tensor | None
