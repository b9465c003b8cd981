"""torch Datasets over a clip store: clips for 3D models, onset→apex flow images for 2D flow models.

Axis letters: C channels, T frames, S side, F flow image side. Items are ``(x, label)`` with x float32
``(C, T, S, S)`` (:class:`ClipDataset`) or ``(len(channels), F, F)`` (:class:`FlowDataset`, channels chosen
by name from ``FLOW_CHANNELS``); ``label`` is an int (−1 when the manifest has no label). ``labels`` gives
every item's label at once (for class weights) without reading a clip.

Augmentation (training only; none when ``augment=False``) is drawn from a generator seeded by
``(seed, epoch, store position)``: the same clip gets the same augmentation in the same epoch, in any
order, in any DataLoader worker. Call ``set_epoch(epoch)`` before each epoch for fresh draws.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, fields
from typing import Any, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = [
    "Augmentation",
    "ClipDataset",
    "FlowDataset",
    "FLOW_CHANNELS",
    "clip_statistics",
    "clip_tensor",
    "flow_input_to_uvs",
    "flow_tensor",
]

NORMALISE = ("clip", "dataset", "none")

#: The channels of a stored flow image, in order (``merkit.data.flow``'s interchange format).
FLOW_CHANNELS = ("u", "v", "strain")


@dataclass(frozen=True)
class Augmentation:
    """Training augmentation of one clip; every draw comes from the item's own generator.

    Applied in this order: temporal shift, square crop resized back to S, horizontal flip (the whole clip),
    brightness/contrast. Values are checked on construction (``ValueError`` naming the field);
    :meth:`from_dict` builds one from a config dict (``merkit.config.TrainConfig.augmentation``).

    No resized crop by default: on SynthME it hurt learning the one-pixel motion (the ablation is in
    docs/models.md, "Augmentation"). The flip (the action units are mirror-symmetric), the one-frame shift and
    the intensity jitter (undone by ``normalise='clip'`` except for clipping) are kept.
    ``crop_scale=(0.85, 1.0)`` brings the old crop back, e.g. for larger faces or datasets.
    """

    flip: float = 0.5  # probability of a horizontal flip (the whole clip)
    crop_scale: tuple[float, float] = (
        1.0,
        1.0,
    )  # side of a random square crop, fraction of S; resized back; (1, 1) = none
    temporal_shift: int = 1  # clip shifted by up to this many frames either way (edge frame repeated)
    brightness: float = 0.1  # offset drawn in ±brightness (intensities in 0..1)
    contrast: float = 0.1  # scale about the clip mean drawn in 1 ± contrast

    def __post_init__(self) -> None:
        problems = []
        for name in ("flip", "brightness", "contrast"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                problems.append(f"{name} must be a number, got {value!r}")
        if isinstance(self.temporal_shift, bool) or not isinstance(self.temporal_shift, int):
            problems.append(f"temporal_shift must be an int, got {self.temporal_shift!r}")
        crop = self.crop_scale
        if (
            not isinstance(crop, (tuple, list))
            or len(crop) != 2
            or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in crop)
        ):
            problems.append(f"crop_scale must be two numbers (low, high), got {crop!r}")
        if not problems:
            object.__setattr__(self, "crop_scale", (float(crop[0]), float(crop[1])))  # JSON gives a list
            if not 0 <= self.flip <= 1:
                problems.append(f"flip must be a probability in [0, 1], got {self.flip}")
            if not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
                problems.append(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}")
            if self.temporal_shift < 0:
                problems.append(f"temporal_shift must be >= 0, got {self.temporal_shift}")
            if self.brightness < 0:
                problems.append(f"brightness must be >= 0, got {self.brightness}")
            if not 0 <= self.contrast < 1:
                problems.append(f"contrast must be in [0, 1), got {self.contrast}")
        if problems:
            raise ValueError("invalid Augmentation: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, values: dict) -> Augmentation:
        """An Augmentation with ``values`` (field name -> value) over the defaults; unknown names raise ValueError."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(values) - set(known))
        if unknown:
            hints = [
                f"{name!r}"
                + (f" (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(name, known, n=1)) else "")
                for name in unknown
            ]
            raise ValueError(f"unknown Augmentation field(s) {', '.join(hints)}; known: {known}")
        return cls(**values)

    def to_dict(self) -> dict:
        """Every field, JSON-ready (``crop_scale`` as a list)."""
        return {
            f.name: list(getattr(self, f.name)) if f.name == "crop_scale" else getattr(self, f.name)
            for f in fields(self)
        }


def _item_rng(seed: int, epoch: int, position: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(epoch), int(position)]))


def clip_statistics(
    clips: np.ndarray, positions: np.ndarray | None = None, *, chunk: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std (float32 (C,)) of uint8 clips (N, T, S, S, C) scaled to 0..1, over ``positions``."""
    positions = np.arange(len(clips)) if positions is None else np.asarray(positions)
    channels = clips.shape[-1]
    total = np.zeros(channels)
    squares = np.zeros(channels)
    count = 0
    for start in range(0, len(positions), chunk):
        block = np.asarray(clips[np.sort(positions[start : start + chunk])], dtype=np.float64) / 255.0
        flat = block.reshape(-1, channels)  # (n, T, S, S, C) -> (n·T·S·S, C)
        total += flat.sum(axis=0)
        squares += (flat**2).sum(axis=0)
        count += flat.shape[0]
    mean = total / max(count, 1)
    std = np.sqrt(np.maximum(squares / max(count, 1) - mean**2, 0.0))
    return mean.astype(np.float32), std.astype(np.float32)


def _labels_of(store: Any, positions: np.ndarray) -> np.ndarray:
    labels = store.index["label"].iloc[positions]
    return labels.fillna(-1).to_numpy(dtype=np.int64)


class _PositionedDataset(Dataset):
    """What both datasets share: items are store ``positions``, labels per item, a seeded epoch for augmentation."""

    positions: np.ndarray
    epoch: int = 0
    _labels: np.ndarray

    def set_epoch(self, epoch: int) -> None:
        """Use the augmentation draws of ``epoch`` from now on."""
        self.epoch = int(epoch)

    @property
    def labels(self) -> np.ndarray:
        """int64 labels of every item in order (−1 where the manifest has none)."""
        return self._labels

    def __len__(self) -> int:
        return len(self.positions)


class ClipDataset(_PositionedDataset):
    """Clips of a :class:`~merkit.data.store.ClipStore` as ``(x float32 (C, T, S, S), label int)``.

    ``positions`` selects and orders store rows (default: all). ``augment`` is False, True (default
    :class:`Augmentation`) or an :class:`Augmentation`. ``normalise``: ``'clip'`` (each clip to zero mean,
    unit std), ``'dataset'`` (per-channel mean/std: ``stats`` if given, else computed over ``positions``;
    pass the training set's ``dataset.stats`` to its evaluation set) or ``'none'`` (0..1).
    """

    def __init__(
        self,
        store: Any,
        positions: np.ndarray | list[int] | None = None,
        *,
        augment: bool | Augmentation = False,
        seed: int = 0,
        normalise: str = "clip",
        stats: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        if normalise not in NORMALISE:
            raise ValueError(f"normalise={normalise!r}; expected one of {NORMALISE}")
        self.store = store
        if getattr(store, "clips", None) is None:
            raise ValueError(
                f"{store!r} holds no clips (a flow-folder store): clip models cannot read it; "
                "use a flow model (ststnet, ststnet_kit, offapexnet)"
            )
        n = len(store.clips)
        self.positions = np.arange(n, dtype=np.int64) if positions is None else np.asarray(positions, dtype=np.int64)
        if self.positions.size and (self.positions.min() < 0 or self.positions.max() >= n):
            raise IndexError(f"positions outside the store's 0..{n - 1}")
        self.augmentation = Augmentation() if augment is True else (augment or None)
        self.seed = int(seed)
        self.epoch = 0
        self.normalise = normalise
        self.stats = None
        if normalise == "dataset":
            self.stats = stats if stats is not None else clip_statistics(store.clips, self.positions)
        self._labels = _labels_of(store, self.positions)

    def _augment(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """x float32 (T, S, S, C) in 0..1 -> augmented, same shape (numpy + one cv2.resize)."""
        aug = self.augmentation
        frames, size, _, channels = x.shape
        if aug.temporal_shift > 0:
            shift = int(rng.integers(-aug.temporal_shift, aug.temporal_shift + 1))
            x = x[np.clip(np.arange(frames) + shift, 0, frames - 1)]
        if aug.crop_scale[0] < 1.0:
            side = int(round(size * rng.uniform(*aug.crop_scale)))
            side = min(max(side, 2), size)
            top = int(rng.integers(0, size - side + 1))
            left = int(rng.integers(0, size - side + 1))
            if side != size:
                # cv2 resizes every channel of an (h, w, k) image at once: put frames into the channel axis.
                stack = x[:, top : top + side, left : left + side].transpose(1, 2, 0, 3)  # (T, s, s, C) -> (s, s, T, C)
                stack = np.ascontiguousarray(stack).reshape(side, side, frames * channels)  # -> (s, s, T·C)
                stack = cv2.resize(stack, (size, size), interpolation=cv2.INTER_LINEAR)
                x = stack.reshape(size, size, frames, channels).transpose(2, 0, 1, 3)  # (S, S, T·C) -> (T, S, S, C)
        if rng.random() < aug.flip:
            x = x[:, :, ::-1]
        if aug.contrast > 0 or aug.brightness > 0:
            scale = 1.0 + rng.uniform(-aug.contrast, aug.contrast)
            offset = rng.uniform(-aug.brightness, aug.brightness)
            mean = x.mean()
            x = np.clip((x - mean) * scale + mean + offset, 0.0, 1.0)
        return np.ascontiguousarray(x, dtype=np.float32)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, int]:
        position = int(self.positions[item])
        x = np.asarray(self.store.clips[position], dtype=np.float32) / 255.0  # (T, S, S, C), a new array
        if self.augmentation is not None:
            x = self._augment(x, _item_rng(self.seed, self.epoch, position))
        return clip_tensor(x, self.normalise, self.stats), int(self._labels[item])


def clip_tensor(
    x: np.ndarray, normalise: str = "clip", stats: tuple[np.ndarray, np.ndarray] | None = None
) -> torch.Tensor:
    """One clip as a clip model reads it: float (T, S, S, C) in 0..1 -> normalised float32 (C, T, S, S).

    ``normalise`` as in :class:`ClipDataset`; ``'dataset'`` needs the per-channel ``stats`` (mean, std).
    :class:`ClipDataset` calls it for every item, ``merkit.predict`` for a user's clip, so both read alike.
    """
    if normalise not in NORMALISE:
        raise ValueError(f"normalise={normalise!r}; expected one of {NORMALISE}")
    # Normalised in numpy: torch's intra-op threads cost more than they save on one small clip.
    if normalise == "clip":
        x = (x - x.mean()) / (x.std() + 1e-6)
    elif normalise == "dataset":
        if stats is None:
            raise ValueError("normalise='dataset' needs stats (per-channel mean, std), e.g. the training set's")
        mean, std = stats
        x = (x - mean) / (std + 1e-6)  # per channel, broadcast over (T, S, S, C)
    x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).permute(3, 0, 1, 2)  # (T, S, S, C) -> (C, T, S, S)
    return x.contiguous()


def _minmax(x: torch.Tensor) -> torch.Tensor:
    """Each channel of (C, F, F) scaled to 0..1 (a constant channel becomes 0)."""
    low = x.amin(dim=(1, 2), keepdim=True)
    span = x.amax(dim=(1, 2), keepdim=True) - low
    return torch.where(span > 0, (x - low) / span.clamp_min(1e-12), torch.zeros_like(x))


def _png_bgr(x: torch.Tensor) -> torch.Tensor:
    """(u, v, strain) (3, F, F) -> the interchange PNG's pixels as OpenCV reads them: 0..255 integers,
    (strain, v, u)."""
    return torch.round(_minmax(x) * 255.0).flip(0)  # channel order (u, v, strain) -> (strain, v, u)


def flow_input_to_uvs(x: torch.Tensor | np.ndarray, encoding: str = "unit") -> np.ndarray:
    """A flow model's input (C, F, F) back to (u, v[, strain]) order in 0..1, float32 (F, F, C), for figures."""
    image = np.asarray(x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float32)
    if encoding == "bgr255":
        image = image[::-1] / 255.0  # (strain, v, u) 0..255 -> (u, v, strain) 0..1
    return np.ascontiguousarray(image.transpose(1, 2, 0))  # (C, F, F) -> (F, F, C)


class FlowDataset(_PositionedDataset):
    """Onset→apex flow images as ``(x float32 (len(channels), F, F), label int)`` for 2D flow models.

    ``source`` is a ClipStore built with ``flow=FlowConfig(...)`` (its ``flow`` array) or a pair
    ``(images (N, F, F, 3), labels (N,))``, e.g. from ``merkit.data.flow.import_flow_folder``.
    ``channels`` names the channels to give, in that order, from ``FLOW_CHANNELS`` = (u, v, strain): all three
    for STSTNet, ``("u", "v")`` for Off-ApexNet (which has one stream per flow component and no strain
    input). The selection lives here, in the data, so that a model's declared input is exactly what it gets.
    ``normalise='minmax'`` scales each channel of each image to 0..1 (the interchange format's convention),
    ``'none'`` keeps the values. ``encoding='bgr255'`` (the authors' STSTNet input; ``InputSpec.encoding``)
    gives instead what OpenCV reads from the interchange PNG: each channel min-max scaled to 0..255 and
    rounded to integers like the 8-bit file, channels in B, G, R order = (strain, v, u); it needs all three
    channels. Augmentation is a horizontal flip (with u negated, as the motion mirrors) with probability
    ``flip`` when ``augment`` is True.
    """

    def __init__(
        self,
        source: Any,
        positions: np.ndarray | list[int] | None = None,
        *,
        augment: bool = False,
        seed: int = 0,
        normalise: str = "minmax",
        flip: float = 0.5,
        channels: Sequence[str] = FLOW_CHANNELS,
        encoding: str = "unit",
    ) -> None:
        if normalise not in ("minmax", "none"):
            raise ValueError(f"normalise={normalise!r}; expected 'minmax' or 'none'")
        if encoding not in ("unit", "bgr255"):
            raise ValueError(f"encoding={encoding!r}; expected 'unit' or 'bgr255'")
        channels = (channels,) if isinstance(channels, str) else tuple(channels)
        if encoding == "bgr255" and tuple(channels) != FLOW_CHANNELS:
            raise ValueError(
                f"encoding='bgr255' is the 3-channel PNG: channels must be {FLOW_CHANNELS}, got {channels!r}"
            )
        self.encoding = encoding
        unknown = [c for c in channels if c not in FLOW_CHANNELS]
        if unknown or not channels or len(set(channels)) != len(channels):
            raise ValueError(f"channels={channels!r}; expected distinct names from {FLOW_CHANNELS}")
        if isinstance(source, tuple):
            self.images, labels = source
            all_labels = np.asarray(labels, dtype=np.int64)
        else:
            if getattr(source, "flow", None) is None:
                raise ValueError(f"{source!r} has no flow: build the store with flow=FlowConfig(...)")
            self.images = source.flow
            all_labels = _labels_of(source, np.arange(len(source.flow)))
        n = len(self.images)
        self.positions = np.arange(n, dtype=np.int64) if positions is None else np.asarray(positions, dtype=np.int64)
        self._labels = all_labels[self.positions]
        self.augment, self.seed, self.epoch, self.normalise, self.flip = bool(augment), int(seed), 0, normalise, flip
        self.channels = channels
        self._channel_index = [FLOW_CHANNELS.index(c) for c in channels]

    def __getitem__(self, item: int) -> tuple[torch.Tensor, int]:
        position = int(self.positions[item])
        x = torch.from_numpy(np.array(self.images[position], dtype=np.float32)).permute(
            2, 0, 1
        )  # (F, F, 3) -> (3, F, F)
        if self.augment and _item_rng(self.seed, self.epoch, position).random() < self.flip:
            sign = torch.tensor([-1.0, 1.0, 1.0]).view(3, 1, 1)  # mirrored motion: u changes sign
            x = torch.flip(x, dims=(2,)) * sign
        return _flow_values(x, self._channel_index, self.encoding, self.normalise), int(self._labels[item])


def _flow_values(x: torch.Tensor, channel_index: Sequence[int], encoding: str, normalise: str) -> torch.Tensor:
    """(u, v, strain) (3, F, F) -> the chosen channels in the model's value encoding (len(channels), F, F)."""
    x = x[list(channel_index)]  # (3, F, F) -> (len(channels), F, F), after any flip that needs u's position
    if encoding == "bgr255":
        return _png_bgr(x).contiguous()
    if normalise == "minmax":
        x = _minmax(x)
    return x.contiguous()


def flow_tensor(
    image: np.ndarray, channels: Sequence[str] = FLOW_CHANNELS, encoding: str = "unit", normalise: str = "minmax"
) -> torch.Tensor:
    """One stored flow image (F, F, 3) (u, v, strain) as a flow model reads it: float32 (len(channels), F, F).

    The same values :class:`FlowDataset` gives without augmentation (``merkit.predict`` calls it for a user's clip).
    """
    dataset = FlowDataset(
        (np.asarray(image)[None], np.array([-1])), channels=channels, encoding=encoding, normalise=normalise
    )
    return dataset[0][0]
