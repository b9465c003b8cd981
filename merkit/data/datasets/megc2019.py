"""The MEGC2019 composite (cross-database emotion, CDE): CASME II + SAMM + SMIC-HS in three classes.

The rule (declared in ``megc2019.yaml``): negative = repression, anger, contempt, disgust, fear, sadness (and
SMIC's own ``negative``); positive = happiness (SMIC ``positive``); surprise = surprise; ``others``/``other``
dropped. CASME II emotions come from the 2014 sheet; the organisers also dropped CASME II sub04 EP12_01f and
sub05 EP09_05f. The result must be 442 samples of 68 subjects (CASME II 145/24, SAMM 133/28, SMIC 164/16),
classes negative/positive/surprise 250/109/83; the build checks these counts.

Each part is built by its own builder from its own folder under the composite root (``CASME2/``, ``SAMM/``,
``SMIC/`` by default); rows keep their part's ``dataset`` key and ``path`` is prefixed with the part folder,
so the composite manifest reads from the composite root.

The official ground-truth file (no header, ``database,subject,video,label``, CRLF line ends, label 0 negative,
1 positive, 2 surprise) is read and written by :func:`read_megc_ground_truth` / :func:`write_megc_ground_truth`.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import pandas as pd

from merkit.data.datasets.builder import (
    RowError,
    apply_exclusions,
    check_expected,
    emulated_small_release,
    finish,
    subject_number,
)
from merkit.data.datasets.spec import DatasetSpec, load_spec
from merkit.data.manifest import ManifestError, ManifestProblem, make_manifest

COMPOSITE = "megc2019"
DEFAULT_PROTOCOL = "megc2019_3class"
GROUND_TRUTH_COLUMNS = ("database", "subject", "video", "label")


def _part_root(data_root: Path, candidates: list[str], override: str | PathLike | None) -> Path | None:
    if override is not None:
        path = Path(override)
        return path if path.is_absolute() else data_root / path
    for name in candidates:
        if (data_root / name).is_dir():
            return data_root / name
    return None


def build(
    spec: DatasetSpec,
    data_root: str | PathLike,
    protocol: str | None = None,
    *,
    annotation: Mapping[str, str | PathLike] | None = None,
    strict: bool = True,
    roots: Mapping[str, str | PathLike] | None = None,
) -> pd.DataFrame:
    """The composite manifest. ``annotation``/``roots`` map a part (``casme2``, ``samm``, ``smic_hs``) to
    its sheet / folder when they are not where ``megc2019.yaml`` looks; ``protocol`` defaults to
    ``megc2019_3class`` (the composite has no unlabelled form)."""
    from merkit.data.datasets import build_manifest

    data_root = Path(data_root)
    if annotation is not None and not isinstance(annotation, Mapping):
        raise ManifestError([ManifestProblem(COMPOSITE, None, None, "annotation must map part -> sheet path for the composite")])
    chosen = spec.protocol(protocol or spec.raw.get("default_protocol", DEFAULT_PROTOCOL))
    parts: dict[str, Any] = spec.raw["parts"]
    annotation, roots = dict(annotation or {}), dict(roots or {})
    problems: list[ManifestProblem] = []
    frames: list[pd.DataFrame] = []
    emotions: dict[str, list[str]] = {}
    patterns: dict[str, str] = {}
    for part, part_spec in parts.items():
        candidates = [str(c) for c in (part_spec.get("roots") or [part])]
        root = _part_root(data_root, candidates, roots.get(part))
        if root is None or not root.is_dir():
            problems.append(ManifestProblem(part, None, None, f"no {part} folder under {data_root}: looked for {candidates}"))
            continue
        part_sheet = annotation.get(part, part_spec.get("annotation"))
        try:
            df = build_manifest(part, root, None, annotation=part_sheet, strict=False)
        except ManifestError as error:  # the part could not be read at all (no sheet, wrong sheet)
            problems += error.problems
            continue
        problems += df.attrs.get("problems", [])
        part_emotions = load_spec(part).emotions
        forgotten = sorted(set(part_emotions) - set(chosen.mapping) - set(chosen.drop))
        if forgotten:
            problems.append(ManifestProblem(part, None, None, f"{chosen.name}: emotions {forgotten} neither mapped nor dropped"))
        emotions.update(df.attrs.get("emotions", {}))
        patterns.update(df.attrs.get("subject_patterns", {}))
        prefix = root.relative_to(data_root).as_posix() if root.is_relative_to(data_root) else str(root)
        df = df.copy()
        df["path"] = [f"{prefix}/{p}" for p in df["path"]]
        frames.append(df)
    records = [r for df in frames for r in df.to_dict("records")]
    exclusions = [e for e in chosen.exclusions]
    kept: list[dict[str, Any]] = []
    excluded: list[str] = []
    for part in parts:
        part_records = [r for r in records if r["dataset"] == part]
        part_kept, part_excluded = apply_exclusions(part_records, [e for e in exclusions if e.get("dataset") == part])
        kept += part_kept
        excluded += [f"{part}/{x}" for x in part_excluded]
    labelled = []
    for record in kept:
        label = chosen.label_of(str(record["emotion"]))
        if label is not None:
            labelled.append({**record, "label": label})
    composite = make_manifest(
        labelled,
        dataset=COMPOSITE,
        protocol=chosen.name,
        classes=chosen.classes,
        emotions=emotions,
        subject_patterns=patterns,
        excluded=excluded,
    )
    expected = dict(chosen.expected or {}) if not emulated_small_release(data_root) else {}
    problems += check_expected(composite, expected, COMPOSITE, f"protocol {chosen.name}")
    for part, part_expected in (expected.get("datasets") or {}).items():
        subset = composite[composite["dataset"] == part]
        subset.attrs = composite.attrs
        problems += check_expected(subset, part_expected, part, f"{chosen.name} part {part}")
    return finish(composite, problems, strict, f"{COMPOSITE} built from {data_root}")


def build_megc2019(
    data_root: str | PathLike,
    protocol: str = DEFAULT_PROTOCOL,
    *,
    annotations: Mapping[str, str | PathLike] | None = None,
    roots: Mapping[str, str | PathLike] | None = None,
    strict: bool = True,
) -> pd.DataFrame:
    """The MEGC2019 composite manifest from a folder holding the three datasets (see the module docstring)."""
    return build(load_spec(COMPOSITE), data_root, protocol, annotation=annotations, strict=strict, roots=roots)


def _gt_spec() -> dict[str, Any]:
    return load_spec(COMPOSITE).raw.get("ground_truth") or {}


def read_megc_ground_truth(path: str | PathLike) -> pd.DataFrame:
    """Read an official composite ground-truth file into ``dataset, subject, sample, label`` (+ ``database``).

    ``database`` names (``casme2``, ``samm``, ``smic``) become dataset keys and subject ids are normalised as
    in the manifests (``sub01``/``1`` -> ``01``, ``6`` -> ``006``, ``s1`` -> ``s01``), so the result joins
    a composite manifest on (dataset, subject, sample). Errors name the file and line.
    """
    path = Path(path)
    spec = _gt_spec()
    to_dataset = {str(v): str(k) for k, v in (spec.get("database") or {}).items()}
    formats = {part: load_spec(part).raw.get("subject", {}).get("format", "{n}") for part in to_dataset.values()}
    if not path.is_file():
        raise ManifestError([ManifestProblem(COMPOSITE, None, None, f"ground-truth file not found: {path}")])
    rows = []
    text = path.read_text(encoding="utf-8-sig")
    for number, fields in enumerate(csv.reader(io.StringIO(text)), start=1):
        if not fields or all(not f.strip() for f in fields):
            continue
        where = f"{path.name} line {number}"
        if len(fields) != 4:
            raise ManifestError([ManifestProblem(COMPOSITE, None, None, f"{where}: expected 4 fields {GROUND_TRUTH_COLUMNS}, got {fields}")])
        database, subject, video, label = (f.strip() for f in fields)
        if database not in to_dataset:
            raise ManifestError([ManifestProblem(COMPOSITE, subject, video, f"{where}: unknown database {database!r} (known: {sorted(to_dataset)})")])
        dataset = to_dataset[database]
        try:
            normalised = formats[dataset].format(n=subject_number(subject))
        except RowError as error:
            raise ManifestError([ManifestProblem(dataset, subject, video, f"{where}: {error}")]) from None
        if label not in ("0", "1", "2"):
            raise ManifestError([ManifestProblem(dataset, normalised, video, f"{where}: label {label!r} is not 0, 1 or 2")])
        rows.append({"dataset": dataset, "subject": normalised, "sample": video, "label": int(label), "database": database})
    out = pd.DataFrame(rows, columns=["dataset", "subject", "sample", "label", "database"])
    out["label"] = out["label"].astype("int64")
    return out


def write_megc_ground_truth(df: pd.DataFrame, path: str | PathLike) -> Path:
    """Write a composite manifest (or any frame with dataset/subject/sample/label) in the official format.

    No header, ``database,subject,video,label``, CRLF line ends; the subject is written in the form the
    yaml's ``ground_truth.subject`` declares. Atomic (temp file, then ``os.replace``).
    """
    spec = _gt_spec()
    databases = {str(k): str(v) for k, v in (spec.get("database") or {}).items()}
    subject_forms = {str(k): str(v) for k, v in (spec.get("subject") or {}).items()}
    lines = []
    for record in df[["dataset", "subject", "sample", "label"]].to_dict("records"):
        dataset = str(record["dataset"])
        if dataset not in databases:
            raise ManifestError([ManifestProblem(dataset, record["subject"], record["sample"], f"no MEGC database name for dataset {dataset!r}")])
        if pd.isna(record["label"]):
            raise ManifestError([ManifestProblem(dataset, record["subject"], record["sample"], "no label (build with protocol megc2019_3class)")])
        subject = subject_forms.get(dataset, "{subject}").format(subject=record["subject"], n=subject_number(record["subject"]))
        lines.append(f"{databases[dataset]},{subject},{record['sample']},{int(record['label'])}\r\n")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8", newline="") as stream:
            stream.writelines(lines)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
