"""Predict on one clip of your own (a video or a folder of frames) with a trained model: `merkit predict`.

The trained model travels as a *model bundle* (``save_model`` / ``load_model``): the weights plus everything
needed to feed it a new clip exactly as in training: the registry name and constructor arguments, the class
names, the preprocessing config and the input normalisation. ``02_train.ipynb`` writes ``run_dir/model.pt``.

``predict_clip(path, run_dir=… | checkpoint=…)``:

1. reads frames ``onset..offset`` (frame numbers; default the whole clip) with ``merkit.data.io.read_clip``;
2. preprocesses them like the training data, except the face crop: training data that came already cropped
   (``crop='dataset'``) says nothing about a raw video, so ``crop='auto'`` detects the face with OpenCV's
   Haar cascade on the onset frame (centred square if no face, or if the cascade file is not installed:
   OpenCV 5 wheels no longer ship it; ``apt-get install opencv-data`` provides it) and says which it used;
3. normalises the clip with ``ClipDataset`` (the same code as training) and returns class probabilities;
4. writes an overlay PNG of the model's learned spatio-temporal attention (Grad-CAM for models without
   attention) on the frame where it peaks, and ``prediction.json``.

Axis letters: b batch, c channels, t frames, h/w/s pixels.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

__all__ = ["BUNDLE_FORMAT", "PredictError", "ModelBundle", "Prediction", "save_model", "load_model", "predict_clip"]

BUNDLE_FORMAT = "merkit-model/1"
#: File name of the model bundle inside a run directory.
RUN_MODEL_FILE = "model.pt"


class PredictError(ValueError):
    """The clip, the run or the checkpoint cannot be used for prediction; the message names the file."""


@dataclass
class ModelBundle:
    """A trained model ready for new clips: the network (eval mode) and how its inputs were made."""

    model: nn.Module
    classes: list[str]
    preprocess: dict[str, Any]  # PreprocessConfig fields
    normalise: str = "clip"  # ClipDataset normalise mode used in training
    stats: tuple[np.ndarray, np.ndarray] | None = None  # per-channel mean/std for normalise="dataset"
    path: Path | None = None


def save_model(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    classes: list[str],
    preprocess: Any,
    normalise: str = "clip",
    stats: tuple[np.ndarray, np.ndarray] | None = None,
) -> Path:
    """Write a model bundle (atomically). ``model`` must come from ``merkit.models.create_model`` (it records
    ``model_config``); ``preprocess`` is the ``PreprocessConfig`` (or its dict) the training clips went through."""
    from merkit.runs import atomic_torch_save

    config = getattr(model, "model_config", None)
    if not config:
        raise PredictError("save_model needs a model built by merkit.models.create_model (no model_config)")
    preprocess = preprocess.to_dict() if hasattr(preprocess, "to_dict") else dict(preprocess)
    bundle = {
        "format": BUNDLE_FORMAT,
        "model_config": dict(config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "classes": list(classes),
        "preprocess": preprocess,
        "normalise": normalise,
        "stats": None if stats is None else [np.asarray(s, dtype=np.float32).tolist() for s in stats],
    }
    return atomic_torch_save(bundle, path)


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


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> ModelBundle:
    """Read a model bundle written by `save_model`; the model is rebuilt from the registry, in eval mode."""
    from merkit.models import create_model

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
    return ModelBundle(
        model=model,
        classes=list(bundle["classes"]),
        preprocess=dict(bundle["preprocess"]),
        normalise=bundle.get("normalise", "clip"),
        stats=None if stats is None else (np.asarray(stats[0], np.float32), np.asarray(stats[1], np.float32)),
        path=path,
    )


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
        lines = [f"clip: {self.clip} ({self.frames_read} frames read; crop: {self.crop})", f"predicted: {self.predicted}"]
        lines += [f"  {row['class']:<12} {row['probability']:.3f}" for _, row in self.table().iterrows()]
        if self.overlay is not None:
            lines.append(f"attention overlay: {self.overlay}")
        if self.json_path is not None:
            lines.append(f"prediction: {self.json_path}")
        return "\n".join(lines)


class _OneClip:
    """Just enough of a ClipStore for ClipDataset: one uint8 clip (1, T, S, S, C) without a label."""

    def __init__(self, clip: np.ndarray) -> None:
        self.clips = clip[None]  # (T, S, S, C) -> (1, T, S, S, C)
        self.index = pd.DataFrame({"label": pd.array([pd.NA], dtype="Int64")})


def _crop_config(preprocess: dict[str, Any], crop: str) -> tuple[dict[str, Any], str]:
    """Preprocessing for a user's clip: the training config with the face crop chosen for raw footage."""
    from merkit.data.preprocess import PreprocessError, find_haar_cascade

    config = dict(preprocess)
    if crop == "auto":
        if preprocess.get("crop") not in ("dataset", None):
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
        config["no_face"] = "center"
    return config, crop


def _attention(model: nn.Module, x: torch.Tensor) -> Any:
    from merkit import explain

    if hasattr(model, "attention_maps"):
        try:
            return explain.learned_attention(model, x)
        except ValueError:
            pass  # every spatio-temporal attention ablated: fall back to Grad-CAM
    return explain.attribute(model, x, "gradcam")


def predict_clip(
    clip: str | os.PathLike,
    *,
    run_dir: str | os.PathLike | None = None,
    checkpoint: str | os.PathLike | None = None,
    onset: int | None = None,
    offset: int | None = None,
    out_dir: str | os.PathLike | None = None,
    crop: str = "auto",
    device: str = "cpu",
    overlay: bool = True,
) -> Prediction:
    """Classify one clip (video file or frame folder) with the model of ``run_dir`` or ``checkpoint``.

    ``onset``/``offset`` are frame numbers (file-name numbers of a folder, 0-based indices of a video);
    None means the first/last frame. ``out_dir`` (default ``<run or checkpoint folder>/predictions/<clip>``)
    receives ``attention.png`` and ``prediction.json``. Raises `PredictError` (or ``ClipReadError``) naming
    the file on bad input.
    """
    from merkit.data.io import read_clip
    from merkit.data.preprocess import PreprocessConfig, preprocess_clip_detailed
    from merkit.data.torch_dataset import ClipDataset

    clip_path = Path(clip)
    if not clip_path.exists():
        raise PredictError(f"clip {clip_path} does not exist (give a video file or a folder of frames)")
    bundle_path = _bundle_path(run_dir, checkpoint)
    bundle = load_model(bundle_path, device)
    spec = getattr(bundle.model, "input_spec", None)
    if spec is not None and spec.kind != "clip":
        raise PredictError(f"{bundle_path}: model {bundle.model.model_name!r} takes {spec.kind} input; predict supports clip models")

    read = read_clip(clip_path, onset, offset, sample=clip_path.name)
    config_dict, crop_used = _crop_config(bundle.preprocess, crop)
    config = PreprocessConfig(**config_dict)
    first, last = int(read.numbers[0]), int(read.numbers[-1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a face-detector fallback is reported in `crop` instead
        result = preprocess_clip_detailed(read.frames, read.numbers, first, None, last, config, sample=clip_path.name)
    if result.crop_fallback:
        crop_used = "center (no face found by the Haar cascade)"

    dataset = ClipDataset(_OneClip(result.clip), normalise=bundle.normalise, stats=bundle.stats)
    x = dataset[0][0][None].to(device)  # (c, t, s, s) -> (1, c, t, s, s)
    with torch.no_grad():
        probabilities = torch.softmax(bundle.model(x).float(), dim=1)[0].cpu().numpy()

    out = Path(out_dir) if out_dir else bundle_path.parent / "predictions" / clip_path.stem
    out.mkdir(parents=True, exist_ok=True)
    overlay_path = None
    if overlay:
        from merkit import explain, viz

        attribution = _attention(bundle.model, x)
        peak = int(np.argmax(explain.frame_curve(attribution)[0]))
        figure = viz.overlay_frame(x[0].cpu(), attribution, peak, title=f"{clip_path.name}: {attribution.method}, frame {peak}")
        overlay_path = out / "attention.png"
        tmp = out / ".attention.tmp.png"
        figure.savefig(tmp, dpi=120)
        os.replace(tmp, overlay_path)

    prediction = Prediction(
        clip=clip_path,
        classes=bundle.classes,
        probabilities=probabilities,
        crop=crop_used,
        frames_read=len(read.numbers),
        overlay=overlay_path,
        json_path=out / "prediction.json",
        extra={"onset": first, "offset": last, "model": bundle.model.model_name, "bundle": str(bundle_path)},
    )
    from merkit.runs import atomic_write_json

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
