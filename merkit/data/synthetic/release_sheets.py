"""The annotation sheets of the emulated releases, cell for cell in the form of the real ones.

Each writer takes the clips as a list of :class:`SheetClip` (what the sheet says, faults included) and saves
one xlsx (atomically: written beside the target, then renamed). The forms (REAL_FORMATS.md):

- CASME II ``CASME2-coding-20140508.xlsx`` / ``-20190701.xlsx``: sheets ``Sheet1``..``Sheet3``, header in
  row 1 with two blank header cells; Subject a text cell ``'01'``; Action Units a number cell when one AU;
  2019 adds ``Objective Classes``.
- SAMM ``SAMM_Micro_FACS_Codes_v2.xlsx``, sheet ``MICRO_ONLY``: 13 rows of notes, header in row 14, Subject
  text ``'006'``, Duration a formula, Micro ``Micro - 1/2``.
- CAS(ME)^3 ``cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx``: sheets ``label``, ``Sheet1``, ``Sheet3``; every
  cell text, objective class in Roman numerals.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CASME2_HEADER_2014",
    "CASME2_HEADER_2019",
    "CASME3A_HEADER",
    "SAMM_HEADER",
    "SheetClip",
    "write_casme2_sheet",
    "write_casme3a_sheet",
    "write_samm_sheet",
]

CASME2_HEADER_2014: tuple[str | None, ...] = (
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
CASME2_HEADER_2019 = (*CASME2_HEADER_2014, "Objective Classes")
SAMM_HEADER = (
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
)
CASME3A_HEADER = ("Subject", "Filename", "Onset", "Apex", "Offset", "AU", "Objective class", "emotion")
_SAMM_NOTES = (
    "SAMM micro-movement FACS codes (SynthME emulation: every row below is invented)",
    None,
    "Inducement code: the stimulus that induced the movement",
    "Onset, Apex and Offset are frame numbers of the clip's images",
    None,
    "Duration = Offset - Onset + 1",
    "Micro: Micro - 1/2 means a micro-movement of half a second or less",
    None,
    "Action Units follow FACS; A/B give alternative intensities",
    "Estimated Emotion is the coders' estimate",
    None,
    "Objective Classes after Davison et al. 2018",
    "Notes: free text",
)
_ROMAN = ("I", "II", "III", "IV", "V", "VI", "VII")


@dataclass(frozen=True)
class SheetClip:
    """One sheet row: cells as the release writes them (``apex`` may be ``'/'``, frames may be faulty)."""

    subject: int
    sample: str
    onset: int
    apex: int | str
    offset: int
    emotion: str
    action_units: str  # '4+L14'; a single AU ('12') is written as a number cell where the release does so
    objective_class: int
    inducement: int = 1


def _save(book: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    book.save(partial)
    os.replace(partial, path)
    return path


def _au_cell(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def write_casme2_sheet(path: Path, clips: Sequence[SheetClip], version: str = "2014") -> Path:
    """CASME II coding sheet, ``version`` 2014 or 2019 (adds Objective Classes)."""
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "Sheet1"
    book.create_sheet("Sheet2")
    book.create_sheet("Sheet3")
    sheet.append(list(CASME2_HEADER_2019 if version == "2019" else CASME2_HEADER_2014))
    for clip in clips:
        line = [
            f"{clip.subject:02d}",
            clip.sample,
            None,
            clip.onset,
            clip.apex,
            clip.offset,
            None,
            _au_cell(clip.action_units),
            clip.emotion,
        ]
        if version == "2019":
            line.append(clip.objective_class)
        sheet.append(line)
    return _save(book, path)


def write_samm_sheet(path: Path, clips: Sequence[SheetClip]) -> Path:
    """SAMM ``MICRO_ONLY``: 13 note rows, header in row 14, Duration as ``=SUM(F<r>-D<r>)+1``."""
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "MICRO_ONLY"
    for note in _SAMM_NOTES:
        sheet.append([note])
    sheet.append(list(SAMM_HEADER))
    for row, clip in enumerate(clips, start=len(_SAMM_NOTES) + 2):
        sheet.append(
            [
                f"{clip.subject:03d}",
                clip.sample,
                clip.inducement,
                clip.onset,
                clip.apex,
                clip.offset,
                f"=SUM(F{row}-D{row})+1",
                "Micro - 1/2",
                clip.action_units,
                clip.emotion,
                clip.objective_class,
                None,
            ]
        )
    return _save(book, path)


def write_casme3a_sheet(path: Path, clips: Sequence[SheetClip]) -> Path:
    """CAS(ME)^3 part A ME labels (JPG indices): sheets ``label``, ``Sheet1``, ``Sheet3``; all cells text."""
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "label"
    book.create_sheet("Sheet1")
    book.create_sheet("Sheet3")
    sheet.append(list(CASME3A_HEADER))
    for clip in clips:
        sheet.append(
            [
                f"spNO.{clip.subject}",
                clip.sample,
                str(clip.onset),
                str(clip.apex),
                str(clip.offset),
                clip.action_units,
                _ROMAN[(clip.objective_class - 1) % len(_ROMAN)],
                clip.emotion,
            ]
        )
    return _save(book, path)
