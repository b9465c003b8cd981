"""Drawing an emulated release's clips: the SynthME face of each clip (with the eye-socket shadow and contrast
stretch the Haar detector needs), the raw frame around it (a scene per subject), and the frame files."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

from merkit.data.synthetic.config import SynthMEConfig
from merkit.data.synthetic.faces import FaceLook, subject_look
from merkit.data.synthetic.release_plan import RELEASE_FORMS, PlannedClip, ReleaseForm
from merkit.data.synthetic.render import render_motion_clip

_RENDER_MAX = 128  # faces larger than this are drawn at this side and upsampled (drawing is the slow part)


def _subject_config(seed: int, form: ReleaseForm, render_side: int, dataset: str) -> SynthMEConfig:
    """A SynthME config drawing faces of `render_side` px; the seed also depends on the dataset, so the
    CASME II subject 1 and the SAMM subject 6 are different people from any SynthME subject."""
    return SynthMEConfig(
        seed=seed * 100 + form.key,
        size=render_side,
        fps=form.fps,
        video_subjects=(),
        motion_amplitude=form.motion_amplitude * render_side / 96,
        crop_jitter=max(0, render_side // 48),
        head_drift=0.5 * render_side / 96,
        n_frames=12,
    )


def draw_release_clip(clip: PlannedClip, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The clip's face frames uint8 (T, S, S, 3) RGB at the face side S, and its motion mask bool (S, S)."""
    form = RELEASE_FORMS[clip.dataset]
    render_side = min(clip.face_side, _RENDER_MAX)
    config = _subject_config(seed, form, render_side, clip.dataset)
    apex = min(clip.apex_index, clip.offset_index - 1)
    drawn = render_motion_clip(
        config, clip.row.subject, clip.index, clip.motion, clip.n_frames, clip.onset_index, apex, clip.offset_index
    )
    look = subject_look(config, clip.row.subject)
    frames, mask = _stretch(drawn.frames * _eye_shadow(look, render_side)), drawn.mask
    if render_side != clip.face_side:
        size = (clip.face_side, clip.face_side)
        frames = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_CUBIC) for f in frames])  # (T, S, S, 3)
        mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    return frames, mask


def _eye_shadow(look: FaceLook, side: int) -> np.ndarray:
    """A static shading float32 (S, S, 1) that darkens the band of the eyes and brows, as the eye sockets of a
    lit face are darker than the cheeks and the nose bridge (what the Haar face detector keys on)."""
    c = (np.arange(side, dtype=np.float32) + 0.5) / side - 0.5
    u, v = c[None, :], c[:, None]
    band = np.exp(-(((v - look.eye_y + 0.02) / 0.075) ** 2))  # (S, 1)
    sockets = sum(np.exp(-(((u - s * look.eye_dx) / 0.11) ** 2)) for s in (-1, 1))  # (1, S)
    return (1.0 - 0.55 * np.clip(band * sockets, 0, 1))[..., None].astype(np.float32)


def _stretch(frames: np.ndarray) -> np.ndarray:
    """The clip's frames with one linear grey-level stretch (from its first frame: 1st..99th percentile of the
    luminance -> 20..235) applied to all of them, so that dark or flat faces have the contrast of a lit
    recording (the Haar detector needs it, as on real data). One map for the whole clip keeps the motion."""
    grey = frames[0].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)  # (S, S, 3) -> (S, S)
    low, high = np.percentile(grey, [1, 99])
    gain = 215.0 / max(float(high - low), 1.0)
    out = (frames.astype(np.float32) - low) * gain + 20.0
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def release_scene(dataset: str, subject: int, seed: int, width: int, height: int) -> np.ndarray:
    """A subject's recording scene, float32 (H, W, 3) RGB in [0, 1]: wall, a panel and shoulders."""
    form = RELEASE_FORMS[dataset]
    rng = np.random.default_rng([seed, form.key, subject, 77])
    look = subject_look(_subject_config(seed, form, 96, dataset), subject)
    v = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    scene = np.broadcast_to(look.background * (1.05 - 0.25 * v), (height, width, 3)).astype(np.float32)
    x0, x1 = sorted(rng.uniform(0, 1, 2) * width)
    scene[: int(height * rng.uniform(0.5, 0.9)), int(x0) : int(x1)] *= np.float32(rng.uniform(0.75, 0.95))
    # Shoulders: a wide dark ellipse under the face, in a per-subject shirt colour.
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    shoulders = ((xx - width / 2) / (0.42 * height)) ** 2 + ((yy - 1.15 * height) / (0.5 * height)) ** 2 < 1
    scene[shoulders] = rng.uniform(0.1, 0.6, 3).astype(np.float32)
    return scene


def _face_alpha(side: int) -> np.ndarray:
    """Where the face crop covers the scene, float32 (S, S, 1): an inscribed ellipse with a soft edge."""
    c = (np.arange(side, dtype=np.float32) + 0.5) / side - 0.5
    r = np.hypot(c[None, :] / 0.5, c[:, None] / 0.52)
    return np.clip((1.0 - r) / 0.08, 0, 1)[..., None]


def compose_frames(scene: np.ndarray, faces: np.ndarray, xy: tuple[int, int]) -> Iterator[np.ndarray]:
    """Raw frames uint8 (H, W, 3), one at a time: the scene with each face crop pasted at `xy` (top-left).
    The same buffer is reused for every frame (a clip of 640×480 frames would not fit a small budget)."""
    side = faces.shape[1]
    x, y = xy
    alpha = _face_alpha(side)
    frame = np.rint(np.clip(scene * 255.0, 0, 255)).astype(np.uint8)
    background = frame[y : y + side, x : x + side].astype(np.float32) * (1 - alpha)
    for face in faces:
        frame[y : y + side, x : x + side] = np.rint(background + face * alpha).astype(np.uint8)
        yield frame


def write_images(folder: Path, names: Iterable[str], frames: Iterable[np.ndarray], grey: bool) -> None:
    """Write RGB frames uint8 (H, W, 3) as image files ``folder/name`` (greyscale when ``grey``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in zip(names, frames):
        image = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY if grey else cv2.COLOR_RGB2BGR)
        params = [cv2.IMWRITE_JPEG_QUALITY, 92] if name.endswith(".jpg") else []
        if not cv2.imwrite(str(folder / name), image, params):
            raise OSError(f"could not write frame {folder / name}")
