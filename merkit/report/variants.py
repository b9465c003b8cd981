"""The variants' comparison of one run (03_loso's ``comparison.csv`` and ``compare/<variant>/``)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from merkit.report.headline import read_metrics
from merkit.report.pieces import SCORES, format_number, interval, read_csv


def comparison_row(name: str, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """One row of a comparison table: ``variant``, the pooled scores and ``<score>_low`` / ``<score>_high``."""
    row: dict[str, Any] = {"variant": name}
    pooled = metrics.get("pooled") or {}
    for metric in SCORES:
        row[metric] = pooled.get(metric)
        low_high = interval(metrics, metric)
        row[f"{metric}_low"], row[f"{metric}_high"] = low_high if low_high else (None, None)
    return row


def comparison_table(run_dir: str | os.PathLike) -> pd.DataFrame | None:
    """The run against its variants (03_loso's ``comparison.csv`` and ``compare/<variant>/``), with intervals.

    Rows and names follow ``comparison.csv`` when present; intervals it lacks are read from each variant's own
    ``metrics.json`` (``compare/<variant with ':' as '_'>/``). Without ``comparison.csv`` the run itself and
    every ``compare/*/metrics.json`` are listed. None when there is nothing to compare (one row or fewer).
    """
    run_dir = Path(run_dir)
    own = read_metrics(run_dir)
    listed = read_csv(run_dir / "comparison.csv")
    rows: list[dict[str, Any]] = []
    if listed is not None and "variant" in listed.columns:
        for position, record in enumerate(listed.to_dict("records")):
            name = str(record["variant"])
            source = own if position == 0 else read_metrics(run_dir / "compare" / name.replace(":", "_"))
            row = comparison_row(name, source) if source else {"variant": name}
            for metric in SCORES:  # the csv's own numbers win; the variant's metrics.json fills the rest
                for column in (metric, f"{metric}_low", f"{metric}_high"):
                    value = record.get(column)
                    if value is not None and not (isinstance(value, float) and math.isnan(value)):
                        row[column] = value
            rows.append(row)
    else:
        if own:
            rows.append(comparison_row(f"{own.get('model', run_dir.name)} (this run)", own))
        folder = run_dir / "compare"
        for variant_dir in sorted(folder.glob("*/metrics.json")) if folder.is_dir() else []:
            rows.append(comparison_row(variant_dir.parent.name, read_metrics(variant_dir.parent)))
    if len(rows) < 2:
        return None
    table = pd.DataFrame(rows)
    for column in [f"{m}{suffix}" for m in SCORES for suffix in ("", "_low", "_high")]:
        if column not in table.columns:
            table[column] = float("nan")
        table[column] = pd.to_numeric(table[column], errors="coerce")
    return table


def with_intervals(table: pd.DataFrame, label: str) -> pd.DataFrame:
    """Scores as ``0.812 [0.741, 0.879]`` text columns for the HTML table."""
    shown = pd.DataFrame({label: table[label]})
    for metric in SCORES:
        if metric not in table.columns:
            continue
        texts = []
        for _, row in table.iterrows():
            value, low, high = row.get(metric), row.get(f"{metric}_low"), row.get(f"{metric}_high")
            text = format_number(value)
            if low is not None and high is not None and not (pd.isna(low) or pd.isna(high)):
                text += f" [{low:.3f}, {high:.3f}]"
            texts.append(text)
        shown[metric] = texts
    return shown
