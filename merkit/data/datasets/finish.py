"""The end of every build: exclusions, the expected counts (skipped for a small emulated release), the class
label map, raise-or-return, and the table of what was fixed, dropped or left out (``data_problems.csv``)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import pandas as pd

from merkit._io import atomic_write_text
from merkit.data.datasets.faults import log_entry
from merkit.data.datasets.spec import LabelMap
from merkit.data.manifest import ManifestError, ManifestProblem


def counts_checked(data_root: Path) -> bool:
    """False for a ``small`` SynthME release (:func:`emulated_small_release`): its counts are not the real
    ones, so the expected-count checks are skipped (and ``attrs['counts_checked']`` says so)."""
    return not emulated_small_release(data_root)


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


def apply_label_map(df: pd.DataFrame, label_map: LabelMap) -> pd.DataFrame:
    """Rows whose emotion the label map maps, labelled; rows it drops (or does not know) removed."""
    labels = [label_map.label_of(str(e)) for e in df["emotion"]]
    keep = [label is not None for label in labels]
    out = df.loc[keep].copy()
    out["label"] = pd.array([label for label in labels if label is not None], dtype="Int64")
    out = out.reset_index(drop=True)
    out.attrs = {**df.attrs, "label_map": label_map.name, "classes": list(label_map.classes)}
    return out


def check_expected(
    df: pd.DataFrame, expected: Mapping[str, Any] | None, dataset: str, what: str
) -> list[ManifestProblem]:
    """Compare sample, subject and (under a label map) per-class counts with the spec's ``expected``."""
    if not expected:
        return []
    problems = []

    def differ(name: str, want: Any, got: Any) -> None:
        if want is not None and want != got:
            problems.append(
                ManifestProblem(dataset, None, None, f"{what}: expected {want} {name}, built {got}", "counts")
            )

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
        hint = (
            ""
            if on_problem != "error"
            else " (on_problem='fix' applies the declared errata; 'drop' leaves those samples out)"
        )
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
