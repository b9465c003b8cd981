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

Counts, subjects, emotion spellings and named sheet faults are those of :mod:`.release_rows`; each clip's
timing, face place and sheet cells are planned in :mod:`.release_plan` and drawn in :mod:`.release_draw`. Every clip
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
from os import PathLike
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from merkit.data.synthetic.release_draw import compose_frames, draw_release_clip, release_scene, write_images
from merkit.data.synthetic.release_plan import RELEASE_FORMS, PlannedClip, plan_release, release_frame_size
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
_LAYOUTS = ("raw", "cropped", "both")


class ReleaseExistsError(MerkitFileExistsError):
    """``out`` holds something other than the release asked for."""


# --------------------------------------------------------------------------------------------------------
# Where each dataset's clips go
# --------------------------------------------------------------------------------------------------------


def _clip_folders(clip: PlannedClip, layout: str, smic_names: str, samm_prefix: str) -> dict[str, tuple[str, str]]:
    """``{"raw"|"cropped": (folder relative to the part root, frame name pattern with {n})}``."""
    row = clip.row
    wanted = ("raw", "cropped") if layout == "both" else (layout,)
    if clip.dataset == "casme2":
        folders = {
            "raw": (f"CASME2_RAW_selected/sub{row.subject:02d}/{row.sample}", "img{n}.jpg"),
            "cropped": (f"Cropped/sub{row.subject:02d}/{row.sample}", "reg_img{n}.jpg"),
        }
        return {k: folders[k] for k in wanted}
    if clip.dataset == "smic_hs":
        subject = f"s{row.subject:02d}" if smic_names == "s01" else f"s{row.subject}"
        sample = re.sub(r"^s\d+_", f"{subject}_", row.sample)
        tail = f"{subject}/micro/{row.emotion}/{sample}"
        folders = {
            "raw": (f"HS/{tail}", "image{n}.bmp"),
            "cropped": (f"SMIC_all_cropped/HS/{tail}", "reg_image{n}.bmp"),
        }
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


def _manifest_sample(clip: PlannedClip) -> str:
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
    form = RELEASE_FORMS[dataset]
    clips = plan_release(dataset, _rows_of(dataset, small), scale, seed)
    width, height = release_frame_size(form, scale)
    scenes: dict[int, np.ndarray] = {}
    regions, boxes = [], []
    (truth / "masks" / dataset).mkdir(parents=True, exist_ok=True)
    for clip in tqdm(clips, desc=f"SynthME {dataset}", unit="clip", disable=not progress):
        faces, mask = draw_release_clip(clip, seed)
        folders = _clip_folders(clip, layout, smic_names, samm_prefix)
        sample = _manifest_sample(clip)
        numbers = [str(n) for n in clip.numbers]
        for frames_kind, (folder, pattern) in folders.items():
            names = [pattern.format(n=int(n)) for n in numbers]
            if frames_kind == "cropped":
                frames, full_mask = faces, mask
            else:
                if clip.row.subject not in scenes:
                    scenes[clip.row.subject] = release_scene(dataset, clip.row.subject, seed, width, height)
                frames = compose_frames(scenes[clip.row.subject], faces, clip.box_xy)
                full_mask = np.zeros((height, width), bool)
                x, y = clip.box_xy
                full_mask[y : y + clip.face_side, x : x + clip.face_side] = mask
            write_images(part / folder, names, frames, form.grey)
            mask_file = f"masks/{dataset}/{clip.row.subject}_{_sample_key(dataset, sample)}_{frames_kind}.png"
            cv2.imwrite(str(truth / mask_file), full_mask.astype(np.uint8) * 255)
            ys, xs = np.nonzero(full_mask)
            regions.append(
                {
                    "dataset": dataset,
                    "subject": clip.row.subject,
                    "sample": _sample_key(dataset, sample),
                    "frames": frames_kind,
                    "folder": folder,
                    "emotion": clip.row.emotion,
                    "motion": clip.motion,
                    "onset": clip.first + clip.onset_index,
                    "apex": clip.first + clip.apex_index,
                    "offset": clip.first + clip.offset_index,
                    "fault": clip.row.fault,
                    "mask": mask_file,
                    "x0": int(xs.min()),
                    "y0": int(ys.min()),
                    "x1": int(xs.max()) + 1,
                    "y1": int(ys.max()) + 1,
                }
            )
            if frames_kind == "raw":
                x, y = clip.box_xy
                boxes.append(
                    {
                        "dataset": dataset,
                        "subject": clip.row.subject,
                        "sample": _sample_key(dataset, sample),
                        "folder": folder,
                        "x": x,
                        "y": y,
                        "w": clip.face_side,
                        "h": clip.face_side,
                    }
                )
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
    info = {
        "generator": "merkit.data.synthetic.releases",
        "format_version": RELEASE_FORMAT_VERSION,
        "kind": kind,
        "small": bool(small),
        "scale": float(scale),
        "seed": int(seed),
        "layout": layout,
        "smic_layout": smic_layout,
        "smic_names": smic_names,
    }
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
                dataset,
                build / folder if folder else build,
                truth,
                layout=layout if dataset == "casme2" else (smic_layout if dataset == "smic_hs" else "raw"),
                smic_names=smic_names,
                scale=scale,
                small=small,
                seed=seed,
                progress=progress,
                samm_prefix="" if kind == "megc2019" else "SAMM/",
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
