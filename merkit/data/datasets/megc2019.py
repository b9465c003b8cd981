"""The MEGC2019 composite (cross-database emotion, CDE): CASME II + SAMM + SMIC-HS in three classes.

The rule (declared per part in ``megc2019.yaml``): CASME II negative = disgust + repression, positive =
happiness, surprise = surprise (its others, fear and sadness are out); SAMM negative = anger + contempt +
disgust + fear + sadness, positive = happiness, surprise = surprise (Other out); SMIC-HS keeps its three.
CASME II emotions come from the 2014 sheet. Clips with no usable apex (apex missing, or apex = onset: the
onset->apex flow is empty) are left out by a declared rule, ``no_usable_apex``; SMIC-HS's estimated apex
never triggers it. The result must be 442 samples of 68 subjects (CASME II 145/24, SAMM 133/28, SMIC
164/16), classes negative/positive/surprise 250/109/83; the build checks these counts. Read from another
CASME II sheet than the 2014 one, the build names the clips whose class that changes.

Each part is built by its own builder from its own folder under the composite root (``CASME2/``, ``SAMM/``,
``SMIC/`` by default), with the same ``on_problem``; rows keep their part's ``dataset`` key and ``path`` is
prefixed with the part folder, so the composite manifest reads from the composite root.

The official ground-truth file (no header, ``database,subject,video,label``, CRLF line ends, label 0 negative,
1 positive, 2 surprise) is read and written by :func:`read_megc_ground_truth` / :func:`write_megc_ground_truth`
and compared with a built composite by :func:`compare_ground_truth`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import pandas as pd

from merkit._io import atomic_write_text
from merkit.data.datasets.cells import RowError, canonical_sample, subject_number
from merkit.data.datasets.faults import DEFAULT_ON_PROBLEM, check_on_problem, log_entry
from merkit.data.datasets.finish import apply_exclusions, check_expected, counts_checked, finish
from merkit.data.datasets.spec import DatasetSpec, LabelMap, load_spec
from merkit.data.manifest import ManifestError, ManifestProblem, make_manifest

COMPOSITE = "megc2019"
DEFAULT_LABEL_MAP = "megc2019_3class"
GROUND_TRUTH_COLUMNS = ("database", "subject", "video", "label")
#: Exclusion rules a composite label map may name under ``exclude:``.
EXCLUSION_RULES = ("no_usable_apex",)


def _part_root(data_root: Path, candidates: list[str], override: str | PathLike | None) -> Path | None:
    if override is not None:
        path = Path(override)
        return path if path.is_absolute() else data_root / path
    for name in candidates:
        if (data_root / name).is_dir():
            return data_root / name
    return None


def no_usable_apex(record: Mapping[str, Any]) -> str | None:
    """Why a clip has no usable apex (missing, or equal to the onset), None when it has one.

    Estimated apexes (SMIC-HS, ``apex_estimated``) are never judged: the rule is about annotations.
    """
    if bool(record.get("apex_estimated", False)):
        return None
    apex = record.get("apex")
    if apex is None or pd.isna(apex):
        return "no usable apex: apex missing"
    if int(apex) == int(record["onset"]):
        return f"no usable apex: apex = onset = {int(apex)}"
    return None


def _changed_clips(
    part_df: pd.DataFrame, root: Path, wanted_sheet: str, label_map: LabelMap, on_problem: str
) -> ManifestProblem | None:
    """A problem naming the CASME II clips whose composite class differs from the ``wanted_sheet`` version
    (None when the sheet read is that version)."""
    from merkit.data.datasets import build_manifest  # in the function: merkit.data.datasets imports this module

    read = Path(str(part_df.attrs.get("annotation", ""))).name
    if not read or read == wanted_sheet:
        return None
    rule = label_map.for_part("casme2")

    def label(emotion: str) -> str:
        index = rule.label_of(str(emotion))
        return "out" if index is None else label_map.classes[index]

    head = f"CASME II was read from {read}, but the MEGC2019 composite is defined on the 2014 emotions ({wanted_sheet})"
    if not (root / wanted_sheet).is_file():
        return ManifestProblem(
            "casme2",
            None,
            None,
            (
                f"{head}, which is not under {root}: the clips that change cannot be named (in the real 2019 sheet "
                "three clips of subject 24 change sadness -> surprise); put the 2014 sheet there"
            ),
            "counts",
        )
    original = build_manifest("casme2", root, None, annotation=wanted_sheet, strict=False, on_problem=on_problem)
    before = {(s, c): e for s, c, e in zip(original["subject"], original["sample"], original["emotion"])}
    changed = []
    for subject, sample, emotion in zip(part_df["subject"], part_df["sample"], part_df["emotion"]):
        old = before.get((subject, sample))
        if old is not None and label(old) != label(emotion):
            changed.append(f"sub{subject}/{sample} ({old} -> {emotion}: {label(old)} -> {label(emotion)})")
    listed = "; ".join(changed) if changed else "none"
    return ManifestProblem("casme2", None, None, f"{head}: {len(changed)} clip(s) change class: {listed}", "counts")


def build(
    spec: DatasetSpec,
    data_root: str | PathLike,
    label_map: str | None = None,
    *,
    annotation: Mapping[str, str | PathLike] | None = None,
    strict: bool = True,
    on_problem: str = "error",
    roots: Mapping[str, str | PathLike] | None = None,
) -> pd.DataFrame:
    """The composite manifest. ``annotation``/``roots`` map a part (``casme2``, ``samm``, ``smic_hs``) to
    its sheet / folder when they are not where ``megc2019.yaml`` looks; ``label_map`` defaults to
    ``megc2019_3class`` (the composite has no unlabelled form). ``on_problem`` is passed to every part."""
    from merkit.data.datasets import build_manifest  # in the function: merkit.data.datasets imports this module

    data_root = Path(data_root)
    on_problem = check_on_problem(on_problem, COMPOSITE)
    if annotation is not None and not isinstance(annotation, Mapping):
        raise ManifestError(
            [ManifestProblem(COMPOSITE, None, None, "annotation must map part -> sheet path for the composite")]
        )
    chosen = spec.label_map(label_map or spec.default_label_map or DEFAULT_LABEL_MAP)
    unknown_rules = sorted(set(chosen.exclude) - set(EXCLUSION_RULES))
    if unknown_rules:
        raise ManifestError(
            [
                ManifestProblem(
                    COMPOSITE,
                    None,
                    None,
                    f"{spec.file}: unknown exclusion rule(s) {unknown_rules}; known: {list(EXCLUSION_RULES)}",
                )
            ]
        )
    parts: dict[str, Any] = spec.raw["parts"]
    annotation, roots = dict(annotation or {}), dict(roots or {})
    problems: list[ManifestProblem] = []
    log: list[dict[str, Any]] = []
    frames: list[pd.DataFrame] = []
    emotions: dict[str, list[str]] = {}
    patterns: dict[str, str] = {}
    for part, part_spec in parts.items():
        candidates = [str(c) for c in (part_spec.get("roots") or [part])]
        root = _part_root(data_root, candidates, roots.get(part))
        if root is None or not root.is_dir():
            problems.append(
                ManifestProblem(part, None, None, f"no {part} folder under {data_root}: looked for {candidates}")
            )
            continue
        wanted_sheet = part_spec.get("annotation")
        part_sheet = annotation.get(part)
        if part_sheet is None and wanted_sheet and (root / str(wanted_sheet)).is_file():
            part_sheet = wanted_sheet
        try:
            df = build_manifest(part, root, None, annotation=part_sheet, strict=False, on_problem=on_problem)
        except ManifestError as error:  # the part could not be read at all (no sheet, wrong sheet)
            problems += error.problems
            continue
        problems += df.attrs.get("problems", [])
        log += df.attrs.get("data_problems", [])
        part_rule = chosen.for_part(part)
        forgotten = sorted(set(load_spec(part).emotions) - set(part_rule.mapping) - set(part_rule.drop))
        if forgotten:
            problems.append(
                ManifestProblem(part, None, None, f"{chosen.name}: emotions {forgotten} neither mapped nor dropped")
            )
        if wanted_sheet:
            changed = _changed_clips(df, root, str(wanted_sheet), chosen, on_problem)
            if changed is not None:
                problems.append(changed)
        emotions.update(df.attrs.get("emotions", {}))
        patterns.update(df.attrs.get("subject_patterns", {}))
        prefix = root.relative_to(data_root).as_posix() if root.is_relative_to(data_root) else str(root)
        df = df.copy()
        df["path"] = [f"{prefix}/{p}" for p in df["path"]]
        frames.append(df)
    records = [r for df in frames for r in df.to_dict("records")]
    kept: list[dict[str, Any]] = []
    excluded: list[str] = []
    for part in parts:
        part_records = [r for r in records if r["dataset"] == part]
        part_kept, part_excluded = apply_exclusions(
            part_records, [e for e in chosen.exclusions if e.get("dataset") == part]
        )
        kept += part_kept
        excluded += [f"{part}/{x}" for x in part_excluded]
    labelled = []
    for record in kept:
        label = chosen.label_of(str(record["emotion"]), str(record["dataset"]))
        if label is None:
            continue
        reason = no_usable_apex(record) if "no_usable_apex" in chosen.exclude else None
        if reason is not None:
            excluded.append(f"{record['dataset']}/{record['subject']}/{record['sample']}")
            log.append(
                log_entry(
                    str(record["dataset"]),
                    record["subject"],
                    record["sample"],
                    "apex",
                    "excluded",
                    f"{reason} (rule no_usable_apex of {spec.file.name})",
                )
            )
            continue
        labelled.append({**record, "label": label})
    composite = make_manifest(
        labelled,
        dataset=COMPOSITE,
        label_map=chosen.name,
        classes=chosen.classes,
        emotions=emotions,
        subject_patterns=patterns,
        excluded=excluded,
    )
    if counts_checked(data_root):
        expected = dict(chosen.expected or {})
        problems += check_expected(composite, expected, COMPOSITE, f"label map {chosen.name}")
        for part, part_expected in (expected.get("datasets") or {}).items():
            subset = composite[composite["dataset"] == part]
            subset.attrs = composite.attrs
            problems += check_expected(subset, part_expected, part, f"{chosen.name} part {part}")
    else:
        composite.attrs["counts_checked"] = False
    return finish(composite, problems, strict, f"{COMPOSITE} built from {data_root}", on_problem=on_problem, log=log)


def build_megc2019(
    data_root: str | PathLike,
    label_map: str = DEFAULT_LABEL_MAP,
    *,
    annotations: Mapping[str, str | PathLike] | None = None,
    roots: Mapping[str, str | PathLike] | None = None,
    strict: bool = True,
    on_problem: str = DEFAULT_ON_PROBLEM,
) -> pd.DataFrame:
    """The MEGC2019 composite manifest from a folder holding the three datasets (see the module docstring)."""
    return build(
        load_spec(COMPOSITE),
        data_root,
        label_map,
        annotation=annotations,
        strict=strict,
        roots=roots,
        on_problem=on_problem,
    )


def _gt_spec() -> dict[str, Any]:
    return load_spec(COMPOSITE).raw.get("ground_truth") or {}


def read_megc_ground_truth(path: str | PathLike) -> pd.DataFrame:
    """Read an official composite ground-truth file into ``dataset, subject, sample, label`` (+ ``database``).

    ``database`` names (``casme2``, ``samm``, ``smic``) become dataset keys and subject ids are normalised as
    in the manifests (``sub01``/``1`` -> ``01``, ``6`` -> ``006``, ``s1`` -> ``s01``; SMIC clips ``s1_ne_01`` ->
    ``s01_ne_01``), so the result joins
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
            raise ManifestError(
                [
                    ManifestProblem(
                        COMPOSITE, None, None, f"{where}: expected 4 fields {GROUND_TRUTH_COLUMNS}, got {fields}"
                    )
                ]
            )
        database, subject, video, label = (f.strip() for f in fields)
        if database not in to_dataset:
            raise ManifestError(
                [
                    ManifestProblem(
                        COMPOSITE,
                        subject,
                        video,
                        f"{where}: unknown database {database!r} (known: {sorted(to_dataset)})",
                    )
                ]
            )
        dataset = to_dataset[database]
        try:
            normalised = formats[dataset].format(n=subject_number(subject))
        except RowError as error:
            raise ManifestError([ManifestProblem(dataset, subject, video, f"{where}: {error}")]) from None
        if label not in ("0", "1", "2"):
            raise ManifestError(
                [ManifestProblem(dataset, normalised, video, f"{where}: label {label!r} is not 0, 1 or 2")]
            )
        if dataset == "smic_hs":
            video = canonical_sample(video)  # s1_ne_01 and s01_ne_01 are one clip
        rows.append(
            {"dataset": dataset, "subject": normalised, "sample": video, "label": int(label), "database": database}
        )
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
            raise ManifestError(
                [
                    ManifestProblem(
                        dataset, record["subject"], record["sample"], f"no MEGC database name for dataset {dataset!r}"
                    )
                ]
            )
        if pd.isna(record["label"]):
            raise ManifestError(
                [
                    ManifestProblem(
                        dataset, record["subject"], record["sample"], "no label (build with label map megc2019_3class)"
                    )
                ]
            )
        subject = subject_forms.get(dataset, "{subject}").format(
            subject=record["subject"], n=subject_number(record["subject"])
        )
        lines.append(f"{databases[dataset]},{subject},{record['sample']},{int(record['label'])}\r\n")
    return atomic_write_text(path, "".join(lines))


def compare_ground_truth(built: pd.DataFrame, truth: pd.DataFrame, classes: list[str] | None = None) -> pd.DataFrame:
    """Clip by clip, a built composite against a ground-truth file (:func:`read_megc_ground_truth`).

    One row per clip in either, keyed on (dataset, subject, sample): ``built_label``/``truth_label`` (class
    names; ``""`` when the clip is absent from that side) and ``status``: ``agree``, ``label differs``,
    ``only in built`` or ``only in ground truth``. Sorted with the disagreements first.
    """
    names = list(classes or built.attrs.get("classes") or ["negative", "positive", "surprise"])
    key = ["dataset", "subject", "sample"]
    left = built[key + ["label"]].astype({"label": "Int64"}).rename(columns={"label": "built"})
    right = truth[key + ["label"]].astype({"label": "Int64"}).rename(columns={"label": "truth"})
    both = left.merge(right, on=key, how="outer", indicator=True)

    def name(value: Any) -> str:
        return "" if pd.isna(value) else names[int(value)]

    status = []
    for where, b, t in zip(both["_merge"], both["built"], both["truth"]):
        if where == "left_only":
            status.append("only in built")
        elif where == "right_only":
            status.append("only in ground truth")
        else:
            status.append("agree" if int(b) == int(t) else "label differs")
    out = pd.DataFrame(
        {
            **{k: both[k].astype(str) for k in key},
            "built_label": [name(v) for v in both["built"]],
            "truth_label": [name(v) for v in both["truth"]],
            "status": status,
        }
    )
    out["_order"] = (out["status"] == "agree").astype(int)
    return out.sort_values(["_order", *key]).drop(columns="_order").reset_index(drop=True)
