"""The ``flow_folder`` builder: a community folder of 28×28 onset→apex flow PNGs plus its listing CSV.

``data_manifests/flow_folder.yaml`` declares the listing's column names, the dataset-name aliases and the
label map (``megc2019_3class``: labels 0/1/2 = negative/positive/surprise). The manifest has the usual
columns with ``path`` the image file (relative to the folder), ``onset = offset = 0`` and ``apex`` NA (the
folder has no frames; the flow was made elsewhere), ``emotion`` the class name, ``listing_row`` the CSV line
(header = line 1), and ``attrs["flow_folder"] = True``. A missing image, an unknown label or a listing
without subject/sample columns is a ``ManifestError`` naming the listing line, the sample and the file; a
listing that cannot be read as a UTF-8 CSV is a ``FlowError`` naming the file (and the line of a bad byte).
No counts are checked: a folder may list any subset (the real composite list has 442 rows).
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from merkit.data.datasets.spec import DatasetSpec
from merkit.data.flow import FlowError, read_flow_listing, read_listing_csv
from merkit.data.manifest import ManifestError, ManifestProblem

__all__ = ["build", "find_listing"]


def _error(dataset: str, message: str, subject: str | None = None, sample: str | None = None) -> ManifestError:
    return ManifestError([ManifestProblem(dataset, subject, sample, message)])


def find_listing(spec: DatasetSpec, folder: Path, listing: str | PathLike | None) -> Path:
    """The listing CSV: ``listing`` (absolute, or relative to the folder), else the folder's only ``*.csv``."""
    if listing:
        path = Path(listing).expanduser()
        path = path if path.is_absolute() or path.is_file() else folder / path
        if not path.is_file():
            raise _error(spec.key, f"flow listing {listing} not found (looked at {path})")
        return path
    found = sorted(folder.glob("*.csv"))
    if len(found) != 1:
        what = "no *.csv" if not found else f"{len(found)} CSV files ({', '.join(p.name for p in found)})"
        raise _error(
            spec.key,
            f"{folder}: {what}; name the listing with listing= (notebooks: -p listing PATH, "
            "merkit prepare --listing PATH)",
        )
    return found[0]


def _column(table_columns: list[str], candidates: list[str]) -> str | None:
    lower = {c.strip().lower(): c for c in table_columns}
    return next((lower[c] for c in candidates if c in lower), None)


def build(
    spec: DatasetSpec,
    data_root: str | PathLike,
    label_map: str | None = None,
    *,
    annotation: str | PathLike | None = None,
    strict: bool = True,
    **_: Any,
) -> pd.DataFrame:
    """The manifest of the flow folder ``data_root`` listed by ``annotation`` (the listing CSV)."""
    folder = Path(data_root)
    if not folder.is_dir():
        raise _error(spec.key, f"flow folder {folder} is not a folder")
    chosen = spec.label_map(label_map or spec.default_label_map or "megc2019_3class")
    listing = find_listing(spec, folder, annotation)
    table = read_listing_csv(listing)  # FlowError (one line) naming the file: unreadable, not UTF-8, not a CSV
    names = spec.raw.get("listing") or {}
    columns = {
        what: _column(list(table.columns), list(names.get(what, ())))
        for what in ("subject", "sample", "label", "dataset")
    }
    if columns["label"] is None:
        raise _error(spec.key, f"{listing}: no label column (one of {names.get('label')}) in {list(table.columns)}")
    try:
        index = read_flow_listing(
            folder,
            table.rename(columns={}),
            subject_column=columns["subject"],
            sample_column=columns["sample"],
            label_column=columns["label"],
        )
    except FlowError as error:
        raise _error(spec.key, str(error).replace("<listing DataFrame>", str(listing))) from None
    aliases = {str(k).lower(): str(v) for k, v in (spec.raw.get("datasets") or {}).items()}
    if columns["dataset"] is not None:
        datasets = [aliases.get(str(d).strip().lower(), str(d).strip().lower()) for d in table[columns["dataset"]]]
    else:
        datasets = [spec.key] * len(index)
    problems, labels, emotions = [], [], []
    for row, dataset in zip(index.itertuples(), datasets):
        label = chosen.label_of(str(row.label).strip().lower()) if str(row.label).strip() else None
        if label is None:
            problems.append(
                ManifestProblem(
                    dataset,
                    row.subject,
                    row.sample,
                    f"{listing} line {row.row}: label {row.label!r} is not one of "
                    f"{sorted(chosen.mapping)} (label map {chosen.name})",
                )
            )
        labels.append(label)
        emotions.append(chosen.classes[label] if label is not None else str(row.label))
    if problems and strict:
        raise ManifestError(problems, context=f"{spec.key} built from {listing}")
    keep = np.array([label is not None for label in labels])
    manifest = pd.DataFrame(
        {
            "dataset": datasets,
            "subject": index["subject"].astype(str),
            "sample": index["sample"].astype(str),
            "path": [Path(p).relative_to(folder).as_posix() for p in index["path"]],
            "onset": np.zeros(len(index), dtype=np.int64),
            "apex": pd.array([pd.NA] * len(index), dtype="Int64"),
            "offset": np.zeros(len(index), dtype=np.int64),
            "fps": np.full(len(index), np.nan),
            "emotion": emotions,
            "label": pd.array(labels, dtype="Int64"),
            "action_units": [()] * len(index),
            "listing_row": index["row"].astype(np.int64),
        }
    )[keep].reset_index(drop=True)
    duplicated = manifest.duplicated(["dataset", "subject", "sample"], keep=False)
    if duplicated.any():
        first = manifest[duplicated].iloc[0]
        raise _error(
            first["dataset"],
            f"{listing}: {int(duplicated.sum())} rows list the same clip (first at line {first['listing_row']})",
            first["subject"],
            first["sample"],
        )
    manifest.attrs = {
        "dataset": spec.key,
        "label_map": chosen.name,
        "classes": list(chosen.classes),
        "annotation": str(listing),
        "flow_folder": True,
        "problems": problems,
    }
    return manifest
