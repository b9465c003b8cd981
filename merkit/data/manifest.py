"""The manifest: one pandas DataFrame row per sample, the same schema for every dataset.

Columns (``MANIFEST_COLUMNS``, then the optional ``objective_class`` and ``notes``):

====================  =============  ===========================================================
dataset               str            dataset key (``casme2``, ``samm``, ``smic_hs``, ``casme3a``, ``synthme``)
subject               str            normalised subject id (CASME II ``01``, SAMM ``006``, SMIC ``s01``)
sample                str            clip id as in the sheet (``EP02_01f``, ``006_1_2``, ``s1_ne_01``)
path                  str            frame folder or video file, POSIX, relative to the data root
onset, offset         int64          frame numbers as written in the sheet
apex                  Int64          as in the sheet, ``<NA>`` when absent (SMIC, CASME II ``/``)
fps                   float64        recording frame rate
emotion               str            emotion as annotated, lower case, stripped
label                 Int64          class index under ``attrs['label_map']``; ``<NA>`` without one
action_units          object         tuple of AU strings, e.g. ``("4", "L10")``
====================  =============  ===========================================================

Optional: ``objective_class`` and ``notes`` (str) when the sheet has them, and ``cropped`` (bool): True when the
clip's frames are already face crops (a dataset's cropped release, SynthME), False for raw frames with
background, absent when the builder cannot tell. Preprocessing with ``crop='auto'`` reads it.
``apex_estimated`` (bool): True when the release annotates no apex and the builder estimated it (SMIC-HS;
``attrs['apex_method']`` says how); rules about annotated apexes (the MEGC2019 "no usable apex") skip those rows.

``df.attrs``: ``dataset``, ``label_map`` (name or None), ``classes`` (class names in label order); builders
also set ``emotions`` (dataset -> known emotion strings), ``subject_patterns`` (dataset -> regex) and
``problems`` (what a non-strict build collected) and ``data_problems`` (one dict per fault fixed, sample
dropped or left out by a rule: dataset, subject, sample, field, action, detail; see
:func:`merkit.data.datasets.problems_table`).

:func:`validate_manifest` checks a manifest and names dataset, subject and sample in every problem;
:func:`manifest_hash` is the key the clip store caches under.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from os import PathLike
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from merkit._io import stable_hash
from merkit.data.io import ClipReadError, is_video, list_frames, video_length
from merkit.errors import MerkitValueError

MANIFEST_COLUMNS: tuple[str, ...] = (
    "dataset",
    "subject",
    "sample",
    "path",
    "onset",
    "apex",
    "offset",
    "fps",
    "emotion",
    "label",
    "action_units",
)
OPTIONAL_COLUMNS: tuple[str, ...] = ("objective_class", "notes")
#: Optional boolean columns (kept as ``bool`` when present).
FLAG_COLUMNS: tuple[str, ...] = ("cropped", "apex_estimated")

_STR_COLUMNS = ("dataset", "subject", "sample", "path", "emotion")

#: Subject id format of each known dataset after normalisation; attrs["subject_patterns"] extends it.
SUBJECT_PATTERNS: dict[str, str] = {
    "casme2": r"\d{2}",
    "synthme": r"\d{2}",
    "samm": r"\d{3}",
    "smic_hs": r"s\d{2}",
    "casme3a": r"spNO\.\d+",
}
_DEFAULT_SUBJECT_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]*"


@dataclass(frozen=True)
class ManifestProblem:
    """One thing wrong with a manifest or a build. ``subject``/``sample`` are None for dataset-wide problems."""

    dataset: str | None
    subject: str | None
    sample: str | None
    message: str
    #: what the problem is about (``apex``, ``offset``, ``frames``, ``counts``, ...); None when not said.
    field: str | None = None

    def __str__(self) -> str:
        where = "/".join(part for part in (self.dataset, self.subject, self.sample) if part) or "manifest"
        return f"{where}: {self.message}"


class ManifestError(MerkitValueError):
    """A manifest (or a build) has problems; ``problems`` lists every one of them."""

    def __init__(self, problems: Iterable[ManifestProblem], context: str = "") -> None:
        self.problems = list(problems)
        head = f"{len(self.problems)} manifest problem(s)" + (f" in {context}" if context else "")
        super().__init__(head + ":\n" + "\n".join(f"  - {problem}" for problem in self.problems))


def make_manifest(
    records: Iterable[Mapping[str, Any]] | pd.DataFrame,
    *,
    dataset: str,
    label_map: str | None = None,
    classes: Iterable[str] = (),
    **attrs: Any,
) -> pd.DataFrame:
    """A manifest with the schema's column order and dtypes from row dicts (or a DataFrame).

    Missing ``apex``/``label`` become ``<NA>``, missing ``action_units`` an empty tuple; optional columns
    are kept when present. Extra ``attrs`` are stored in ``df.attrs`` next to dataset/label_map/classes.
    """
    frame = records.copy() if isinstance(records, pd.DataFrame) else pd.DataFrame(list(records))
    for column in MANIFEST_COLUMNS:
        if column not in frame.columns:
            frame[column] = pd.NA if column != "action_units" else [() for _ in range(len(frame))]
    columns = list(MANIFEST_COLUMNS) + [c for c in (*OPTIONAL_COLUMNS, *FLAG_COLUMNS) if c in frame.columns]
    frame = frame[columns].reset_index(drop=True)
    for column in _STR_COLUMNS:
        frame[column] = frame[column].astype(str)
    for column in ("onset", "offset"):
        frame[column] = frame[column].astype("int64")
    for column in ("apex", "label"):
        frame[column] = frame[column].astype("Int64")
    frame["fps"] = frame["fps"].astype("float64")
    frame["action_units"] = pd.Series(
        [tuple(str(unit) for unit in (units or ())) for units in frame["action_units"]], dtype=object
    )
    for column in OPTIONAL_COLUMNS:
        if column in frame.columns:
            frame[column] = frame[column].fillna("").astype(str)
    if "apex_estimated" in frame.columns:  # a composite's parts with annotated apexes lack the column
        frame["apex_estimated"] = frame["apex_estimated"].astype(object).where(frame["apex_estimated"].notna(), False)
    for column in FLAG_COLUMNS:
        if column in frame.columns:
            frame[column] = frame[column].astype(bool)
    frame.attrs = {"dataset": dataset, "label_map": label_map, "classes": list(classes), **attrs}
    return frame


def _is_missing(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    return isinstance(value, float) and math.isnan(value)


def _as_int(value: Any) -> int | None:
    """An integer from an int-like value, None when missing or not integral."""
    if _is_missing(value):
        return None
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    return None


def validate_manifest(
    df: pd.DataFrame,
    data_root: str | PathLike | None = None,
    strict: bool = True,
) -> list[ManifestProblem]:
    """Check a manifest; return the problems, or raise :class:`ManifestError` listing them when ``strict``.

    Checks: schema columns; onset <= apex <= offset (and onset <= offset); duplicate (dataset, subject,
    sample); empty or unknown emotions (against ``attrs['emotions']`` when set); labels in range of
    ``attrs['classes']`` under a label map; subject id format (``SUBJECT_PATTERNS``, extended by
    ``attrs['subject_patterns']``); fps > 0; relative POSIX paths; and, when ``data_root`` is given, that
    each clip exists with every frame number onset..offset on disk (folders) or enough frames (videos).
    Files are not decoded here: a corrupt image is reported when the clip is read.
    """
    attrs = dict(getattr(df, "attrs", {}) or {})
    top = attrs.get("dataset")
    problems: list[ManifestProblem] = []
    missing_columns = [column for column in MANIFEST_COLUMNS if column not in df.columns]
    if missing_columns:
        problems.append(ManifestProblem(top, None, None, f"missing manifest column(s): {', '.join(missing_columns)}"))
        return _finish(problems, strict, top)

    patterns = {**SUBJECT_PATTERNS, **(attrs.get("subject_patterns") or {})}
    emotions = attrs.get("emotions") or {}
    label_map = attrs.get("label_map")
    classes = list(attrs.get("classes") or [])
    root = None if data_root is None else Path(data_root)
    frames_cache: dict[Path, set[int] | ClipReadError] = {}
    length_cache: dict[Path, int | ClipReadError] = {}

    records = df[list(MANIFEST_COLUMNS)].to_dict("records")
    seen: dict[tuple[str, str, str], int] = {}
    for position, row in enumerate(records):
        dataset, subject, sample = (str(row[key]) for key in ("dataset", "subject", "sample"))

        def report(message: str, field: str | None = None) -> None:
            problems.append(ManifestProblem(dataset, subject, sample, message, field))

        key = (dataset, subject, sample)
        if key in seen:
            report(f"duplicate sample (rows {seen[key]} and {position})", "sample")
        else:
            seen[key] = position

        pattern = patterns.get(dataset, _DEFAULT_SUBJECT_PATTERN)
        if not re.fullmatch(pattern, subject):
            report(f"subject id {subject!r} does not match the {dataset} format {pattern!r}")
        if not sample or sample in ("nan", "None"):
            report("empty sample id")

        onset, offset, apex = _as_int(row["onset"]), _as_int(row["offset"]), row["apex"]
        if onset is None or offset is None:
            report(f"onset {row['onset']!r} / offset {row['offset']!r} must be integer frame numbers", "onset")
        elif onset > offset:
            report(f"onset {onset} is after offset {offset}", "onset")
        apex_number = None
        if not _is_missing(apex):
            apex_number = _as_int(apex)
            if apex_number is None:
                report(f"apex {apex!r} is not an integer frame number", "apex")
            elif onset is not None and offset is not None and not onset <= apex_number <= offset:
                report(f"apex {apex_number} lies outside onset..offset {onset}..{offset}", "apex")

        fps = row["fps"]
        if _is_missing(fps) or not float(fps) > 0:
            report(f"fps must be positive, got {fps!r}")

        emotion = "" if _is_missing(row["emotion"]) else str(row["emotion"])
        if not emotion.strip() or emotion in ("nan", "<NA>"):
            report("empty emotion", "emotion")
        elif dataset in emotions and emotion not in emotions[dataset]:
            report(f"unknown emotion {emotion!r} (known for {dataset}: {', '.join(emotions[dataset])})", "emotion")

        label = row["label"]
        if label_map is not None:
            label_number = _as_int(label)
            if label_number is None or not 0 <= label_number < len(classes):
                report(f"label {label!r} is not a class index of label map {label_map} ({len(classes)} classes)")

        path_text = "" if _is_missing(row["path"]) else str(row["path"])
        if not path_text or "\\" in path_text or PurePosixPath(path_text).is_absolute():
            report(f"path {path_text!r} must be a relative POSIX path")
        elif root is not None and onset is not None and offset is not None:
            message = _check_on_disk(root / path_text, onset, offset, frames_cache, length_cache)
            if message:
                report(message, "frames")
    return _finish(problems, strict, top)


def _check_on_disk(
    clip_path: Path,
    onset: int,
    offset: int,
    frames_cache: dict[Path, set[int] | ClipReadError],
    length_cache: dict[Path, int | ClipReadError],
) -> str | None:
    """Why frames onset..offset of ``clip_path`` are not on disk, or None when they are."""
    if is_video(clip_path):
        if clip_path not in length_cache:
            try:
                length_cache[clip_path] = video_length(clip_path)
            except ClipReadError as error:
                length_cache[clip_path] = error
        length = length_cache[clip_path]
        if isinstance(length, ClipReadError):
            return str(length)
        if offset >= length:
            return f"video {clip_path} has {length} frames (0..{length - 1}), offset is {offset}"
        return None
    if clip_path not in frames_cache:
        try:
            frames_cache[clip_path] = {number for number, _ in list_frames(clip_path)}
        except ClipReadError as error:
            frames_cache[clip_path] = error
    numbers = frames_cache[clip_path]
    if isinstance(numbers, ClipReadError):
        return str(numbers)
    missing = [n for n in range(onset, offset + 1) if n not in numbers]
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (" ..." if len(missing) > 5 else "")
        return f"{len(missing)} frame(s) of {onset}..{offset} missing in {clip_path}: {shown}"
    return None


def _finish(problems: list[ManifestProblem], strict: bool, dataset: str | None) -> list[ManifestProblem]:
    if strict and problems:
        raise ManifestError(problems, context=dataset or "")
    return problems


def _hash_cell(value: Any) -> Any:
    """One cell as :func:`manifest_hash` writes it: NA -> None, ints -> int, floats -> ``repr`` text, tuples ->
    lists, anything else -> ``str``. Not :func:`merkit._io.to_jsonable` on purpose: this is the hash's own text
    (floats and bools as strings), and every store key on disk depends on it staying byte for byte the same."""
    if isinstance(value, (tuple, list)):
        return [_hash_cell(item) for item in value]
    if _is_missing(value):
        return None
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return repr(float(value))
    return str(value)


def manifest_hash(df: pd.DataFrame) -> str:
    """A stable 16-hex-digit hash of the schema columns, row order included.

    Depends only on the cell values (not on dtypes, index or attrs), so a manifest rebuilt from the same
    sheet and data hashes the same in another process or on another machine.
    """
    missing = [column for column in MANIFEST_COLUMNS if column not in df.columns]
    if missing:
        raise ManifestError([ManifestProblem(df.attrs.get("dataset"), None, None, f"missing column(s): {missing}")])
    rows = [[_hash_cell(value) for value in row] for row in df[list(MANIFEST_COLUMNS)].itertuples(index=False)]
    return stable_hash({"columns": list(MANIFEST_COLUMNS), "rows": rows})
