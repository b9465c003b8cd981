"""The face: per-subject look (geometry, colours, texture), drawn with soft-edged shapes.

Coordinates: u (right) and v (down) in units of the frame side, 0 at the frame centre. Shapes are signed
distances converted to pixels and turned into 1-pixel anti-aliased alphas, so sub-pixel changes in geometry
change the image smoothly.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from merkit.data.synthetic.config import STREAM_LOOK, STREAM_TEXTURE, SynthMEConfig, stream_rng


@dataclass(frozen=True)
class FaceLook:
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


def subject_look(config: SynthMEConfig, subject: int) -> FaceLook:
    """The face of ``subject``: geometry and colours drawn from its own stream (the same whatever else is drawn)."""
    rng = stream_rng(config, subject, STREAM_LOOK)
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
    return FaceLook(
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


def subject_texture(config: SynthMEConfig, subject: int) -> np.ndarray:
    """Skin/hair texture multiplier, float32 (H + 2m, W + 2m) with m = crop_jitter: moves with the face."""
    rng = stream_rng(config, subject, STREAM_TEXTURE)
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


def _eye_boundaries(look: FaceLook, du: np.ndarray, openness: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Upper and lower lid curves (v offsets from the eye centre) and the eye's extent weight t."""
    t = np.clip(1 - (du / look.eye_w) ** 2, 0, 1) ** 0.8
    lower = 0.75 * look.eye_h * t
    # Closing moves the upper lid down onto the lower lid; the lower lid barely moves in a blink.
    upper = lower - 1.75 * look.eye_h * t * openness
    return upper, lower, t


def draw_face(look: FaceLook, texture: np.ndarray, shift: tuple[int, int], openness: float, size: int) -> np.ndarray:
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
    top = lip_line - look.upper_lip * t**0.6 * (1 - 0.35 * np.exp(-((du / 0.12) ** 2)))
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
