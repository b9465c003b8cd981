"""The sheet -> manifest pipeline shared by the per-dataset builders.

Steps, in order (each dataset module overrides only what its sheet does differently):

1. find the annotation file (``annotation`` argument, else the first of the spec's ``annotation.files``
   under the data root) and read its rows (:mod:`.sheets`);
2. parse each row: subject id normalised (``subject.format`` applied to the digits of the cell, so ``6``,
   ``'006'``, ``'sub06'`` and ``'s6'`` agree), frame numbers as integers, apex tokens such as CASME II's
   ``/`` -> ``<NA>``, emotion lower-cased, action units split on ``+``; unparsable rows become problems;
3. drop the spec's exclusions; resolve each clip on disk (frame folder, else ``<folder>.mp4``/``.avi``);
4. apply the spec's errata (only where the sheet still holds the wrong value);
5. validate (:func:`~merkit.data.manifest.validate_manifest`, frames on disk included) and check the
   expected counts; then, under a protocol, map emotions to labels, drop what the protocol drops and check
   the protocol's expected counts.

Every problem is collected; ``strict=True`` raises one ``ManifestError`` listing them all, ``strict=False``
returns the manifest with ``df.attrs['problems']``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import pandas as pd

from merkit.data.datasets.sheets import SheetRow, read_sheet
from merkit.data.datasets.spec import DatasetSpec, Protocol
from merkit.data.manifest import ManifestError, ManifestProblem, make_manifest, validate_manifest

_DIGITS = re.compile(r"\d+")
_INTEGER_TEXT = re.compile(r"[+-]?\d+(\.0*)?")


class RowError(ValueError):
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


class SheetBuilder:
    """Builds one dataset's manifest from its spec; subclasses adapt the steps a sheet does differently."""

    def __init__(self, spec: DatasetSpec) -> None:
        self.spec = spec
        self.key = spec.key
        self.annotation_spec: dict[str, Any] = spec.raw.get("annotation") or {}
        self.layout: dict[str, Any] = spec.raw.get("layout") or {}
        self.subject_spec: dict[str, Any] = spec.raw.get("subject") or {}

    # -- locating and reading the sheet -------------------------------------------------------------
    def find_annotation(self, data_root: Path, annotation: str | PathLike | None) -> Path:
        if annotation is not None:
            path = Path(annotation)
            candidates = [path] if path.is_absolute() else [data_root / path, path]
            for candidate in candidates:
                if candidate.is_file():
                    return candidate
            raise self.error(f"annotation file not found: {candidates[0]}")
        names = list(self.annotation_spec.get("files") or ())
        for name in names:
            if (data_root / name).is_file():
                return data_root / name
        raise self.error(f"no annotation sheet under {data_root}: looked for {names} (pass annotation=... to name it)")

    def read_rows(self, path: Path) -> list[SheetRow]:
        _, rows = read_sheet(
            path,
            dataset=self.key,
            sheet=self.annotation_spec.get("sheet", 0),
            columns=self.annotation_spec["columns"],
            optional_columns=self.annotation_spec.get("optional_columns"),
            scan_rows=int(self.annotation_spec.get("header_scan_rows", 30)),
        )
        return rows

    # -- parsing one row ------------------------------------------------------------------------------
    def subject_id(self, value: Any) -> str:
        return str(self.subject_spec.get("format", "{n}")).format(n=subject_number(value))

    def sample_id(self, fields: Mapping[str, Any]) -> str:
        return str(self.spec.raw.get("sample_id", "{filename}")).format(**fields)

    def parse_apex(self, value: Any) -> int | None:
        tokens = {str(t).strip().lower() for t in self.annotation_spec.get("missing_apex", ())}
        if value is None or cell_text(value).lower() in tokens or cell_text(value) == "":
            return None
        return parse_frame(value, "apex")

    def parse_row(self, row: SheetRow) -> dict[str, Any]:
        values = row.values
        filename = cell_text(values.get("sample"))
        if not filename:
            raise RowError("empty Filename")
        n = subject_number(values.get("subject"))
        subject = self.subject_id(values.get("subject"))
        onset = parse_frame(values.get("onset"), "onset")
        offset = parse_frame(values.get("offset"), "offset")
        apex = self.parse_apex(values.get("apex")) if "apex" in values else None
        emotion = cell_text(values.get("emotion")).lower()
        fields = {"filename": filename, "subject": subject, "n": n, "onset": onset, "offset": offset}
        record: dict[str, Any] = {
            "dataset": self.key,
            "subject": subject,
            "sample": self.sample_id(fields),
            "onset": onset,
            "apex": apex,
            "offset": offset,
            "fps": float(self.spec.raw["fps"]),
            "emotion": emotion,
            "label": None,
            "action_units": parse_action_units(values.get("action_units")),
            "_n": n,
            "_filename": filename,
        }
        for optional in ("objective_class", "notes"):
            if optional in values:
                record[optional] = cell_text(values.get(optional))
        return record

    # -- clips on disk --------------------------------------------------------------------------------
    def clip_templates(self) -> list[str]:
        clip = self.layout.get("clip") or ["{sample}"]
        return [clip] if isinstance(clip, str) else list(clip)

    def candidates(self, record: Mapping[str, Any]) -> list[str]:
        fields = {"subject": record["subject"], "n": record["_n"], "sample": record["sample"],
                  "filename": record["_filename"], "emotion": record["emotion"]}
        return [template.format(**fields) for template in self.clip_templates()]

    @staticmethod
    def existing(base: Path, relative: str) -> str | None:
        """``relative`` when it is a folder under ``base``, else its ``.mp4``/``.avi`` video, else None."""
        if (base / relative).is_dir():
            return relative
        for suffix in (".mp4", ".avi"):
            if (base / f"{relative}{suffix}").is_file():
                return f"{relative}{suffix}"
        return None

    def resolve_paths(self, records: list[dict[str, Any]], data_root: Path) -> str:
        """Set each record's ``path`` and ``cropped``; returns the layout root chosen (``''`` = the data root).

        The root (raw or cropped release folder, ...) is chosen once, so one manifest never mixes releases:
        the first of ``layout.cropped_roots`` under which any clip exists (a copy with both a raw and a
        cropped release is read from the cropped one), else the first of ``layout.roots``. ``cropped`` is True
        when the chosen root is one of ``layout.cropped_roots`` (the frames are face crops already). A clip
        found nowhere keeps its first candidate path and validation reports it missing.
        """
        roots = [str(r).strip("/") for r in (self.layout.get("roots") or [""])]
        cropped_roots = [str(r).strip("/") for r in (self.layout.get("cropped_roots") or [])]
        ordered = [r for r in roots if r in cropped_roots] + [r for r in roots if r not in cropped_roots]
        chosen = roots[0]
        for root in ordered:
            base = data_root / root if root else data_root
            if base.is_dir() and any(self.existing(base, c) for r in records for c in self.candidates(r)):
                chosen = root
                break
        base = data_root / chosen if chosen else data_root
        for record in records:
            options = self.candidates(record)
            found = next((p for p in (self.existing(base, c) for c in options) if p), options[0])
            record["path"] = f"{chosen}/{found}" if chosen else found
            record["cropped"] = chosen in cropped_roots
        return chosen

    # -- the whole build ------------------------------------------------------------------------------
    def error(self, message: str) -> ManifestError:
        return ManifestError([ManifestProblem(self.key, None, None, message)])

    def build(
        self,
        data_root: str | PathLike,
        protocol: str | None = None,
        *,
        annotation: str | PathLike | None = None,
        strict: bool = True,
    ) -> pd.DataFrame:
        data_root = Path(data_root)
        if not data_root.is_dir():
            raise self.error(f"data root {data_root} is not a folder")
        chosen_protocol = self.spec.protocol(protocol) if protocol is not None else None
        sheet_path = self.find_annotation(data_root, annotation)
        rows = self.read_rows(sheet_path)
        problems: list[ManifestProblem] = []
        records: list[dict[str, Any]] = []
        for row in rows:
            try:
                records.append(self.parse_row(row))
            except RowError as error:
                subject = cell_text(row.values.get("subject")) or None
                sample = cell_text(row.values.get("sample")) or None
                problems.append(ManifestProblem(self.key, subject, sample, f"{sheet_path.name} row {row.number}: {error}"))
        records, excluded = apply_exclusions(records, self.spec.raw.get("exclusions") or ())
        layout_root = self.resolve_paths(records, data_root)
        applied = apply_errata(records, self.spec.raw.get("errata") or ())
        for record in records:
            record.pop("_n", None)
            record.pop("_filename", None)
        df = make_manifest(
            records,
            dataset=self.key,
            emotions={self.key: list(self.spec.emotions)} if self.spec.emotions else {},
            subject_patterns={self.key: self.subject_spec["pattern"]} if "pattern" in self.subject_spec else {},
            annotation=str(sheet_path),
            layout_root=layout_root,
            errata_applied=applied,
            excluded=excluded,
        )
        problems += validate_manifest(df, data_root, strict=False)
        counts_real = not emulated_small_release(data_root)
        if counts_real:
            problems += check_expected(df, self.spec.expected, self.key, "the full dataset")
        if chosen_protocol is not None:
            df = apply_protocol(df, chosen_protocol)
            if counts_real:
                problems += check_expected(df, chosen_protocol.expected, self.key, f"protocol {chosen_protocol.name}")
        return finish(df, problems, strict, f"{self.key} built from {sheet_path}")


def emulated_small_release(data_root: Path) -> bool:
    """True for a SynthME emulated release written with ``small=True`` (``synthme_truth/release.json`` in the
    data root, or in its parent for a MEGC2019 part): its counts are not the real ones, so the expected
    counts are not checked. A real copy has no such file."""
    for folder in (Path(data_root), Path(data_root).parent):
        try:
            return bool(json.loads((folder / "synthme_truth" / "release.json").read_text()).get("small"))
        except (OSError, ValueError, AttributeError):
            continue
    return False


def apply_exclusions(
    records: list[dict[str, Any]], exclusions: Iterable[Mapping[str, Any]]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Drop records matching ``{subject, sample}`` entries; returns (kept, ``subject/sample`` excluded)."""
    drop = {(str(e["subject"]), str(e["sample"])) for e in exclusions}
    kept = [r for r in records if (r["subject"], r["sample"]) not in drop]
    excluded = [f"{r['subject']}/{r['sample']}" for r in records if (r["subject"], r["sample"]) in drop]
    return kept, excluded


def apply_errata(records: list[dict[str, Any]], errata: Iterable[Mapping[str, Any]]) -> list[str]:
    """Correct known sheet errors in place; returns a line per correction made.

    An erratum ``{subject, sample, field, from, to, why}`` applies only where the record still holds
    ``from`` (``from`` omitted: any value), so a copy of the sheet that is already corrected is left alone.
    """
    applied: list[str] = []
    by_key = {(r["subject"], r["sample"]): r for r in records}
    for erratum in errata:
        record = by_key.get((str(erratum["subject"]), str(erratum["sample"])))
        if record is None:
            continue
        field = str(erratum["field"])
        before = record.get(field)
        if "from" in erratum and before != erratum["from"]:
            continue
        record[field] = erratum["to"]
        applied.append(f"{record['subject']}/{record['sample']}: {field} {before!r} -> {erratum['to']!r} ({erratum.get('why', '')})")
    return applied


def apply_protocol(df: pd.DataFrame, protocol: Protocol) -> pd.DataFrame:
    """Rows whose emotion the protocol maps, labelled; rows it drops (or does not know) removed."""
    labels = [protocol.label_of(str(e)) for e in df["emotion"]]
    keep = [label is not None for label in labels]
    out = df.loc[keep].copy()
    out["label"] = pd.array([label for label in labels if label is not None], dtype="Int64")
    out = out.reset_index(drop=True)
    out.attrs = {**df.attrs, "protocol": protocol.name, "classes": list(protocol.classes)}
    return out


def check_expected(df: pd.DataFrame, expected: Mapping[str, Any] | None, dataset: str, what: str) -> list[ManifestProblem]:
    """Compare sample, subject and (under a protocol) per-class counts with the spec's ``expected``."""
    if not expected:
        return []
    problems = []

    def differ(name: str, want: Any, got: Any) -> None:
        if want is not None and want != got:
            problems.append(ManifestProblem(dataset, None, None, f"{what}: expected {want} {name}, built {got}"))

    differ("samples", expected.get("samples"), len(df))
    # Subjects are counted per dataset: a composite's CASME II "01" and another part's "01" are two people.
    differ("subjects", expected.get("subjects"), len(set(zip(df["dataset"], df["subject"]))))
    if expected.get("classes"):
        counts = df["emotion"] if not df.attrs.get("classes") else df["label"].map(lambda i: df.attrs["classes"][i])
        got = {name: int((counts == name).sum()) for name in expected["classes"]}
        differ("class counts", dict(expected["classes"]), got)
    return problems


def finish(df: pd.DataFrame, problems: list[ManifestProblem], strict: bool, context: str) -> pd.DataFrame:
    if strict and problems:
        raise ManifestError(problems, context=context)
    df.attrs["problems"] = problems
    return df
