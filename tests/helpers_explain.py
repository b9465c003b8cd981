"""Toy clip models whose attributions are known exactly, for tests of merkit.explain and merkit.viz."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from merkit.data.synthetic import EMOTIONS, SynthMEConfig, list_clips, render_clip


class LinearConvModel(nn.Module):
    """conv3d (no bias, no nonlinearity) -> sum over (t, h, w) -> logits: linear in x.

    With a 1x1x1 kernel the logit of class k is sum over (c, t, h, w) of w[k, c] * x, so
    IG(x, baseline)[c, t, h, w] = (x - baseline)[c, t, h, w] * w[k, c] exactly.
    """

    def __init__(self, channels: int = 3, classes: int = 3, kernel: int = 1, stride: int = 1, seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv3d(channels, classes, kernel_size=kernel, stride=stride, padding=kernel // 2, bias=False)
        self.conv.weight = nn.Parameter(torch.randn(self.conv.weight.shape, generator=generator))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x).sum(dim=(2, 3, 4))  # (b, k, t, h, w) -> (b, k)


@dataclass
class ToyAttentionMaps:
    channel: Tensor | None
    spatiotemporal: Tensor | None


class ToyAttentionModel(nn.Module):
    """Small non-linear clip net with MERANet-style ``attention_maps`` (two modules + one ablated).

    Module 0's spatio-temporal gate is sigmoid of a conv at half resolution, module 1's is a constant
    0.25 at quarter resolution, module 2 has channel attention only (spatio-temporal ablated).
    """

    def __init__(self, channels: int = 1, classes: int = 3) -> None:
        super().__init__()
        self.stem = nn.Conv3d(channels, 4, kernel_size=3, stride=2, padding=1)
        self.act = nn.ReLU()
        self.gate = nn.Conv3d(4, 1, kernel_size=1)
        self.block = nn.Conv3d(4, 6, kernel_size=3, stride=2, padding=1)
        self.act2 = nn.ReLU()
        self.head = nn.Linear(6, classes)

    def forward(self, x: Tensor) -> Tensor:
        features = self.act(self.stem(x))
        features = features * torch.sigmoid(self.gate(features))
        features = self.act2(self.block(features))
        return self.head(features.mean(dim=(2, 3, 4)))  # (b, 6, t, h, w) -> (b, 6) -> (b, k)

    def attention_maps(self, x: Tensor, upsample: bool = False) -> list[ToyAttentionMaps]:
        features = self.act(self.stem(x))
        first = torch.sigmoid(self.gate(features))  # (b, 1, t/2, h/2, w/2)
        deeper = self.act2(self.block(features * first))
        second = torch.full((x.shape[0], 1, *deeper.shape[2:]), 0.25)  # (b, 1, t/4, h/4, w/4)
        channel = torch.sigmoid(deeper.mean(dim=(2, 3, 4)))  # (b, 6, t, h, w) -> (b, 6)
        return [
            ToyAttentionMaps(channel=None, spatiotemporal=first),
            ToyAttentionMaps(channel=channel, spatiotemporal=second),
            ToyAttentionMaps(channel=channel, spatiotemporal=None),
        ]


def toy_clips(batch: int = 2, channels: int = 3, frames: int = 4, size: int = 8, seed: int = 0) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand((batch, channels, frames, size, size), generator=generator)


def window_sum(values: Tensor, window: tuple[int, int, int]) -> Tensor:
    """Sum of (b, t, h, w) values over non-overlapping windows, broadcast back to every pixel of the window."""
    pooled = F.avg_pool3d(values[:, None], window) * (window[0] * window[1] * window[2])  # (b, 1, t', h', w')
    expanded = pooled.repeat_interleave(window[0], 2).repeat_interleave(window[1], 3).repeat_interleave(window[2], 4)
    return expanded[:, 0]  # (b, 1, t, h, w) -> (b, t, h, w)


def tiny_synthme(n_subjects: int = 6, frames: int = 8, size: int = 32, amplitude: float = 4.0):
    """A small SynthME set rendered in memory: clips (n, 1, t, s, s) standardised, labels (n,), masks (n, s, s).

    Each clip is resampled from onset to offset to ``frames`` frames, grey, resized to ``size``; the true
    motion mask is resized with nearest neighbour. Stand-in for the store pipeline, kept test-only.
    """
    config = SynthMEConfig(
        n_subjects=n_subjects, clips_per_subject=9, n_frames=24, size=64, motion_amplitude=amplitude, video_subjects=()
    )
    clips, labels, masks = [], [], []
    for spec in list_clips(config):
        rendered = render_clip(config, spec.subject, spec.sample)
        span = rendered.frames[spec.onset_index : spec.offset_index + 1]
        picks = np.linspace(0, len(span) - 1, frames).round().astype(int)
        grey = [cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY) for frame in span[picks]]
        clips.append(np.stack([cv2.resize(g, (size, size), interpolation=cv2.INTER_AREA) for g in grey]))
        labels.append(EMOTIONS.index(spec.emotion))
        masks.append(
            cv2.resize(rendered.mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST).astype(bool)
        )
    x = torch.tensor(np.stack(clips), dtype=torch.float32)[:, None]  # (n, t, s, s) -> (n, 1, t, s, s)
    x = (x - x.mean()) / x.std()
    return x, torch.tensor(labels), np.stack(masks)


def fit(model: nn.Module, x: Tensor, y: Tensor, epochs: int = 30, lr: float = 1e-3, seed: int = 0) -> nn.Module:
    """Plain AdamW full-data training (test fixture only; the library's loop is merkit.training.fold)."""
    torch.manual_seed(seed)
    optimiser = torch.optim.AdamW(model.parameters(), lr)
    for _ in range(epochs):
        model.train()
        order = torch.randperm(len(x))
        for start in range(0, len(x), 8):
            batch = order[start : start + 8]
            loss = F.cross_entropy(model(x[batch]), y[batch])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
    return model.eval()
