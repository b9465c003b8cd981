"""The baselines MERANet is compared with: MicroExpSTCNN, a plain 3D ResNet, STSTNet, Off-ApexNet.

Axis letters: B batch, C channels, T frames, H height, W width.

- ``stcnn`` :class:`MicroExpSTCNN` (Reddy et al., IJCNN 2019): clip (B, 1, T, 64, 64).
- ``resnet3d`` :class:`ResNet3d`: MERANet's exact trunk without attention (the ablations' reference
  point); clip (B, 1, 16, 64, 64).
- ``ststnet`` :class:`STSTNet` (Liong et al., FG 2019, the MEGC2019 reference) as its authors' code builds
  and feeds it: flow image (B, 3, 28, 28), the 28×28 interchange PNG's 0..255 values in B, G, R order
  (strain, v, u). ``ststnet_kit``: the kit's earlier variant on (u, v, strain) scaled to 0..1.
- ``offapexnet`` :class:`OffApexNet` (Gan et al., Signal Processing: Image Communication 2019): flow image
  (B, 2, 28, 28) with channels (u, v) of the onset→apex flow, one stream per channel. From a
  (u, v, strain) flow image take ``x[:, :2]``.

Each model checks its input against ``input_spec`` and returns logits only. Layer choices the papers do
not pin (or that we could only recall) are marked ASSUMPTION in the class docstrings.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from merkit.models.meranet import MERANet
from merkit.models.registry import register_model
from merkit.models.specs import InputSpec

__all__ = ["MicroExpSTCNN", "ResNet3d", "STSTNet", "OffApexNet"]


def _display_name(model: nn.Module) -> str:
    return getattr(model, "model_name", type(model).__name__)


class MicroExpSTCNN(nn.Module):
    """MicroExpSTCNN: one 3D conv layer over the whole clip, max-pool, a 128-unit dense layer.

    Paper: Conv3D 32 filters, kernel 3×3×15 (h, w, t) i.e. (t, h, w) = (15, 3, 3), no padding, ReLU,
    MaxPool3D 3, dropout 0.5, flatten, dense 128 + ReLU, dropout 0.5, linear head; grey 64×64 clips.
    ASSUMPTION: the temporal pool window is min(3, T − 14) so that the default T = 16 works (the paper's
    clips were longer; for T ≥ 17 this is exactly the paper's pool of 3). Needs T ≥ 15.
    """

    input_kind = "clip"  # what it reads, known without building it (registry: ModelEntry.input_kind)

    def __init__(
        self,
        num_classes: int = 3,
        in_channels: int = 1,
        frames: int = 16,
        size: int = 64,
        filters: int = 32,
        kernel_size: Sequence[int] = (15, 3, 3),
        pool: int = 3,
        hidden: int = 128,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        kt, kh, kw = (int(k) for k in kernel_size)
        conv_t, conv_h, conv_w = frames - kt + 1, size - kh + 1, size - kw + 1
        if conv_t < 1 or conv_h < pool or conv_w < pool:
            raise ValueError(
                f"MicroExpSTCNN with kernel (t, h, w) = {(kt, kh, kw)} and pool {pool} needs T >= {kt} and "
                f"size >= {max(kh, kw) + pool - 1}, got T={frames}, size={size}"
            )
        pool_window = (min(pool, conv_t), pool, pool)
        self.num_classes = num_classes
        self.input_spec = InputSpec(kind=self.input_kind, channels=in_channels, frames=frames, size=size)
        self.conv = nn.Conv3d(in_channels, filters, kernel_size=(kt, kh, kw))
        self.conv_relu = nn.ReLU(inplace=False)
        self.pool = nn.MaxPool3d(kernel_size=pool_window)  # stride = window, as in Keras
        pooled = (conv_t // pool_window[0], conv_h // pool, conv_w // pool)
        self.num_features = filters * pooled[0] * pooled[1] * pooled[2]
        self.dropout1 = nn.Dropout(p=dropout)
        self.dense = nn.Linear(self.num_features, hidden)
        self.dense_relu = nn.ReLU(inplace=False)
        self.dropout2 = nn.Dropout(p=dropout)
        self.head = nn.Linear(hidden, num_classes)

    @property
    def cam_layer(self) -> nn.Module:
        """The only conv layer (after its ReLU): the Grad-CAM target."""
        return self.conv_relu

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Clip (B, C, T, H, W) → pooled conv features (B, filters, T', H', W')."""
        self.input_spec.check(x, _display_name(self))
        return self.pool(self.conv_relu(self.conv(x)))

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        flat = self.dropout1(features).flatten(1)  # (b, f, t', h', w') -> (b, f·t'·h'·w')
        return self.head(self.dropout2(self.dense_relu(self.dense(flat))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class ResNet3d(MERANet):
    """A plain 3D ResNet: MERANet's trunk, same depth, widths and strides, with no attention at all.

    The reference point of the ablations (same parameter count as ``meranet_no_attention``).
    ``attention_maps`` returns ``AttentionMaps(None, None)`` for every module.
    """

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
        dropout: float = 0.5,
        remove_static: bool = True,
    ) -> None:
        super().__init__(
            num_classes=num_classes,
            in_channels=in_channels,
            frames=frames,
            size=size,
            widths=widths,
            depths=depths,
            temporal_strides=temporal_strides,
            spatial_strides=spatial_strides,
            kernel_size=kernel_size,
            stem_kernel_size=stem_kernel_size,
            stem_stride=stem_stride,
            attention="none",
            dropout=dropout,
            remove_static=remove_static,
        )


class STSTNet(nn.Module):
    """STSTNet: three shallow parallel 3×3 conv branches over a (u, v, strain) flow image.

    Paper (Liong et al., FG 2019): branches of 3, 5 and 8 filters (3×3, ReLU, max-pool), concatenated,
    average-pooled, flattened, one dense layer to the classes; input 28×28×3.

    ``ststnet`` is built as the authors' published PyTorch code builds it (their public repository):
    each branch conv 3×3 with padding 2 (28 → 30) → ReLU → BatchNorm → max-pool 3, stride 3, padding 1
    (→ 10) → dropout 0.5; the branches are concatenated, average-pooled 2×2 (→ 5×5) and flattened to
    16·5·5 = 400 features → one linear layer. It is fed as the authors feed it (``encoding="bgr255"``):
    the 8-bit PNG's 0..255 values, unscaled, in the B, G, R channel order OpenCV reads (= strain, v, u).

    ``ststnet_kit`` is the kit's earlier reading of the paper, kept for comparison: 'same' padding 1
    (28 → 28 → 10 → 5, also 400 features), no BatchNorm, no dropout, and the input min-max scaled to 0..1
    per channel in (u, v, strain) order (``encoding="unit"``). Reported by the maintainers (not measured in
    this repository): on a real 442-image folder, 800 epochs with the kit's AdamW/cosine/class-weighted
    defaults, it underfits (UF1 0.617, training accuracy 0.65), where a faithful re-run of the authors' code
    gives 0.699.
    """

    input_kind = "flow"  # what it reads, known without building it (registry: ModelEntry.input_kind)

    def __init__(
        self,
        num_classes: int = 3,
        in_channels: int = 3,
        size: int = 28,
        branch_filters: Sequence[int] = (3, 5, 8),
        padding: int = 2,
        batch_norm: bool = True,
        dropout: float = 0.5,
        encoding: str = "bgr255",
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.input_spec = InputSpec(
            kind=self.input_kind, channels=in_channels, frames=None, size=size, encoding=encoding
        )
        branches = []
        for filters in branch_filters:
            layers: list[nn.Module] = [
                nn.Conv2d(in_channels, filters, kernel_size=3, padding=padding),
                nn.ReLU(inplace=False),
            ]
            if batch_norm:
                layers.append(nn.BatchNorm2d(filters))
            layers.append(nn.MaxPool2d(kernel_size=3, stride=3, padding=1))
            if dropout > 0:
                layers.append(nn.Dropout(p=dropout))
            branches.append(nn.Sequential(*layers))
        self.branches = nn.ModuleList(branches)
        self.avgpool = nn.AvgPool2d(kernel_size=2, stride=2)
        conv_side = size + 2 * padding - 2  # 3×3 conv
        pooled = ((conv_side + 2 - 3) // 3 + 1) // 2  # max-pool 3/3 pad 1, then avg-pool 2/2
        if conv_side < 1 or pooled < 1:
            raise ValueError(f"STSTNet with padding {padding} needs size >= {max(4, 6 - 2 * padding)}, got {size}")
        self.num_features = sum(branch_filters) * pooled * pooled
        self.head = nn.Linear(self.num_features, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Flow image (B, C, H, W) → pooled branch features (B, 16, H', W')."""
        self.input_spec.check(x, _display_name(self))
        # 3 × (b, f_i, h', w') -> (b, Σf_i, h', w')
        merged = torch.cat([branch(x) for branch in self.branches], dim=1)
        return self.avgpool(merged)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features.flatten(1))  # (b, f, h', w') -> (b, f·h'·w')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


class _FlowStream(nn.Module):
    """One Off-ApexNet stream: conv 5×5 (6) → ReLU → pool 2 → conv 5×5 (16) → ReLU → pool 2."""

    def __init__(self, filters: Sequence[int]) -> None:
        super().__init__()
        first, second = filters
        self.conv1 = nn.Conv2d(1, first, kernel_size=5, padding=2)
        self.relu1 = nn.ReLU(inplace=False)
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(first, second, kernel_size=5, padding=2)
        self.relu2 = nn.ReLU(inplace=False)
        self.pool2 = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool2(self.relu2(self.conv2(self.pool1(self.relu1(self.conv1(x))))))


class OffApexNet(nn.Module):
    """Off-ApexNet: one stream per onset→apex flow component (u, v), fused by dense layers.

    Input (B, 2, H, W): channel 0 = horizontal flow u, channel 1 = vertical flow v.
    Paper: two streams of two conv + pool layers each over 28×28 u and v, concatenated, two dense layers,
    softmax. ASSUMPTION (as recalled, not re-checked against the paper's table): 5×5 convs with 6 and 16
    filters, 'same' padding, 2×2 max-pool, dense layers of 1024 units with dropout 0.5.
    """

    input_kind = "flow"  # what it reads, known without building it (registry: ModelEntry.input_kind)

    def __init__(
        self,
        num_classes: int = 3,
        size: int = 28,
        filters: Sequence[int] = (6, 16),
        hidden: int = 1024,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if size < 4:
            raise ValueError(f"OffApexNet needs size >= 4, got {size}")
        self.num_classes = num_classes
        self.input_spec = InputSpec(kind=self.input_kind, channels=2, frames=None, size=size)
        self.stream_u = _FlowStream(filters)
        self.stream_v = _FlowStream(filters)
        pooled = size // 2 // 2
        self.num_features = 2 * filters[1] * pooled * pooled
        self.fc1 = nn.Linear(self.num_features, hidden)
        self.fc1_relu = nn.ReLU(inplace=False)
        self.dropout1 = nn.Dropout(p=dropout)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc2_relu = nn.ReLU(inplace=False)
        self.dropout2 = nn.Dropout(p=dropout)
        self.head = nn.Linear(hidden, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Flow (B, 2, H, W) → both streams' features, flattened and concatenated (B, 2·16·H'·W')."""
        self.input_spec.check(x, _display_name(self))
        u = x[:, 0:1]  # (b, 2, h, w) -> (b, 1, h, w)
        v = x[:, 1:2]  # (b, 2, h, w) -> (b, 1, h, w)
        u_features = self.stream_u(u).flatten(1)  # (b, 16, h', w') -> (b, 16·h'·w')
        v_features = self.stream_v(v).flatten(1)  # (b, 16, h', w') -> (b, 16·h'·w')
        return torch.cat([u_features, v_features], dim=1)  # -> (b, 2·16·h'·w')

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        h = self.dropout1(self.fc1_relu(self.fc1(features)))
        h = self.dropout2(self.fc2_relu(self.fc2(h)))
        return self.head(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


register_model("stcnn", MicroExpSTCNN, "MicroExpSTCNN (Reddy et al. 2019): one 3D conv, dense 128")
register_model("resnet3d", ResNet3d, "plain 3D ResNet: MERANet's trunk without attention")
register_model("ststnet", STSTNet, "STSTNet (Liong et al. 2019) as its authors' code: BN, dropout, 0..255 BGR input")
register_model(
    "ststnet_kit",
    STSTNet,
    "STSTNet, the kit's earlier variant: no BN/dropout, padding 1, 0..1 input",
    padding=1,
    batch_norm=False,
    dropout=0.0,
    encoding="unit",
)
register_model("offapexnet", OffApexNet, "Off-ApexNet (Gan et al. 2019): u and v streams, dense fusion")
