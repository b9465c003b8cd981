"""SynthME's configuration, its class table and the seeded random streams every draw comes from."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np

from merkit.errors import MerkitValueError

EMOTIONS: tuple[str, ...] = ("happiness", "disgust", "surprise")
#: The action units that define each class (the motion drawn and the sheet's Action Units column).
CLASS_ACTION_UNITS: dict[str, tuple[str, ...]] = {
    "happiness": ("12",),
    "disgust": ("4",),
    "surprise": ("1", "2"),
}
# A pixel belongs to the motion region when its apex displacement is at least this fraction of the peak.
MASK_FRACTION = 0.25
# Streams of the seeded random generators; each draw has its own so adding one never shifts another.
STREAM_LOOK, STREAM_CLASSES, STREAM_CLIP, STREAM_NOISE, STREAM_TEXTURE = range(5)


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
            raise MerkitValueError("invalid SynthMEConfig: " + "; ".join(problems))

    def to_dict(self) -> dict:
        """JSON-ready dict (tuples as lists); ``SynthMEConfig(**d)`` gives the config back."""
        return json.loads(json.dumps(dataclasses.asdict(self)))


def stream_rng(config: SynthMEConfig, *keys: int) -> np.random.Generator:
    """The generator of one random stream, seeded by ``(config.seed, *keys)``: the same keys draw the same numbers."""
    return np.random.default_rng([config.seed, *keys])
