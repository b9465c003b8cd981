"""One clip in memory: the clip list and timing, the class-defining motion, nuisances, and the frames.

Axis letters: T frames, H height, W width, 3 RGB channels.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from merkit.data.synthetic.config import (
    CLASS_ACTION_UNITS,
    EMOTIONS,
    MASK_FRACTION,
    STREAM_CLASSES,
    STREAM_CLIP,
    STREAM_NOISE,
    SynthMEConfig,
    stream_rng,
)
from merkit.data.synthetic.faces import FaceLook, draw_face, subject_look, subject_texture


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


# --------------------------------------------------------------------------------------------------------
# Random streams and the clip list
# --------------------------------------------------------------------------------------------------------


def subject_number(subject: str | int) -> int:
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
    order = stream_rng(config, subject, STREAM_CLASSES).permutation(len(classes))
    return [classes[i] for i in order]


def clip_spec(config: SynthMEConfig, subject: str | int, sample: str) -> ClipSpec:
    """Sheet row of one clip (class, timing, first frame number); raises ValueError for an unknown clip."""
    number = subject_number(subject)
    clip = _clip_index(sample)
    if not 1 <= number <= config.n_subjects or clip >= config.clips_per_subject:
        raise ValueError(
            f"SynthME has no clip subject={subject!r} sample={sample!r} "
            f"({config.n_subjects} subjects x {config.clips_per_subject} clips)"
        )
    emotion = _subject_classes(config, number)[clip]
    rng = stream_rng(config, number, STREAM_CLIP, clip)
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
# Motion: the class-defining displacement field, nuisances, and the frames of one clip
# --------------------------------------------------------------------------------------------------------


def _displacement_field(look: FaceLook, emotion: str, shift: tuple[int, int], size: int) -> np.ndarray:
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
        elif emotion == "dimpler" or (emotion == "dimpler_left" and side < 0):
            # AU14 (both corners, or only the left one: a unilateral AU14 as in contempt): corners pulled in
            cx, cy, sigx, sigy = side * look.mouth_w, look.mouth_y - look.mouth_curve, 0.05, 0.04
            direction = np.array([-side * 0.95, 0.3])
        elif emotion == "dimpler_left":
            continue
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
    look: FaceLook
    shift: tuple[int, int]
    amplitude: float  # apex displacement in pixels
    envelope: np.ndarray  # (T,)
    openness: np.ndarray  # (T,) eye openness, 1 = open
    drift: np.ndarray  # (T, 2) global (dx, dy) in pixels
    gain: np.ndarray  # (T,) illumination
    lighting: tuple[float, float]  # gradient strength along u and v
    unit_flow: np.ndarray = field(repr=False)  # (H, W, 2)
    clip_key: int = 0  # seeds the clip's streams (the clip's index for SynthME, any number for a release)


def _plan_clip(config: SynthMEConfig, spec: ClipSpec, clip_key: int | None = None) -> _ClipPlan:
    subject = int(spec.subject)
    clip_key = _clip_index(spec.sample) if clip_key is None else int(clip_key)
    rng = stream_rng(config, subject, STREAM_CLIP, clip_key, 1)
    n, fps = spec.n_frames, config.fps
    look = subject_look(config, subject)
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
        clip_key=clip_key,
    )


def _motion_mask(unit_flow: np.ndarray) -> np.ndarray:
    """Ground-truth region: where the class motion reaches MASK_FRACTION of its peak, bool (H, W)."""
    return np.linalg.norm(unit_flow, axis=-1) >= MASK_FRACTION


def _render_frames(config: SynthMEConfig, plan: _ClipPlan, positions: Sequence[int]) -> np.ndarray:
    """Frames at the given 0-based positions, uint8 (len(positions), H, W, 3) RGB."""
    size = config.size
    subject, clip = int(plan.spec.subject), plan.clip_key
    texture = subject_texture(config, subject)
    faces: dict[float, np.ndarray] = {}
    grid = np.arange(size, dtype=np.float32)
    gx, gy = np.meshgrid(grid, grid)  # (H, W) pixel coordinates
    centres = (grid + 0.5) / size - 0.5
    light = 1 + plan.lighting[0] * centres[None, :] + plan.lighting[1] * centres[:, None]  # (H, W)
    out = np.empty((len(positions), size, size, 3), np.uint8)
    for k, position in enumerate(positions):
        lid = float(plan.openness[position])
        if lid not in faces:
            faces[lid] = draw_face(plan.look, texture, plan.shift, lid, size)
        flow = plan.unit_flow * np.float32(plan.amplitude * plan.envelope[position])
        flow = flow + plan.drift[position].astype(np.float32)  # (H, W, 2) + (2,)
        # Backward warp: the pixel at p shows what the neutral face had at p - displacement(p).
        frame = cv2.remap(
            faces[lid], gx - flow[..., 0], gy - flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
        )
        frame = frame * (light * plan.gain[position])[..., None] * 255.0
        noise = stream_rng(config, subject, STREAM_NOISE, clip, int(position)).standard_normal(frame.shape)
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


#: The motions a clip can carry: SynthME's three classes plus AU14 (both sides, or the left side only).
MOTIONS: tuple[str, ...] = (*EMOTIONS, "dimpler", "dimpler_left")


def render_motion_clip(
    config: SynthMEConfig,
    subject: int,
    clip_key: int,
    motion: str,
    n_frames: int,
    onset_index: int,
    apex_index: int,
    offset_index: int,
) -> RenderedClip:
    """Draw any clip of SynthME's faces in memory: subject `subject`'s face (``config.size`` square, face
    filling it) carrying `motion` (one of :data:`MOTIONS`) with the given 0-based timing.

    Everything random is seeded by ``(config.seed, subject, clip_key)``, so a release writer gets the same
    clip for the same key whatever else it writes. Needs ``0 < onset < apex < offset < n_frames - 1``.
    """
    if motion not in MOTIONS:
        raise ValueError(f"unknown motion {motion!r}; known: {MOTIONS}")
    if not 0 < onset_index < apex_index < offset_index < n_frames:
        raise ValueError(
            f"clip timing must satisfy 0 < onset < apex < offset < n_frames, got "
            f"{onset_index}, {apex_index}, {offset_index}, {n_frames}"
        )
    spec = ClipSpec(
        subject=str(int(subject)),
        sample=f"clip{clip_key}",
        emotion=motion,
        action_units=(),
        is_video=False,
        first_number=0,
        onset_index=onset_index,
        apex_index=apex_index,
        offset_index=offset_index,
        n_frames=n_frames,
    )
    plan = _plan_clip(config, spec, clip_key)
    positions = np.arange(n_frames)
    return RenderedClip(
        spec=spec,
        frames=_render_frames(config, plan, positions.tolist()),
        positions=positions.astype(np.int64),
        numbers=positions.astype(np.int64),
        mask=_motion_mask(plan.unit_flow),
        displacement=plan.unit_flow * np.float32(plan.amplitude),
    )
