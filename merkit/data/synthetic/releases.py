"""SynthME release mode: write a dataset exactly in the shape of a real release, with SynthME's faces.

``write_release("casme2", out)`` writes what a user with a CASME II copy has on disk (REAL_FORMATS.md):

====================  ======================================================================================
kind                  what ``out`` holds
====================  ======================================================================================
``casme2``            ``CASME2-coding-20140508.xlsx``, ``CASME2-coding-20190701.xlsx``,
                      ``CASME2_RAW_selected/sub01/EP02_01f/img46.jpg`` (640×480 colour, face inside a scene)
                      and/or ``Cropped/sub01/EP02_01f/reg_img46.jpg`` (the face alone, size per clip)
``samm``              ``SAMM_Micro_FACS_Codes_v2.xlsx``, ``SAMM/006/006_1_2/006_05562.jpg`` (2040×1088 grey)
``smic_hs``           ``HS/s1/micro/negative/s1_ne_01/image106522.bmp`` (640×480, no sheet); optionally
                      ``SMIC_all_cropped/HS/.../reg_image106522.bmp``
``casme3a``           ``cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx``, ``part_A/spNO.1/a/color/17.jpg``
``megc2019``          ``CASME2/``, ``SAMM/``, ``SMIC/`` side by side (each as above)
====================  ======================================================================================

Counts, subjects, emotion spellings and named sheet faults are those of :mod:`.release_rows`. Every clip
carries SynthME's class-defining micro-motion (:func:`~.render.render_motion_clip`): happiness AU12, the
negative emotions AU4, surprise AU1+2, repression and contempt AU14, others a one-sided AU14. Clip lengths
follow the release's frame rate (200, 200, 100, 30 fps). ``scale`` shrinks frame sizes and clip lengths.
Each clip's face gets a static eye-socket shadow and one grey-level stretch (lit-recording contrast): without
them the OpenCV Haar detector missed about one subject in five; with them it finds the face of every CASME II
and SMIC-HS clip and of one clip per subject of SAMM and CAS(ME)^3 (checked at scale 1).

Side files that no builder reads, under ``out/synthme_truth/``: ``release.json`` (kind, small, scale,
seed, layouts; ``small: true`` means the counts are not the real ones), ``motion_regions.csv`` and
``masks/<dataset>/<subject>_<sample>_<frames>.png`` (the motion region in the frame coordinates of the raw
and/or cropped frames), and ``face_boxes.csv`` (the true face box of each clip in its raw frames).

Assumptions (labelled as such): CAS(ME)^3 frames are 1280×720 colour in ``part_A/<subject>/<letter>/color``
(the dataset yaml's assumed layout); the CASME II face box is about 260 px; SAMM faces are about 450 px,
drawn at most 128 px and upsampled (so are CASME II's); the first frame numbers are drawn from plausible ranges.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from merkit.data.synthetic.config import SynthMEConfig
from merkit.data.synthetic.faces import _Look, _subject_look
from merkit.data.synthetic.release_rows import (
    ReleaseRow,
    casme2_2019_changes,
    casme2_rows,
    casme3a_rows,
    samm_rows,
    smic_hs_rows,
)
from merkit.data.synthetic.release_sheets import (
    SheetClip,
    write_casme2_sheet,
    write_casme3a_sheet,
    write_samm_sheet,
)
from merkit.data.synthetic.render import render_motion_clip
from merkit.errors import MerkitFileExistsError

__all__ = [
    "RELEASE_KINDS",
    "TRUTH_DIR",
    "ReleaseExistsError",
    "has_motion_masks",
    "load_release_mask",
    "release_info",
    "write_release",
]

RELEASE_KINDS = ("casme2", "samm", "smic_hs", "casme3a", "megc2019")
#: Folder of the side files (masks, face boxes, release.json); no builder reads it.
TRUTH_DIR = "synthme_truth"
RELEASE_FORMAT_VERSION = 1
#: Part folders of the MEGC2019 composite root, as a user unpacks the three datasets side by side.
MEGC_PARTS = {"casme2": "CASME2", "samm": "SAMM", "smic_hs": "SMIC"}
_RENDER_MAX = 128  # faces larger than this are drawn at this side and upsampled (drawing is the slow part)
_LAYOUTS = ("raw", "cropped", "both")


class ReleaseExistsError(MerkitFileExistsError):
    """``out`` holds something other than the release asked for."""


@dataclass(frozen=True)
class _Form:
    """How one dataset's release looks on disk at scale 1."""

    key: int  # seeds the dataset's random streams
    fps: float
    frame_size: tuple[int, int]  # (W, H) of raw frames
    face_side: tuple[int, int]  # range of the face box side, px
    frames: tuple[int, int]  # range of clip lengths in frames
    first: tuple[int, int]  # range of the first frame number
    grey: bool
    motion_amplitude: float = 2.5  # px at 96 px of face, scaled with the face


_FORMS = {
    "casme2": _Form(1, 200.0, (640, 480), (230, 290), (44, 70), (1, 300), False),
    "samm": _Form(2, 200.0, (2040, 1088), (420, 480), (44, 70), (1000, 9000), True),
    "smic_hs": _Form(3, 100.0, (640, 480), (200, 260), (24, 40), (1000, 900000), False),
    "casme3a": _Form(4, 30.0, (1280, 720), (260, 320), (10, 18), (1, 4000), False),
}
# Sheet emotion (lower case) -> the motion the clip carries.
_MOTION = {
    "happiness": "happiness", "happy": "happiness", "positive": "happiness",
    "disgust": "disgust", "anger": "disgust", "fear": "disgust", "sadness": "disgust", "sad": "disgust",
    "negative": "disgust",
    "surprise": "surprise",
    "repression": "dimpler", "contempt": "dimpler",
    "others": "dimpler_left", "other": "dimpler_left",
}
_ACTION_UNITS = {  # cycled per clip; a single AU becomes a number cell in CASME II
    "happiness": ("12", "6+12", "R12"),
    "disgust": ("4", "4+9", "4+L10", "4+7"),
    "surprise": ("1+2", "1+2+5"),
    "dimpler": ("14", "L14", "R14"),
    "dimpler_left": ("L14", "4+L14", "L10A/B"),
}
_OBJECTIVE = {"happiness": 1, "disgust": 2, "surprise": 3, "dimpler": 4, "dimpler_left": 7}


@dataclass(frozen=True)
class _Clip:
    """One clip ready to draw and write: its row, the timing on disk and what the sheet says."""

    dataset: str
    row: ReleaseRow
    index: int
    first: int  # frame number of the first frame on disk
    n_frames: int
    onset_index: int  # 0-based positions the motion follows
    apex_index: int
    offset_index: int
    face_side: int  # px, in the release's frames
    box_xy: tuple[int, int]  # top-left corner of the face box in the raw frame
    sheet: SheetClip

    @property
    def motion(self) -> str:
        return _MOTION[self.row.emotion.lower()]

    @property
    def numbers(self) -> range:
        return range(self.first, self.first + self.n_frames)


def _scaled(value: int, scale: float, minimum: int) -> int:
    return max(minimum, int(round(value * scale)))


def _frame_size(form: _Form, scale: float) -> tuple[int, int]:
    width, height = form.frame_size
    return _scaled(width, scale, 48), _scaled(height, scale, 40)


def _plan(dataset: str, rows: list[ReleaseRow], scale: float, seed: int) -> list[_Clip]:
    """Timing, face size and place, and sheet cells of every clip of one dataset."""
    form = _FORMS[dataset]
    width, height = _frame_size(form, scale)
    clips = []
    recording_end: dict[tuple[int, str], int] = {}  # CAS(ME)^3: MEs of one recording follow each other
    for index, row in enumerate(rows):
        rng = np.random.default_rng([seed, form.key, index])
        side = min(_scaled(int(rng.integers(*form.face_side)), scale, 32), width, height)
        if row.timing is not None:
            onset, apex, offset = row.timing
            lead = 3
            first, n = onset - lead, offset - onset + 2 * lead + 1
            onset_i, apex_i, offset_i = lead, apex - first, offset - first
        else:
            n = _scaled(int(rng.integers(*form.frames)), scale, 12)
            onset_i = max(1, int(round(rng.uniform(0.08, 0.18) * n)))
            offset_i = min(n - 2, n - 1 - max(1, int(round(rng.uniform(0.05, 0.12) * n))))
            apex_i = int(round(onset_i + rng.uniform(0.35, 0.6) * (offset_i - onset_i)))
            apex_i = min(max(apex_i, onset_i + 1), offset_i - 1)
            if row.fault == "apex_offset":
                apex_i = offset_i - 1  # the sheet writes apex = offset; the motion peaks just before it
            first = int(rng.integers(*form.first))
            if dataset == "casme3a":
                key = (row.subject, row.sample)
                first = recording_end.get(key, first)
                recording_end[key] = first + n + int(rng.integers(5, 60))
        # The face sits near the frame centre (SAMM: in the centre third), a little off per clip.
        cx = width / 2 + rng.uniform(-0.04, 0.04) * width
        cy = height * (0.45 if dataset != "samm" else 0.5) + rng.uniform(-0.03, 0.03) * height
        x = int(np.clip(round(cx - side / 2), 0, width - side))
        y = int(np.clip(round(cy - side / 2), 0, height - side))
        onset, apex, offset = first + onset_i, first + apex_i, first + offset_i
        sheet_onset, sheet_apex, sheet_offset = onset, apex, offset
        if row.fault == "apex_slash":
            sheet_apex = "/"
        elif row.fault == "apex_onset":
            sheet_apex = onset
        elif row.fault == "apex_offset":
            sheet_apex = offset  # drawn with its peak one frame before: the motion needs a fall to end
        elif row.fault == "apex_outside":
            sheet_apex = row.sheet_apex if row.sheet_apex is not None else offset + 7
        elif row.fault == "onset_after":
            sheet_onset, sheet_offset = offset, onset
        elif row.fault == "offset_zero":
            sheet_offset = 0
        motion = _MOTION[row.emotion.lower()]
        units = _ACTION_UNITS[motion]
        sheet = SheetClip(
            subject=row.subject,
            sample=row.sample,
            onset=sheet_onset,
            apex=sheet_apex,
            offset=sheet_offset,
            emotion=row.emotion,
            action_units=units[index % len(units)],
            objective_class=_OBJECTIVE[motion],
            inducement=int(row.sample.split("_")[1]) if dataset == "samm" else 1,
        )
        clips.append(_Clip(dataset, row, index, first, n, onset_i, apex_i, offset_i, side, (x, y), sheet))
    return clips


# --------------------------------------------------------------------------------------------------------
# Drawing: the face, and the raw frame around it
# --------------------------------------------------------------------------------------------------------


def _subject_config(seed: int, form: _Form, render_side: int, dataset: str) -> SynthMEConfig:
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


def _draw_clip(clip: _Clip, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The clip's face frames uint8 (T, S, S, 3) RGB at the face side S, and its motion mask bool (S, S)."""
    form = _FORMS[clip.dataset]
    render_side = min(clip.face_side, _RENDER_MAX)
    config = _subject_config(seed, form, render_side, clip.dataset)
    apex = min(clip.apex_index, clip.offset_index - 1)
    drawn = render_motion_clip(config, clip.row.subject, clip.index, clip.motion, clip.n_frames,
                               clip.onset_index, apex, clip.offset_index)
    look = _subject_look(config, clip.row.subject)
    frames, mask = _stretch(drawn.frames * _eye_shadow(look, render_side)), drawn.mask
    if render_side != clip.face_side:
        size = (clip.face_side, clip.face_side)
        frames = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_CUBIC) for f in frames])  # (T, S, S, 3)
        mask = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    return frames, mask


def _eye_shadow(look: _Look, side: int) -> np.ndarray:
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


def _scene(dataset: str, subject: int, seed: int, width: int, height: int) -> np.ndarray:
    """A subject's recording scene, float32 (H, W, 3) RGB in [0, 1]: wall, a panel and shoulders."""
    form = _FORMS[dataset]
    rng = np.random.default_rng([seed, form.key, subject, 77])
    look = _subject_look(_subject_config(seed, form, 96, dataset), subject)
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


def _compose(scene: np.ndarray, faces: np.ndarray, xy: tuple[int, int]) -> Iterator[np.ndarray]:
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


def _write_images(folder: Path, names: Iterable[str], frames: Iterable[np.ndarray], grey: bool) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in zip(names, frames):
        image = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY if grey else cv2.COLOR_RGB2BGR)
        params = [cv2.IMWRITE_JPEG_QUALITY, 92] if name.endswith(".jpg") else []
        if not cv2.imwrite(str(folder / name), image, params):
            raise OSError(f"could not write frame {folder / name}")


# --------------------------------------------------------------------------------------------------------
# Where each dataset's clips go
# --------------------------------------------------------------------------------------------------------


def _clip_folders(clip: _Clip, layout: str, smic_names: str, samm_prefix: str) -> dict[str, tuple[str, str]]:
    """``{"raw"|"cropped": (folder relative to the part root, frame name pattern with {n})}``."""
    row = clip.row
    wanted = ("raw", "cropped") if layout == "both" else (layout,)
    if clip.dataset == "casme2":
        folders = {"raw": (f"CASME2_RAW_selected/sub{row.subject:02d}/{row.sample}", "img{n}.jpg"),
                   "cropped": (f"Cropped/sub{row.subject:02d}/{row.sample}", "reg_img{n}.jpg")}
        return {k: folders[k] for k in wanted}
    if clip.dataset == "smic_hs":
        subject = f"s{row.subject:02d}" if smic_names == "s01" else f"s{row.subject}"
        sample = re.sub(r"^s\d+_", f"{subject}_", row.sample)
        tail = f"{subject}/micro/{row.emotion}/{sample}"
        folders = {"raw": (f"HS/{tail}", "image{n}.bmp"), "cropped": (f"SMIC_all_cropped/HS/{tail}", "reg_image{n}.bmp")}
        return {k: folders[k] for k in wanted}
    if clip.dataset == "samm":
        subject = f"{row.subject:03d}"
        return {"raw": (f"{samm_prefix}{subject}/{row.sample}", subject + "_{n:05d}.jpg")}
    return {"raw": (f"part_A/spNO.{row.subject}/{row.sample}/color", "{n}.jpg")}


def _sample_key(dataset: str, sample: str) -> str:
    """The sample id a builder gives a clip, normalised: SMIC ``s01_ne_01`` and ``s1_ne_01`` agree."""
    if dataset == "smic_hs":
        return re.sub(r"^s0*(\d+)_", r"s\1_", sample)
    return sample


def _manifest_sample(clip: _Clip) -> str:
    if clip.dataset == "casme3a":  # casme3a.yaml: sample_id "{filename}_{onset}" (the onset as written)
        return f"{clip.row.sample}_{clip.sheet.onset}"
    return clip.row.sample


def _rows_of(dataset: str, small: bool) -> list[ReleaseRow]:
    return {"casme2": casme2_rows, "samm": samm_rows, "smic_hs": smic_hs_rows, "casme3a": casme3a_rows}[dataset](small)


def _write_part(
    dataset: str,
    part: Path,
    truth: Path,
    *,
    layout: str,
    smic_names: str,
    scale: float,
    small: bool,
    seed: int,
    progress: bool,
    samm_prefix: str,
) -> tuple[list[dict], list[dict]]:
    """One dataset's sheet(s) and frames under `part`; masks under ``truth/masks/<dataset>``.
    Returns the rows of motion_regions.csv and face_boxes.csv."""
    form = _FORMS[dataset]
    clips = _plan(dataset, _rows_of(dataset, small), scale, seed)
    width, height = _frame_size(form, scale)
    scenes: dict[int, np.ndarray] = {}
    regions, boxes = [], []
    (truth / "masks" / dataset).mkdir(parents=True, exist_ok=True)
    for clip in tqdm(clips, desc=f"SynthME {dataset}", unit="clip", disable=not progress):
        faces, mask = _draw_clip(clip, seed)
        folders = _clip_folders(clip, layout, smic_names, samm_prefix)
        sample = _manifest_sample(clip)
        numbers = [str(n) for n in clip.numbers]
        for frames_kind, (folder, pattern) in folders.items():
            names = [pattern.format(n=int(n)) for n in numbers]
            if frames_kind == "cropped":
                frames, full_mask = faces, mask
            else:
                if clip.row.subject not in scenes:
                    scenes[clip.row.subject] = _scene(dataset, clip.row.subject, seed, width, height)
                frames = _compose(scenes[clip.row.subject], faces, clip.box_xy)
                full_mask = np.zeros((height, width), bool)
                x, y = clip.box_xy
                full_mask[y : y + clip.face_side, x : x + clip.face_side] = mask
            _write_images(part / folder, names, frames, form.grey)
            mask_file = f"masks/{dataset}/{clip.row.subject}_{_sample_key(dataset, sample)}_{frames_kind}.png"
            cv2.imwrite(str(truth / mask_file), full_mask.astype(np.uint8) * 255)
            ys, xs = np.nonzero(full_mask)
            regions.append({
                "dataset": dataset, "subject": clip.row.subject, "sample": _sample_key(dataset, sample),
                "frames": frames_kind, "folder": folder, "emotion": clip.row.emotion, "motion": clip.motion,
                "onset": clip.first + clip.onset_index, "apex": clip.first + clip.apex_index,
                "offset": clip.first + clip.offset_index, "fault": clip.row.fault, "mask": mask_file,
                "x0": int(xs.min()), "y0": int(ys.min()), "x1": int(xs.max()) + 1, "y1": int(ys.max()) + 1,
            })
            if frames_kind == "raw":
                x, y = clip.box_xy
                boxes.append({"dataset": dataset, "subject": clip.row.subject,
                              "sample": _sample_key(dataset, sample), "folder": folder,
                              "x": x, "y": y, "w": clip.face_side, "h": clip.face_side})
    sheets = [c.sheet for c in clips]
    if dataset == "casme2":
        write_casme2_sheet(part / "CASME2-coding-20140508.xlsx", sheets, "2014")
        changed = casme2_2019_changes([c.row for c in clips])
        sheets_2019 = []
        for k, s in enumerate(sheets):
            if (s.subject, s.sample) in changed:
                s = _replace(s, emotion="surprise")
            if k % 4 == 1 and k < 4 * 57:  # the 2019 sheet differs in Action Units on 57 rows
                s = _replace(s, action_units=f"{s.action_units}+L10")
            sheets_2019.append(s)
        write_casme2_sheet(part / "CASME2-coding-20190701.xlsx", sheets_2019, "2019")
    elif dataset == "samm":
        write_samm_sheet(part / "SAMM_Micro_FACS_Codes_v2.xlsx", sheets)
    elif dataset == "casme3a":
        write_casme3a_sheet(part / "cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx", sheets)
    # SMIC-HS: no per-clip sheet; the class is the folder.
    return regions, boxes


def _replace(sheet: SheetClip, **changes: object) -> SheetClip:
    from dataclasses import replace

    return replace(sheet, **changes)


def _write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def release_info(root: str | PathLike) -> dict | None:
    """``synthme_truth/release.json`` of an emulated release (kind, small, scale, seed, ...), or None."""
    path = Path(root) / TRUTH_DIR / "release.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def write_release(
    kind: str,
    out: str | PathLike,
    *,
    layout: str = "both",
    smic_layout: str = "raw",
    smic_names: str = "s1",
    scale: float = 1.0,
    small: bool = False,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Write an emulated `kind` release (one of :data:`RELEASE_KINDS`) at `out`; returns `out`.

    ``layout`` picks CASME II's frames (``raw`` = ``CASME2_RAW_selected/``, ``cropped`` = ``Cropped/``,
    ``both``); ``smic_layout`` SMIC-HS's (``raw`` = ``HS/``, ``cropped`` = ``SMIC_all_cropped/HS/``,
    ``both``); ``smic_names`` spells SMIC subject folders ``s1`` (release) or ``s01``. ``scale`` (0 < scale
    <= 1) shrinks frame sizes and clip lengths; ``small`` writes a few clips per class over a few subjects
    (``release.json`` then says ``small: true``: its counts are not the real ones). Same arguments, same
    tree: an existing finished release with the same arguments is returned untouched; anything else already
    at `out` raises :class:`ReleaseExistsError`. Built in a temporary folder beside `out` and renamed into
    place, so a crash never leaves a half-written release.
    """
    if kind not in RELEASE_KINDS:
        raise ValueError(f"unknown release kind {kind!r}; known: {RELEASE_KINDS}")
    for name, value in (("layout", layout), ("smic_layout", smic_layout)):
        if value not in _LAYOUTS:
            raise ValueError(f"{name} must be one of {_LAYOUTS}, got {value!r}")
    if smic_names not in ("s1", "s01"):
        raise ValueError(f"smic_names must be 's1' or 's01', got {smic_names!r}")
    if not 0 < scale <= 1:
        raise ValueError(f"scale must be in (0, 1], got {scale}")
    out = Path(out)
    info = {"generator": "merkit.data.synthetic.releases", "format_version": RELEASE_FORMAT_VERSION,
            "kind": kind, "small": bool(small), "scale": float(scale), "seed": int(seed), "layout": layout,
            "smic_layout": smic_layout, "smic_names": smic_names}
    if out.is_dir() and any(out.iterdir()):
        if release_info(out) == info:
            return out
        raise ReleaseExistsError(f"{out} is not empty and is not this emulated release ({info}); use another folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    build = Path(tempfile.mkdtemp(prefix=f".{out.name}.release-build-", dir=out.parent))
    try:
        truth = build / TRUTH_DIR
        truth.mkdir()
        parts = MEGC_PARTS if kind == "megc2019" else {kind: ""}
        regions, boxes = [], []
        for dataset, folder in parts.items():
            r, b = _write_part(
                dataset, build / folder if folder else build, truth, layout=layout if dataset == "casme2" else
                (smic_layout if dataset == "smic_hs" else "raw"), smic_names=smic_names, scale=scale,
                small=small, seed=seed, progress=progress, samm_prefix="" if kind == "megc2019" else "SAMM/",
            )
            regions += r
            boxes += b
        _write_csv(truth / "motion_regions.csv", regions)
        _write_csv(truth / "face_boxes.csv", boxes)
        (truth / "release.json").write_text(json.dumps(info, indent=2) + "\n")  # written last
        if out.is_dir():
            out.rmdir()  # empty (checked above)
        os.replace(build, out)
    finally:
        if build.exists():
            shutil.rmtree(build, ignore_errors=True)
    return out


# --------------------------------------------------------------------------------------------------------
# Reading the side files
# --------------------------------------------------------------------------------------------------------


def has_motion_masks(root: str | PathLike) -> bool:
    """True when `root` holds ground-truth motion masks: a SynthME tree or an emulated release."""
    root = Path(root)
    return (root / TRUTH_DIR / "motion_regions.csv").is_file() or (root / "masks" / "motion_regions.csv").is_file()


def _regions(root: Path) -> list[dict]:
    with open(root / TRUTH_DIR / "motion_regions.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def load_release_mask(root: str | PathLike, subject: str | int, sample: str, dataset: str | None = None) -> np.ndarray:
    """The motion mask of one clip of an emulated release, bool (H, W) in its frames' coordinates.

    When the release has both raw and cropped frames of the clip, the cropped one's mask is returned: the
    builders read a copy's cropped release when it has one. ``dataset`` may be left out when the release
    holds one dataset. Raises FileNotFoundError naming root, dataset, subject and sample.
    """
    root = Path(root)
    digits = re.findall(r"\d+", str(subject))
    number = int(digits[-1]) if digits else -1
    found = {}
    for row in _regions(root):
        if dataset is not None and row["dataset"] != dataset:
            continue
        if int(row["subject"]) == number and row["sample"] == _sample_key(row["dataset"], str(sample)):
            found[row["frames"]] = row
    row = found.get("cropped") or found.get("raw")
    mask = cv2.imread(str(root / TRUTH_DIR / row["mask"]), cv2.IMREAD_GRAYSCALE) if row else None
    if mask is None:
        raise FileNotFoundError(
            f"no motion mask for dataset {dataset} subject {subject} sample {sample} under {root / TRUTH_DIR}"
        )
    return mask > 127
