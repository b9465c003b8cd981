"""The sheet -> manifest pipeline, the builder of every dataset whose yaml says ``builder: sheet``.

What a sheet does differently (file, header, columns, id templates, layout, errata, ...) is declared in its
yaml; `.smic_hs` replaces steps 1-2 by a walk of the release's folders. Steps, in order (the cells are read
by `.cells`, step 4 is `.faults`, step 5 and the problem log `.finish`):

1. find the annotation file (``annotation`` argument, else the first of the spec's ``annotation.files``
   under the data root) and read its rows (:mod:`.sheets`);
2. parse each row: subject id normalised (``subject.format`` applied to the digits of the cell, so ``6``,
   ``'006'``, ``'sub06'`` and ``'s6'`` agree), frame numbers as integers, apex tokens such as CASME II's
   ``/`` -> ``<NA>``, emotion lower-cased, action units split on ``+``; unparsable rows become problems;
3. drop the spec's exclusions; resolve each clip on disk (frame folder, else ``<folder>.mp4``/``.avi``);
4. known faults, by ``on_problem``: ``error`` (default) reports each declared erratum whose wrong value the
   sheet still holds and each timing fault the yaml declares a repair for, naming the sheet row; ``fix``
   applies the errata (only where the sheet still holds the wrong value), then the declared rule-based
   ``repairs`` (our assumption, labelled as such), then errors on whatever is left; ``drop`` leaves out every
   sample with a problem;
5. validate (:func:`~merkit.data.manifest.validate_manifest`, frames on disk included) and check the
   expected counts (skipped for a ``small`` SynthME release); then, under a label map, map emotions to
   labels, drop what the label map drops and check the label map's expected counts.

Every problem is collected; ``strict=True`` raises one ``ManifestError`` listing them all, ``strict=False``
returns the manifest with ``df.attrs['problems']``. What was fixed, dropped or left out is in
``df.attrs['data_problems']`` (`.finish.problems_table`, `.finish.write_problems` -> ``data_problems.csv``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import pandas as pd

from merkit.data.datasets.cells import (
    RowError,
    canonical_sample,
    cell_text,
    parse_action_units,
    parse_frame,
    subject_number,
)
from merkit.data.datasets.faults import (
    apply_errata,
    apply_repairs,
    check_on_problem,
    duplicate_rows,
    known_faults,
    settle,
    timing_faults,
    without_repeats,
)
from merkit.data.datasets.finish import apply_exclusions, apply_label_map, check_expected, counts_checked, finish
from merkit.data.datasets.sheets import SheetRow, read_sheet
from merkit.data.datasets.spec import DatasetSpec, LabelMap
from merkit.data.manifest import ManifestError, ManifestProblem, make_manifest, validate_manifest

#: ``sample_spelling`` of a dataset yaml -> how a sample id is rewritten (absent: as the template gives it).
SAMPLE_SPELLINGS: dict[str, Callable[[str], str]] = {"megc2019": canonical_sample}


class SheetBuilder:
    """Builds one dataset's manifest from its spec (``builder: sheet`` in the yaml, which declares everything a
    sheet does differently); a subclass replaces the steps a release without a sheet needs (SMIC-HS)."""

    def __init__(self, spec: DatasetSpec) -> None:
        self.spec = spec
        self.key = spec.key
        self.annotation_spec: dict[str, Any] = spec.raw.get("annotation") or {}
        self.layout: dict[str, Any] = spec.raw.get("layout") or {}
        self.subject_spec: dict[str, Any] = spec.raw.get("subject") or {}
        spelling = spec.raw.get("sample_spelling")
        if spelling is not None and spelling not in SAMPLE_SPELLINGS:
            raise self.error(f"{spec.file}: unknown sample_spelling {spelling!r}; known: {sorted(SAMPLE_SPELLINGS)}")
        self.respell: Callable[[str], str] | None = SAMPLE_SPELLINGS.get(spelling) if spelling is not None else None

    @classmethod
    def build_spec(
        cls, spec: DatasetSpec, data_root: str | PathLike, label_map: str | None = None, **options: Any
    ) -> pd.DataFrame:
        """``cls(spec).build(data_root, label_map, **options)``: the entry of the builder registry
        (:data:`merkit.data.datasets.BUILDERS`)."""
        return cls(spec).build(data_root, label_map, **options)

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
        sample = str(self.spec.raw.get("sample_id", "{filename}")).format(**fields)
        return self.respell(sample) if self.respell is not None else sample

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
        fields = {
            "subject": record["subject"],
            "n": record["_n"],
            "sample": record["sample"],
            "filename": record["_filename"],
            "emotion": record["emotion"],
        }
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

    def layout_roots(self) -> list[str]:
        """``layout.roots`` as written, without surrounding slashes (``''`` is the data root itself)."""
        return [str(r).strip("/") for r in (self.layout.get("roots") or [""])]

    def is_cropped_root(self, root: str) -> bool:
        """Whether frames under ``root`` are face crops already (``layout.cropped_roots``)."""
        return root in [str(r).strip("/") for r in (self.layout.get("cropped_roots") or [])]

    def search_roots(self) -> list[str]:
        """The layout roots in the order they are tried: cropped releases first, then the others."""
        roots = self.layout_roots()
        return [r for r in roots if self.is_cropped_root(r)] + [r for r in roots if not self.is_cropped_root(r)]

    def resolve_paths(self, records: list[dict[str, Any]], data_root: Path) -> str:
        """Set each record's ``path`` and ``cropped``; returns the layout root chosen (``''`` = the data root).

        The root (raw or cropped release folder, ...) is chosen once, so one manifest never mixes releases:
        the first of ``layout.cropped_roots`` under which any clip exists (a copy with both a raw and a
        cropped release is read from the cropped one), else the first of ``layout.roots``. ``cropped`` is True
        when the chosen root is one of ``layout.cropped_roots`` (the frames are face crops already). A clip
        found nowhere keeps its first candidate path and validation reports it missing.
        """
        roots = self.search_roots()
        chosen = self.layout_roots()[0]
        for root in roots:
            base = data_root / root if root else data_root
            if base.is_dir() and any(self.existing(base, c) for r in records for c in self.candidates(r)):
                chosen = root
                break
        base = data_root / chosen if chosen else data_root
        for record in records:
            options = self.candidates(record)
            found = next((p for p in (self.existing(base, c) for c in options) if p), options[0])
            record["path"] = f"{chosen}/{found}" if chosen else found
            record["cropped"] = self.is_cropped_root(chosen)
        return chosen

    # -- the whole build ------------------------------------------------------------------------------
    def error(self, message: str) -> ManifestError:
        return ManifestError([ManifestProblem(self.key, None, None, message)])

    def build(
        self,
        data_root: str | PathLike,
        label_map: str | None = None,
        *,
        annotation: str | PathLike | None = None,
        strict: bool = True,
        on_problem: str = "error",
    ) -> pd.DataFrame:
        """The manifest (see :func:`merkit.data.datasets.build_manifest`): :meth:`read_records`, then
        :meth:`finish_records`."""
        data_root = Path(data_root)
        on_problem = check_on_problem(on_problem, self.key)
        self.check_annotation(annotation)
        if not data_root.is_dir():
            raise self.error(f"data root {data_root} is not a folder")
        chosen = self.spec.label_map(label_map) if label_map is not None else None
        records, problems, context, attrs = self.read_records(data_root, annotation)
        return self.finish_records(
            records, problems, data_root, chosen, on_problem=on_problem, strict=strict, context=context, **attrs
        )

    def check_annotation(self, annotation: str | PathLike | None) -> None:
        """Refuse an ``annotation`` this kind of release cannot use (a sheet builder takes any)."""

    def read_records(
        self, data_root: Path, annotation: str | PathLike | None
    ) -> tuple[list[dict[str, Any]], list[ManifestProblem], str, dict[str, Any]]:
        """The sheet's rows as records, a problem per unparsable row, the build's context (for errors) and the
        manifest attrs to add (``annotation``: the sheet read)."""
        sheet_path = self.find_annotation(data_root, annotation)
        rows = self.read_rows(sheet_path)
        problems: list[ManifestProblem] = []
        records: list[dict[str, Any]] = []
        for row in rows:
            try:
                record = self.parse_row(row)
            except RowError as error:
                subject = cell_text(row.values.get("subject")) or None
                sample = cell_text(row.values.get("sample")) or None
                problems.append(
                    ManifestProblem(self.key, subject, sample, f"{sheet_path.name} row {row.number}: {error}", "row")
                )
                continue
            record["_where"] = f"{sheet_path.name} row {row.number}"
            record["_sheet"], record["_row"] = sheet_path.name, row.number
            records.append(record)
        return records, problems, f"{self.key} built from {sheet_path}", {"annotation": str(sheet_path)}

    def finish_records(
        self,
        records: list[dict[str, Any]],
        problems: list[ManifestProblem],
        data_root: Path,
        label_map: LabelMap | None,
        *,
        on_problem: str,
        strict: bool,
        context: str,
        **attrs: Any,
    ) -> pd.DataFrame:
        """Records -> manifest: exclusions, paths, errata and repairs (``fix``), validation, ``drop``, counts,
        label map. Shared by the sheet builders and the folder-layout builder (SMIC-HS)."""
        records, excluded = apply_exclusions(records, self.spec.raw.get("exclusions") or ())
        layout_root = self.resolve_paths(records, data_root)
        errata = self.spec.raw.get("errata") or ()
        repairs = self.spec.raw.get("repairs") or {}
        log: list[dict[str, Any]] = []
        if on_problem == "fix":
            log += apply_errata(records, errata, self.key)
            log += apply_repairs(records, repairs, data_root, self.key)
        found = known_faults(records, errata, self.key) + timing_faults(records, repairs, self.key)
        found += duplicate_rows(records, self.key)
        for record in records:
            for private in [k for k in record if k.startswith("_")]:
                record.pop(private)
        df = make_manifest(
            records,
            dataset=self.key,
            emotions={self.key: list(self.spec.emotions)} if self.spec.emotions else {},
            subject_patterns={self.key: self.subject_spec["pattern"]} if "pattern" in self.subject_spec else {},
            layout_root=layout_root,
            errata_applied=[entry["detail"] for entry in log],
            excluded=excluded,
            **attrs,
        )
        problems = problems + found + without_repeats(validate_manifest(df, data_root, strict=False), found)
        df, problems, log = settle(df, problems, log, on_problem)
        if counts_checked(data_root):
            problems += check_expected(df, self.spec.expected, self.key, "the full dataset")
        else:
            df.attrs["counts_checked"] = False
        if label_map is not None:
            df = apply_label_map(df, label_map)
            if counts_checked(data_root):
                problems += check_expected(df, label_map.expected, self.key, f"label map {label_map.name}")
        return finish(df, problems, strict, context, on_problem=on_problem, log=log)
