"""Predict on one clip of your own (a video or a folder of frames) with a trained model: `merkit predict`.

The trained model travels as a *model bundle* (``save_model`` / ``load_model``): the weights plus everything
needed to feed it a new clip exactly as in training: the registry name and constructor arguments, the class
names, the preprocessing config and the input normalisation. ``02_train.ipynb`` writes ``run_dir/model.pt``.

``predict_clip(path, run_dir=… | checkpoint=…)``:

1. reads frames ``onset..offset`` (frame numbers; default the whole clip) with ``merkit.data.io.read_clip``;
2. preprocesses them like the training data, except the face crop: training data that came already cropped
   (``crop='dataset'``, or ``'auto'``, which read each training clip's manifest flag) says nothing about a
   user's clip, which has no manifest and is taken as raw footage, so ``crop='auto'`` detects the face with OpenCV's
   Haar cascade on the onset frame (centred square if no face, or if the cascade file is not installed:
   OpenCV 5 wheels no longer ship it; ``apt-get install opencv-data`` provides it) and says which it used;
   ``crop='haar'`` insists on a face: a clip where the cascade finds none is refused (`PredictError`);
3. turns it into the model's input with its input adapter (``merkit.data.inputs.input_adapter``: the same code
   as the training items) and returns class probabilities;
4. writes an overlay PNG of the model's learned spatio-temporal attention (Grad-CAM for models without
   attention) on the clip position that shows the apex (`apex_position`; not the map's own peak, which often
   sits at the onset where nothing moves), and ``prediction.json``.

Flow models (``ststnet``, ``offapexnet``) are bundled with the ``FlowConfig`` of the store they were trained
on. For them step 3 computes the onset→apex flow image on the face crop with the store's own function
(``merkit.data.store.onset_apex_flow``) and feeds it through the training dataset code
(``FlowInput.single_input``: the model's channels and value encoding); ``apex`` (a frame number) should
be given, else the preprocessing's missing-apex rule applies (the middle frame by default). Step 4 then
writes ``attribution.png``: the flow image (u, v, strain as R, G, B) beside the |Integrated Gradients| map
of the predicted class (all-zero image as baseline) over the flow magnitude.

Axis letters: b batch, c channels, t frames, h/w/s pixels.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure
from torch import nn

from merkit import explain, viz
from merkit._io import to_jsonable
from merkit.config import upgrade_saved
from merkit.data.inputs import InputAdapter, input_adapter
from merkit.data.io import FRAME_EXTENSIONS, VIDEO_EXTENSIONS, Clip, is_video, list_frames, read_clip
from merkit.data.preprocess import (
    PreprocessConfig,
    PreprocessError,
    find_haar_cascade,
    preprocess_clip_detailed,
    temporal_sample,
)
from merkit.data.torch_dataset import flow_input_to_uvs
from merkit.errors import MerkitValueError
from merkit.models import create_model
from merkit.training.fold import resolve_device
from merkit.training.runs import atomic_torch_save, atomic_write_json, config_differences

__all__ = [
    "BUNDLE_FORMAT",
    "PredictError",
    "StaleModelError",
    "ModelBundle",
    "Prediction",
    "save_model",
    "load_model",
    "predict_clip",
]

BUNDLE_FORMAT = "merkit-model/1"
#: File name of the model bundle inside a run directory.
RUN_MODEL_FILE = "model.pt"


class PredictError(MerkitValueError):
    """The clip, the run or the checkpoint cannot be used for prediction; the message names the file."""


class StaleModelError(PredictError):
    """A model bundle was trained under other parameters than the ones asked for (``load_model(expect=…)``)."""


# Config keys that do not change which network a bundle holds (scheduling, and where it ran).
_MODEL_IRRELEVANT_KEYS = frozenset({"protocol.executor", "protocol.workers", "protocol.ray_address", "train.device"})


@dataclass
class ModelBundle:
    """A trained model ready for new clips: the network (eval mode) and how its inputs were made."""

    model: nn.Module
    classes: list[str]
    preprocess: dict[str, Any]  # PreprocessConfig fields
    normalise: str = "clip"  # ClipDataset normalise mode used in training
    stats: tuple[np.ndarray, np.ndarray] | None = None  # per-channel mean/std for normalise="dataset"
    path: Path | None = None
    flow: dict[str, Any] | None = None  # FlowConfig fields of the training store (flow models only)
    run_config: dict[str, Any] | None = None  # the RunConfig (dict) it was trained under; None from an older kit
    written: dict[str, Any] | None = None  # when, where (run directory) and on which host it was written


def save_model(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    classes: list[str],
    preprocess: Any,
    normalise: str = "clip",
    stats: tuple[np.ndarray, np.ndarray] | None = None,
    flow: Any = None,
    run_config: Any = None,
) -> Path:
    """Write a model bundle (atomically). ``model`` must come from ``merkit.models.create_model`` (it records
    ``model_config``); ``preprocess`` is the ``PreprocessConfig`` (or its dict) the training clips went through;
    ``flow`` the ``FlowConfig`` (or its dict) of the training store's flow images, required for a flow model
    (pass ``store.flow_config``) and ignored for clip models. ``run_config`` (a ``RunConfig`` or its dict) is the
    configuration it was trained under: recorded with when and where the file was written, so that
    ``load_model(path, expect=config)`` can refuse a model trained under other parameters."""
    config = getattr(model, "model_config", None)
    if not config:
        raise PredictError("save_model needs a model built by merkit.models.create_model (no model_config)")
    if input_adapter(model).needs_flow:
        if flow is None:
            raise PredictError(
                f"save_model: {config.get('name')!r} is a flow model; pass flow=store.flow_config so predict "
                "computes the same flow image as training"
            )
        flow = flow.to_dict() if hasattr(flow, "to_dict") else dict(flow)
    else:
        flow = None
    preprocess = preprocess.to_dict() if hasattr(preprocess, "to_dict") else dict(preprocess)
    bundle = {
        "format": BUNDLE_FORMAT,
        "model_config": dict(config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "classes": list(classes),
        "preprocess": preprocess,
        "normalise": normalise,
        "stats": None if stats is None else [np.asarray(s, dtype=np.float32).tolist() for s in stats],
        "flow": flow,
        "run_config": None if run_config is None else json.dumps(_config_dict(run_config), sort_keys=True),
        "written": json.dumps(
            {
                "time": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                "run_dir": str(Path(path).resolve().parent),
                "host": socket.gethostname(),
            }
        ),
    }
    return atomic_torch_save(bundle, path)


def _config_dict(config: Any) -> dict[str, Any]:
    """A RunConfig (or dict) as plain JSON values, so it compares equal to what a bundle recorded."""
    return json.loads(json.dumps(to_jsonable(config.to_dict() if hasattr(config, "to_dict") else dict(config))))


def check_model_config(bundle: "ModelBundle", expect: Any) -> None:
    """Raise `StaleModelError` unless ``bundle`` was trained under ``expect`` (a ``RunConfig`` or its dict), up to
    scheduling keys; the message names the file, where and when it was written, and every parameter that differs."""
    where = bundle.path or "the model bundle"
    if bundle.run_config is None:
        raise StaleModelError(
            f"{where} has no record of the parameters it was trained under (written by an older kit), so it "
            "cannot be checked against this notebook's; re-run 02_train (or delete the file) to train it again"
        )
    differences = config_differences(bundle.run_config, _config_dict(expect), _MODEL_IRRELEVANT_KEYS)
    if differences:
        written = bundle.written or {}
        raise StaleModelError(
            f"{where} was trained under other parameters (written {written.get('time', '?')} by the run in "
            f"{written.get('run_dir', '?')} on {written.get('host', '?')}), so it is not the model of these "
            f"parameters:\n  "
            + "\n  ".join(differences)
            + "\nRe-run 02_train with these parameters (or delete the file) before explaining it."
        )


def _bundle_path(run_dir: str | os.PathLike | None, checkpoint: str | os.PathLike | None) -> Path:
    if checkpoint:
        path = Path(checkpoint)
        if not path.is_file():
            raise PredictError(f"checkpoint {path} does not exist")
        return path
    if not run_dir:
        raise PredictError("give a run directory (--run) or a checkpoint (--checkpoint)")
    run = Path(run_dir)
    if not run.is_dir():
        raise PredictError(f"run directory {run} does not exist")
    path = run / RUN_MODEL_FILE
    if not path.is_file():
        raise PredictError(f"run {run} has no {RUN_MODEL_FILE} (02_train.ipynb writes it; run the pipeline first)")
    return path


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu", *, expect: Any = None) -> ModelBundle:
    """Read a model bundle written by `save_model`; the model is rebuilt from the registry, in eval mode.

    With ``expect`` (the ``RunConfig`` of the caller), a bundle trained under other parameters, or one that does
    not say, raises `StaleModelError` naming the file, its origin and the differing parameters (see
    `check_model_config`): a notebook never explains an old network as the current one."""
    path = Path(path)
    try:
        bundle = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user error
        raise PredictError(f"{path} is not a readable model bundle ({type(err).__name__}: {err})") from None
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        raise PredictError(f"{path} is not a merkit model bundle (expected format {BUNDLE_FORMAT})")
    config = dict(bundle["model_config"])
    name = config.pop("name")
    num_classes = config.pop("num_classes")
    model = create_model(name, num_classes=num_classes, **config)
    model.load_state_dict(bundle["state_dict"])
    model.to(device).eval()
    stats = bundle.get("stats")
    loaded = ModelBundle(
        model=model,
        classes=list(bundle["classes"]),
        preprocess=dict(bundle["preprocess"]),
        normalise=bundle.get("normalise", "clip"),
        stats=None if stats is None else (np.asarray(stats[0], np.float32), np.asarray(stats[1], np.float32)),
        path=path,
        flow=None if bundle.get("flow") is None else dict(bundle["flow"]),
        # A bundle of an older kit records its run config under older key names: read under today's.
        run_config=None
        if bundle.get("run_config") is None
        else upgrade_saved(json.loads(bundle["run_config"]), "config"),
        written=None if bundle.get("written") is None else json.loads(bundle["written"]),
    )
    if expect is not None:
        check_model_config(loaded, expect)
    return loaded


@dataclass
class Prediction:
    """The outcome of `predict_clip`."""

    clip: Path
    classes: list[str]
    probabilities: np.ndarray  # (k,) softmax over classes
    crop: str  # the face crop used ("haar", "center", …) and why, when it fell back
    frames_read: int
    overlay: Path | None
    json_path: Path | None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def predicted(self) -> str:
        return self.classes[int(np.argmax(self.probabilities))]

    def table(self) -> pd.DataFrame:
        """Classes and probabilities, most likely first."""
        frame = pd.DataFrame({"class": self.classes, "probability": self.probabilities})
        return frame.sort_values("probability", ascending=False, ignore_index=True)

    def describe(self) -> str:
        lines = [
            f"clip: {self.clip} ({self.frames_read} frames read; crop: {self.crop})",
            f"predicted: {self.predicted}",
        ]
        lines += [f"  {row['class']:<12} {row['probability']:.3f}" for _, row in self.table().iterrows()]
        if self.overlay is not None:
            lines.append(f"{self.extra.get('overlay_method', 'attention')} overlay: {self.overlay}")
        if self.json_path is not None:
            lines.append(f"prediction: {self.json_path}")
        return "\n".join(lines)


def _crop_config(preprocess: dict[str, Any], crop: str) -> tuple[dict[str, Any], str]:
    """Preprocessing for a user's clip: the training config with the face crop chosen for raw footage."""
    config = dict(preprocess)
    if crop == "auto":
        if preprocess.get("crop") not in ("dataset", "auto", None):
            crop = preprocess["crop"]
        else:
            try:
                find_haar_cascade(preprocess.get("haar_cascade", ""))
                crop = "haar"
            except PreprocessError:
                config["crop"] = "center"
                return config, "center (no Haar cascade file installed: apt-get install opencv-data)"
    config["crop"] = crop
    if crop == "haar":
        config["no_face"] = "center"  # a clip with no face is refused by `predict_clip`, with the CLI's words
    return config, crop


def _check_clip_path(clip: Path) -> None:
    """Refuse what is not a clip before the model is loaded: a missing path, one image, another kind of file."""
    if not clip.exists():
        raise PredictError(f"clip {clip} does not exist (give a video file or a folder of frames)")
    if clip.is_dir() or is_video(clip):
        return
    if clip.suffix.lower() in FRAME_EXTENSIONS:
        raise PredictError(
            f"clip {clip} is one image, not a clip: give the folder of its frames or a video file "
            f"({', '.join(VIDEO_EXTENSIONS)})"
        )
    raise PredictError(f"clip {clip} is neither a folder of frames nor a video file ({', '.join(VIDEO_EXTENSIONS)})")


def _check_frame_range(clip: Path, onset: int | None, apex: int | None, offset: int | None) -> None:
    """Refuse an onset, apex or offset outside a frame folder's frames, naming it and the frames there are (a
    video's range is checked by `read_clip` once it is opened)."""
    if not clip.is_dir():
        return
    frames = list_frames(clip, sample=clip.name)
    if not frames:
        raise PredictError(f"clip {clip} holds no frame files ({', '.join(FRAME_EXTENSIONS)})")
    first, last = frames[0][0], frames[-1][0]
    low = first if onset is None else onset
    high = last if offset is None else offset
    for what, value in (("onset", onset), ("apex", apex), ("offset", offset)):
        if value is not None and not first <= value <= last:
            raise PredictError(
                f"{what} {value} is outside clip {clip}: its frames are numbered {first}..{last} "
                f"({len(frames)} frame files)"
            )
    if low > high:
        raise PredictError(f"onset {low} is after offset {high} for clip {clip} (frames {first}..{last})")
    if apex is not None and not low <= apex <= high:
        raise PredictError(f"apex {apex} is outside the onset..offset range {low}..{high} of clip {clip}")


def apex_position(numbers: np.ndarray, onset: int, apex: int, offset: int, config: Any) -> int:
    """The position (0..T-1) of the preprocessed clip that shows the apex frame number ``apex``.

    Each output frame is a weighted mix of source frames (`merkit.data.preprocess.temporal_sample`); its frame
    number is the weighted mean of theirs, and the position whose number is nearest the apex wins.
    """
    used, weights = temporal_sample(np.asarray(numbers), int(onset), int(apex), int(offset), config)
    sampled = weights @ np.asarray(numbers)[used].astype(np.float64)  # (T, U) @ (U,) -> (T,) frame numbers
    return int(np.argmin(np.abs(sampled - float(apex))))


def _save_figure(figure: Any, path: Path) -> Path:
    tmp = path.parent / f".{path.stem}.tmp.png"
    figure.savefig(tmp, dpi=120)
    os.replace(tmp, path)
    return path


def _attention(model: nn.Module, x: torch.Tensor) -> Any:
    if hasattr(model, "attention_maps"):
        try:
            return explain.learned_attention(model, x)
        except ValueError:
            pass  # every spatio-temporal attention ablated: fall back to Grad-CAM
    return explain.attribute(model, x, "gradcam")


def _flow_figure(x: torch.Tensor, attribution: Any, title: str, encoding: str = "unit") -> Figure:
    """The flow image x (c, f, f) as RGB (u, v, strain; a missing strain channel black) beside the attribution
    magnitude (f, f) laid over the flow magnitude sqrt(u² + v²) (about the median) in grey. ``encoding`` is the
    model's ``input_spec.encoding`` (a ``bgr255`` input is put back in u, v, strain order first)."""
    image = flow_input_to_uvs(x, encoding)  # (c, f, f) -> (f, f, c) in (u, v[, strain]) order
    shown = np.zeros((*image.shape[:2], 3), dtype=np.float32)
    shown[..., : image.shape[2]] = image[..., :3]
    low, high = shown.min(axis=(0, 1)), shown.max(axis=(0, 1))
    shown = (shown - low) / np.where(high > low, high - low, 1.0)  # per channel to 0..1 for display
    # The input is min-max scaled, so "no motion" is not 0: measure u and v from their median (the still face).
    centred = image[..., :2] - np.median(image[..., :2], axis=(0, 1))
    magnitude = np.hypot(centred[..., 0], centred[..., 1])
    heat = attribution.magnitude()[0].numpy()
    figure = Figure(figsize=(6.4, 3.2), layout="constrained")
    flow_ax, heat_ax = figure.subplots(1, 2)
    flow_ax.imshow(shown)
    flow_ax.set_title("onset→apex flow (R=u, G=v, B=strain)", fontsize=8)
    heat_ax.imshow(magnitude, cmap="gray")
    drawn = heat_ax.imshow(heat, alpha=0.5, cmap="magma", vmin=0.0, vmax=float(heat.max()) or 1.0)
    figure.colorbar(drawn, ax=heat_ax, shrink=0.8)
    heat_ax.set_title(f"|{attribution.method.upper()}| over flow magnitude", fontsize=8)
    for ax in (flow_ax, heat_ax):
        ax.set_axis_off()
    figure.suptitle(title, fontsize=9)
    return figure


def _attention_overlay(
    bundle: ModelBundle,
    adapter: InputAdapter,
    x: torch.Tensor,
    read: Clip,
    result: Any,
    config: PreprocessConfig,
    name: str,
    out: Path,
) -> tuple[Path, str, int]:
    """A clip model's figure: its learned attention (Grad-CAM without one) on the clip position of the apex."""
    attribution = _attention(bundle.model, x)
    first, last = int(read.numbers[0]), int(read.numbers[-1])
    # The apex is where the face moves most; the map's own peak often sits at the onset, where nothing moves.
    shown = apex_position(read.numbers, first, result.apex, last, config)
    events = (
        explain.event_positions(first, result.apex, last, x.shape[2])
        if config.temporal in ("onset_offset", "tim")
        else {"apex": float(shown)}
    )
    figure = viz.overlay_frame(
        x[0].cpu(),
        attribution,
        shown,
        events=events,
        title=f"{name}: {attribution.method} at the apex (frame {result.apex}, clip position {shown})",
    )
    return _save_figure(figure, out / "attention.png"), attribution.method, shown


def _ig_flow_overlay(
    bundle: ModelBundle,
    adapter: InputAdapter,
    x: torch.Tensor,
    read: Clip,
    result: Any,
    config: PreprocessConfig,
    name: str,
    out: Path,
) -> tuple[Path, str, None]:
    """A flow model's figure: |IG| of the predicted class (all-zero image as baseline) beside the flow image."""
    attribution = explain.attribute(bundle.model, x, "ig", baseline="zeros")
    title = f"{name}: IG of {bundle.classes[int(attribution.target[0])]}"
    figure = _flow_figure(x[0], attribution, title, adapter.encoding)
    return _save_figure(figure, out / "attribution.png"), "ig", None


#: The figure of one explained prediction, by the adapter's ``overlay`` (``merkit.data.inputs``). The drawing
#: lives here, not in the data layer, because it needs ``merkit.explain`` and ``merkit.viz`` (floors above it).
_OVERLAYS = {"attention": _attention_overlay, "ig_flow": _ig_flow_overlay}


def predict_clip(
    clip: str | os.PathLike,
    *,
    run_dir: str | os.PathLike | None = None,
    checkpoint: str | os.PathLike | None = None,
    onset: int | None = None,
    offset: int | None = None,
    apex: int | None = None,
    out_dir: str | os.PathLike | None = None,
    crop: str = "auto",
    device: str = "auto",
    overlay: bool = True,
) -> Prediction:
    """Classify one clip (video file or frame folder) with the model of ``run_dir`` or ``checkpoint``.

    ``onset``/``offset`` are frame numbers (file-name numbers of a folder, 0-based indices of a video);
    None means the first/last frame; ``apex`` is a frame number too (None: the preprocessing's missing-apex
    rule, the middle frame by default; it matters most for flow models, whose input is onset→apex).
    ``out_dir`` (default ``<run or checkpoint folder>/predictions/<clip>``) receives ``attention.png``
    (``attribution.png`` for flow models) and ``prediction.json``. Raises `PredictError` (or ``ClipReadError``) naming
    the file on bad input: a path that is one image or no clip at all, an onset/apex/offset outside the frames of a
    folder (named with the folder's frame range), and, with ``crop='haar'``, a clip where no face is found.
    """
    clip_path = Path(clip)
    _check_clip_path(clip_path)
    _check_frame_range(clip_path, onset, apex, offset)
    bundle_path = _bundle_path(run_dir, checkpoint)
    device = resolve_device(device)  # "auto": cuda, then mps, then cpu (TrainConfig.device's rule)
    bundle = load_model(bundle_path, device)
    adapter = input_adapter(bundle.model)  # clip or flow, chosen once
    if adapter.needs_flow and bundle.flow is None:
        raise PredictError(f"{bundle_path}: flow model {bundle.model.model_name!r} was saved without its flow config")

    read = read_clip(clip_path, onset, offset, sample=clip_path.name)
    config_dict, crop_used = _crop_config(bundle.preprocess, crop)
    config = PreprocessConfig(**config_dict)
    first, last = int(read.numbers[0]), int(read.numbers[-1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a face-detector fallback is reported in `crop` instead
        result = preprocess_clip_detailed(read.frames, read.numbers, first, apex, last, config, sample=clip_path.name)
    if result.crop_fallback:
        if crop == "haar":
            raise PredictError(
                f"clip {clip_path}: no face found by the Haar cascade on the onset frame {first}, and crop haar "
                "refuses a clip without a face (crop auto falls back to the centred square; crop center or "
                "dataset crops without a detector)"
            )
        crop_used = "center (no face found by the Haar cascade)"

    x = adapter.single_input(
        read.frames, read.numbers, result, flow=bundle.flow, normalise=bundle.normalise, stats=bundle.stats
    ).to(device)  # (1, c, t, s, s) clip or (1, c, f, f) flow image
    with torch.no_grad():
        probabilities = torch.softmax(bundle.model(x).float(), dim=1)[0].cpu().numpy()

    out = Path(out_dir) if out_dir else bundle_path.parent / "predictions" / clip_path.stem
    out.mkdir(parents=True, exist_ok=True)
    overlay_path, overlay_method, overlay_position = None, None, None
    if overlay:
        draw = _OVERLAYS[adapter.overlay]
        overlay_path, overlay_method, overlay_position = draw(
            bundle, adapter, x, read, result, config, clip_path.name, out
        )

    prediction = Prediction(
        clip=clip_path,
        classes=bundle.classes,
        probabilities=probabilities,
        crop=crop_used,
        frames_read=len(read.numbers),
        overlay=overlay_path,
        json_path=out / "prediction.json",
        extra={
            "onset": first,
            "apex": int(result.apex),
            "offset": last,
            "model": bundle.model.model_name,
            "bundle": str(bundle_path),
            **({"overlay_method": overlay_method} if overlay_method else {}),
            **({"overlay_position": overlay_position} if overlay_position is not None else {}),
            **({"flow": bundle.flow} if adapter.needs_flow else {}),
        },
    )
    atomic_write_json(
        prediction.json_path,
        {
            "clip": str(clip_path),
            "predicted": prediction.predicted,
            "probabilities": dict(zip(bundle.classes, map(float, probabilities))),
            "crop": crop_used,
            "frames_read": prediction.frames_read,
            "overlay": str(overlay_path) if overlay_path else None,
            **prediction.extra,
        },
    )
    return prediction
