"""The sections of the run report (``index.html``): what each one shows, read from the run directory.

Each section is a `Section`: an anchor, a title and a function that reads a `RunView` and returns the values of
its template (``templates/sections/<anchor>.html.j2``), or None when the run holds nothing for it (the section
then disappears). A function may raise; `merkit.report.index` turns that into a one-line note. `Figures` hands
each PNG of ``figures/`` out once, so that the 'other figures' section shows only what no section took.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pandas as pd

from merkit import viz
from merkit._io import flatten_dict
from merkit.evaluation.metrics import per_subject_table
from merkit.report.headline import format_metric, headline_metrics
from merkit.report.notebook_run import NotebookRun
from merkit.report.pieces import (
    Image,
    image_of_figure,
    image_of_file,
    interval,
    key_value_rows,
    natural_key,
    papermill_seconds,
    read_csv,
    read_json,
    table_of,
)
from merkit.report.variants import comparison_table, with_intervals


class Figures:
    """The run's ``figures/*.png``, handed out once each so that 'other figures' shows only the rest."""

    def __init__(self, run_dir: Path):
        folder = run_dir / "figures"
        self.left = sorted(folder.glob("*.png"), key=natural_key) if folder.is_dir() else []

    def take(self, pattern: str) -> list[Path]:
        """The figures whose file name matches ``pattern`` (a full match), removed from those left."""
        taken = [path for path in self.left if re.fullmatch(pattern, path.name)]
        self.left = [path for path in self.left if path not in taken]
        return taken

    def images(self, pattern: str, captions: Mapping[str, str] | None = None) -> list[Image]:
        """`take` as embedded images, captioned from ``captions`` (by file stem) or with their stem."""
        return [image_of_file(path, (captions or {}).get(path.stem, "")) for path in self.take(pattern)]


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
            seconds = run.seconds if run.status != "skipped" else papermill_seconds(run.output)
            records.append(NotebookRecord(run.name, run.status, seconds, html_path, run.output))
        return records
    folder = run_dir / "notebooks"
    if not folder.is_dir():
        return records
    for ipynb in sorted(folder.glob("[!.]*.ipynb"), key=natural_key):
        failed = ipynb.name.endswith(".failed.ipynb")
        name = ipynb.name[: -len(".failed.ipynb")] if failed else ipynb.stem
        if failed and (folder / f"{name}.ipynb").is_file():
            continue  # an older failure, fixed since
        html_path = ipynb.with_suffix(".html")
        records.append(
            NotebookRecord(
                name,
                "failed" if failed else "executed",
                papermill_seconds(ipynb),
                html_path if html_path.is_file() else None,
                ipynb,
            )
        )
    return records


# ----------------------------------------------------------------------------------------------------------
# what the sections read
# ----------------------------------------------------------------------------------------------------------


@dataclass
class RunView:
    """One run directory as the sections read it."""

    run_dir: Path
    metrics: dict[str, Any]  # metrics.json ({} when absent)
    config: dict[str, Any]  # config.json ({} when absent or unreadable)
    about: dict[str, Any]  # model, protocol, dataset, counts: the headline's facts
    figures: Figures
    records: list[NotebookRecord]


def describe_run(metrics: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """The facts the headline states: model (with its attention), protocol, dataset, class mapping, counts."""
    data = config.get("data", {}) if isinstance(config.get("data"), Mapping) else {}
    model = config.get("model", {}) if isinstance(config.get("model"), Mapping) else {}
    attention = (model.get("overrides") or {}).get("attention") if isinstance(model.get("overrides"), Mapping) else None
    model_name = metrics.get("model") or model.get("name")
    if model_name and attention:
        model_name = f"{model_name}:{attention}"
    return {
        "model": model_name,
        "protocol": metrics.get("protocol") or (config.get("protocol") or {}).get("name"),
        "dataset": data.get("dataset") or ", ".join(sorted(metrics.get("per_dataset") or {})),
        "class mapping": data.get("label_map") or data.get("protocol"),  # the mapping's name in older configs
        "clips": metrics.get("n_samples"),
        "subjects": metrics.get("n_subjects"),
        "folds": metrics.get("n_folds"),
        "classes": ", ".join(metrics.get("classes") or []),
    }


def _chance(metrics: Mapping[str, Any]) -> float | None:
    classes = metrics.get("classes") or []
    return 1 / len(classes) if classes else None


# ----------------------------------------------------------------------------------------------------------
# the sections, in page order
# ----------------------------------------------------------------------------------------------------------


def headline(run: RunView) -> dict[str, Any]:
    metrics = run.metrics
    values: dict[str, Any] = {"missing": not metrics, "pairs": [], "cards": [], "facts": [], "chance": None}
    if not metrics.get("pooled"):
        if metrics:  # a metrics.json of another shape
            values["pairs"] = [(key, format_metric(metrics, key, value)) for key, value in headline_metrics(metrics)]
        return values
    for metric, label in (("uf1", "UF1"), ("uar", "UAR"), ("accuracy", "accuracy")):
        value = (metrics["pooled"] or {}).get(metric)
        if value is None:
            continue
        low_high = interval(metrics, metric)
        values["cards"].append(
            {
                "label": label,
                "value": f"{value:.3f}",
                "interval": f"[{low_high[0]:.3f}, {low_high[1]:.3f}]" if low_high else None,
            }
        )
    chance = _chance(metrics)
    values["chance"] = f"{chance:.2f}" if chance else None
    values["n_boot"] = ((metrics.get("ci") or {}).get("uf1") or {}).get("n_boot")
    values["facts"] = [(key, value) for key, value in run.about.items() if value not in (None, "")]
    return values


def scores(run: RunView) -> dict[str, Any] | None:
    values: dict[str, Any] = {"per_dataset": None, "per_class": None, "missing_classes": None}
    per_dataset = run.metrics.get("per_dataset")
    if isinstance(per_dataset, Mapping) and per_dataset:
        frame = pd.DataFrame.from_dict(per_dataset, orient="index").rename_axis("dataset").reset_index()
        values["per_dataset"] = table_of(frame)
    per_class = run.metrics.get("per_class")
    if isinstance(per_class, list) and per_class:
        values["per_class"] = table_of(pd.DataFrame(per_class))
    missing = run.metrics.get("folds_missing_classes")
    if isinstance(missing, Mapping) and missing:
        values["missing_classes"] = ", ".join(
            f"{fold}: {', '.join(map(str, names))}" for fold, names in missing.items()
        )
    return values if any(v is not None for v in values.values()) else None


def variants(run: RunView) -> dict[str, Any] | None:
    table = comparison_table(run.run_dir)
    saved = run.figures.images(r"03_comparison\.png")
    if table is None:
        return {"table": None, "figure": None, "images": saved} if saved else None
    figure = viz.comparison_bars(
        table,
        "variant",
        ("uf1", "uar"),
        reference=_chance(run.metrics),
        reference_label="chance",
        title=f"variants under {run.metrics.get('protocol', 'the same protocol')}",
    )
    return {
        "table": table_of(with_intervals(table, "variant")),
        "figure": image_of_figure(figure, "comparison of the variants"),
        "images": [],
    }


def confusion(run: RunView) -> dict[str, Any] | None:
    import numpy as np

    matrix, classes = run.metrics.get("confusion"), run.metrics.get("classes")
    saved = run.figures.images(r"03_confusion\.png")
    if not matrix or not classes:
        return {"figure": None, "images": saved} if saved else None
    figure = viz.confusion_heatmap(np.asarray(matrix), classes, title="confusion matrix, pooled over folds")
    return {"figure": image_of_figure(figure, "confusion"), "images": []}


def per_subject(run: RunView) -> dict[str, Any] | None:
    subjects = read_csv(run.run_dir / "per_subject.csv")
    saved = run.figures.images(r"03_per_subject\.png")
    if subjects is None:
        predictions = read_csv(run.run_dir / "predictions.csv")
        if predictions is None:
            return {"figure": None, "table": None, "images": saved} if saved else None
        subjects = per_subject_table(predictions, run.metrics.get("classes"))
    label = subjects["subject"].astype(str)
    if "dataset" in subjects and subjects["dataset"].nunique() > 1:
        label = subjects["dataset"].astype(str) + "/" + label
    figure = viz.per_group_bars(
        subjects.assign(subject=label),
        "subject",
        "accuracy",
        reference=_chance(run.metrics),
        reference_label="chance",
        title="accuracy per held-out subject",
    )
    return {"figure": image_of_figure(figure, "per-subject accuracy"), "table": table_of(subjects), "images": []}


#: 04_explain's figures in reading order, with their captions (others named 04_* follow in file order).
EXPLAIN_FIGURES = (
    ("04_montage", "learned attention beside the attributions, frame by frame"),
    ("04_agreement", "agreement of each attribution with the learned attention (Spearman ρ per clip)"),
    ("04_scores", "mass in the true motion region per class and method (SynthME)"),
    ("04_region_heatmap", "where the maps fall on the face: mass per facial region over its area"),
    ("04_region_mass", "mass per facial region over time"),
    ("04_regions", "the facial regions used"),
    ("04_overlay", "one map laid over one frame"),
)


def _tolerance(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """``(column, its distinct values)`` for each column of ``frame`` that names a tolerance."""
    found = []
    for column in frame.columns:
        if "tolerance" in str(column).lower():
            distinct = [str(v) for v in pd.unique(frame[column].dropna())]
            found.append((str(column), ", ".join(distinct) or "–"))
    return found


def explanation(run: RunView) -> dict[str, Any] | None:
    values: dict[str, Any] = {"summary": None, "summary_auc": False, "modules": None, "tolerance": []}
    values.update(control=None, regions=None)
    summary = read_csv(run.run_dir / "explain_summary.csv")
    if summary is not None:
        values["summary"] = table_of(summary)
        values["summary_auc"] = any(str(column).startswith("auc") for column in summary.columns)
    modules = read_csv(run.run_dir / "explain_attention_modules.csv")
    if modules is not None and "module" in modules.columns:
        values["modules"] = table_of(modules)
        values["tolerance"] = _tolerance(modules)
    control = read_csv(run.run_dir / "explain_vs_untrained.csv")
    if control is not None:
        values["control"] = table_of(control)
    regions = read_csv(run.run_dir / "explain_region_summary.csv")
    if regions is not None:
        values["regions"] = table_of(regions)
    if any(path.name == "04_montage.png" for path in run.figures.left):
        run.figures.take(r"04_viewer\.png")  # the viewer's static record is the same montage
    images = []
    for stem, caption in EXPLAIN_FIGURES:
        images += run.figures.images(re.escape(stem) + r"\.png", {stem: caption})
    values["images"] = images + run.figures.images(r"04_.*\.png")
    return values if any(values[k] for k in ("summary", "modules", "control", "regions", "images")) else None


def training(run: RunView) -> dict[str, Any] | None:
    split = read_json(run.run_dir / "train_split.json")
    pairs = key_value_rows(split.items()) if isinstance(split, dict) else None
    images = run.figures.images(r"02_.*\.png", {"02_loss": "training curves"})
    return {"split": pairs, "images": images} if pairs is not None or images else None


def data(run: RunView) -> dict[str, Any] | None:
    values: dict[str, Any] = {"summary": None, "counts": None, "problems": None, "tally": None}
    summary = read_json(run.run_dir / "data_summary.json")
    if isinstance(summary, dict):
        values["summary"] = key_value_rows(flatten_dict(summary).items())
    counts = read_csv(run.run_dir / "counts_per_subject.csv")
    if counts is not None:
        values["counts"] = table_of(counts, digits=0)
        values["n_subjects"] = len(counts) - 1  # the last row is the total
    problems = read_csv(run.run_dir / "data_problems.csv")
    if problems is not None:
        values["problems"] = table_of(problems)
        by = [column for column in ("dataset", "action") if column in problems.columns]
        if by and not problems.empty:
            values["tally"] = table_of(problems.groupby(by).size().rename("samples").reset_index())
    values["images"] = run.figures.images(
        r"01_.*\.png",
        {
            "01_class_counts": "clips per class",
            "01_clip": "one clip as read, onset/apex/offset marked",
            "01_preprocessed": "the same clip after preprocessing",
            "01_flow": "onset→apex optical flow and strain",
        },
    )
    return values if any(values[k] is not None for k in ("summary", "counts", "problems")) or values["images"] else None


def published(run: RunView) -> dict[str, Any] | None:
    table = read_csv(run.run_dir / "published_results.csv")
    return {"table": table_of(table)} if table is not None else None


def configuration(run: RunView) -> dict[str, Any] | None:
    values: dict[str, Any] = {"config": None, "params": None, "env": None}
    config = read_json(run.run_dir / "config.json")
    if isinstance(config, dict):
        values["config"] = key_value_rows(sorted(flatten_dict(config).items()))
    params = run.run_dir / "pipeline_params.yaml"
    if params.is_file():
        values["params"] = params.read_text()
    env = read_json(run.run_dir / "env.json")
    if isinstance(env, dict):
        values["env"] = key_value_rows(
            (key, json.dumps(value) if isinstance(value, (list, dict)) else value)
            for key, value in sorted(flatten_dict(env).items())
        )
    return values if any(v is not None for v in values.values()) else None


def other_figures(run: RunView) -> dict[str, Any] | None:
    images = run.figures.images(r".*")
    return {"images": images} if images else None


def notebooks(run: RunView) -> dict[str, Any] | None:
    if not run.records:
        return None
    rows = [
        {
            "name": record.name,
            "status": record.status,
            "href": os.path.relpath(record.html or record.ipynb, run.run_dir),
            "ipynb": os.path.relpath(record.ipynb, run.run_dir),
            "time": f"{record.seconds:.1f} s" if record.seconds is not None else "–",
        }
        for record in run.records
    ]
    return {"rows": rows}


@dataclass(frozen=True)
class Section:
    """One section of the page: its anchor (and template ``sections/<anchor>.html.j2``), title and reader."""

    anchor: str
    title: str
    read: Callable[[RunView], dict[str, Any] | None]


#: The page's sections in order. 'Other figures' comes after every section that takes figures.
SECTIONS = (
    Section("headline", "Headline", headline),
    Section("scores", "Scores per dataset and class", scores),
    Section("variants", "Variants compared", variants),
    Section("confusion", "Confusion matrix", confusion),
    Section("subjects", "Per-subject scores", per_subject),
    Section("explain", "Attention and attributions", explanation),
    Section("training", "Training (one split)", training),
    Section("data", "Data", data),
    Section("published", "Published numbers (for reading, not comparing)", published),
    Section("config", "Configuration and environment", configuration),
    Section("other", "Other figures", other_figures),
    Section("notebooks", "Notebooks", notebooks),
)
