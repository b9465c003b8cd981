"""What a model reads, chosen once from its ``InputSpec.kind``: clips for 3D models, flow images for 2D ones.

Axis letters: b batch, c channels, t frames, s clip side, f flow image side.

``input_adapter(spec)`` returns the one object that knows, for its kind of input:

- the torch Dataset a fold reads from a clip store (:meth:`InputAdapter.dataset`; ``model_dataset`` is the
  same as one function) and what a store lacks for it (:meth:`InputAdapter.store_problem`);
- a user's single clip as the model's input (:meth:`InputAdapter.single_input`, what ``merkit.predict``
  feeds), computed by the same code as the training items;
- a stacked example batch from a store (:meth:`InputAdapter.example`), the memory format training may use
  (:meth:`InputAdapter.memory_format`);
- how ``merkit.explain`` lifts the input to the (b, c, t, h, w) volume every attribution method works on,
  and back (:meth:`InputAdapter.to_volume`, :meth:`InputAdapter.from_volume`, :meth:`InputAdapter.forward`),
  with the facts the methods need (default baseline, Grad-CAM's conv type, whether there are frames and a
  learned attention), and the region each input is scored against (:meth:`InputAdapter.motion_regions`);
- which figure shows one explained prediction (:attr:`InputAdapter.overlay`; ``merkit.predict`` draws it,
  since figures need ``merkit.explain`` and ``merkit.viz``, floors above this one).

A ``clip`` model reads (c, t, s, s) clips; a ``flow`` model one onset→apex flow image (c, f, f) per sample,
seen by the attribution methods as a one-frame clip (c, 1, f, f). Models without an ``input_spec`` (toy
models in tests) read clips.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Sequence

import cv2
import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import Dataset

from merkit.data.flow import FlowConfig
from merkit.data.store import onset_apex_flow
from merkit.data.torch_dataset import (
    FLOW_CHANNELS,
    Augmentation,
    ClipDataset,
    FlowDataset,
    clip_statistics,
    clip_tensor,
    flow_tensor,
)
from merkit.errors import MerkitValueError

__all__ = ["INPUT_KINDS", "ClipInput", "FlowInput", "InputAdapter", "InputKindError", "input_adapter", "model_dataset"]


class InputKindError(MerkitValueError):
    """A model declares an input kind the kit has no adapter for, or data that does not fit its kind."""


@dataclass(frozen=True)
class InputAdapter:
    """The input of one model (``spec`` is its ``input_spec``; None for a model without one, read as clips).

    Subclasses set the class facts below and implement the kind-specific methods; everything else is shared.
    """

    spec: Any = None

    kind: ClassVar[str]
    #: What one input is called in messages ("clips", "flow images").
    noun: ClassVar[str]
    #: True when the model reads the store's flow (a saved model keeps the FlowConfig to compute it again).
    needs_flow: ClassVar[bool]
    #: True when the input has a time axis (clips); a flow image's one "frame" stands for the apex.
    has_frames: ClassVar[bool]
    #: True when a model of this kind can have learned spatio-temporal attention (MERANet reads clips).
    can_attend: ClassVar[bool]
    #: The IG / occlusion / ablation baseline when none is given (a flow image has no onset frame).
    default_baseline: ClassVar[str]
    #: The layer type Grad-CAM defaults to (the model's last one with more than one channel).
    cam_conv: ClassVar[type[nn.Module]]
    #: The explained-prediction figure: "attention" (the learned attention, else Grad-CAM, on the apex
    #: frame) or "ig_flow" (IG against an all-zero image beside the flow image).
    overlay: ClassVar[str]

    # ---------------------------------------------------------------- data

    def dataset(
        self, store: Any, positions: np.ndarray, *, augment: bool | Augmentation = False, seed: int = 0
    ) -> Dataset:
        """The unaugmented (or, with ``augment``, training) Dataset this model reads for store rows ``positions``."""
        raise NotImplementedError

    def store_problem(self, store: Any, model_name: str) -> str | None:
        """Why ``store`` cannot feed this model (missing data, wrong shape), or None when it can."""
        if self.spec is None:  # nothing declared to check against
            return None
        missing = self._missing(store, model_name)
        if missing is not None:
            return missing
        x, _ = self.dataset(store, np.array([0]))[0]
        expected = tuple(self.spec.shape(1)[1:])
        if tuple(x.shape) != expected:
            return (
                f"model {model_name!r} expects {self.noun} {self.spec.layout} = {(1, *expected)}, but the store "
                f"gives {tuple(x.shape)} per clip; {self._shape_hint()}"
            )
        return None

    def example(self, store: Any, n: int = 2) -> Tensor:
        """The first ``n`` inputs of ``store`` (repeated when it holds fewer), stacked: (n, c, [t,] h, w)."""
        rows = np.arange(n) % len(store.index)
        return self.inputs(store, rows)

    def inputs(self, store: Any, positions: Sequence[int] | np.ndarray) -> Tensor:
        """The unaugmented inputs of store rows ``positions``, stacked: (n, c, [t,] h, w)."""
        dataset = self.dataset(store, np.asarray(positions, dtype=np.int64))
        return torch.stack([dataset[i][0] for i in range(len(dataset))])  # n x (c, [t,] h, w) -> (n, c, [t,] h, w)

    def single_input(
        self,
        frames: np.ndarray,
        numbers: np.ndarray,
        processed: Any,
        *,
        flow: dict[str, Any] | None = None,
        normalise: str = "clip",
        stats: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> Tensor:
        """One user clip as the model's input batch (1, c, [t,] h, w), made by the training items' code.

        ``frames``/``numbers`` are the clip as read (T, H, W, 3) and its frame numbers; ``processed`` the
        preprocessing result (``clip`` (T, S, S, C) uint8, ``apex``, ``box``); ``flow`` the bundle's flow config
        (flow models); ``normalise``/``stats`` the bundle's clip normalisation (clip models).
        """
        raise NotImplementedError

    def memory_format(self, device: torch.device, autocast_dtype: torch.dtype | None) -> torch.memory_format | None:
        """The memory format training puts model and batches in (None: leave it alone)."""
        return None

    def motion_regions(self, store: Any, positions: np.ndarray) -> tuple[np.ndarray | None, str]:
        """The region each input of store rows ``positions`` is scored against, bool (n, side, side) on the
        input's grid, and where it came from; (None, reason) when the store has none."""
        raise NotImplementedError

    # ---------------------------------------------------------------- explain

    def check_batch(self, x: Tensor, model_name: str) -> None:
        """ValueError unless ``x`` has this kind's rank (any batch, channels and size)."""
        rank = 5 if self.has_frames else 4
        if x.dim() != rank:
            layout = "a clip batch (b, c, t, h, w)" if self.has_frames else "a flow-image batch (b, c, h, w)"
            raise InputKindError(f"{model_name} is a {self.kind} model: it needs {layout}, got {tuple(x.shape)}")

    def to_volume(self, x: Tensor) -> Tensor:
        """The input (or a same-shaped baseline / mask / Grad-CAM map) as a volume (b, c, t, h, w)."""
        return x

    def from_volume(self, heat: Tensor) -> Tensor:
        """A map over the volume (b, t, h, w) back to the input's own layout."""
        return heat

    def volume_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """A window or stride of the input's layout ((t, h, w), or (h, w) for flow) in the volume's (t, h, w)."""
        return tuple(shape)

    def input_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        """A window or stride in the volume's (t, h, w) back in the input's layout."""
        return tuple(shape)

    def forward(self, model: nn.Module) -> Callable[[Tensor], Tensor]:
        """``model`` as a function of the volume (what the attribution methods call)."""
        return model

    # ---------------------------------------------------------------- per kind

    def _missing(self, store: Any, model_name: str) -> str | None:
        raise NotImplementedError

    def _shape_hint(self) -> str:
        raise NotImplementedError


@dataclass(frozen=True)
class ClipInput(InputAdapter):
    """Clips (c, t, s, s) from the store's ``clips`` (:class:`~merkit.data.torch_dataset.ClipDataset`)."""

    kind: ClassVar[str] = "clip"
    noun: ClassVar[str] = "clips"
    needs_flow: ClassVar[bool] = False
    has_frames: ClassVar[bool] = True
    can_attend: ClassVar[bool] = True
    default_baseline: ClassVar[str] = "onset"
    cam_conv: ClassVar[type[nn.Module]] = nn.Conv3d
    overlay: ClassVar[str] = "attention"

    def dataset(
        self, store: Any, positions: np.ndarray, *, augment: bool | Augmentation = False, seed: int = 0
    ) -> Dataset:
        return ClipDataset(store, positions, augment=augment, seed=seed)

    def single_input(
        self,
        frames: np.ndarray,
        numbers: np.ndarray,
        processed: Any,
        *,
        flow: dict[str, Any] | None = None,
        normalise: str = "clip",
        stats: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> Tensor:
        clip = np.asarray(processed.clip)
        if normalise == "dataset" and stats is None:  # no training statistics kept: the clip's own
            stats = clip_statistics(clip[None])
        x = clip_tensor(clip.astype(np.float32) / 255.0, normalise, stats)  # (T, S, S, C) uint8 -> (c, t, s, s)
        return x[None]  # (c, t, s, s) -> (1, c, t, s, s)

    def memory_format(self, device: torch.device, autocast_dtype: torch.dtype | None) -> torch.memory_format | None:
        # channels_last_3d for bf16 on CPU: where the bf16 speed-up comes from (benchmarks/bench_precision.py).
        if device.type == "cpu" and autocast_dtype is torch.bfloat16:
            return torch.channels_last_3d
        return None

    def motion_regions(self, store: Any, positions: np.ndarray) -> tuple[np.ndarray | None, str]:
        """The store's true motion masks (only SynthME stores have them), bool (n, s, s)."""
        masks = getattr(store, "masks", None)
        if masks is None:
            return None, "the clip store has no motion masks (only SynthME stores do)"
        return np.asarray(masks)[np.asarray(positions)], "motion mask"

    def _missing(self, store: Any, model_name: str) -> str | None:
        if getattr(store, "clips", True) is None:  # a flow-folder store: flow images only
            return (
                f"model {model_name!r} reads clips, {self.spec.describe()}, "
                f"but the store at {getattr(store, 'path', '?')} holds "
                "only flow images (a flow folder, no frames): use a flow model (ststnet, ststnet_kit, offapexnet)"
            )
        return None

    def _shape_hint(self) -> str:
        return (
            "make the preprocessing frames/size/colour match the model "
            "(or override the model's frames/size/in_channels)"
        )


@dataclass(frozen=True)
class FlowInput(InputAdapter):
    """One onset→apex flow image (c, f, f) per sample from the store's ``flow``, in the model's channels
    (the first ``spec.channels`` of u, v, strain) and value encoding (``spec.encoding``)."""

    kind: ClassVar[str] = "flow"
    noun: ClassVar[str] = "flow images"
    needs_flow: ClassVar[bool] = True
    has_frames: ClassVar[bool] = False
    can_attend: ClassVar[bool] = False
    default_baseline: ClassVar[str] = "zeros"
    cam_conv: ClassVar[type[nn.Module]] = nn.Conv2d
    overlay: ClassVar[str] = "ig_flow"

    @property
    def channels(self) -> tuple[str, ...]:
        """The flow channels this model reads: (u, v, strain) for STSTNet, (u, v) for Off-ApexNet.

        Chosen from the model's declared input, so the model gets exactly the channels it declares (rather
        than taking all three and silently ignoring strain).
        """
        if self.spec.channels not in (2, 3):
            raise InputKindError(
                "a flow model must take 2 channels (u, v) or 3 (u, v, strain), "
                f"this one declares {self.spec.describe()}"
            )
        return FLOW_CHANNELS[: self.spec.channels]

    @property
    def encoding(self) -> str:
        return getattr(self.spec, "encoding", "unit")

    def dataset(
        self, store: Any, positions: np.ndarray, *, augment: bool | Augmentation = False, seed: int = 0
    ) -> Dataset:
        # A flow image has no frames to shift: of an Augmentation only its flip probability applies.
        flip = augment.flip if isinstance(augment, Augmentation) else Augmentation().flip
        return FlowDataset(
            store,
            positions,
            augment=bool(augment),
            seed=seed,
            flip=flip,
            channels=self.channels,
            encoding=self.encoding,
        )

    def single_input(
        self,
        frames: np.ndarray,
        numbers: np.ndarray,
        processed: Any,
        *,
        flow: dict[str, Any] | None = None,
        normalise: str = "clip",
        stats: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> Tensor:
        if flow is None:
            raise InputKindError("a flow model's input needs the flow config it was trained with")
        onset = int(np.asarray(numbers)[0])
        image = onset_apex_flow(frames, numbers, onset, processed.apex, processed.box, FlowConfig(**flow))  # (F, F, 3)
        return flow_tensor(image, self.channels, self.encoding)[None]  # (c, f, f) -> (1, c, f, f)

    def motion_regions(
        self, store: Any, positions: np.ndarray, *, top_fraction: float = 0.1
    ) -> tuple[np.ndarray | None, str]:
        """The region each flow image is scored against, bool (n, f, f), and where it came from.

        With true motion masks in the store (SynthME) they are resized (nearest) from the clip side to the flow
        side: the flow is computed on the same face crop, so the two frames line up (``"motion mask"``). Without
        them (a real dataset, a flow folder) the region is the ``top_fraction`` of pixels that move most,
        ``sqrt(u² + v²)`` about each image's median (the still face): ``"largest flow"``. That asks whether the
        model looks where the face moves, not whether the motion is the expression's (no ground truth exists).
        """
        if getattr(store, "flow", None) is None:
            raise InputKindError(f"{store!r} has no flow images: build it with flow (prepare_data(..., flow='tvl1'))")
        flow = np.asarray(store.flow[np.asarray(positions)], dtype=np.float32)  # (n, F, F, 3)
        side = flow.shape[1]
        masks = getattr(store, "masks", None)
        if masks is not None:
            chosen = np.asarray(masks[np.asarray(positions)], dtype=np.uint8)  # (n, S, S)
            resized = [cv2.resize(m, (side, side), interpolation=cv2.INTER_NEAREST) for m in chosen]
            return np.stack(resized).astype(bool), "motion mask"
        centred = flow[..., :2] - np.median(flow[..., :2], axis=(1, 2), keepdims=True)
        magnitude = np.hypot(centred[..., 0], centred[..., 1]).reshape(len(flow), -1)  # (n, F, F) -> (n, F·F)
        cut = np.quantile(magnitude, 1.0 - top_fraction, axis=1, keepdims=True)
        return (magnitude >= cut).reshape(len(flow), side, side), "largest flow"

    def to_volume(self, x: Tensor) -> Tensor:
        return x[:, :, None] if x.dim() == 4 else x  # (b, c, h, w) -> (b, c, 1, h, w): a one-frame clip

    def from_volume(self, heat: Tensor) -> Tensor:
        return heat[:, 0]  # (b, 1, h, w) -> (b, h, w): the flow image's one "frame"

    def volume_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        return (1, *tuple(shape)[-2:])

    def input_shape(self, shape: Sequence[int]) -> tuple[int, ...]:
        return tuple(shape)[-2:]

    def forward(self, model: nn.Module) -> Callable[[Tensor], Tensor]:
        def on_image(volume: Tensor) -> Tensor:
            return model(volume[:, :, 0])  # (b, c, 1, h, w) -> (b, c, h, w): the model sees its own input

        return on_image

    def _missing(self, store: Any, model_name: str) -> str | None:
        if getattr(store, "flow", None) is None:
            where = getattr(store, "path", None)
            return (
                f"model {model_name!r} reads onset→apex flow images, {self.spec.describe()}, but the store"
                f"{f' at {where}' if where else ''} has no flow (no flow.npy): build the store with "
                "flow=FlowConfig(...) (merkit.data.store.build_store), or prepare it with "
                "prepare_data(..., flow='tvl1') (any method of merkit.data.flow.FLOW_METHODS)"
            )
        return None

    def _shape_hint(self) -> str:
        return f"build the store's flow with FlowConfig(size={self.spec.size}) (or override the model's size)"


#: The adapter class of each ``InputSpec.kind``.
INPUT_KINDS: dict[str, type[InputAdapter]] = {"clip": ClipInput, "flow": FlowInput}


def input_adapter(spec_or_model: Any) -> InputAdapter:
    """The adapter of a model's input: pass its ``input_spec`` (or the model itself; None reads clips).

    Raises :class:`InputKindError` naming the known kinds for a spec of another kind.
    """
    spec = spec_or_model
    if isinstance(spec_or_model, nn.Module):
        spec = getattr(spec_or_model, "input_spec", None)
    if spec is None:
        return ClipInput(None)
    kind = getattr(spec, "kind", None)
    if kind not in INPUT_KINDS:
        raise InputKindError(f"no input adapter for input kind {kind!r} ({spec!r}); known kinds: {sorted(INPUT_KINDS)}")
    return INPUT_KINDS[kind](spec)


def model_dataset(spec: Any, store: Any, positions: np.ndarray, *, augment: Any, seed: int) -> Dataset:
    """The torch Dataset a model with input ``spec`` (its ``input_spec``) reads from ``store``:
    ``input_adapter(spec).dataset(store, positions, augment=augment, seed=seed)``.

    ``augment`` is False, True (default augmentation) or an :class:`~merkit.data.torch_dataset.Augmentation`;
    a flow dataset takes only its ``flip`` probability (a flow image has no frames to shift).
    """
    return input_adapter(spec).dataset(store, positions, augment=augment, seed=seed)
