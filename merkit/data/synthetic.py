"""SynthME: a generated micro-expression dataset written exactly like CASME II, with known motion.

SynthME lets every notebook and test run without a licensed dataset. Each subject is a procedurally drawn,
already face-cropped face (the face fills the frame, like CASME II's Cropped release) whose shape, skin tone
and texture, eye/brow/mouth geometry and colours differ from subject to subject. Each clip runs
neutral -> onset -> apex -> offset -> neutral at a high frame rate, and the class is defined only by a
subtle LOCAL motion of at most ``motion_amplitude`` pixels:

==========  ===============  =======================================================
emotion     action units     motion
==========  ===============  =======================================================
happiness   ``12``           lip-corner puller: both mouth corners up and outward
disgust     ``4``            brow lowerer: inner brows down and towards the midline
surprise    ``1+2``          inner + outer brow raiser: both brows up
==========  ===============  =======================================================

Class-independent nuisances: blinks, a small global head drift, illumination flicker, a per-clip lighting
gradient, a per-clip crop offset of a pixel or two, and sensor noise. Per-subject geometry varies more than
the motion, so a classifier that sees only the apex frame cannot simply read the class off the face; the
onset -> apex change carries it.

On disk (``generate_synthme``), in the real CASME II form so that the dataset builders read it like real
data::

    root/
      SynthME-coding.xlsx          first sheet, CASME II 2014 header (Subject, Filename, <blank>, OnsetFrame,
                                   ApexFrame, OffsetFrame, <blank>, Action Units, Estimated Emotion)
      sub01/EP01_01/img137.jpg ... frame folders; numbers start at an arbitrary offset per clip
      sub05/EP01_01.mp4            video subjects (mp4v); the sheet's frame numbers are 0-based indices
      masks/01_EP01_01.png         ground-truth motion region of each clip (0/255, H x W)
      masks/motion_regions.csv     one row per clip: region, bounding box, peak displacement
      synthme_complete.json        completion marker holding the config (written last)

Generation is deterministic from ``SynthMEConfig.seed``: every random draw comes from a generator seeded by
``(seed, subject, clip, ...)``, so a clip looks the same whatever the number of subjects, and
``render_clip`` re-draws any clip in memory bit for bit (the round-trip tests compare against it).

Axis letters: T frames, H height, W width, 3 RGB channels.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

__all__ = [
    "linear_probe_accuracies",
    "CLASS_ACTION_UNITS",
    "COMPLETION_MARKER",
    "EMOTIONS",
    "FORMAT_VERSION",
    "MASK_CSV",
    "SHEET_HEADER",
    "SHEET_NAME",
    "ClipSpec",
    "RenderedClip",
    "SynthMEConfig",
    "SynthMEExistsError",
    "clip_spec",
    "generate_synthme",
    "list_clips",
    "load_motion_mask",
    "render_clip",
]

#: File name of the coding sheet, in the place CASME II keeps its sheet.
SHEET_NAME = "SynthME-coding.xlsx"
#: The CASME II 2014 coding sheet header; ``None`` is a blank header cell, as in the real sheet.
SHEET_HEADER: tuple[str | None, ...] = (
    "Subject",
    "Filename",
    None,
    "OnsetFrame",
    "ApexFrame",
    "OffsetFrame",
    None,
    "Action Units",
    "Estimated Emotion",
)
#: Written last into the tree; holds the config. A tree without it is not a finished SynthME.
COMPLETION_MARKER = "synthme_complete.json"
#: Per-clip ground truth table, next to the mask images.
MASK_CSV = "masks/motion_regions.csv"
#: Bumped when the drawing changes so that an old tree is not mistaken for the current one.
FORMAT_VERSION = 1

EMOTIONS: tuple[str, ...] = ("happiness", "disgust", "surprise")
#: The action units that define each class (the motion drawn and the sheet's Action Units column).
CLASS_ACTION_UNITS: dict[str, tuple[str, ...]] = {
    "happiness": ("12",),
    "disgust": ("4",),
    "surprise": ("1", "2"),
}
# A pixel belongs to the motion region when its apex displacement is at least this fraction of the peak.
_MASK_FRACTION = 0.25
# Streams of the seeded random generators; each draw has its own so adding one never shifts another.
_STREAM_LOOK, _STREAM_CLASSES, _STREAM_CLIP, _STREAM_NOISE, _STREAM_TEXTURE = range(5)


@dataclass(frozen=True)
class SynthMEConfig:
    """Everything that determines a SynthME tree. Saved in the completion marker; same config, same bytes."""

    seed: int = 0  # master seed: faces, clip timing, nuisances and noise all derive from it
    n_subjects: int = 12  # subjects 01..n_subjects (folders sub01, sub02, ...)
    clips_per_subject: int = 9  # clips per subject, classes balanced within a subject (3 each by default)
    n_frames: int = 40  # frames per clip (40 at 200 fps = 0.2 s, a typical micro-expression length)
    size: int = 96  # frame side in pixels; frames are square and already face-cropped
    fps: float = 200.0  # recording frame rate written to the videos (CASME II: 200)
    # Subjects written as sub05/EP01_01.mp4 instead of frame folders. Numbers above n_subjects are ignored,
    # so shrinking n_subjects alone (as a notebook parameter does) never needs this changed too.
    video_subjects: tuple[int, ...] = (5, 10)
    frame_format: str = "jpg"  # "jpg" like CASME II, or "png" (lossless: read back bit-exact)
    jpeg_quality: int = 95  # JPEG quality of frame files
    motion_amplitude: float = 2.5  # peak displacement (px at `size`) of the class-defining motion at apex
    apex_intensity: tuple[float, float] = (0.6, 1.0)  # per-clip apex strength, a fraction of motion_amplitude
    geometry_variation: float = 1.0  # scale of per-subject face-geometry variation (0 = every face alike)
    crop_jitter: int = 2  # per-clip crop offset in pixels, each axis in [-crop_jitter, crop_jitter]
    blink_probability: float = 0.35  # chance that a clip contains a blink (at any time, any class)
    head_drift: float = 0.5  # peak global head drift over a clip, pixels
    flicker: float = 0.02  # relative amplitude of illumination flicker
    lighting_gradient: float = 0.10  # peak relative strength of the per-clip directional lighting
    noise_std: float = 2.0  # sensor noise, grey levels (0..255) per pixel and channel
    first_frame_max: int = 300  # folder clips start at a frame number drawn from 1..first_frame_max

    def __post_init__(self) -> None:
        # Tuples survive the JSON round trip of the completion marker as lists; normalise them back.
        object.__setattr__(self, "video_subjects", tuple(int(s) for s in self.video_subjects))
        object.__setattr__(self, "apex_intensity", tuple(float(v) for v in self.apex_intensity))
        problems = []
        if not 1 <= self.n_subjects <= 99:
            problems.append(f"n_subjects must be 1..99, got {self.n_subjects}")
        if not 1 <= self.clips_per_subject <= 99 * 3:
            problems.append(f"clips_per_subject must be 1..297, got {self.clips_per_subject}")
        if self.n_frames < 8:
            problems.append(f"n_frames must be >= 8 (neutral, onset, apex, offset need room), got {self.n_frames}")
        if self.size < 32:
            problems.append(f"size must be >= 32 pixels, got {self.size}")
        if self.fps <= 0:
            problems.append(f"fps must be positive, got {self.fps}")
        bad_video = [s for s in self.video_subjects if s < 1]
        if bad_video:
            problems.append(f"video_subjects must be subject numbers >= 1, got {bad_video}")
        if self.frame_format not in ("jpg", "png"):
            problems.append(f"frame_format must be 'jpg' or 'png', got {self.frame_format!r}")
        if not 1 <= self.jpeg_quality <= 100:
            problems.append(f"jpeg_quality must be 1..100, got {self.jpeg_quality}")
        if not 0 < self.motion_amplitude <= self.size / 8:
            problems.append(f"motion_amplitude must be in (0, size/8], got {self.motion_amplitude}")
        low, high = self.apex_intensity if len(self.apex_intensity) == 2 else (1.0, 0.0)
        if not 0 < low <= high:
            problems.append(f"apex_intensity must be (low, high) with 0 < low <= high, got {self.apex_intensity}")
        if not 0 <= self.crop_jitter <= self.size // 16:
            problems.append(f"crop_jitter must be 0..size/16, got {self.crop_jitter}")
        if not 0 <= self.blink_probability <= 1:
            problems.append(f"blink_probability must be in [0, 1], got {self.blink_probability}")
        for name in ("geometry_variation", "head_drift", "flicker", "lighting_gradient", "noise_std"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.first_frame_max < 1:
            problems.append(f"first_frame_max must be >= 1, got {self.first_frame_max}")
        if problems:
            raise ValueError("invalid SynthMEConfig: " + "; ".join(problems))

    def to_dict(self) -> dict:
        """JSON-ready dict (tuples as lists); ``SynthMEConfig(**d)`` gives the config back."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


@dataclass(frozen=True)
class ClipSpec:
    """What the sheet says about one clip, plus where it lives. Indices are 0-based positions in the clip."""

    subject: str  # "01"
    sample: str  # "EP01_01"
    emotion: str  # one of EMOTIONS
    action_units: tuple[str, ...]  # ("1", "2")
    is_video: bool  # written as sub<NN>/<sample>.mp4
    first_number: int  # frame number of the clip's first frame (0 for videos)
    onset_index: int
    apex_index: int
    offset_index: int
    n_frames: int

    @property
    def path(self) -> str:
        """Frame folder or video, POSIX, relative to the data root (as in the manifest's ``path``)."""
        return f"sub{self.subject}/{self.sample}" + (".mp4" if self.is_video else "")

    @property
    def numbers(self) -> np.ndarray:
        """Frame number of every frame, int64 (T,)."""
        return np.arange(self.first_number, self.first_number + self.n_frames, dtype=np.int64)

    @property
    def onset(self) -> int:
        """Onset frame number as written in the sheet."""
        return self.first_number + self.onset_index

    @property
    def apex(self) -> int:
        """Apex frame number as written in the sheet."""
        return self.first_number + self.apex_index

    @property
    def offset(self) -> int:
        """Offset frame number as written in the sheet."""
        return self.first_number + self.offset_index

    @property
    def action_units_text(self) -> str:
        """The sheet's Action Units cell: ``12``, ``4``, ``1+2``."""
        return "+".join(self.action_units)


@dataclass(frozen=True)
class RenderedClip:
    """One clip drawn in memory: the frames exactly as ``generate_synthme`` writes them before encoding."""

    spec: ClipSpec
    frames: np.ndarray  # uint8 (T, H, W, 3) RGB; only the requested positions when render_clip got `frames`
    positions: np.ndarray  # int64 (T,): 0-based position in the clip of each frame in `frames`
    numbers: np.ndarray  # int64 (T,): frame number of each frame in `frames`
    mask: np.ndarray  # bool (H, W): ground-truth motion region
    displacement: np.ndarray  # float32 (H, W, 2): (dx, dy) in pixels at the apex, class motion only


class SynthMEExistsError(FileExistsError):
    """The root holds something other than the SynthME tree asked for (and ``overwrite`` was not given)."""


# --------------------------------------------------------------------------------------------------------
# Random streams and the clip list
# --------------------------------------------------------------------------------------------------------


def _rng(config: SynthMEConfig, *keys: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, *keys])


def _subject_number(subject: str | int) -> int:
    """``1``, ``"01"``, ``"sub01"`` -> 1."""
    text = str(subject).strip()
    match = re.fullmatch(r"(?:sub)?0*(\d+)", text, flags=re.IGNORECASE)
    if match is None:
        raise ValueError(f"not a SynthME subject id: {subject!r} (expected e.g. '01', 1 or 'sub01')")
    return int(match.group(1))


def _sample_name(clip: int) -> str:
    """Clip k (0-based) -> ``EP{episode}_{take}``, three takes per elicitation episode as in CASME II."""
    return f"EP{clip // 3 + 1:02d}_{clip % 3 + 1:02d}"


def _clip_index(sample: str) -> int:
    match = re.fullmatch(r"EP(\d+)_(\d+)", sample)
    if match is None or not 1 <= int(match.group(2)) <= 3:
        raise ValueError(f"not a SynthME sample id: {sample!r} (expected e.g. 'EP01_02')")
    return (int(match.group(1)) - 1) * 3 + int(match.group(2)) - 1


def _subject_classes(config: SynthMEConfig, subject: int) -> list[str]:
    """Balanced class of each clip of a subject, in a per-subject shuffled order.

    The rotation by subject keeps the dataset balanced overall when clips_per_subject is not a multiple of 3.
    """
    classes = [EMOTIONS[(k + subject) % len(EMOTIONS)] for k in range(config.clips_per_subject)]
    order = _rng(config, subject, _STREAM_CLASSES).permutation(len(classes))
    return [classes[i] for i in order]


def clip_spec(config: SynthMEConfig, subject: str | int, sample: str) -> ClipSpec:
    """Sheet row of one clip (class, timing, first frame number); raises ValueError for an unknown clip."""
    number = _subject_number(subject)
    clip = _clip_index(sample)
    if not 1 <= number <= config.n_subjects or clip >= config.clips_per_subject:
        raise ValueError(
            f"SynthME has no clip subject={subject!r} sample={sample!r} "
            f"({config.n_subjects} subjects x {config.clips_per_subject} clips)"
        )
    emotion = _subject_classes(config, number)[clip]
    rng = _rng(config, number, _STREAM_CLIP, clip)
    n = config.n_frames
    # Timing as fractions of the clip so tiny test clips still get neutral -> onset -> apex -> offset -> neutral.
    onset = int(round(rng.uniform(0.08, 0.22) * n))
    apex = onset + max(1, int(round(rng.uniform(0.2, 0.32) * n)))
    offset = apex + max(1, int(round(rng.uniform(0.2, 0.32) * n)))
    onset, offset = max(onset, 1), min(offset, n - 2)
    apex = min(max(apex, onset + 1), offset - 1)
    is_video = number in config.video_subjects
    first = 0 if is_video else int(rng.integers(1, config.first_frame_max + 1))
    return ClipSpec(
        subject=f"{number:02d}",
        sample=_sample_name(clip),
        emotion=emotion,
        action_units=CLASS_ACTION_UNITS[emotion],
        is_video=is_video,
        first_number=first,
        onset_index=onset,
        apex_index=apex,
        offset_index=offset,
        n_frames=n,
    )


def list_clips(config: SynthMEConfig) -> list[ClipSpec]:
    """Every clip of the dataset in sheet order (subject, then sample)."""
    return [
        clip_spec(config, subject, _sample_name(clip))
        for subject in range(1, config.n_subjects + 1)
        for clip in range(config.clips_per_subject)
    ]


# --------------------------------------------------------------------------------------------------------
# The face: per-subject look, drawn with soft-edged shapes in normalised coordinates
# --------------------------------------------------------------------------------------------------------
# Coordinates: u (right) and v (down) in units of the frame side, 0 at the frame centre. Shapes are
# signed distances converted to pixels and turned into 1-pixel anti-aliased alphas, so sub-pixel changes
# in geometry change the image smoothly.


@dataclass(frozen=True)
class _Look:
    """Per-subject face geometry and colours (normalised units, colours RGB in [0, 1])."""

    face_cy: float
    face_a: float
    face_b: float
    face_power: float
    chin_taper: float
    hairline: float
    hairline_curve: float
    eye_y: float
    eye_dx: float
    eye_w: float
    eye_h: float
    gaze: tuple[float, float]
    iris_r: float
    brow_gap: float
    brow_in: float
    brow_out: float
    brow_arch: float
    brow_thick: float
    brow_slant: float
    nose_y: float
    nostril_dx: float
    mouth_y: float
    mouth_w: float
    mouth_curve: float
    upper_lip: float
    lower_lip: float
    skin: np.ndarray
    lips: np.ndarray
    hair: np.ndarray
    iris: np.ndarray
    background: np.ndarray
    brightness: float
    moles: tuple[tuple[float, float, float], ...]


_HAIR_COLOURS = np.array(  # black, dark brown, brown, blond, auburn
    [[0.08, 0.06, 0.05], [0.22, 0.14, 0.08], [0.40, 0.26, 0.14], [0.55, 0.42, 0.25], [0.35, 0.12, 0.06]]
)
_IRIS_COLOURS = np.array(  # brown, dark brown, blue, green, hazel
    [[0.30, 0.18, 0.08], [0.15, 0.10, 0.06], [0.25, 0.40, 0.60], [0.30, 0.45, 0.30], [0.45, 0.35, 0.20]]
)


def _subject_look(config: SynthMEConfig, subject: int) -> _Look:
    rng = _rng(config, subject, _STREAM_LOOK)
    g = config.geometry_variation

    def vary(mean: float, half_range: float) -> float:
        return mean + g * rng.uniform(-half_range, half_range)

    tone = rng.uniform(0.0, 1.0)
    skin = (1 - tone) * np.array([0.93, 0.78, 0.68]) + tone * np.array([0.45, 0.30, 0.22])
    skin = np.clip(skin + rng.uniform(-0.03, 0.03, 3), 0, 1)
    lips = np.clip(skin * np.array([0.82, 0.55, 0.55]) + rng.uniform(-0.03, 0.03, 3), 0, 1)
    hair = np.clip(_HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] + rng.uniform(-0.03, 0.03, 3), 0, 1)
    iris = np.clip(_IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))] + rng.uniform(-0.04, 0.04, 3), 0, 1)
    background = np.clip(rng.uniform(0.15, 0.55) + rng.uniform(-0.05, 0.05, 3), 0, 1)
    eye_y = vary(-0.07, 0.035)
    mouth_y = vary(0.26, 0.04)
    moles = tuple(
        (float(rng.uniform(-0.3, 0.3)), float(rng.uniform(-0.2, 0.35)), float(rng.uniform(0.006, 0.012)))
        for _ in range(int(rng.integers(0, 4)))
    )
    return _Look(
        face_cy=vary(0.04, 0.025),
        face_a=vary(0.47, 0.04),
        face_b=vary(0.58, 0.04),
        face_power=vary(2.4, 0.4),
        chin_taper=vary(0.25, 0.1),
        hairline=vary(-0.33, 0.05),
        hairline_curve=vary(0.8, 0.3),
        eye_y=eye_y,
        eye_dx=vary(0.195, 0.025),
        eye_w=vary(0.085, 0.01),
        eye_h=vary(0.036, 0.006),
        gaze=(float(rng.uniform(-0.012, 0.012)), float(rng.uniform(-0.004, 0.004))),
        iris_r=vary(0.026, 0.004),
        brow_gap=vary(0.095, 0.02),
        brow_in=vary(0.07, 0.02),
        brow_out=vary(0.30, 0.03),
        brow_arch=vary(0.022, 0.012),
        brow_thick=vary(0.035, 0.01),
        brow_slant=vary(0.0, 0.02),
        nose_y=eye_y + vary(0.21, 0.025),
        nostril_dx=vary(0.042, 0.008),
        mouth_y=mouth_y,
        mouth_w=vary(0.135, 0.025),
        mouth_curve=vary(0.003, 0.018),
        upper_lip=vary(0.024, 0.006),
        lower_lip=vary(0.031, 0.008),
        skin=skin,
        lips=lips,
        hair=hair,
        iris=iris,
        background=background,
        brightness=float(rng.uniform(0.9, 1.05)),
        moles=moles,
    )


def _gaussian_field(rng: np.random.Generator, shape: tuple[int, int], sigma_px: float) -> np.ndarray:
    """Smooth random field with unit standard deviation."""
    field_ = cv2.GaussianBlur(rng.standard_normal(shape).astype(np.float32), (0, 0), sigma_px)
    return field_ / max(float(field_.std()), 1e-6)


def _subject_texture(config: SynthMEConfig, subject: int) -> np.ndarray:
    """Skin/hair texture multiplier, float32 (H + 2m, W + 2m) with m = crop_jitter: moves with the face."""
    rng = _rng(config, subject, _STREAM_TEXTURE)
    side = config.size + 2 * config.crop_jitter
    low = _gaussian_field(rng, (side, side), config.size / 16)
    pores = _gaussian_field(rng, (side, side), 0.7)
    amplitude = rng.uniform(0.03, 0.07)
    return (1.0 + amplitude * low + 0.03 * pores).astype(np.float32)


def _alpha(distance: np.ndarray, size: int, softness_px: float = 1.0) -> np.ndarray:
    """Signed distance (normalised units, negative inside) -> coverage in [0, 1], `softness_px` wide edge."""
    return np.clip(0.5 - distance * size / softness_px, 0.0, 1.0)


def _blend(image: np.ndarray, colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    # (H, W) -> (H, W, 1) so one alpha covers the three channels
    a = alpha[..., None]
    return image * (1 - a) + np.asarray(colour, dtype=np.float32) * a


def _eye_boundaries(look: _Look, du: np.ndarray, openness: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Upper and lower lid curves (v offsets from the eye centre) and the eye's extent weight t."""
    t = np.clip(1 - (du / look.eye_w) ** 2, 0, 1) ** 0.8
    lower = 0.75 * look.eye_h * t
    # Closing moves the upper lid down onto the lower lid; the lower lid barely moves in a blink.
    upper = lower - 1.75 * look.eye_h * t * openness
    return upper, lower, t


def _draw_face(look: _Look, texture: np.ndarray, shift: tuple[int, int], openness: float, size: int) -> np.ndarray:
    """The neutral face (no expression motion) with eyes `openness` open; float32 (H, W, 3) in [0, ~1]."""
    sx, sy = shift
    m = (texture.shape[0] - size) // 2
    tex = texture[m - sy : m - sy + size, m - sx : m - sx + size]  # the texture moves with the crop offset
    centres = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    u = centres[None, :] - sx / size  # (1, W) broadcast against (H, 1)
    v = centres[:, None] - sy / size
    u, v = np.broadcast_arrays(u, v)

    # Background with a vertical gradient, then the face (a superellipse narrowing towards the chin).
    image = np.empty((size, size, 3), np.float32)
    image[:] = look.background * (1.0 - 0.3 * (v[..., None] + 0.5))
    dv = (v - look.face_cy) / look.face_b
    half_width = look.face_a * (1 - look.chin_taper * np.clip(dv, 0, 1) ** 2)
    radius = (np.abs(u / half_width) ** look.face_power + np.abs(dv) ** look.face_power) ** (1 / look.face_power)
    face_alpha = _alpha((radius - 1) * min(look.face_a, look.face_b), size, 1.5)
    skin = look.skin[None, None, :] * (tex[..., None] * (1 - 0.18 * np.clip(radius, 0, 1)[..., None] ** 4))
    image = image * (1 - face_alpha[..., None]) + skin * face_alpha[..., None]

    # Cheek blush and moles.
    for side in (-1, 1):
        blush = np.exp(-(((u - side * 0.2) / 0.07) ** 2 + ((v - look.mouth_y + 0.12) / 0.05) ** 2))
        image = _blend(image, look.lips, 0.12 * blush * face_alpha)
    for mu, mv, mr in look.moles:
        image = _blend(image, look.skin * 0.45, 0.8 * _alpha(np.hypot(u - mu, v - mv) - mr, size) * face_alpha)

    # Hair above a hairline that curves down at the temples, textured along the strands.
    hair_edge = look.hairline + look.hairline_curve * u**2
    hair_alpha = _alpha(v - hair_edge, size, 2.0)
    image = _blend(image, look.hair * (0.7 + 0.3 * tex[..., None]), hair_alpha)

    # Nose: side shadows, tip shading and two nostrils.
    for side in (-1, 1):
        ridge = np.exp(-(((u - side * 0.05) / 0.014) ** 2)) * (v > look.eye_y + 0.04) * (v < look.nose_y)
        image = _blend(image, look.skin * 0.6, 0.18 * ridge)
        nostril = np.hypot((u - side * look.nostril_dx) / 0.022, (v - look.nose_y) / 0.011) - 1
        image = _blend(image, look.skin * 0.3, 0.65 * _alpha(nostril * 0.011, size))
    tip = np.exp(-((u / 0.05) ** 2 + ((v - look.nose_y + 0.01) / 0.025) ** 2))
    image = _blend(image, look.skin * 0.8, 0.15 * tip)

    # Mouth: the lip line curves up at the corners by mouth_curve; cupid's bow on the upper lip.
    du = u / look.mouth_w
    t = np.clip(1 - du**2, 0, 1)
    lip_line = look.mouth_y - look.mouth_curve * du**2
    top = lip_line - look.upper_lip * t ** 0.6 * (1 - 0.35 * np.exp(-((du / 0.12) ** 2)))
    bottom = lip_line + look.lower_lip * t**0.7
    inside = np.maximum(top - v, v - bottom)
    inside = np.maximum(inside, (np.abs(du) - 1) * look.mouth_w)
    image = _blend(image, look.lips * (0.92 + 0.08 * tex[..., None]), _alpha(inside, size))
    line = np.maximum(np.abs(v - lip_line) - 0.5 / size, (np.abs(du) - 1.02) * look.mouth_w)
    image = _blend(image, look.lips * 0.35, 0.9 * _alpha(line, size))
    for side in (-1, 1):
        corner = np.hypot(u - side * look.mouth_w, v - (look.mouth_y - look.mouth_curve)) - 0.01
        image = _blend(image, look.skin * 0.55, 0.35 * _alpha(corner, size, 1.5))

    # Eyes: socket shadow, lens-shaped opening with sclera, iris and pupil, lash line and lid crease.
    for side in (-1, 1):
        ex, ey = side * look.eye_dx, look.eye_y
        du_eye, dv_eye = u - ex, v - ey
        socket = np.exp(-((du_eye / (1.3 * look.eye_w)) ** 2 + ((dv_eye + 0.01) / (2.2 * look.eye_h)) ** 2))
        image = _blend(image, look.skin * 0.7, 0.2 * socket)
        upper, lower, t = _eye_boundaries(look, du_eye, openness)
        opening = np.maximum(upper - dv_eye, dv_eye - lower)
        opening = np.maximum(opening, (np.abs(du_eye) - look.eye_w) * 0.5)
        open_alpha = _alpha(opening, size) * (t > 0)
        eye = np.empty_like(image)
        eye[:] = np.array([0.92, 0.9, 0.88], np.float32)
        iris_d = np.hypot(du_eye - look.gaze[0], dv_eye - look.gaze[1])
        eye = _blend(eye, look.iris, _alpha(iris_d - look.iris_r, size))
        eye = _blend(eye, np.array([0.04, 0.03, 0.03]), _alpha(iris_d - 0.45 * look.iris_r, size))
        image = image * (1 - open_alpha[..., None]) + eye * open_alpha[..., None]
        lash = np.maximum(np.abs(dv_eye - upper) - 0.6 / size, (np.abs(du_eye) - 1.05 * look.eye_w) * 0.5)
        image = _blend(image, look.hair * 0.5, 0.85 * _alpha(lash, size))
        crease = np.maximum(np.abs(dv_eye - (-1.9 * look.eye_h * t)) - 0.4 / size, (np.abs(du_eye) - 0.9 * look.eye_w))
        image = _blend(image, look.skin * 0.6, 0.35 * _alpha(crease, size))

    # Brows: an arched stroke, thicker at the inner end, with hair texture.
    for side in (-1, 1):
        length = look.brow_out - look.brow_in
        w = (side * u - look.brow_in) / length  # 0 at the inner end, 1 at the outer end
        centre = look.eye_y - look.brow_gap - look.brow_arch * 4 * w * (1 - w) + look.brow_slant * (w - 0.5)
        thick = look.brow_thick * (1 - 0.45 * np.clip(w, 0, 1)) / 2
        dist = np.maximum(np.abs(v - centre) - thick, np.maximum(-w, w - 1) * length * 0.3)
        density = 0.85 + 0.15 * (tex[..., None] - 1) * 4
        image = _blend(image, look.hair * density, 0.9 * _alpha(dist, size, 1.3))

    return image * look.brightness


# --------------------------------------------------------------------------------------------------------
# Motion: the class-defining displacement field, nuisances, and the frames of one clip
# --------------------------------------------------------------------------------------------------------


def _displacement_field(look: _Look, emotion: str, shift: tuple[int, int], size: int) -> np.ndarray:
    """Unit-peak class motion, float32 (H, W, 2) of (dx, dy) in pixels per pixel of amplitude.

    Smooth Gaussian bumps on the moving facial part, each with the action unit's direction of pull.
    """
    sx, sy = shift
    centres = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    u = centres[None, :] - sx / size
    v = centres[:, None] - sy / size
    u, v = np.broadcast_arrays(u, v)
    flow = np.zeros((size, size, 2), np.float32)
    brow_y = look.eye_y - look.brow_gap
    brow_len = look.brow_out - look.brow_in
    for side in (-1, 1):
        if emotion == "happiness":  # AU12: corners pulled up and out, towards the cheekbones
            cx, cy, sigx, sigy = side * look.mouth_w, look.mouth_y - look.mouth_curve, 0.065, 0.055
            direction = np.array([side * 0.55, -0.84])
        elif emotion == "disgust":  # AU4: inner brows down and towards the midline
            cx, cy, sigx, sigy = side * (look.brow_in + 0.3 * brow_len), brow_y, 0.4 * brow_len, 0.05
            direction = np.array([-side * 0.45, 0.89])
        else:  # AU1+2: the whole brow raised
            cx, cy, sigx, sigy = side * (look.brow_in + 0.5 * brow_len), brow_y - 0.01, 0.6 * brow_len, 0.06
            direction = np.array([0.0, -1.0])
        bump = np.exp(-0.5 * (((u - cx) / sigx) ** 2 + ((v - cy) / sigy) ** 2))
        flow += bump[..., None] * direction.astype(np.float32)  # (H, W, 1) * (2,) -> (H, W, 2)
    peak = float(np.linalg.norm(flow, axis=-1).max())
    return flow / max(peak, 1e-6)


def _envelope(spec: ClipSpec) -> np.ndarray:
    """Expression intensity per frame (T,): 0 until onset, raised cosine up to 1 at apex, down to 0 at offset."""
    t = np.arange(spec.n_frames, dtype=np.float64)
    rise = np.clip((t - spec.onset_index) / (spec.apex_index - spec.onset_index), 0, 1)
    fall = np.clip((spec.offset_index - t) / (spec.offset_index - spec.apex_index), 0, 1)
    ramp = np.where(t <= spec.apex_index, rise, fall)
    return 0.5 - 0.5 * np.cos(np.pi * ramp)


@dataclass(frozen=True)
class _ClipPlan:
    """All per-clip draws, so any frame can be rendered on its own."""

    spec: ClipSpec
    look: _Look
    shift: tuple[int, int]
    amplitude: float  # apex displacement in pixels
    envelope: np.ndarray  # (T,)
    openness: np.ndarray  # (T,) eye openness, 1 = open
    drift: np.ndarray  # (T, 2) global (dx, dy) in pixels
    gain: np.ndarray  # (T,) illumination
    lighting: tuple[float, float]  # gradient strength along u and v
    unit_flow: np.ndarray = field(repr=False)  # (H, W, 2)


def _plan_clip(config: SynthMEConfig, spec: ClipSpec) -> _ClipPlan:
    subject = int(spec.subject)
    rng = _rng(config, subject, _STREAM_CLIP, _clip_index(spec.sample), 1)
    n, fps = spec.n_frames, config.fps
    look = _subject_look(config, subject)
    j = config.crop_jitter
    shift = (int(rng.integers(-j, j + 1)), int(rng.integers(-j, j + 1)))
    amplitude = config.motion_amplitude * rng.uniform(*config.apex_intensity)

    openness = np.ones(n)
    if rng.uniform() < config.blink_probability:
        # A blink lasts 60-120 ms; closing is faster than opening, the lid never quite shuts.
        duration = max(3, int(round(rng.uniform(0.06, 0.12) * fps)))
        start = int(rng.integers(-duration // 2, n - duration // 2))
        phase = (np.arange(n) - start) / duration
        closing = np.where(phase < 0.35, phase / 0.35, (1 - phase) / 0.65)
        openness = 1 - 0.95 * np.sin(0.5 * np.pi * np.clip(closing, 0, 1))
        openness = np.round(openness, 3)  # a handful of distinct lids, each drawn once

    time = np.arange(n) / fps
    drift = np.zeros((n, 2))
    for axis in range(2):  # a slow wander: two low-frequency sinusoids plus a linear trend
        for freq in rng.uniform(0.5, 4.0, 2):
            drift[:, axis] += rng.uniform(-1, 1) * np.sin(2 * np.pi * freq * time + rng.uniform(0, 2 * np.pi))
        drift[:, axis] += rng.uniform(-1, 1) * (time / max(time[-1], 1e-6) - 0.5)
    drift *= config.head_drift / max(float(np.abs(drift).max()), 1e-6)
    flicker_hz = rng.uniform(5, 40)
    gain = (
        1
        + config.flicker * np.sin(2 * np.pi * flicker_hz * time + rng.uniform(0, 2 * np.pi))
        + 0.25 * config.flicker * rng.standard_normal(n)
    )
    angle = rng.uniform(0, 2 * np.pi)
    strength = rng.uniform(0, config.lighting_gradient)
    return _ClipPlan(
        spec=spec,
        look=look,
        shift=shift,
        amplitude=amplitude,
        envelope=_envelope(spec),
        openness=openness,
        drift=drift,
        gain=gain,
        lighting=(strength * math.cos(angle), strength * math.sin(angle)),
        unit_flow=_displacement_field(look, spec.emotion, shift, config.size),
    )


def _motion_mask(unit_flow: np.ndarray) -> np.ndarray:
    """Ground-truth region: where the class motion reaches _MASK_FRACTION of its peak, bool (H, W)."""
    return np.linalg.norm(unit_flow, axis=-1) >= _MASK_FRACTION


def _render_frames(config: SynthMEConfig, plan: _ClipPlan, positions: Sequence[int]) -> np.ndarray:
    """Frames at the given 0-based positions, uint8 (len(positions), H, W, 3) RGB."""
    size = config.size
    subject, clip = int(plan.spec.subject), _clip_index(plan.spec.sample)
    texture = _subject_texture(config, subject)
    faces: dict[float, np.ndarray] = {}
    grid = np.arange(size, dtype=np.float32)
    gx, gy = np.meshgrid(grid, grid)  # (H, W) pixel coordinates
    centres = (grid + 0.5) / size - 0.5
    light = 1 + plan.lighting[0] * centres[None, :] + plan.lighting[1] * centres[:, None]  # (H, W)
    out = np.empty((len(positions), size, size, 3), np.uint8)
    for k, position in enumerate(positions):
        lid = float(plan.openness[position])
        if lid not in faces:
            faces[lid] = _draw_face(plan.look, texture, plan.shift, lid, size)
        flow = plan.unit_flow * np.float32(plan.amplitude * plan.envelope[position])
        flow = flow + plan.drift[position].astype(np.float32)  # (H, W, 2) + (2,)
        # Backward warp: the pixel at p shows what the neutral face had at p - displacement(p).
        frame = cv2.remap(
            faces[lid], gx - flow[..., 0], gy - flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
        frame = frame * (light * plan.gain[position])[..., None] * 255.0
        noise = _rng(config, subject, _STREAM_NOISE, clip, int(position)).standard_normal(frame.shape)
        out[k] = np.clip(np.rint(frame + config.noise_std * noise), 0, 255).astype(np.uint8)
    return out


def render_clip(
    config: SynthMEConfig, subject: str | int, sample: str, frames: Sequence[int] | None = None
) -> RenderedClip:
    """Draw one clip in memory, exactly as ``generate_synthme`` draws it before encoding to disk.

    ``frames``: 0-based positions to draw (default all ``n_frames``), e.g. ``[spec.onset_index,
    spec.apex_index]`` to get only onset and apex cheaply. Raises ValueError for an unknown clip or position.
    """
    spec = clip_spec(config, subject, sample)
    positions = np.arange(spec.n_frames) if frames is None else np.asarray(list(frames), dtype=np.int64)
    if positions.size and (positions.min() < 0 or positions.max() >= spec.n_frames):
        raise ValueError(f"frame positions must be in 0..{spec.n_frames - 1} for {spec.path}, got {positions}")
    plan = _plan_clip(config, spec)
    return RenderedClip(
        spec=spec,
        frames=_render_frames(config, plan, positions.tolist()),
        positions=positions.astype(np.int64),
        numbers=(spec.first_number + positions).astype(np.int64),
        mask=_motion_mask(plan.unit_flow),
        displacement=plan.unit_flow * np.float32(plan.amplitude),
    )


# --------------------------------------------------------------------------------------------------------
# Writing the tree
# --------------------------------------------------------------------------------------------------------


def _mask_name(subject: str, sample: str) -> str:
    return f"masks/{subject}_{sample}.png"


def _write_frames(folder: Path, clip: RenderedClip, config: SynthMEConfig) -> None:
    folder.mkdir(parents=True)
    params = (
        [cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality]
        if config.frame_format == "jpg"
        else [cv2.IMWRITE_PNG_COMPRESSION, 3]
    )
    for number, frame in zip(clip.numbers, clip.frames):
        path = folder / f"img{number}.{config.frame_format}"
        if not cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), params):
            raise OSError(f"could not write frame {path}")


def _write_video(path: Path, clip: RenderedClip, config: SynthMEConfig) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), config.fps, (config.size, config.size))
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot open a mp4v VideoWriter for {path}")
    try:
        for frame in clip.frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    _check_video_decodes(path, len(clip.frames))


def _check_video_decodes(path: Path, n_frames: int) -> None:
    """Fail at generation, not in training, when decord cannot read the video back.

    decord 0.6.0 fails on some mp4v frame sizes (48 and 72 px do; 40, 56, 64, 80, 96, 112, 128 work).
    """
    import decord

    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
        length = len(reader)
        reader.get_batch([0, length - 1]).asnumpy()
    except Exception as error:  # decord raises DECORDError/RuntimeError with a C++ trace
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise OSError(
            f"decord cannot read the SynthME video {path} back ({first_line[-120:]}); "
            "choose another `size` (e.g. 64, 96 or 128) or no video_subjects"
        ) from None
    if length != n_frames:
        raise OSError(f"SynthME video {path} decodes to {length} frames, {n_frames} were written")


def _write_sheet(path: Path, clips: Sequence[ClipSpec]) -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "Sheet1"
    sheet.append(list(SHEET_HEADER))
    for spec in clips:
        # Videos: frame numbers are 0-based indices (first_number is 0), as the video reader numbers them.
        sheet.append(
            [spec.subject, spec.sample, None, spec.onset, spec.apex, spec.offset, None]
            + [spec.action_units_text, spec.emotion]
        )
    book.save(path)


def _bounding_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _read_marker(root: Path) -> dict | None:
    try:
        return json.loads((root / COMPLETION_MARKER).read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as error:
        raise SynthMEExistsError(f"unreadable SynthME completion marker {root / COMPLETION_MARKER}: {error}") from None


def _marker_for(config: SynthMEConfig) -> dict:
    return {"generator": "merkit.data.synthetic", "format_version": FORMAT_VERSION, "config": config.to_dict()}


def _describe_difference(old: dict, new: dict) -> str:
    if old.get("format_version") != new["format_version"]:
        return f"format_version {old.get('format_version')} != {new['format_version']}"
    old_cfg, new_cfg = old.get("config", {}), new["config"]
    changed = [f"{k}: {old_cfg.get(k)!r} -> {new_cfg[k]!r}" for k in new_cfg if old_cfg.get(k) != new_cfg[k]]
    return "; ".join(changed) or "unknown difference"


def _remove_stale_temporaries(root: Path) -> None:
    """Delete build directories left by crashed runs (their process is gone); never another live build."""
    for tmp in root.parent.glob(f".{root.name}.synthme-build-*"):
        match = re.search(r"-build-(\d+)-", tmp.name)
        if match is None:
            continue
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except PermissionError:  # alive, someone else's
            pass


def generate_synthme(
    root: str | PathLike, config: SynthMEConfig = SynthMEConfig(), *, overwrite: bool = False, progress: bool = True
) -> Path:
    """Write the SynthME tree for `config` at `root` and return `root` as a Path.

    Idempotent: if `root` already holds a finished tree (its completion marker) with the same config,
    return at once without touching it. If it holds a different config (or an older format), raise
    :class:`SynthMEExistsError` naming the differences, unless `overwrite` is true, in which case the old
    tree is replaced. A non-empty `root` that is not a SynthME tree is never deleted (SynthMEExistsError).

    Atomic: the tree is built in a temporary directory next to `root` and renamed into place with the
    completion marker already inside, so a crash never leaves a tree at `root` that looks complete.
    """
    root = Path(root)
    wanted = _marker_for(config)
    existing = _read_marker(root) if root.is_dir() else None
    if existing is not None:
        if existing == wanted:
            return root
        if not overwrite:
            raise SynthMEExistsError(
                f"{root} already holds SynthME generated with a different config "
                f"({_describe_difference(existing, wanted)}); pass overwrite=True or use another root"
            )
    elif root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise SynthMEExistsError(
            f"{root} exists and is not a SynthME tree (no {COMPLETION_MARKER}); refusing to write there"
        )

    root.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(root)
    build = Path(tempfile.mkdtemp(prefix=f".{root.name}.synthme-build-{os.getpid()}-", dir=root.parent))
    try:
        _build_tree(build, config, progress)
        (build / COMPLETION_MARKER).write_text(json.dumps(wanted, indent=2) + "\n")
        _move_into_place(build, root, wanted)
    finally:
        if build.exists():
            shutil.rmtree(build, ignore_errors=True)
    return root


def _probe_video_size(build: Path, config: SynthMEConfig) -> None:
    """Write and read back a 3-frame grey video first: a size decord cannot read fails in a second, not midway."""
    probe = build / "probe.mp4"
    writer = cv2.VideoWriter(str(probe), cv2.VideoWriter_fourcc(*"mp4v"), config.fps, (config.size, config.size))
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot open a mp4v VideoWriter for {probe}")
    for level in (64, 128, 192):
        writer.write(np.full((config.size, config.size, 3), level, np.uint8))
    writer.release()
    _check_video_decodes(probe, 3)
    probe.unlink()


def _build_tree(build: Path, config: SynthMEConfig, progress: bool) -> None:
    clips = list_clips(config)
    if any(spec.is_video for spec in clips):
        _probe_video_size(build, config)
    (build / "masks").mkdir()
    rows = []
    for spec in tqdm(clips, desc="SynthME", unit="clip", disable=not progress):
        clip = render_clip(config, spec.subject, spec.sample)
        if spec.is_video:
            _write_video(build / spec.path, clip, config)
        else:
            _write_frames(build / spec.path, clip, config)
        mask_name = _mask_name(spec.subject, spec.sample)
        cv2.imwrite(str(build / mask_name), clip.mask.astype(np.uint8) * 255)
        x0, y0, x1, y1 = _bounding_box(clip.mask)
        rows.append(
            {
                "subject": spec.subject,
                "sample": spec.sample,
                "path": spec.path,
                "emotion": spec.emotion,
                "action_units": spec.action_units_text,
                "onset": spec.onset,
                "apex": spec.apex,
                "offset": spec.offset,
                "mask": mask_name,
                "mask_pixels": int(clip.mask.sum()),
                "x0": x0,
                "y0": y0,
                "x1": x1,
                "y1": y1,
                "peak_displacement_px": round(float(np.linalg.norm(clip.displacement, axis=-1).max()), 4),
            }
        )
    with open(build / MASK_CSV, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    _write_sheet(build / SHEET_NAME, clips)


def _move_into_place(build: Path, root: Path, wanted: dict) -> None:
    """Rename the finished build onto `root`, replacing an old SynthME tree or an empty directory."""
    if root.is_dir() and _read_marker(root) is not None:
        # Replacing an old tree (overwrite was checked by the caller): move it aside, then swap.
        trash = root.parent / f".{root.name}.synthme-old-{os.getpid()}"
        os.replace(root, trash)
        try:
            os.replace(build, root)
        except OSError:
            os.replace(trash, root)  # put the old tree back rather than leave nothing
            raise
        shutil.rmtree(trash, ignore_errors=True)
        return
    try:
        os.replace(build, root)  # POSIX rename also replaces an empty directory
    except OSError:
        # Another process finished the same root first: fine if it wrote what we wanted.
        if _read_marker(root) != wanted:
            raise


def load_motion_mask(root: str | PathLike, subject: str | int, sample: str) -> np.ndarray:
    """Ground-truth motion region of one clip, bool (H, W), read from ``root/masks/<subject>_<sample>.png``.

    The region is where the class-defining displacement at the apex reaches 25 % of its peak, in the clip's
    own pixel grid (same H, W as its frames, crop offset included; resize it like the frames when they are
    resized). It is the same in every frame: the global head drift (at most ``head_drift`` px) is left out.
    `subject` may be ``"01"``, ``1`` or ``"sub01"``. Raises FileNotFoundError naming root, subject and sample.
    """
    number = _subject_number(subject)
    path = Path(root) / _mask_name(f"{number:02d}", sample)
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) if path.is_file() else None
    if mask is None:
        raise FileNotFoundError(
            f"no SynthME motion mask for subject {number:02d} sample {sample} under {root} ({path})"
        )
    return mask > 127


def linear_probe_accuracies(config: SynthMEConfig = SynthMEConfig()) -> tuple[float, float]:
    """How learnable ``config`` is: leave-one-subject-out accuracy of a logistic regression on raw pixels.

    Returns ``(apex_alone, apex_minus_onset)``. A good SynthME is learnable but not trivial: the apex frame
    alone should stay far from 1.0 (subjects differ more than the motion), while the onset→apex change should
    score clearly above chance (1/3). Frames are drawn in memory (nothing written) and averaged down to
    32 × 32 grey pixels to keep the probe quick.
    """
    from sklearn.linear_model import LogisticRegression

    apex, change, labels, groups = [], [], [], []
    for spec in list_clips(config):
        clip = render_clip(config, spec.subject, spec.sample, frames=[spec.onset_index, spec.apex_index])
        grey = clip.frames.astype(np.float32).mean(-1) / 255  # (2, H, W, 3) -> (2, H, W)
        small = np.stack([cv2.resize(g, (32, 32), interpolation=cv2.INTER_AREA) for g in grey])  # (2, 32, 32)
        apex.append(small[1].ravel())
        change.append((small[1] - small[0]).ravel())
        labels.append(EMOTIONS.index(spec.emotion))
        groups.append(spec.subject)
    y, g = np.array(labels), np.array(groups)

    def loso_accuracy(features: list[np.ndarray]) -> float:
        x = np.stack(features)
        predicted = np.empty_like(y)
        for subject in np.unique(g):
            train = g != subject
            centred = x - x[train].mean(0)  # centred on the training subjects only
            model = LogisticRegression(max_iter=1000).fit(centred[train], y[train])
            predicted[~train] = model.predict(centred[~train])
        return float((predicted == y).mean())

    return loso_accuracy(apex), loso_accuracy(change)
