"""Fixture writers: xlsx sheets with the exact structure and quirks of the official annotation files, filled
with INVENTED rows, and the frame trees next to them.

No real sample, label or frame is reproduced here: sample names, frame numbers and emotion assignments are
generated. What is reproduced is the structure a builder must cope with: header text and blank header
cells, SAMM's preamble of notes before the header, sheet names, subject ids written with and without
padding, CASME II's apex written ``/``, AU strings such as ``4+L10``, frame-file naming per dataset.

``full_*_rows`` generate sheets of the real sizes with the per-dataset emotion distributions that produce
the MEGC2019 composite counts (442 samples / 68 subjects; CASME II 145/24, SAMM 133/28, SMIC 164/16;
negative/positive/surprise 250/109/83), so the composite rule and its count checks are exercised.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from openpyxl import Workbook

REPO_MANIFESTS = Path(__file__).resolve().parents[1] / "data_manifests"

CASME2_HEADER_2014 = [
    "Subject",
    "Filename",
    None,
    "OnsetFrame",
    "ApexFrame",
    "OffsetFrame",
    None,
    "Action Units",
    "Estimated Emotion",
]
CASME2_HEADER_2019 = CASME2_HEADER_2014 + ["Objective Classes"]
SAMM_HEADER = [
    "Subject",
    "Filename",
    "Inducement Code",
    "Onset Frame",
    "Apex Frame",
    "Offset Frame",
    "Duration",
    "Micro",
    "Action Units",
    "Estimated Emotion",
    "Objective Classes",
    "Notes",
]
# Columns between OffsetF and Emotion vary between copies; these placeholders stand for them.
SMIC_HEADER = ["Subject", "Filename", None, "OnsetF", "OffsetF", "Frames", "Comment", "Emotion"]
CASME3A_HEADER = ["Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class", "emotion"]


@dataclass
class Row:
    """One invented annotation row; ``subject_cell`` is what the sheet shows (6, '006', 's1', ...)."""

    subject_cell: Any
    sample: str
    onset: int
    apex: Any  # int, "/" or None
    offset: int
    emotion: str
    action_units: Any = "4"
    objective_class: Any = None
    notes: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _save(book: Workbook, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    book.save(path)
    return path


def write_casme2_sheet(path: Path, rows: Iterable[Row], version: str = "2014") -> Path:
    """``CASME2-coding-2014xxxx.xlsx`` (or 2019 with ``Objective Classes``): header in the first row."""
    book = Workbook()
    sheet = book.active
    sheet.title = "Sheet1"
    sheet.append(CASME2_HEADER_2019 if version == "2019" else CASME2_HEADER_2014)
    for r in rows:
        line = [r.subject_cell, r.sample, None, r.onset, r.apex, r.offset, None, r.action_units, r.emotion]
        if version == "2019":
            line.append(r.objective_class)
        sheet.append(line)
    return _save(book, path)


def write_samm_sheet(
    path: Path,
    rows: Iterable[Row],
    preamble_rows: int = 13,
    sheet_name: str = "MICRO_ONLY",
    extra_sheets: Sequence[str] = (),
) -> Path:
    """SAMM ``MICRO_ONLY``: ~13 rows of notes (some blank, some with stray cells), then the header."""
    book = Workbook()
    first = book.active
    sheets = []
    for index, name in enumerate(list(extra_sheets) + [sheet_name]):
        sheet = first if index == 0 else book.create_sheet()
        sheet.title = name
        sheets.append(sheet)
    sheet = sheets[-1]
    for i in range(preamble_rows):
        if i == 0:
            sheet.append(["SAMM micro-movement FACS codes (invented fixture)"])
        elif i % 4 == 2:
            sheet.append([None])
        elif i % 4 == 3:
            sheet.append(["Note:", f"coding remark {i}", None, "Subject appears in a note but this is no header"])
        else:
            sheet.append([f"note line {i}"])
    sheet.append(SAMM_HEADER)
    for r in rows:
        duration = r.offset - r.onset + 1
        sheet.append(
            [
                r.subject_cell,
                r.sample,
                r.extra.get("inducement", 1),
                r.onset,
                r.apex,
                r.offset,
                duration,
                "Micro - 1/2",
                r.action_units,
                r.emotion,
                r.objective_class,
                r.notes,
            ]
        )
    return _save(book, path)


def write_smic_sheet(path: Path, rows: Iterable[Row], sheet_name: str = "HS") -> Path:
    """SMIC-HS annotation: sheet ``HS``, no apex column."""
    book = Workbook()
    sheet = book.active
    sheet.title = sheet_name
    sheet.append(SMIC_HEADER)
    for r in rows:
        sheet.append([r.subject_cell, r.sample, None, r.onset, r.offset, r.offset - r.onset + 1, None, r.emotion])
    return _save(book, path)


def write_casme3a_sheet(path: Path, rows: Iterable[Row]) -> Path:
    """CAS(ME)^3 part A ME labels (JPG indices); ``Row.sample`` is the recording letter."""
    book = Workbook()
    sheet = book.active
    sheet.title = "Sheet1"
    sheet.append(CASME3A_HEADER)
    for r in rows:
        sheet.append(
            [r.subject_cell, r.sample, r.onset, r.apex, r.offset, r.action_units, r.objective_class, r.emotion]
        )
    return _save(book, path)


def make_frames(folder: Path, numbers: Iterable[int], pattern: str, *, images: bool = False, size: int = 8) -> None:
    """Frame files ``pattern.format(n=...)`` in ``folder``: empty files (enough for validation, which checks
    presence only) or, with ``images``, tiny real images whose pixel value is the frame number mod 251."""
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    for n in numbers:
        target = folder / pattern.format(n=n)
        if images:
            cv2.imwrite(str(target), np.full((size, size, 3), n % 251, np.uint8))
        else:
            target.touch()


def use_manifests(tmp_path: Path, monkeypatch, **changes: dict[str, Any]) -> Path:
    """Copy the repo's dataset files to ``tmp_path/manifests``, apply top-level key ``changes`` per dataset
    (``casme2={"expected": None}``) and point ``MERKIT_MANIFESTS`` at the copy."""
    folder = tmp_path / "manifests"
    folder.mkdir(exist_ok=True)
    for source in REPO_MANIFESTS.glob("*.yaml"):
        shutil.copy(source, folder / source.name)
    for dataset, update in changes.items():
        file = folder / f"{dataset}.yaml"
        data = yaml.safe_load(file.read_text())
        data.update(update)
        file.write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.setenv("MERKIT_MANIFESTS", str(folder))
    return folder


# ---------------------------------------------------------------------------------------------------------
# Full-size sheets with the MEGC2019 per-dataset distributions (invented names and frame numbers)
# ---------------------------------------------------------------------------------------------------------

_AU_CYCLE = ["4+L10", "R12", "1+2+4", 4, "12", "1+2", "L14", "6+12"]


def _spread(emotions: list[str], subjects: Sequence[int]) -> list[tuple[int, str]]:
    """Assign emotions to subjects round-robin (deterministic)."""
    return list(zip(itertools.cycle(subjects), emotions))


def full_casme2_rows() -> list[Row]:
    """255 rows, 26 subjects, the 2014 emotion counts (others 99, disgust 63, happiness 32, repression 27,
    surprise 25, sadness 7, fear 2); MEGC2019: 147 mapped over 24 subjects, of which the two with no usable
    apex (sub04 EP12_01f apex ``/``, sub05 EP09_05f apex = onset) leave -> negative 88, positive 32, surprise
    25. Subjects 25 and 26 have only unmapped emotions; subject 24 has three sadness clips (see
    :func:`casme2_2019_rows`)."""
    kept = ["disgust"] * 61 + ["repression"] * 27 + ["happiness"] * 32 + ["surprise"] * 25
    assigned = (
        _spread(kept, range(1, 25))
        + [(24, "sadness")] * 3
        + _spread(["sadness"] * 4 + ["fear"] * 2 + ["others"] * 99, range(1, 27))
    )
    rows = [Row(4, "EP12_01f", 0, 0, 0, "disgust"), Row(5, "EP09_05f", 0, 0, 0, "disgust")]
    counters: dict[int, int] = {}
    for subject, emotion in assigned:
        counters[subject] = counters.get(subject, 0) + 1
        rows.append(Row(subject, f"EP{counters[subject]:02d}_{subject:02d}", 0, 0, 0, emotion))
    for i, row in enumerate(rows):
        row.onset = 10 + (i % 7) * 13
        row.apex = row.onset + 1
        row.offset = row.onset + 2
        row.action_units = _AU_CYCLE[i % len(_AU_CYCLE)]
        # subject written 1 (number) or "01" (text) in different rows, as sheets re-saved by hand do
        row.subject_cell = row.subject_cell if i % 3 else f"{row.subject_cell:02d}"
    rows[0].apex = "/"  # the one apex written "/" (no usable apex)
    rows[1].apex = rows[1].onset  # the one apex = onset (no usable apex)
    assert len(rows) == 255
    return rows


def casme2_2019_rows(rows: Sequence[Row]) -> tuple[list[Row], list[str]]:
    """The 2019 sheet's emotions: three clips of subject 24 change sadness -> surprise. Returns (rows, the
    three ``sub24/<clip>`` ids)."""
    out = copy_rows(rows)
    changed = []
    for row in out:
        if _number(row.subject_cell) == 24 and row.emotion == "sadness" and len(changed) < 3:
            row.emotion = "surprise"
            changed.append(f"sub24/{row.sample}")
        row.objective_class = row.objective_class or 1
    assert len(changed) == 3
    return out, changed


SAMM_SUBJECTS = list(range(6, 35))  # 29 invented subject ids 006..034


def full_samm_rows() -> list[Row]:
    """159 rows, 29 subjects; MEGC2019: negative 92, positive 26, surprise 15 over 28 subjects, Other 26."""
    kept = (
        ["Anger"] * 57
        + ["Contempt"] * 12
        + ["Disgust"] * 9
        + ["Fear"] * 8
        + ["Sadness"] * 6
        + ["Happiness"] * 26
        + ["Surprise"] * 15
    )
    assigned = _spread(kept, SAMM_SUBJECTS[:28]) + _spread(["Other"] * 26, SAMM_SUBJECTS[::-1])  # 034 has only Other
    rows, counters = [], {}
    for i, (subject, emotion) in enumerate(assigned):
        counters[subject] = counters.get(subject, 0) + 1
        onset = 5000 + 40 * i
        cell = subject if i % 2 else f"{subject:03d}"  # 6 and "006" both occur
        rows.append(
            Row(
                cell,
                f"{subject:03d}_{counters[subject]}_{i % 5 + 1}",
                onset,
                onset + 1,
                onset + 2,
                emotion,
                action_units=_AU_CYCLE[i % len(_AU_CYCLE)],
                objective_class=i % 7 + 1,
                notes=None,
            )
        )
    assert len(rows) == 159
    return rows


SMIC_SUBJECTS = [1, 2, 3, 4, 5, 6, 8, 9, 11, 12, 13, 14, 15, 18, 19, 20]  # the release's 16 subject numbers
_SMIC_SHORT = {"negative": "ne", "positive": "po", "surprise": "sur"}


def full_smic_rows() -> list[Row]:
    """164 rows, 16 subjects: negative 70, positive 51, surprise 43 (all kept by MEGC2019)."""
    emotions = ["negative"] * 70 + ["positive"] * 51 + ["surprise"] * 43
    rows, counters = [], {}
    for i, (subject, emotion) in enumerate(_spread(emotions, SMIC_SUBJECTS)):
        key = (subject, emotion)
        counters[key] = counters.get(key, 0) + 1
        onset = 100000 + 97 * i
        cell = f"s{subject}" if i % 4 else f"s{subject:02d}"  # s1 and s01 both occur
        rows.append(
            Row(cell, f"s{subject}_{_SMIC_SHORT[emotion]}_{counters[key]:02d}", onset, None, onset + 2, emotion)
        )
    assert len(rows) == 164
    return rows


def _number(cell: Any) -> int:
    return int("".join(ch for ch in str(cell) if ch.isdigit()))


def write_casme2_tree(
    root: Path,
    rows: Sequence[Row],
    *,
    version: str = "2014",
    release: str = "CASME2_RAW_selected",
    images: bool = False,
) -> Path:
    """A CASME II copy: the sheet at ``root`` and frame folders under ``root/release``."""
    name = "CASME2-coding-20140508.xlsx" if version == "2014" else "CASME2-coding-20190701.xlsx"
    write_casme2_sheet(root / name, rows, version)
    pattern = "reg_img{n}.jpg" if "rop" in release else "img{n}.jpg"
    for r in rows:
        make_frames(
            root / release / f"sub{_number(r.subject_cell):02d}" / r.sample,
            range(r.onset, r.offset + 1),
            pattern,
            images=images,
        )
    return root


def write_samm_tree(root: Path, rows: Sequence[Row], *, images: bool = False, **sheet_options: Any) -> Path:
    write_samm_sheet(root / "SAMM_Micro_FACS_Codes_v2.xlsx", rows, **sheet_options)
    for r in rows:
        subject = f"{_number(r.subject_cell):03d}"
        make_frames(root / subject / r.sample, range(r.onset, r.offset + 1), subject + "_{n:05d}.jpg", images=images)
    return root


def write_smic_tree(
    root: Path,
    rows: Sequence[Row],
    *,
    subject_folder: str = "s{n}",
    clip_folder: str | None = None,
    release: str = "HS",
    frame: str = "image{n}.bmp",
    sheet: bool = False,
    images: bool = False,
) -> Path:
    """A SMIC-HS copy: ``root/<release>/<subject>/micro/<class>/<clip>/image<N>.bmp`` (the real release has no
    sheet; ``sheet=True`` also writes an SMIC-HS-E-style sheet beside it). ``clip_folder`` respells the clip
    folders, e.g. ``"s{n:02d}_{rest}"`` for ``s01_ne_01``."""
    if sheet:
        write_smic_sheet(root / "SMIC-HS-E_annotation.xlsx", rows)
    for r in rows:
        n = _number(r.subject_cell)
        name = r.sample if clip_folder is None else clip_folder.format(n=n, rest=r.sample.split("_", 1)[1])
        folder = root / release / subject_folder.format(n=n) / "micro" / r.emotion / name
        make_frames(folder, range(r.onset, r.offset + 1), frame, images=images)
    return root


def write_megc_tree(
    root: Path, *, casme2: list[Row] | None = None, samm: list[Row] | None = None, smic: list[Row] | None = None
) -> Path:
    """The three datasets under ``root/CASME2``, ``root/SAMM``, ``root/SMIC`` (full-size by default)."""
    write_casme2_tree(root / "CASME2", casme2 if casme2 is not None else full_casme2_rows())
    write_samm_tree(root / "SAMM", samm if samm is not None else full_samm_rows())
    write_smic_tree(root / "SMIC", smic if smic is not None else full_smic_rows())
    return root


def copy_rows(rows: Iterable[Row]) -> list[Row]:
    return [replace(r, extra=dict(r.extra)) for r in rows]
