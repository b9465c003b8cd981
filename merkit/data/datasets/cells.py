"""Cells of an annotation sheet as the kit's values: text, frame numbers, action units, subject numbers, and the
MEGC2019 spelling of SMIC ids (``s1_ne_01`` -> ``s01_ne_01``). An unparsable cell is a `RowError`, which the
builder turns into a problem naming the sheet row.
"""

from __future__ import annotations

import re
from typing import Any

from merkit.errors import MerkitValueError

_DIGITS = re.compile(r"\d+")
_INTEGER_TEXT = re.compile(r"[+-]?\d+(\.0*)?")


class RowError(MerkitValueError):
    """A cell that cannot be parsed; the builder turns it into a ManifestProblem naming the row."""


def cell_text(value: Any) -> str:
    """A cell as stripped text; integral floats lose their ``.0`` (Excel stores ``1`` as ``1.0`` at times)."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def parse_frame(value: Any, what: str) -> int:
    """An integer frame number from a cell (int, integral float, or digits text)."""
    if isinstance(value, bool):
        raise RowError(f"{what} {value!r} is not a frame number")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    text = cell_text(value)
    if _INTEGER_TEXT.fullmatch(text):
        return int(float(text))
    raise RowError(f"{what} {value!r} is not a frame number")


def parse_action_units(value: Any) -> tuple[str, ...]:
    """``'4+L10'`` -> ``('4', 'L10')``, ``'R12'`` -> ``('R12',)``, ``4`` -> ``('4',)``, blank -> ``()``."""
    text = cell_text(value)
    return tuple(unit.strip() for unit in text.split("+") if unit.strip())


def subject_number(value: Any) -> int:
    """The subject's number: the last run of digits (``6``, ``'006'``, ``'sub06'``, ``'s6'``, ``'spNO.6'``)."""
    runs = _DIGITS.findall(cell_text(value))
    if not runs:
        raise RowError(f"subject {value!r} has no number")
    return int(runs[-1])


#: A SMIC clip name, ``s1_ne_01`` or ``s01_ne_01``: subject number, then the rest.
SMIC_CLIP_NAME = re.compile(r"s(\d{1,2})_(.+)")


def canonical_subject(n: int) -> str:
    """``1`` -> ``'s01'`` (the MEGC2019 spelling)."""
    return f"s{n:02d}"


def canonical_sample(name: str) -> str:
    """``'s1_ne_01'`` / ``'s01_ne_01'`` -> ``'s01_ne_01'``; other names unchanged."""
    match = SMIC_CLIP_NAME.fullmatch(name)
    return f"{canonical_subject(int(match.group(1)))}_{match.group(2)}" if match else name
