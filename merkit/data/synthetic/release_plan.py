"""How each clip of an emulated release is laid out before it is drawn: the release's form at scale 1 (frame
size, face size, fps, clip lengths), the motion each sheet emotion carries, and every clip's timing, face place
and sheet cells (the named faults of :mod:`.release_rows` included)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from merkit.data.synthetic.release_rows import ReleaseRow
from merkit.data.synthetic.release_sheets import SheetClip


@dataclass(frozen=True)
class ReleaseForm:
    """How one dataset's release looks on disk at scale 1."""

    key: int  # seeds the dataset's random streams
    fps: float
    frame_size: tuple[int, int]  # (W, H) of raw frames
    face_side: tuple[int, int]  # range of the face box side, px
    frames: tuple[int, int]  # range of clip lengths in frames
    first: tuple[int, int]  # range of the first frame number
    grey: bool
    motion_amplitude: float = 2.5  # px at 96 px of face, scaled with the face


RELEASE_FORMS = {
    "casme2": ReleaseForm(1, 200.0, (640, 480), (230, 290), (44, 70), (1, 300), False),
    "samm": ReleaseForm(2, 200.0, (2040, 1088), (420, 480), (44, 70), (1000, 9000), True),
    "smic_hs": ReleaseForm(3, 100.0, (640, 480), (200, 260), (24, 40), (1000, 900000), False),
    "casme3a": ReleaseForm(4, 30.0, (1280, 720), (260, 320), (10, 18), (1, 4000), False),
}
# Sheet emotion (lower case) -> the motion the clip carries.
_MOTION = {
    "happiness": "happiness",
    "happy": "happiness",
    "positive": "happiness",
    "disgust": "disgust",
    "anger": "disgust",
    "fear": "disgust",
    "sadness": "disgust",
    "sad": "disgust",
    "negative": "disgust",
    "surprise": "surprise",
    "repression": "dimpler",
    "contempt": "dimpler",
    "others": "dimpler_left",
    "other": "dimpler_left",
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
class PlannedClip:
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


def release_frame_size(form: ReleaseForm, scale: float) -> tuple[int, int]:
    """The raw frame (width, height) of a release drawn at ``scale`` (never below 48 x 40)."""
    width, height = form.frame_size
    return _scaled(width, scale, 48), _scaled(height, scale, 40)


def plan_release(dataset: str, rows: list[ReleaseRow], scale: float, seed: int) -> list[PlannedClip]:
    """Timing, face size and place, and sheet cells of every clip of one dataset."""
    form = RELEASE_FORMS[dataset]
    width, height = release_frame_size(form, scale)
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
        clips.append(PlannedClip(dataset, row, index, first, n, onset_i, apex_i, offset_i, side, (x, y), sheet))
    return clips
