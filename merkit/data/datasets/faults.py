"""What a build does about the problems of a copy (``on_problem``): the declared errata, the timing faults and
their rule-based repairs (our assumptions), ``drop``, and the log entries of ``data_problems.csv``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from merkit.data.io import ClipReadError, list_frames
from merkit.data.manifest import ManifestError, ManifestProblem

#: What a build may do about problems: report them, fix what the yaml declares, or leave those samples out.
ON_PROBLEM = ("error", "fix", "drop")
#: What a build does unless told otherwise: apply the errata and repairs the dataset's yaml declares (a newcomer's
#: first build of a real release runs; the log says what changed); undeclared problems still stop it.
#: ``merkit.config.DataConfig.on_problem`` has the same default (a test holds them equal).
DEFAULT_ON_PROBLEM = "fix"


def check_on_problem(value: str, dataset: str) -> str:
    """``value`` when it is one of :data:`ON_PROBLEM`, else a ManifestError naming the choices."""
    if value not in ON_PROBLEM:
        raise ManifestError(
            [ManifestProblem(dataset, None, None, f"on_problem must be one of {list(ON_PROBLEM)}, got {value!r}")]
        )
    return value


def log_entry(dataset: str, subject: Any, sample: Any, field: str | None, action: str, detail: str) -> dict[str, Any]:
    """One row of ``data_problems.csv``: what the build fixed, dropped or left out, and why."""
    return {
        "dataset": dataset,
        "subject": subject,
        "sample": sample,
        "field": field or "",
        "action": action,
        "detail": detail,
    }


def _from_values(erratum: Mapping[str, Any]) -> list[Any] | None:
    """The wrong values an erratum corrects (``from`` may list several circulating variants); None = any."""
    if "from" not in erratum:
        return None
    value = erratum["from"]
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _erratum_record(
    by_key: Mapping[tuple[str, str], dict[str, Any]], erratum: Mapping[str, Any]
) -> dict[str, Any] | None:
    return by_key.get((str(erratum["subject"]), str(erratum["sample"])))


def apply_errata(
    records: list[dict[str, Any]], errata: Iterable[Mapping[str, Any]], dataset: str = ""
) -> list[dict[str, Any]]:
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
        if (
            field == "apex"
            and isinstance(record.get("onset"), int)
            and isinstance(record.get("offset"), int)
            and not record["onset"] <= int(erratum["to"]) <= record["offset"]
        ):
            continue  # this copy's clip does not hold the corrected apex: the erratum was written for another
        record[field] = erratum["to"]
        source = erratum.get("source") or erratum.get("why", "")
        log.append(
            log_entry(
                dataset or record["dataset"],
                record["subject"],
                record["sample"],
                field,
                "fixed",
                f"{field} {before!r} -> {erratum['to']!r} (declared erratum: {source})",
            )
        )
    return log


def known_faults(
    records: list[dict[str, Any]], errata: Iterable[Mapping[str, Any]], dataset: str
) -> list[ManifestProblem]:
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
        problems.append(
            ManifestProblem(
                dataset,
                record["subject"],
                record["sample"],
                f"{record.get('_where', 'sheet')}: {field} {record[field]!r} is a known fault "
                f"(declared erratum -> {erratum['to']!r}: {source}); on_problem='fix' applies it",
                field,
            )
        )
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
        what = {
            "offset_zero": f"offset is 0 (onset {record['onset']})",
            "onset_after_offset": f"onset {record['onset']} is after offset {record['offset']}",
            "apex_outside": f"apex {record['apex']} lies outside onset..offset {record['onset']}..{record['offset']}",
        }[kind]
        rule = repairs[kind].get("rule", "") if isinstance(repairs[kind], Mapping) else str(repairs[kind])
        problems.append(
            ManifestProblem(
                dataset,
                record["subject"],
                record["sample"],
                f"{record.get('_where', 'sheet')}: {what}; on_problem='fix' applies the declared rule ({rule})",
                field,
            )
        )
    return problems


def _last_contiguous_frame(folder: Path, onset: int) -> int | None:
    """The last frame number of the unbroken run of frame files starting at ``onset`` (None: onset absent)."""
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


def apply_repairs(
    records: list[dict[str, Any]], repairs: Mapping[str, Any], data_root: Path, dataset: str
) -> list[dict[str, Any]]:
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
    lengths = [
        r["offset"] - r["onset"] for r in records if _timing_fault(r) is None and isinstance(r.get("onset"), int)
    ]
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
            log.append(
                log_entry(
                    dataset,
                    record["subject"],
                    record["sample"],
                    field,
                    "fixed (rule)",
                    (
                        f"{record.get('_where', 'sheet')}: {detail}; rule {kind}: {rule}, "
                        f"our assumption{': ' + why if why else ''}"
                    ),
                )
            )
    return log


_TIMING_FIELDS = {"onset", "offset", "apex"}


def duplicate_rows(records: list[dict[str, Any]], dataset: str) -> list[ManifestProblem]:
    """A problem (field ``sample``) for each sheet row that repeats an earlier row's subject and sample, naming
    both rows as the spreadsheet numbers them (``_sheet``, ``_row``: the header's row counts, row 1 is the
    first). Records without a sheet row (a folder layout) are left to the manifest's own check."""
    first: dict[tuple[str, str, str], dict[str, Any]] = {}
    problems = []
    for record in records:
        if "_row" not in record:
            continue
        key = (str(record.get("dataset", dataset)), str(record["subject"]), str(record["sample"]))
        if key not in first:
            first[key] = record
            continue
        earlier = first[key]
        rows = (
            f"{record['_sheet']} rows {earlier['_row']} and {record['_row']}"
            if earlier["_sheet"] == record["_sheet"]
            else f"{earlier['_sheet']} row {earlier['_row']} and {record['_sheet']} row {record['_row']}"
        )
        problems.append(ManifestProblem(key[0], key[1], key[2], f"duplicate sample ({rows})", "sample"))
    return problems


def without_repeats(problems: list[ManifestProblem], reported: list[ManifestProblem]) -> list[ManifestProblem]:
    """Validation problems minus the timing ones of samples a fault check already named, and minus the
    duplicates :func:`duplicate_rows` already named by their sheet rows (one line each)."""
    named = {(p.subject, p.sample) for p in reported if p.field in _TIMING_FIELDS}
    duplicates = {(p.subject, p.sample) for p in reported if p.field == "sample"}
    return [
        p
        for p in problems
        if not (p.field in _TIMING_FIELDS and (p.subject, p.sample) in named)
        and not (p.field == "sample" and (p.subject, p.sample) in duplicates)
    ]


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
