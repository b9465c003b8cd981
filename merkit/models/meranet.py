"""MERANet: a 3D residual network with channel and spatio-temporal attention in every residual module.

Gajjala, Reddy, Mukherjee, Dubey, "MERANet: Facial Micro-Expression Recognition using 3D Residual
Attention Network", ICVGIP 2021.

Axis letters: B batch, C channels, T frames, H height, W width. Clips are laid out (B, C, T, H, W).

What the paper STATES (and this file follows):
  - a 3D CNN with 3D kernels and residual connections;
  - in each residual module the channel features are re-calibrated by a channel attention and the
    spatio-temporal features by a spatio-temporal attention;
  - classification of the emotion of a micro-expression clip.

What is an ASSUMPTION (the paper's layer table, input size and training settings are not available to
us; every item below is a constructor argument, documented in docs/models.md):
  - the trunk: Conv3d stem (kernel 3×7×7, stride 1×2×2) + BN + ReLU, then stages of residual modules,
    global average pooling, dropout 0.5, a linear head; widths (32, 64, 128, 256), one module per stage;
  - the residual module: conv3d(3×3×3)-BN-ReLU-conv3d(3×3×3)-BN, then attention, then the skip
    (1×1×1 conv + BN projection when the shape changes), add, ReLU;
  - downsampling: stride 2 in T, H and W at the first module of every stage after the first;
  - channel attention as in CBAM extended to 3D: average- and max-pooled (over T, H, W) descriptors through
    one shared bottleneck MLP (reduction 8), summed, sigmoid;
  - spatio-temporal attention: channel-wise average and max, a Conv3d (kernel 3×7×7) to one map, sigmoid;
  - attention order: channel then spatio-temporal (``"ca_sta"``); ``"sta_ca"`` and ``"parallel"``
    (both computed from the same features, then both applied) are the alternatives;
  - input: grey 64×64 clips (the convention of the same authors' earlier 3D CNN), T = 16 by default;
  - the attention *design* (the paper says the attentions "re-calibrate" the features, not how), three
    independent choices: ``attention_scale`` ``"gate"`` (features × M, CBAM) or ``"residual"``
    (features × (1 + M), the residual attention network of Wang et al., CVPR 2017, whose name MERANet's
    recalls); ``st_source`` ``"output"`` (the map is computed from the module's convolved features, after
    its stride) or ``"input"`` (from the module's input, at its resolution before the stride, then
    average-pooled onto the output grid); ``st_normalise`` ``"sigmoid"`` (a gate per position) or
    ``"softmax"`` (normalised over space per frame with a temperature, rescaled to mean 1 per frame, so
    the map can only move emphasis between positions, not switch the whole frame up or down).

A KIT CHOICE, not from the paper (``remove_static``, on by default): each pixel's mean over the clip's
frames is subtracted before the stem, so the network sees what changes during the clip and not the still
face. Faces differ between subjects far more than a micro-expression moves them (1–2 px), and with the still
face in its input the network memorises subjects instead: measured on the default SynthME (16×32×32,
meranet_small, subjects 01–09 → 10–12, 20 epochs) training accuracy 0.96 and held-out accuracy 0.33 (chance)
without it, 1.00 and 0.78 with it. ``remove_static=False`` gives the raw-clip network.

``forward`` returns logits only (Captum needs a tensor). ``attention_maps`` returns every module's
learned attention. There are no in-place operations and every activation is its own module instance, so
Captum and forward hooks see each use separately. The attention modules' ``forward`` returns the
attention itself (weights or map), so a forward hook on ``block.channel_attention`` or
``block.spatiotemporal_attention`` captures it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from merkit.models.registry import register_model
from merkit.models.specs import AttentionMaps, InputSpec

__all__ = [
    "ChannelAttention3d",
    "SpatioTemporalAttention3d",
    "ResidualAttentionBlock3d",
    "MERANet",
    "ATTENTION_KINDS",
    "ATTENTION_ORDERS",
    "ATTENTION_SCALES",
    "ST_SOURCES",
    "ST_NORMALISATIONS",
]

Attention = Literal["both", "channel", "spatiotemporal", "none"]
AttentionOrder = Literal["ca_sta", "sta_ca", "parallel"]
AttentionScale = Literal["gate", "residual"]
StSource = Literal["output", "input"]
StNormalise = Literal["sigmoid", "softmax"]
ATTENTION_KINDS: tuple[str, ...] = ("both", "channel", "spatiotemporal", "none")
ATTENTION_ORDERS: tuple[str, ...] = ("ca_sta", "sta_ca", "parallel")
ATTENTION_SCALES: tuple[str, ...] = ("gate", "residual")
ST_SOURCES: tuple[str, ...] = ("output", "input")
ST_NORMALISATIONS: tuple[str, ...] = ("sigmoid", "softmax")

Triple = tuple[int, int, int]


def _triple(value: int | Sequence[int], what: str) -> Triple:
    """An int or a (t, h, w) sequence as a (t, h, w) tuple."""
    if isinstance(value, int):
        return (value, value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 3:
        raise ValueError(f"{what} must be an int or (t, h, w), got {value}")
    return value  # type: ignore[return-value]


def _choice(value: str, choices: tuple[str, ...], what: str) -> str:
    if value not in choices:
        raise ValueError(f"{what} must be one of {choices}, got {value!r}")
    return value


def _same_padding(kernel: Triple) -> Triple:
    """Padding that keeps (T, H, W) for an odd kernel at stride 1."""
    if any(k % 2 == 0 for k in kernel):
        raise ValueError(f"kernel sizes must be odd to keep the map centred, got {kernel}")
    return (kernel[0] // 2, kernel[1] // 2, kernel[2] // 2)


class ChannelAttention3d(nn.Module):
    """Channel weights from average- and max-pooled descriptors through one shared bottleneck MLP.

    ``forward(x)`` maps features (B, C, T, H, W) to weights (B, C) in [0, 1]; the caller scales the
    channels with them. Parameters: 2·C·hidden + hidden + C, hidden = max(1, C // reduction).
    """

    def __init__(self, channels: int, reduction: int = 8) -> None:
        super().__init__()
        if reduction < 1:
            raise ValueError(f"reduction must be >= 1, got {reduction}")
        hidden = max(1, channels // reduction)
        self.hidden = hidden
        self.reduce = nn.Linear(channels, hidden)
        self.activation = nn.ReLU(inplace=False)
        self.expand = nn.Linear(hidden, channels)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = x.mean(dim=(2, 3, 4))  # (b, c, t, h, w) -> (b, c)
        peak = x.amax(dim=(2, 3, 4))  # (b, c, t, h, w) -> (b, c)
        # One pass of the shared MLP over both descriptors, so each module runs once per forward (hooks).
        both = torch.cat([avg, peak], dim=0)  # 2 × (b, c) -> (2b, c)
        scores = self.expand(self.activation(self.reduce(both)))  # (2b, c) -> (2b, c)
        avg_score, peak_score = scores.chunk(2, dim=0)  # (2b, c) -> 2 × (b, c)
        return self.gate(avg_score + peak_score)


class SpatioTemporalAttention3d(nn.Module):
    """A map over (T, H, W) from the channel-wise average and max, through one Conv3d.

    ``forward(x)`` maps features (B, C, T, H, W) to a map (B, 1, T, H, W); the caller scales every position
    with it. ``normalise="sigmoid"``: a gate in [0, 1] per position. ``"softmax"``: a softmax over the H·W
    positions of each frame of conv / ``temperature``, times H·W, so each frame's map is non-negative with
    mean 1. Parameters: 2·kt·kh·kw + 1.
    """

    def __init__(
        self, kernel_size: int | Sequence[int] = (3, 7, 7), normalise: StNormalise = "sigmoid", temperature: float = 1.0
    ) -> None:
        super().__init__()
        kernel = _triple(kernel_size, "spatiotemporal kernel_size")
        if not temperature > 0:
            raise ValueError(f"st_temperature must be > 0, got {temperature}")
        self.normalise = _choice(normalise, ST_NORMALISATIONS, "st_normalise")
        self.temperature = float(temperature)
        self.conv = nn.Conv3d(2, 1, kernel_size=kernel, padding=_same_padding(kernel))
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = x.mean(dim=1, keepdim=True)  # (b, c, t, h, w) -> (b, 1, t, h, w)
        peak = x.amax(dim=1, keepdim=True)  # (b, c, t, h, w) -> (b, 1, t, h, w)
        pooled = torch.cat([avg, peak], dim=1)  # 2 × (b, 1, t, h, w) -> (b, 2, t, h, w)
        logits = self.conv(pooled)  # (b, 2, t, h, w) -> (b, 1, t, h, w)
        if self.normalise == "sigmoid":
            return self.gate(logits)
        b, _, t, h, w = logits.shape
        per_frame = (logits / self.temperature).reshape(b, 1, t, h * w)  # (b, 1, t, h, w) -> (b, 1, t, h*w)
        return (per_frame.softmax(dim=-1) * (h * w)).reshape(b, 1, t, h, w)  # back to (b, 1, t, h, w), mean 1


class ResidualAttentionBlock3d(nn.Module):
    """conv-BN-ReLU-conv-BN → attention (channel and/or spatio-temporal) → + skip → ReLU.

    attention: ``"both"``, ``"channel"``, ``"spatiotemporal"`` or ``"none"`` (ablations; an ablated
        attention has no module and no parameters).
    order: with both attentions, ``"ca_sta"`` (channel, then spatio-temporal on the re-weighted
        features), ``"sta_ca"`` (the reverse) or ``"parallel"`` (both from the same features).
    scale: ``"gate"`` (features × attention) or ``"residual"`` (features × (1 + attention)), for both attentions.
    st_source: ``"output"`` (the spatio-temporal map is computed from the convolved features) or ``"input"``
        (from the module's input x, at its resolution, and average-pooled onto the output's grid when the
        module strides).
    st_normalise, st_temperature: see :class:`SpatioTemporalAttention3d`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: Triple = (1, 1, 1),
        kernel_size: Triple = (3, 3, 3),
        attention: Attention = "both",
        order: AttentionOrder = "ca_sta",
        reduction: int = 8,
        st_kernel_size: Triple = (3, 7, 7),
        scale: AttentionScale = "gate",
        st_source: StSource = "output",
        st_normalise: StNormalise = "sigmoid",
        st_temperature: float = 1.0,
    ) -> None:
        super().__init__()
        self.scale = _choice(scale, ATTENTION_SCALES, "attention_scale")
        self.st_source = _choice(st_source, ST_SOURCES, "st_source")
        if attention not in ATTENTION_KINDS:
            raise ValueError(f"attention must be one of {ATTENTION_KINDS}, got {attention!r}")
        if order not in ATTENTION_ORDERS:
            raise ValueError(f"attention order must be one of {ATTENTION_ORDERS}, got {order!r}")
        padding = _same_padding(kernel_size)
        self.conv1 = nn.Conv3d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn1 = nn.BatchNorm3d(out_channels)
        self.relu1 = nn.ReLU(inplace=False)
        self.conv2 = nn.Conv3d(out_channels, out_channels, kernel_size, padding=padding, bias=False)
        self.bn2 = nn.BatchNorm3d(out_channels)
        self.order = order
        self.channel_attention = (
            ChannelAttention3d(out_channels, reduction) if attention in ("both", "channel") else None
        )
        self.spatiotemporal_attention = (
            SpatioTemporalAttention3d(st_kernel_size, st_normalise, st_temperature)
            if attention in ("both", "spatiotemporal")
            else None
        )
        if stride != (1, 1, 1) or in_channels != out_channels:
            self.shortcut: nn.Module = nn.Sequential(
                nn.Conv3d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm3d(out_channels),
            )
        else:
            self.shortcut = nn.Identity()
        self.relu2 = nn.ReLU(inplace=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.forward_with_attention(x)
        return out

    def _scaled(self, y: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
        """Features scaled by an attention broadcastable to them: × M (gate) or × (1 + M) (residual)."""
        return y * attention if self.scale == "gate" else y * (1.0 + attention)

    def _st_map(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The spatio-temporal map as computed (reported) and as applied to ``y`` (same unless from the input)."""
        sta = self.spatiotemporal_attention
        if self.st_source == "output":
            st_map = sta(y)
            return st_map, st_map
        st_map = sta(x)  # (b, c_in, t, h, w) -> (b, 1, t, h, w): the module's input resolution
        applied = st_map if st_map.shape[2:] == y.shape[2:] else F.adaptive_avg_pool3d(st_map, tuple(y.shape[2:]))
        return st_map, applied  # applied: (b, 1, t', h', w') on the output grid

    def forward_with_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, AttentionMaps]:
        """The block's output and the attention it applied (``None`` for an ablated attention); with
        ``st_source="input"`` the spatio-temporal map is reported at the module's input resolution."""
        y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        weights: torch.Tensor | None = None
        st_map: torch.Tensor | None = None
        ca, sta = self.channel_attention, self.spatiotemporal_attention
        if self.order == "parallel":
            weights = ca(y) if ca is not None else None
            if sta is not None:
                st_map, applied = self._st_map(x, y)
            if weights is not None:
                y = self._scaled(y, weights[:, :, None, None, None])  # (b, c) -> (b, c, 1, 1, 1)
            if st_map is not None:
                y = self._scaled(y, applied)  # (b, 1, t, h, w) broadcast over c
        elif self.order == "ca_sta":
            if ca is not None:
                weights = ca(y)
                y = self._scaled(y, weights[:, :, None, None, None])  # (b, c) -> (b, c, 1, 1, 1)
            if sta is not None:
                st_map, applied = self._st_map(x, y)
                y = self._scaled(y, applied)  # (b, 1, t, h, w) broadcast over c
        else:  # "sta_ca"
            if sta is not None:
                st_map, applied = self._st_map(x, y)
                y = self._scaled(y, applied)  # (b, 1, t, h, w) broadcast over c
            if ca is not None:
                weights = ca(y)
                y = self._scaled(y, weights[:, :, None, None, None])  # (b, c) -> (b, c, 1, 1, 1)
        out = self.relu2(y + self.shortcut(x))
        return out, AttentionMaps(channel=weights, spatiotemporal=st_map)


class MERANet(nn.Module):
    """3D residual attention network for micro-expression clips (B, C, T, H, W) → logits (B, classes).

    num_classes: number of emotion classes.
    in_channels, frames, size: the expected input (1 = grey; T frames of size×size). ASSUMPTION: grey
        64×64, T = 16.
    widths, depths: channels and number of residual modules per stage. ASSUMPTION: (32, 64, 128, 256),
        (1, 1, 1, 1).
    temporal_strides, spatial_strides: stride of the first module of each stage in T and in H, W.
        ASSUMPTION: (1, 2, 2, 2) for both.
    kernel_size: the residual modules' conv kernel (t, h, w). ASSUMPTION: 3×3×3.
    stem_kernel_size, stem_stride: the stem conv (t, h, w). ASSUMPTION: 3×7×7, stride 1×2×2.
    attention: ``"both"`` (MERANet), ``"channel"``, ``"spatiotemporal"`` or ``"none"`` (ablations).
    attention_order: ``"ca_sta"`` (default), ``"sta_ca"`` or ``"parallel"``. ASSUMPTION.
    reduction: channel-attention bottleneck ratio. ASSUMPTION: 8.
    st_kernel_size: spatio-temporal attention conv kernel (t, h, w). ASSUMPTION: 3×7×7.
    attention_scale: ``"gate"`` (features × attention, CBAM) or ``"residual"`` (features × (1 + attention),
        residual attention). ASSUMPTION: ``"gate"``.
    st_source: ``"output"`` (the spatio-temporal map from the module's convolved features, after its stride)
        or ``"input"`` (from the module's input, at its resolution). ASSUMPTION: ``"output"``.
    st_normalise: ``"sigmoid"`` (a gate per position) or ``"softmax"`` (over space per frame, mean 1).
        ASSUMPTION: ``"sigmoid"``.
    st_temperature: the softmax's temperature (larger: flatter maps). ASSUMPTION: 1.0.
    dropout: before the linear head. ASSUMPTION: 0.5.
    remove_static: subtract each pixel's temporal mean (the still face) from the clip before the stem.
        KIT CHOICE (see the module docstring): True.
    """

    input_kind = "clip"  # what it reads, known without building it (registry: ModelEntry.input_kind)

    def __init__(
        self,
        num_classes: int = 3,
        in_channels: int = 1,
        frames: int = 16,
        size: int = 64,
        widths: Sequence[int] = (32, 64, 128, 256),
        depths: Sequence[int] = (1, 1, 1, 1),
        temporal_strides: Sequence[int] = (1, 2, 2, 2),
        spatial_strides: Sequence[int] = (1, 2, 2, 2),
        kernel_size: int | Sequence[int] = (3, 3, 3),
        stem_kernel_size: int | Sequence[int] = (3, 7, 7),
        stem_stride: int | Sequence[int] = (1, 2, 2),
        attention: Attention = "both",
        attention_order: AttentionOrder = "ca_sta",
        reduction: int = 8,
        st_kernel_size: int | Sequence[int] = (3, 7, 7),
        attention_scale: AttentionScale = "gate",
        st_source: StSource = "output",
        st_normalise: StNormalise = "sigmoid",
        st_temperature: float = 1.0,
        dropout: float = 0.5,
        remove_static: bool = True,
    ) -> None:
        super().__init__()
        widths, depths = tuple(widths), tuple(depths)
        temporal_strides, spatial_strides = tuple(temporal_strides), tuple(spatial_strides)
        if not (len(widths) == len(depths) == len(temporal_strides) == len(spatial_strides) >= 1):
            raise ValueError(
                "widths, depths, temporal_strides and spatial_strides need one entry per stage, got "
                f"{widths}, {depths}, {temporal_strides}, {spatial_strides}"
            )
        if any(d < 1 for d in depths) or any(w < 1 for w in widths):
            raise ValueError(f"every stage needs depth >= 1 and width >= 1, got {depths}, {widths}")
        if attention not in ATTENTION_KINDS:
            raise ValueError(f"attention must be one of {ATTENTION_KINDS}, got {attention!r}")
        if attention_order not in ATTENTION_ORDERS:
            raise ValueError(f"attention_order must be one of {ATTENTION_ORDERS}, got {attention_order!r}")
        self.input_spec = InputSpec(kind=self.input_kind, channels=in_channels, frames=frames, size=size)
        self.attention = attention
        self.attention_order = attention_order
        self.attention_scale = _choice(attention_scale, ATTENTION_SCALES, "attention_scale")
        self.st_source = _choice(st_source, ST_SOURCES, "st_source")
        self.st_normalise = _choice(st_normalise, ST_NORMALISATIONS, "st_normalise")
        self.num_classes = num_classes
        self.remove_static = bool(remove_static)

        stem_kernel = _triple(stem_kernel_size, "stem_kernel_size")
        self.stem = nn.Sequential(
            nn.Conv3d(
                in_channels,
                widths[0],
                kernel_size=stem_kernel,
                stride=_triple(stem_stride, "stem_stride"),
                padding=_same_padding(stem_kernel),
                bias=False,
            ),
            nn.BatchNorm3d(widths[0]),
            nn.ReLU(inplace=False),
        )
        kernel = _triple(kernel_size, "kernel_size")
        st_kernel = _triple(st_kernel_size, "st_kernel_size")
        stages: list[nn.Module] = []
        channels = widths[0]
        for width, depth, t_stride, s_stride in zip(widths, depths, temporal_strides, spatial_strides):
            blocks = []
            for index in range(depth):
                stride = (t_stride, s_stride, s_stride) if index == 0 else (1, 1, 1)
                blocks.append(
                    ResidualAttentionBlock3d(
                        channels,
                        width,
                        stride,
                        kernel,
                        attention,
                        attention_order,
                        reduction,
                        st_kernel,
                        scale=attention_scale,
                        st_source=st_source,
                        st_normalise=st_normalise,
                        st_temperature=st_temperature,
                    )
                )
                channels = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stages)
        self.num_features = channels
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(p=dropout)
        self.head = nn.Linear(channels, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm3d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        # The attention convs feed a sigmoid, not a ReLU: a small init starts every gate near 0.5.
        for module in self.modules():
            if isinstance(module, SpatioTemporalAttention3d):
                nn.init.normal_(module.conv.weight, std=0.01)
                nn.init.zeros_(module.conv.bias)

    @property
    def name(self) -> str:
        return getattr(self, "model_name", type(self).__name__)

    def blocks(self) -> Iterator[ResidualAttentionBlock3d]:
        """Every residual module in forward order."""
        for stage in self.stages:
            yield from stage  # type: ignore[misc]

    @property
    def cam_layer(self) -> nn.Module:
        """The last residual module: the usual Grad-CAM target layer."""
        return list(self.blocks())[-1]

    def _stem_input(self, x: torch.Tensor) -> torch.Tensor:
        """The clip the stem sees: with ``remove_static`` only its change over time (a new tensor)."""
        self.input_spec.check(x, self.name)
        if not self.remove_static:
            return x
        return x - x.mean(dim=2, keepdim=True)  # (b, c, t, h, w) - (b, c, 1, h, w): per-pixel temporal mean removed

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Clip (B, C, T, H, W) → last stage's features (B, C', T', H', W')."""
        h = self.stem(self._stem_input(x))
        for stage in self.stages:
            h = stage(h)
        return h

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Features (B, C', T', H', W') → logits (B, num_classes)."""
        pooled = self.pool(features).flatten(1)  # (b, c, t, h, w) -> (b, c, 1, 1, 1) -> (b, c)
        return self.head(self.dropout(pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def attention_maps(self, x: torch.Tensor, upsample: bool = False) -> list[AttentionMaps]:
        """The attention of every residual module for clip ``x``, in forward order.

        Each item holds channel weights (B, C) and a spatio-temporal map (B, 1, T', H', W') (``None``
        where ablated; on the module's input grid with ``st_source="input"``). With ``upsample=True`` the
        maps are resized (trilinear) to the input's (T, H, W), which keeps them within their range. Runs in the
        model's current mode and grad mode: call ``model.eval()`` (and wrap in ``torch.no_grad()``) for inference maps.
        """
        maps: list[AttentionMaps] = []
        h = self.stem(self._stem_input(x))
        for block in self.blocks():
            h, block_maps = block.forward_with_attention(h)
            maps.append(block_maps)
        if upsample:
            target = tuple(x.shape[2:])  # (t, h, w) of the input clip
            maps = [
                AttentionMaps(
                    channel=m.channel,
                    spatiotemporal=None
                    if m.spatiotemporal is None
                    # (b, 1, t', h', w') -> (b, 1, t, h, w)
                    else F.interpolate(m.spatiotemporal, size=target, mode="trilinear", align_corners=False),
                )
                for m in maps
            ]
        return maps


# ----------------------------------------------------------------------------------------- registry
_SMALL = dict(
    frames=16,
    size=32,
    widths=(16, 32, 64),
    depths=(1, 1, 1),
    temporal_strides=(1, 2, 2),
    spatial_strides=(1, 2, 2),
    reduction=4,
)

register_model("meranet", MERANet, "MERANet: 3D residual network, channel + spatio-temporal attention")
register_model(
    "meranet_small",
    MERANet,
    "MERANet, 3 narrow stages on grey 16×32×32 clips (tests, CPU demo)",
    **_SMALL,
)
register_model("meranet_no_attention", MERANet, "MERANet ablation: no attention", attention="none")
register_model("meranet_channel_only", MERANet, "MERANet ablation: channel attention only", attention="channel")
register_model(
    "meranet_st_only", MERANet, "MERANet ablation: spatio-temporal attention only", attention="spatiotemporal"
)
