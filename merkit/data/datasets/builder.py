"""The sheet -> manifest pipeline shared by the per-dataset builders.

Steps, in order (each dataset module overrides only what its sheet does differently):

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
   expected counts (skipped for a ``small`` SynthME release); then, under a protocol, map emotions to
   labels, drop what the protocol drops and check the protocol's expected counts.

Every problem is collected; ``strict=True`` raises one ``ManifestError`` listing them all, ``strict=False``
returns the manifest with ``df.attrs['problems']``. What was fixed, dropped or left out is in
``df.attrs['data_problems']`` (:func:`problems_table`, :func:`write_problems` -> ``data_problems.csv``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from merkit._io import atomic_write_text
from merkit.data.datasets.sheets import SheetRow, read_sheet
from merkit.data.datasets.spec import DatasetSpec, Protocol
from merkit.data.manifest import ManifestError, ManifestProblem, make_manifest, validate_manifest
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
        protocol: str | None = None,
        *,
        annotation: str | PathLike | None = None,
        strict: bool = True,
        on_problem: str = "error",
    ) -> pd.DataFrame:
        data_root = Path(data_root)
        on_problem = check_on_problem(on_problem, self.key)
        if not data_root.is_dir():
            raise self.error(f"data root {data_root} is not a folder")
        chosen_protocol = self.spec.protocol(protocol) if protocol is not None else None
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
                problems.append(ManifestProblem(self.key, subject, sample, f"{sheet_path.name} row {row.number}: {error}", "row"))
                continue
            record["_where"] = f"{sheet_path.name} row {row.number}"
            records.append(record)
        return self.finish_records(records, problems, data_root, chosen_protocol, on_problem=on_problem,
                                   strict=strict, annotation=str(sheet_path), context=f"{self.key} built from {sheet_path}")

    def finish_records(
        self,
        records: list[dict[str, Any]],
        problems: list[ManifestProblem],
        data_root: Path,
        protocol: Protocol | None,
        *,
        on_problem: str,
        strict: bool,
        context: str,
        **attrs: Any,
    ) -> pd.DataFrame:
        """Records -> manifest: exclusions, paths, errata and repairs (``fix``), validation, ``drop``, counts,
        protocol. Shared by the sheet builders and the folder-layout builder (SMIC-HS)."""
        records, excluded = apply_exclusions(records, self.spec.raw.get("exclusions") or ())
        layout_root = self.resolve_paths(records, data_root)
        errata = self.spec.raw.get("errata") or ()
        repairs = self.spec.raw.get("repairs") or {}
        log: list[dict[str, Any]] = []
        if on_problem == "fix":
            log += apply_errata(records, errata, self.key)
            log += apply_repairs(records, repairs, data_root, self.key)
        found = known_faults(records, errata, self.key) + timing_faults(records, repairs, self.key)
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
        if protocol is not None:
            df = apply_protocol(df, protocol)
            if counts_checked(data_root):
                problems += check_expected(df, protocol.expected, self.key, f"protocol {protocol.name}")
        return finish(df, problems, strict, context, on_problem=on_problem, log=log)


ON_PROBLEM = ("error", "fix", "drop")
def check_on_problem(value: str, dataset: str) -> str:
    """``value`` when it is one of :data:`ON_PROBLEM`, else a ManifestError naming the choices."""
    if value not in ON_PROBLEM:
        raise ManifestError([ManifestProblem(dataset, None, None, f"on_problem must be one of {list(ON_PROBLEM)}, got {value!r}")])
    return value


def counts_checked(data_root: Path) -> bool:
    """False for a ``small`` SynthME release (:func:`emulated_small_release`): its counts are not the real
    ones, so the expected-count checks are skipped (and ``attrs['counts_checked']`` says so)."""
    return not emulated_small_release(data_root)


def log_entry(dataset: str, subject: Any, sample: Any, field: str | None, action: str, detail: str) -> dict[str, Any]:
    """One row of ``data_problems.csv``: what the build fixed, dropped or left out, and why."""
    return {"dataset": dataset, "subject": subject, "sample": sample, "field": field or "",
            "action": action, "detail": detail}


def _from_values(erratum: Mapping[str, Any]) -> list[Any] | None:
    """The wrong values an erratum corrects (``from`` may list several circulating variants); None = any."""
    if "from" not in erratum:
        return None
    value = erratum["from"]
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _erratum_record(by_key: Mapping[tuple[str, str], dict[str, Any]], erratum: Mapping[str, Any]) -> dict[str, Any] | None:
    return by_key.get((str(erratum["subject"]), str(erratum["sample"])))


def apply_errata(records: list[dict[str, Any]], errata: Iterable[Mapping[str, Any]], dataset: str = "") -> list[dict[str, Any]]:
    """Correct known sheet errors in place (``on_problem='fix'``); returns a log entry per correction.

    An erratum ``{subject, sample, field, from, to, source}`` applies only where the record still holds
    ``from`` (one value, or a list of the variants that circulate), so a copy of the sheet that is already
    corrected is left alone; ``from`` omitted: wherever the value differs from ``to``.
    """
    log: list[dict[str, Any]] = []
    by_key = {(r["subject"], r["sample"]): r for r in records}
    for erratum in errata:
        record = _erratum_record(by_key, erratum)
        if record is None:
            continue
        field = str(erratum["field"])
        before = record.get(field)
        wrong = _from_values(erratum)
        if (wrong is not None and before not in wrong) or before == erratum["to"]:
            continue
        if field == "apex" and isinstance(record.get("onset"), int) and isinstance(record.get("offset"), int) \
                and not record["onset"] <= int(erratum["to"]) <= record["offset"]:
            continue  # this copy's clip does not hold the corrected apex: the erratum was written for another
        record[field] = erratum["to"]
        source = erratum.get("source") or erratum.get("why", "")
        log.append(log_entry(dataset or record["dataset"], record["subject"], record["sample"], field, "fixed",
                             f"{field} {before!r} -> {erratum['to']!r} (declared erratum: {source})"))
    return log


def known_faults(records: list[dict[str, Any]], errata: Iterable[Mapping[str, Any]], dataset: str) -> list[ManifestProblem]:
    """A problem per declared erratum whose wrong value (``from``) is still in the sheet.

    Errata without ``from`` are not reported: the sheet value is not known to be wrong in every copy.
    """
    problems: list[ManifestProblem] = []
    by_key = {(r["subject"], r["sample"]): r for r in records}
    for erratum in errata:
        record = _erratum_record(by_key, erratum)
        wrong = _from_values(erratum)
        field = str(erratum["field"])
        if record is None or wrong is None or record.get(field) not in wrong:
            continue
        source = erratum.get("source") or erratum.get("why", "")
        problems.append(ManifestProblem(
            dataset, record["subject"], record["sample"],
            f"{record.get('_where', 'sheet')}: {field} {record[field]!r} is a known fault "
            f"(declared erratum -> {erratum['to']!r}: {source}); on_problem='fix' applies it", field))
    return problems


#: Timing faults a dataset file may declare a rule-based repair for (``repairs:`` in its yaml), in the
#: order they are detected and repaired: an offset of 0 is also an onset after its offset, and either
#: repair can leave the apex outside the clip.
TIMING_FAULTS = ("offset_zero", "onset_after_offset", "apex_outside")


def _timing_fault(record: Mapping[str, Any]) -> tuple[str, str] | None:
    """(fault, field) of a record's first timing fault, None when onset <= apex <= offset holds."""
    onset, offset, apex = record.get("onset"), record.get("offset"), record.get("apex")
    if not isinstance(onset, int) or not isinstance(offset, int):
        return None
    if offset == 0 and onset > 0:
        return "offset_zero", "offset"
    if onset > offset:
        return "onset_after_offset", "onset"
    if isinstance(apex, int) and not onset <= apex <= offset:
        return "apex_outside", "apex"
    return None


def timing_faults(records: list[dict[str, Any]], repairs: Mapping[str, Any], dataset: str) -> list[ManifestProblem]:
    """A problem naming the sheet row for each record with a timing fault the dataset declares a repair
    for (left in place under ``error``/``drop``, or still there after ``fix``)."""
    problems: list[ManifestProblem] = []
    for record in records:
        fault = _timing_fault(record)
        if fault is None or fault[0] not in repairs:
            continue
        kind, field = fault
        what = {"offset_zero": f"offset is 0 (onset {record['onset']})",
                "onset_after_offset": f"onset {record['onset']} is after offset {record['offset']}",
                "apex_outside": f"apex {record['apex']} lies outside onset..offset {record['onset']}..{record['offset']}"}[kind]
        rule = repairs[kind].get("rule", "") if isinstance(repairs[kind], Mapping) else str(repairs[kind])
        problems.append(ManifestProblem(dataset, record["subject"], record["sample"],
                                        f"{record.get('_where', 'sheet')}: {what}; on_problem='fix' applies the declared rule ({rule})", field))
    return problems


def _last_contiguous_frame(folder: Path, onset: int) -> int | None:
    """The last frame number of the unbroken run of frame files starting at ``onset`` (None: onset absent)."""
    from merkit.data.io import ClipReadError, list_frames

    try:
        numbers = {number for number, _ in list_frames(folder)}
    except (ClipReadError, OSError):
        return None
    if onset not in numbers:
        return None
    last = onset
    while last + 1 in numbers:
        last += 1
    return last


def apply_repairs(records: list[dict[str, Any]], repairs: Mapping[str, Any], data_root: Path, dataset: str) -> list[dict[str, Any]]:
    """Repair timing faults by the dataset's declared rules (``on_problem='fix'``; errata come first).

    Rules (``repairs.<fault>.rule`` in the yaml; each is OUR assumption, never the dataset owners'):

    - ``offset_zero: onset_plus_median_length``: offset = onset + the median onset->offset length of the
      dataset's rows without faults, cut at the last frame of the unbroken run of frames from the onset;
    - ``onset_after_offset: swap``: onset and offset exchanged (read as a transposition);
    - ``apex_outside: middle``: apex = the middle frame of onset..offset.
    """
    log: list[dict[str, Any]] = []
    if not repairs:
        return log
    lengths = [r["offset"] - r["onset"] for r in records if _timing_fault(r) is None and isinstance(r.get("onset"), int)]
    typical = int(np.median(lengths)) if lengths else 0
    for record in records:
        for _ in TIMING_FAULTS:  # a repair can reveal the next fault (a swapped clip with its apex outside)
            fault = _timing_fault(record)
            if fault is None or fault[0] not in repairs:
                break
            kind, field = fault
            body = repairs[kind] if isinstance(repairs[kind], Mapping) else {"rule": str(repairs[kind])}
            rule = str(body.get("rule", ""))
            onset, offset, apex = record["onset"], record["offset"], record.get("apex")
            if kind == "offset_zero" and rule == "onset_plus_median_length":
                new = onset + typical
                last = _last_contiguous_frame(data_root / record["path"], onset) if record.get("path") else None
                if last is not None:
                    new = min(new, last)
                record["offset"] = new
                detail = f"offset 0 -> {new} (onset + median length {typical}, cut at the last frame on disk)"
            elif kind == "onset_after_offset" and rule == "swap":
                record["onset"], record["offset"] = offset, onset
                detail = f"onset {onset} / offset {offset} swapped"
            elif kind == "apex_outside" and rule == "middle":
                record["apex"] = (onset + offset) // 2
                detail = f"apex {apex} -> {record['apex']} (middle of {onset}..{offset})"
            else:
                raise ManifestError([ManifestProblem(dataset, None, None, f"repairs.{kind}: unknown rule {rule!r}")])
            why = body.get("why", "")
            log.append(log_entry(dataset, record["subject"], record["sample"], field, "fixed (rule)",
                                 f"{record.get('_where', 'sheet')}: {detail}; rule {kind}: {rule}, our assumption{': ' + why if why else ''}"))
    return log


_TIMING_FIELDS = {"onset", "offset", "apex"}


def without_repeats(problems: list[ManifestProblem], reported: list[ManifestProblem]) -> list[ManifestProblem]:
    """Validation problems minus the timing ones of samples a fault check already named (one line each)."""
    named = {(p.subject, p.sample) for p in reported if p.field in _TIMING_FIELDS}
    return [p for p in problems if not (p.field in _TIMING_FIELDS and (p.subject, p.sample) in named)]


def settle(
    df: pd.DataFrame, problems: list[ManifestProblem], log: list[dict[str, Any]], on_problem: str
) -> tuple[pd.DataFrame, list[ManifestProblem], list[dict[str, Any]]]:
    """Under ``drop``: every sample a problem names leaves the manifest (logged ``dropped``) and only the
    dataset-wide problems remain. Other modes: unchanged."""
    if on_problem != "drop":
        return df, problems, log
    by_sample: dict[tuple[str, str, str], list[ManifestProblem]] = {}
    remaining: list[ManifestProblem] = []
    for problem in problems:
        if problem.sample is None:
            remaining.append(problem)
        else:
            by_sample.setdefault((str(problem.dataset), str(problem.subject), str(problem.sample)), []).append(problem)
    log = list(log)
    for (dataset, subject, sample), reasons in by_sample.items():
        for reason in reasons:
            log.append(log_entry(dataset, subject, sample, reason.field, "dropped", reason.message))
    keys = list(zip(df["dataset"].astype(str), df["subject"].astype(str), df["sample"].astype(str)))
    keep = [key not in by_sample for key in keys]
    out = df.loc[keep].reset_index(drop=True)
    out.attrs = df.attrs
    return out, remaining, log


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
            problems.append(ManifestProblem(dataset, None, None, f"{what}: expected {want} {name}, built {got}", "counts"))

    differ("samples", expected.get("samples"), len(df))
    # Subjects are counted per dataset: a composite's CASME II "01" and another part's "01" are two people.
    differ("subjects", expected.get("subjects"), len(set(zip(df["dataset"], df["subject"]))))
    if expected.get("classes"):
        counts = df["emotion"] if not df.attrs.get("classes") else df["label"].map(lambda i: df.attrs["classes"][i])
        got = {name: int((counts == name).sum()) for name in expected["classes"]}
        differ("class counts", dict(expected["classes"]), got)
    return problems


def finish(
    df: pd.DataFrame,
    problems: list[ManifestProblem],
    strict: bool,
    context: str,
    *,
    on_problem: str = "error",
    log: list[dict[str, Any]] | None = None,
) -> pd.DataFrame:
    """Raise or return: ``strict`` raises one ManifestError listing every problem left; under ``drop`` the
    count differences that dropping causes are logged (``counts differ``) instead. The log of what was
    fixed, dropped or left out goes to ``attrs['data_problems']`` (see :func:`problems_table`)."""
    log = list(log or []) + list(df.attrs.get("data_problems") or [])
    if on_problem == "drop":
        counts = [p for p in problems if p.field == "counts"]
        problems = [p for p in problems if p.field != "counts"]
        log += [log_entry(str(p.dataset), None, None, "counts", "counts differ", p.message) for p in counts]
    df.attrs["data_problems"] = _unique(log)
    df.attrs["on_problem"] = on_problem
    if strict and problems:
        hint = "" if on_problem != "error" else " (on_problem='fix' applies the declared errata; 'drop' leaves those samples out)"
        raise ManifestError(problems, context=context + hint)
    df.attrs["problems"] = problems
    return df


def _unique(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen, out = set(), []
    for entry in log:
        key = tuple(sorted((k, str(v)) for k, v in entry.items()))
        if key not in seen:
            seen.add(key)
            out.append(entry)
    return out


PROBLEM_COLUMNS = ("dataset", "subject", "sample", "field", "action", "detail")


def problems_table(df: pd.DataFrame) -> pd.DataFrame:
    """What the build of ``df`` fixed, dropped or left out: one row per entry, :data:`PROBLEM_COLUMNS`."""
    return pd.DataFrame(list(df.attrs.get("data_problems") or []), columns=list(PROBLEM_COLUMNS))


def write_problems(df: pd.DataFrame, path: str | PathLike) -> Path:
    """Write :func:`problems_table` of ``df`` to ``path`` (``data_problems.csv``) atomically; returns it."""
    return atomic_write_text(path, problems_table(df).to_csv(index=False, lineterminator="\n"))
