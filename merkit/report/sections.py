"""The sections of the run report (``index.html``): one function per section, each returning HTML or None.

A function returns None when the run holds nothing for its section (the section then disappears); it may raise,
and `merkit.report.index` turns that into a one-line note. `_Figures` hands each PNG of ``figures/`` out once, so
that the 'other figures' section shows only what no section took.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from merkit import viz
from merkit.evaluation.metrics import per_subject_table
from merkit.report.headline import format_metric, headline_metrics
from merkit.report.notebook_run import NotebookRun
from merkit.report.pieces import (
    _esc,
    _figure_png,
    _file_img,
    _img,
    _interval,
    _key_values,
    _natural_key,
    _papermill_seconds,
    _read_csv,
    _read_json,
    _table,
)
from merkit.report.variants import _with_intervals, comparison_table
from merkit.training.runs import flatten_dict


class _Figures:
    """The run's ``figures/*.png``, handed out once each so that 'other figures' shows only the rest."""

    def __init__(self, run_dir: Path):
        folder = run_dir / "figures"
        self.left = sorted(folder.glob("*.png"), key=_natural_key) if folder.is_dir() else []

    def take(self, pattern: str) -> list[Path]:
        taken = [path for path in self.left if re.fullmatch(pattern, path.name)]
        self.left = [path for path in self.left if path not in taken]
        return taken

    def html(self, pattern: str, captions: Mapping[str, str] | None = None) -> str:
        return "".join(_file_img(path, (captions or {}).get(path.stem, "")) for path in self.take(pattern))


# ----------------------------------------------------------------------------------------------------------
# notebooks of a run
# ----------------------------------------------------------------------------------------------------------


@dataclass
class NotebookRecord:
    """One executed (or failed) notebook as the report lists it."""

    name: str
    status: str  # executed | skipped (resumed) | failed
    seconds: float | None
    html: Path | None
    ipynb: Path


def notebook_records(run_dir: str | os.PathLike, runs: Sequence[NotebookRun] | None = None) -> list[NotebookRecord]:
    """The notebooks of a run: from the pipeline's ``runs`` when given, else found in ``run_dir/notebooks/``.

    A notebook that failed has ``NN_name.failed.ipynb`` (and usually ``.failed.html``); it is listed as failed
    unless a successful copy of the same name exists. Times are the pipeline's, or papermill's recorded duration
    (a resumed notebook shows the time of the run that executed it).
    """
    run_dir = Path(run_dir)
    records: list[NotebookRecord] = []
    if runs is not None:
        for run in runs:
            html_path = run.html if run.html is not None and run.html.is_file() else None
            if run.status == "failed":
                failed_html = run.output.with_suffix(".html")
                html_path = failed_html if failed_html.is_file() else None
            seconds = run.seconds if run.status != "skipped" else _papermill_seconds(run.output)
            records.append(NotebookRecord(run.name, run.status, seconds, html_path, run.output))
        return records
    folder = run_dir / "notebooks"
    if not folder.is_dir():
        return records
    for ipynb in sorted(folder.glob("[!.]*.ipynb"), key=_natural_key):
        failed = ipynb.name.endswith(".failed.ipynb")
        name = ipynb.name[: -len(".failed.ipynb")] if failed else ipynb.stem
        if failed and (folder / f"{name}.ipynb").is_file():
            continue  # an older failure, fixed since
        html_path = ipynb.with_suffix(".html")
        records.append(
            NotebookRecord(
                name,
                "failed" if failed else "executed",
                _papermill_seconds(ipynb),
                html_path if html_path.is_file() else None,
                ipynb,
            )
        )
    return records


# ----------------------------------------------------------------------------------------------------------
# the sections, in page order
# ----------------------------------------------------------------------------------------------------------


def _headline(metrics: Mapping[str, Any], about: Mapping[str, Any]) -> str:
    if not metrics.get("pooled"):
        if not metrics:
            return "<p class='note'>No <code>metrics.json</code> in this run yet (03_loso writes it).</p>"
        # a metrics.json of another shape
        return _key_values((key, format_metric(metrics, key, value)) for key, value in headline_metrics(metrics))
    cards = []
    for metric, label in (("uf1", "UF1"), ("uar", "UAR"), ("accuracy", "accuracy")):
        value = (metrics["pooled"] or {}).get(metric)
        if value is None:
            continue
        interval = _interval(metrics, metric)
        ci = f"<div class='ci'>95 % interval [{interval[0]:.3f}, {interval[1]:.3f}]</div>" if interval else ""
        cards.append(f"<div class='card'><div>{label}</div><div class='value'>{value:.3f}</div>{ci}</div>")
    classes = metrics.get("classes") or []
    chance = f"; chance ≈ {1 / len(classes):.2f}" if classes else ""
    n_boot = ((metrics.get("ci") or {}).get("uf1") or {}).get("n_boot")
    facts = " · ".join(f"{k} {_esc(v)}" for k, v in about.items() if v not in (None, ""))
    return (
        f"<div class='cards'>{''.join(cards)}</div><p>{facts}</p>"
        f"<p class='muted'>Pooled over all folds as MEGC2019 scores them (TP/FP/FN per class summed over folds, "
        f"then averaged over classes){chance}. Intervals: percentile bootstrap over clips"
        f"{f' ({n_boot} resamples)' if n_boot else ''}; clips of one person are not independent, so they are "
        f"optimistic.</p>"
    )


def _scores_tables(metrics: Mapping[str, Any]) -> str | None:
    parts = []
    per_dataset = metrics.get("per_dataset")
    if isinstance(per_dataset, Mapping) and per_dataset:
        table = pd.DataFrame.from_dict(per_dataset, orient="index").rename_axis("dataset").reset_index()
        parts.append("<h3>Per dataset</h3>" + _table(table))
    per_class = metrics.get("per_class")
    if isinstance(per_class, list) and per_class:
        parts.append("<h3>Per class (pooled)</h3>" + _table(pd.DataFrame(per_class)))
    missing = metrics.get("folds_missing_classes")
    if isinstance(missing, Mapping) and missing:
        lines = ", ".join(f"{fold}: {', '.join(map(str, names))}" for fold, names in missing.items())
        parts.append(f"<p class='muted'>Folds whose training subjects lack a class: {_esc(lines)}</p>")
    return "".join(parts) or None


def _comparison(run_dir: Path, metrics: Mapping[str, Any], figures: _Figures) -> str | None:
    table = comparison_table(run_dir)
    if table is None:
        body = figures.html(r"03_comparison\.png")
        return body or None
    figures.take(r"03_comparison\.png")
    classes = metrics.get("classes") or []
    chance = 1 / len(classes) if classes else None
    figure = viz.comparison_bars(
        table,
        "variant",
        ("uf1", "uar"),
        reference=chance,
        reference_label="chance",
        title=f"variants under {metrics.get('protocol', 'the same protocol')}",
    )
    return (
        "<p>The same protocol, preprocessing, epochs and seeds for each variant; only the network changes.</p>"
        + _table(_with_intervals(table, "variant"))
        + _img(_figure_png(figure), "comparison of the variants")
    )


def _confusion(run_dir: Path, metrics: Mapping[str, Any], figures: _Figures) -> str | None:
    import numpy as np

    confusion, classes = metrics.get("confusion"), metrics.get("classes")
    if not confusion or not classes:
        return figures.html(r"03_confusion\.png") or None
    figures.take(r"03_confusion\.png")
    figure = viz.confusion_heatmap(np.asarray(confusion), classes, title="confusion matrix, pooled over folds")
    return (
        "<p>Rows are the true class, columns the predicted one; each row is the share of its true class "
        "(count in brackets), so the diagonal is each class's recall.</p>" + _img(_figure_png(figure), "confusion")
    )


def _per_subject(run_dir: Path, metrics: Mapping[str, Any], figures: _Figures) -> str | None:
    subjects = _read_csv(run_dir / "per_subject.csv")
    if subjects is None:
        predictions = _read_csv(run_dir / "predictions.csv")
        if predictions is None:
            return figures.html(r"03_per_subject\.png") or None

        subjects = per_subject_table(predictions, metrics.get("classes"))
    figures.take(r"03_per_subject\.png")
    classes = metrics.get("classes") or []
    label = subjects["subject"].astype(str)
    if "dataset" in subjects and subjects["dataset"].nunique() > 1:
        label = subjects["dataset"].astype(str) + "/" + label
    figure = viz.per_group_bars(
        subjects.assign(subject=label),
        "subject",
        "accuracy",
        reference=1 / len(classes) if classes else None,
        reference_label="chance",
        title="accuracy per held-out subject",
    )
    return (
        _img(_figure_png(figure), "per-subject accuracy")
        + f"<details><summary>table of {len(subjects)} subjects</summary>{_table(subjects)}</details>"
    )


def _data(run_dir: Path, figures: _Figures) -> str | None:
    parts = []
    summary = _read_json(run_dir / "data_summary.json")
    if isinstance(summary, dict):
        flat = flatten_dict({k: v for k, v in summary.items()})
        parts.append(_key_values((k, ", ".join(map(str, v)) if isinstance(v, list) else v) for k, v in flat.items()))
    counts = _read_csv(run_dir / "counts_per_subject.csv")
    if counts is not None:
        parts.append(
            f"<details><summary>clips per subject and class ({len(counts) - 1} subjects)</summary>"
            f"{_table(counts, digits=0)}</details>"
        )
    problems = _read_csv(run_dir / "data_problems.csv")
    if problems is not None:
        if problems.empty:
            parts.append("<p>The builders found no problem in the data (<code>data_problems.csv</code> is empty).</p>")
        else:
            action = next((c for c in ("action",) if c in problems.columns), None)
            by = [c for c in ("dataset", action) if c and c in problems.columns]
            tally = problems.groupby(by).size().rename("samples").reset_index() if by else None
            parts.append(
                f"<h3>What was dropped or fixed ({len(problems)} entries, <code>data_problems.csv</code>)</h3>"
            )
            if tally is not None:
                parts.append(_table(tally))
            parts.append(f"<details><summary>every entry</summary>{_table(problems)}</details>")
    parts.append(
        figures.html(
            r"01_.*\.png",
            {
                "01_class_counts": "clips per class",
                "01_clip": "one clip as read, onset/apex/offset marked",
                "01_preprocessed": "the same clip after preprocessing",
                "01_flow": "onset→apex optical flow and strain",
            },
        )
    )
    return "".join(parts) or None


def _training(run_dir: Path, figures: _Figures) -> str | None:
    parts = []
    split = _read_json(run_dir / "train_split.json")
    if isinstance(split, dict):
        parts.append(
            "<p>02_train: one model on one split of whole subjects (a noisy estimate; 03_loso gives the real one).</p>"
        )
        parts.append(_key_values((k, ", ".join(map(str, v)) if isinstance(v, list) else v) for k, v in split.items()))
    parts.append(figures.html(r"02_.*\.png", {"02_loss": "training curves"}))
    return "".join(parts) or None


#: 04_explain's figures in reading order, with their captions (others named 04_* follow in file order).
_EXPLAIN_FIGURES = (
    ("04_montage", "learned attention beside the attributions, frame by frame"),
    ("04_agreement", "agreement of each attribution with the learned attention (Spearman ρ per clip)"),
    ("04_scores", "mass in the true motion region per class and method (SynthME)"),
    ("04_region_heatmap", "where the maps fall on the face: mass per facial region over its area"),
    ("04_region_mass", "mass per facial region over time"),
    ("04_regions", "the facial regions used"),
    ("04_overlay", "one map laid over one frame"),
)


def _explanation(run_dir: Path, figures: _Figures) -> str | None:
    parts = []
    summary = _read_csv(run_dir / "explain_summary.csv")
    if summary is not None:
        parts.append(
            "<h3>Scores against the true motion region</h3><p>Share of each map's absolute mass inside the "
            "true motion region, and whether its maximum falls there; <em>random</em> is the chance level."
            "</p>" + _table(summary)
        )
    control = _read_csv(run_dir / "explain_vs_untrained.csv")
    if control is not None:
        parts.append("<h3>Against an untrained network (control)</h3>" + _table(control))
    regions = _read_csv(run_dir / "explain_region_summary.csv")
    if regions is not None:
        parts.append(
            f"<details><summary>mass per facial region and method ({len(regions)} rows, "
            f"explain_region_summary.csv)</summary>{_table(regions)}</details>"
        )
    if any(path.name == "04_montage.png" for path in figures.left):
        figures.take(r"04_viewer\.png")  # the viewer's static record is the same montage
    for stem, caption in _EXPLAIN_FIGURES:
        parts.append(figures.html(re.escape(stem) + r"\.png", {stem: caption}))
    parts.append(figures.html(r"04_.*\.png"))
    return "".join(parts) or None


def _published(run_dir: Path) -> str | None:
    published = _read_csv(run_dir / "published_results.csv")
    if published is None:
        return None
    return (
        "<p class='note'>These numbers come from the papers, not from this run, each under its own protocol "
        "and data; a SynthME run cannot be compared with them.</p>" + _table(published)
    )


def _configuration(run_dir: Path) -> str | None:
    parts = []
    config = _read_json(run_dir / "config.json")
    if isinstance(config, dict):
        parts.append("<h3>config.json</h3>" + _key_values(sorted(flatten_dict(config).items())))
    params = run_dir / "pipeline_params.yaml"
    if params.is_file():
        parts.append(
            f"<details><summary>pipeline parameters as given (pipeline_params.yaml)</summary>"
            f"<pre>{_esc(params.read_text())}</pre></details>"
        )
    env = _read_json(run_dir / "env.json")
    if isinstance(env, dict):
        parts.append(
            "<h3>Environment (env.json)</h3>"
            + _key_values(
                (k, json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in sorted(flatten_dict(env).items())
            )
        )
    return "".join(parts) or None


def _notebooks(run_dir: Path, records: Sequence[NotebookRecord]) -> str | None:
    if not records:
        return None
    rows = []
    for record in records:
        target = record.html or record.ipynb
        href = _esc(os.path.relpath(target, run_dir))
        seconds = f"{record.seconds:.1f} s" if record.seconds is not None else "–"
        rows.append(
            f"<tr class='{_esc(record.status)}'><td><a href='{href}'>{_esc(record.name)}</a></td>"
            f"<td>{_esc(record.status)}</td><td>{seconds}</td>"
            f"<td><a href='{_esc(os.path.relpath(record.ipynb, run_dir))}'>.ipynb</a></td></tr>"
        )
    return (
        "<table><tr><th>notebook (HTML)</th><th>status</th><th>time</th><th>source</th></tr>"
        + "".join(rows)
        + "</table>"
    )
