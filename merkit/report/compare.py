"""Runs side by side: `compare_runs` writes ``compare.csv`` (one row per run), ``compare_seeds.csv`` (mean ± sd
over seeds), ``compare.html`` and ``compare.png``; a directory without ``metrics.json`` is reported and skipped,
and so is a corrupt one (naming the file, and the key of a score that is not a number).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from merkit import viz
from merkit._io import atomic_write_bytes, atomic_write_text, flatten_dict
from merkit.errors import MerkitValueError
from merkit.report.pieces import (
    SCORES,
    Image,
    figure_png,
    interval,
    papermill_seconds,
    png_data_uri,
    read_json,
    read_yaml,
    render,
    table_of,
)
from merkit.training.runs import atomic_write_csv

#: Configuration keys that name places, not choices: two runs differing only there are the same experiment.
_PLACE_KEYS = re.compile(r"(^|\.)(run_dir|cache_dir|out_dir)$")
#: Keys holding a run's seed: runs that differ only there are replicates (mean ± sd in the comparison).
SEED_KEYS = frozenset({"train.seed", "seed"})


class CompareError(MerkitValueError):
    """`compare_runs` was given nothing it can compare (no run directory with a ``metrics.json``)."""


@dataclass
class RunSummary:
    """What `compare_runs` reads of one run directory."""

    run_dir: Path
    name: str
    metrics: dict[str, Any]
    settings: dict[str, Any]  # flattened config.json (or the pipeline parameters when there is none)
    dataset: str
    wall_seconds: float | None


def _require_number(path: Path, key: str, value: Any) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise CompareError(f"{path}: {key} is {value!r}, not a number")


def read_scores(run_dir: str | os.PathLike) -> dict[str, Any]:
    """A run's ``metrics.json`` for the comparison, checked: pooled scores present, every score a number.

    Raises `CompareError` naming the run when the file is missing or has no pooled scores, and naming the file
    (and the key) when it is corrupt: not JSON, not an object, or a score that is not a number.
    """
    run_dir = Path(run_dir)
    path = run_dir / "metrics.json"
    if not path.is_file():
        raise CompareError(f"{run_dir}: no metrics.json with pooled scores (did 03_loso run?)")
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CompareError(
            f"{path} is corrupt: not JSON ({err.msg} at line {err.lineno}, column {err.colno})"
        ) from None
    except UnicodeDecodeError:
        raise CompareError(f"{path} is corrupt: not UTF-8 text") from None
    except OSError as err:
        raise CompareError(f"{path} cannot be read: {err.strerror}") from None
    if not isinstance(metrics, dict):
        raise CompareError(f"{path} is corrupt: a JSON {type(metrics).__name__}, not an object of scores")
    pooled = metrics.get("pooled")
    if not pooled:
        raise CompareError(f"{run_dir}: its metrics.json has no pooled scores (did 03_loso finish?)")
    if not isinstance(pooled, Mapping):
        raise CompareError(f"{path} is corrupt: pooled is {pooled!r}, not an object of scores")
    for metric in SCORES:
        _require_number(path, f"pooled.{metric}", pooled.get(metric))
        entry = (metrics.get("ci") or {}).get(metric) if isinstance(metrics.get("ci"), Mapping) else None
        for bound in ("low", "high") if isinstance(entry, Mapping) else ():
            _require_number(path, f"ci.{metric}.{bound}", entry.get(bound))
    per_dataset = metrics.get("per_dataset")
    for dataset, scores in per_dataset.items() if isinstance(per_dataset, Mapping) else ():
        if not isinstance(scores, Mapping):
            raise CompareError(f"{path} is corrupt: per_dataset.{dataset} is {scores!r}, not an object of scores")
        for metric in ("uf1", "uar"):
            _require_number(path, f"per_dataset.{dataset}.{metric}", scores.get(metric))
    return metrics


def summarise_run(run_dir: str | os.PathLike) -> RunSummary:
    """Read one run directory; raises `CompareError` naming it (or its ``metrics.json``) when it has no usable
    ``metrics.json`` (`read_scores`)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CompareError(f"{run_dir}: not a directory")
    metrics = read_scores(run_dir)
    config = read_json(run_dir / "config.json")
    if isinstance(config, dict):
        settings = flatten_dict(config)
    else:
        settings = dict(read_yaml(run_dir / "pipeline_params.yaml") or {})
    settings = {k: v for k, v in settings.items() if not _PLACE_KEYS.search(k)}
    dataset = str(
        settings.get("data.dataset")
        or settings.get("dataset")
        or ", ".join(sorted(metrics.get("per_dataset") or {}))
        or "?"
    )
    seconds = [
        s
        for s in (
            papermill_seconds(p)
            for p in sorted((run_dir / "notebooks").glob("[!.]*.ipynb"))
            if not p.name.endswith(".failed.ipynb")
        )
        if s is not None
    ]
    if not seconds:  # a run made by run_protocol alone: the folds' own times
        timings = read_json(run_dir / "timings.json")
        folds = timings.get("fold_seconds") if isinstance(timings, dict) else metrics.get("fold_seconds_this_call")
        if isinstance(folds, Mapping):
            seconds = [float(v) for v in folds.values() if isinstance(v, (int, float))]
    return RunSummary(run_dir, run_dir.name, metrics, settings, dataset, sum(seconds) if seconds else None)


def _value_text(value: Any) -> str:
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def _differing_keys(summaries: Sequence[RunSummary]) -> list[str]:
    keys = sorted(set().union(*(s.settings for s in summaries)))
    return [k for k in keys if len({_value_text(s.settings.get(k, "–")) for s in summaries}) > 1]


@dataclass
class CompareResult:
    """The comparison table (one row per run), the across-seed table (None without replicates), the files."""

    table: pd.DataFrame
    seeds: pd.DataFrame | None
    csv: Path
    html: Path
    png: Path
    skipped: list[str] = field(default_factory=list)  # "RUN_DIR: why" for each run left out


def _run_rows(summaries: Sequence[RunSummary], differing: Sequence[str]) -> pd.DataFrame:
    datasets = sorted({name for s in summaries for name in (s.metrics.get("per_dataset") or {})})
    rows = []
    for summary in summaries:
        row: dict[str, Any] = {"run": summary.name, "dataset": summary.dataset}
        row.update({k: _value_text(summary.settings.get(k, "–")) for k in differing})
        for metric in ("uf1", "uar"):
            low_high = interval(summary.metrics, metric)
            row[metric] = (summary.metrics.get("pooled") or {}).get(metric)
            row[f"{metric}_low"], row[f"{metric}_high"] = low_high if low_high else (None, None)
        row["accuracy"] = (summary.metrics.get("pooled") or {}).get("accuracy")
        for dataset in datasets if len(datasets) > 1 else []:
            scores = (summary.metrics.get("per_dataset") or {}).get(dataset) or {}
            for metric in ("uf1", "uar"):
                row[f"{metric} {dataset}"] = scores.get(metric)
        row["n_samples"] = summary.metrics.get("n_samples")
        row["wall_s"] = summary.wall_seconds
        row["run_dir"] = str(summary.run_dir)
        rows.append(row)
    table = pd.DataFrame(rows)
    for column in ("uf1", "uf1_low", "uf1_high", "uar", "uar_low", "uar_high", "accuracy", "wall_s"):
        table[column] = pd.to_numeric(table[column], errors="coerce")
    return table


def _seed_rows(table: pd.DataFrame, differing: Sequence[str]) -> pd.DataFrame | None:
    """Mean ± sd over runs that differ only in their seed; None when no setting has two seeds."""
    seeds = [k for k in differing if k in SEED_KEYS]
    if not seeds:
        return None
    group = ["dataset", *[k for k in differing if k not in SEED_KEYS]]
    rows = []
    for key, part in table.groupby(group, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(group, key))
        row["n_runs"] = len(part)
        row["seeds"] = ", ".join(sorted(part[seeds[0]].astype(str)))
        for metric in ("uf1", "uar", "accuracy", "wall_s"):
            row[f"{metric}_mean"] = part[metric].mean()
            row[f"{metric}_sd"] = part[metric].std(ddof=1) if len(part) > 1 else float("nan")
        rows.append(row)
    seeds_table = pd.DataFrame(rows)
    return seeds_table if (seeds_table["n_runs"] > 1).any() else None


def _label(row: Mapping[str, Any], keys: Sequence[str], mark_dataset: bool) -> str:
    parts = [f"{k.rsplit('.', 1)[-1]}={row[k]}" for k in keys]
    if mark_dataset:
        parts.insert(0, f"[{row['dataset']}]")
    return " ".join(parts) or str(row.get("run", ""))


def compare_runs(
    run_dirs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    name: str = "compare",
) -> CompareResult:
    """Compare runs side by side: ``out_dir/<name>.csv`` (one row per run), ``<name>_seeds.csv`` (mean ± sd over
    seeds, when runs differ only in their seed), ``<name>.html`` and ``<name>.png``.

    Columns: run, dataset, every configuration key whose value differs between the runs, pooled UF1/UAR with
    their bootstrap intervals, accuracy, per-dataset UF1/UAR (when the runs cover several datasets), clips and
    wall time (sum of the executed notebooks' durations, or of the fold times). Runs on different datasets are
    compared and marked (a note, and the dataset in each label). A directory without ``metrics.json`` is listed
    in ``skipped`` and left out; with none left, `CompareError`.
    """
    out_dir = Path(out_dir)
    summaries, skipped = [], []
    seen: set[Path] = set()
    for run_dir in run_dirs:
        resolved = Path(run_dir).resolve()
        if resolved in seen:
            continue
        seen.add(resolved)
        try:
            summaries.append(summarise_run(run_dir))
        except CompareError as err:
            skipped.append(str(err))
    if not summaries:
        raise CompareError("nothing to compare: " + ("; ".join(skipped) if skipped else "no run directories given"))
    names = [s.name for s in summaries]
    if len(set(names)) < len(names):  # same leaf name in different places: use the path instead
        for summary in summaries:
            summary.name = str(summary.run_dir)
    differing = _differing_keys(summaries)
    table = _run_rows(summaries, differing)
    seeds = _seed_rows(table, differing)
    datasets = sorted(table["dataset"].unique())
    mixed = len(datasets) > 1
    label_keys = [k for k in differing if k not in SEED_KEYS] if seeds is not None else list(differing)

    out_dir.mkdir(parents=True, exist_ok=True)
    csv = atomic_write_csv(table, out_dir / f"{name}.csv")
    if seeds is not None:
        atomic_write_csv(seeds, out_dir / f"{name}_seeds.csv")
    labels_table = seeds if seeds is not None else table
    labels = [_label(row, label_keys if seeds is not None else differing, mixed) for _, row in labels_table.iterrows()]
    if seeds is None and len(set(labels)) < len(labels):
        labels = [f"{label} ({run})" for label, run in zip(labels, table["run"])]
    classes = {len(s.metrics.get("classes") or []) for s in summaries}
    chance = 1 / classes.pop() if len(classes) == 1 and 0 not in classes else None
    if seeds is not None:
        figure = viz.seed_spread_bars(
            table.assign(setting=[labels[i] for i in _group_positions(table, seeds, label_keys)]),
            "setting",
            ("uf1", "uar"),
            reference=chance,
            title=f"{len(table)} runs: mean ± sd over seeds (dots: single runs)",
        )
    else:
        figure = viz.comparison_bars(
            table.assign(setting=labels),
            "setting",
            ("uf1", "uar"),
            reference=chance,
            reference_label="chance",
            title=f"{len(table)} runs side by side",
        )
    png = atomic_write_bytes(out_dir / f"{name}.png", figure_png(figure))
    page = _compare_page(table, seeds, differing, skipped, datasets, png)
    html_path = atomic_write_text(out_dir / f"{name}.html", page)
    return CompareResult(table, seeds, csv, html_path, png, skipped)


def _group_positions(table: pd.DataFrame, seeds: pd.DataFrame, keys: Sequence[str]) -> list[int]:
    """For each run, the row of ``seeds`` (its setting) it belongs to."""
    group = ["dataset", *keys]
    lookup = {tuple(str(row[k]) for k in group): i for i, (_, row) in enumerate(seeds.iterrows())}
    return [lookup[tuple(str(row[k]) for k in group)] for _, row in table.iterrows()]


def _compare_page(
    table: pd.DataFrame,
    seeds: pd.DataFrame | None,
    differing: Sequence[str],
    skipped: Sequence[str],
    datasets: Sequence[str],
    png: Path,
) -> str:
    """``compare.html`` (templates/compare.html.j2): notes, what differs, the seed table, every run, the figure."""
    shown = table.drop(columns=["run_dir"]).copy()
    for metric in ("uf1", "uar"):
        shown[metric] = [
            f"{v:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if pd.notna(lo) and pd.notna(hi) else "") if pd.notna(v) else "–"
            for v, lo, hi in zip(table[metric], table[f"{metric}_low"], table[f"{metric}_high"])
        ]
        shown = shown.drop(columns=[f"{metric}_low", f"{metric}_high"])
    summary = None
    if seeds is not None:
        summary = seeds.copy()
        for metric in ("uf1", "uar", "accuracy", "wall_s"):
            summary[metric] = [
                f"{m:.3f} ± {s:.3f}" if pd.notna(s) else f"{m:.3f}"
                for m, s in zip(seeds[f"{metric}_mean"], seeds[f"{metric}_sd"])
            ]
            summary = summary.drop(columns=[f"{metric}_mean", f"{metric}_sd"])
    runs = [
        (name, Path(os.path.relpath(Path(run_dir) / "index.html", png.parent)).as_posix())
        for name, run_dir in zip(table["run"], table["run_dir"])
    ]
    return render(
        "compare.html.j2",
        datasets=list(datasets),
        skipped=list(skipped),
        differing=list(differing),
        seeds=table_of(summary) if summary is not None else None,
        every_run=table_of(shown),
        image=Image(png_data_uri(png.read_bytes()), "runs compared"),
        runs=runs,
    )
