"""The run report (``run_dir/index.html``) and the side-by-side comparison of runs (``compare.csv/.html/.png``).

`write_report` turns whatever a run directory holds into one self-contained HTML page (every image embedded
as a base64 data URI, so the file can be mailed or opened from disk without a server):

- the headline: pooled UF1 / UAR / accuracy with their bootstrap intervals, model, protocol, dataset, counts;
- per-dataset and per-class tables; the variants' comparison (table and figure, with intervals);
- the confusion matrix and the per-subject scores; the explanation figures and tables of 04_explain;
- the data summary (clips, subjects, counts, ``data_problems.csv`` when the builders wrote one);
- the configuration (``config.json``, the pipeline parameters) and the environment (``env.json``);
- links to every executed notebook (HTML and ipynb).

Contract: a missing artefact makes its section disappear, never an error; a section that fails to draw is
replaced by a one-line note naming the error (and a warning), so a report is always written. The page is
written atomically. `compare_runs` reads several run directories (a sweep's, or any) and writes one table and
one figure of them side by side; a directory without ``metrics.json`` is reported and skipped.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import io
import json
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import pandas as pd

from merkit.runs import atomic_write_bytes, atomic_write_csv, atomic_write_text, flatten_dict
from merkit.errors import MerkitValueError

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from merkit.pipeline import NotebookRun

__all__ = [
    "CompareError",
    "CompareResult",
    "RunSummary",
    "compare_runs",
    "comparison_row",
    "comparison_table",
    "notebook_records",
    "summarise_run",
    "write_report",
]

#: The three pooled scores, in the order they are shown.
SCORES = ("uf1", "uar", "accuracy")
#: Figures the report draws itself from the run's data (the notebooks' PNG of the same thing is not repeated).
_REDRAWN = {"03_confusion.png", "03_per_subject.png", "03_comparison.png"}
#: Configuration keys that name places, not choices: two runs differing only there are the same experiment.
_PLACE_KEYS = re.compile(r"(^|\.)(run_dir|cache_dir|out_dir)$")
#: Keys holding a run's seed: runs that differ only there are replicates (mean ± sd in the comparison).
SEED_KEYS = frozenset({"train.seed", "seed"})


class CompareError(MerkitValueError):
    """`compare_runs` was given nothing it can compare (no run directory with a ``metrics.json``)."""


# ----------------------------------------------------------------------------------------------------------
# small readers: every one returns None (or {}) for a missing or unreadable file
# ----------------------------------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _read_csv(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path)
    except (OSError, ValueError, pd.errors.EmptyDataError):
        return None


def _read_yaml(path: Path) -> dict[str, Any] | None:
    import yaml

    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    return loaded if isinstance(loaded, dict) else None


def _metrics(run_dir: Path) -> dict[str, Any]:
    loaded = _read_json(run_dir / "metrics.json")
    return loaded if isinstance(loaded, dict) else {}


# ----------------------------------------------------------------------------------------------------------
# HTML pieces
# ----------------------------------------------------------------------------------------------------------


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _number(value: Any, digits: int = 3) -> str:
    if isinstance(value, bool) or value is None:
        return "–" if value is None else str(value)
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def _interval(metrics: Mapping[str, Any], metric: str) -> tuple[float, float] | None:
    ci = metrics.get("ci")
    entry = ci.get(metric) if isinstance(ci, Mapping) else None
    if isinstance(entry, Mapping) and entry.get("low") is not None and entry.get("high") is not None:
        return float(entry["low"]), float(entry["high"])
    return None


def _score_text(metrics: Mapping[str, Any], metric: str) -> str:
    value = (metrics.get("pooled") or {}).get(metric)
    if value is None:
        return "–"
    text = f"{value:.3f}"
    interval = _interval(metrics, metric)
    return text + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")


def _table(frame: pd.DataFrame, digits: int = 3, index: bool = False) -> str:
    shown = frame.copy()
    for column in shown.columns:
        values = shown[column]
        is_count = str(column) == "n" or str(column).startswith(("n_", "clips"))
        if is_count and pd.api.types.is_float_dtype(values) and values.dropna().map(float.is_integer).all():
            shown[column] = values.astype("Int64")  # counts read back as floats (JSON, NaN in the column)
        elif pd.api.types.is_float_dtype(values):
            shown[column] = shown[column].map(lambda v: _number(v, digits))
    return shown.to_html(index=index, escape=True, border=0, classes="data", na_rep="–")


def _key_values(pairs: Iterable[tuple[str, Any]]) -> str:
    rows = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(_number(v, 4))}</td></tr>" for k, v in pairs)
    return f"<table class='kv'>{rows}</table>"


def _png_data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _figure_png(figure: "Figure") -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _img(data: bytes, alt: str, caption: str = "") -> str:
    caption_html = f"<figcaption>{_esc(caption)}</figcaption>" if caption else ""
    return f"<figure><img src='{_png_data_uri(data)}' alt='{_esc(alt)}'>{caption_html}</figure>"


def _file_img(path: Path, caption: str = "") -> str:
    return _img(path.read_bytes(), path.stem, caption or path.stem)


def _natural_key(path: Path) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


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


def _papermill_seconds(ipynb: Path) -> float | None:
    loaded = _read_json(ipynb)
    if not isinstance(loaded, dict):
        return None
    duration = loaded.get("metadata", {}).get("papermill", {}).get("duration")
    return float(duration) if isinstance(duration, (int, float)) else None


def notebook_records(run_dir: str | os.PathLike, runs: Sequence["NotebookRun"] | None = None) -> list[NotebookRecord]:
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
        records.append(NotebookRecord(name, "failed" if failed else "executed", _papermill_seconds(ipynb),
                                      html_path if html_path.is_file() else None, ipynb))
    return records


# ----------------------------------------------------------------------------------------------------------
# the variants' comparison of one run (03_loso's compare/)
# ----------------------------------------------------------------------------------------------------------


def comparison_row(name: str, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """One row of a comparison table: ``variant``, the pooled scores and ``<score>_low`` / ``<score>_high``."""
    row: dict[str, Any] = {"variant": name}
    pooled = metrics.get("pooled") or {}
    for metric in SCORES:
        row[metric] = pooled.get(metric)
        interval = _interval(metrics, metric)
        row[f"{metric}_low"], row[f"{metric}_high"] = interval if interval else (None, None)
    return row


def comparison_table(run_dir: str | os.PathLike) -> pd.DataFrame | None:
    """The run against its variants (03_loso's ``comparison.csv`` and ``compare/<variant>/``), with intervals.

    Rows and names follow ``comparison.csv`` when present; intervals it lacks are read from each variant's own
    ``metrics.json`` (``compare/<variant with ':' as '_'>/``). Without ``comparison.csv`` the run itself and
    every ``compare/*/metrics.json`` are listed. None when there is nothing to compare (one row or fewer).
    """
    run_dir = Path(run_dir)
    own = _metrics(run_dir)
    listed = _read_csv(run_dir / "comparison.csv")
    rows: list[dict[str, Any]] = []
    if listed is not None and "variant" in listed.columns:
        for position, record in enumerate(listed.to_dict("records")):
            name = str(record["variant"])
            source = own if position == 0 else _metrics(run_dir / "compare" / name.replace(":", "_"))
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
            rows.append(comparison_row(variant_dir.parent.name, _metrics(variant_dir.parent)))
    if len(rows) < 2:
        return None
    table = pd.DataFrame(rows)
    for column in [f"{m}{suffix}" for m in SCORES for suffix in ("", "_low", "_high")]:
        if column not in table.columns:
            table[column] = float("nan")
        table[column] = pd.to_numeric(table[column], errors="coerce")
    return table


def _with_intervals(table: pd.DataFrame, label: str) -> pd.DataFrame:
    """Scores as ``0.812 [0.741, 0.879]`` text columns for the HTML table."""
    shown = pd.DataFrame({label: table[label]})
    for metric in SCORES:
        if metric not in table.columns:
            continue
        texts = []
        for _, row in table.iterrows():
            value, low, high = row.get(metric), row.get(f"{metric}_low"), row.get(f"{metric}_high")
            text = _number(value)
            if low is not None and high is not None and not (pd.isna(low) or pd.isna(high)):
                text += f" [{low:.3f}, {high:.3f}]"
            texts.append(text)
        shown[metric] = texts
    return shown


# ----------------------------------------------------------------------------------------------------------
# the report
# ----------------------------------------------------------------------------------------------------------


_CSS = """
body { font-family: system-ui, sans-serif; max-width: 76em; margin: 1.5em auto; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
nav a { margin-right: 0.9em; } .muted { color: #666; } .note { background: #fff6d6; padding: 0.5em 0.8em; }
.error { background: #fdd; padding: 0.5em 0.8em; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.92em; }
td, th { border: 1px solid #ccc; padding: 0.25em 0.7em; text-align: left; vertical-align: top; }
table.kv th { background: #f4f4f4; font-weight: normal; } tr.failed td { background: #fdd; }
.cards { display: flex; gap: 1em; flex-wrap: wrap; margin: 1em 0; }
.card { border: 1px solid #ccc; border-radius: 6px; padding: 0.6em 1.1em; min-width: 12em; }
.card .value { font-size: 1.8em; font-weight: bold; } .card .ci { color: #555; }
figure { margin: 0.8em 0; display: inline-block; vertical-align: top; }
img { max-width: 100%; height: auto; border: 1px solid #eee; } figcaption { color: #555; font-size: 0.9em; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
details summary { cursor: pointer; color: #225; }
"""


@dataclass
class _Section:
    anchor: str
    title: str
    body: str


def _section(anchor: str, title: str, build: Callable[[], str | None]) -> _Section | None:
    """Build one section; a failure becomes a visible one-line note (and a warning), never a missing page."""
    try:
        body = build()
    except Exception as err:  # noqa: BLE001 - a broken artefact must not cost the user the whole report
        warnings.warn(f"report section {title!r} could not be drawn: {type(err).__name__}: {err}", stacklevel=2)
        body = f"<p class='error'>This section could not be drawn: {_esc(type(err).__name__)}: {_esc(err)}</p>"
    return None if not body else _Section(anchor, title, body)


def _describe(run_dir: Path, metrics: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
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
        "class mapping": data.get("protocol"),
        "clips": metrics.get("n_samples"),
        "subjects": metrics.get("n_subjects"),
        "folds": metrics.get("n_folds"),
        "classes": ", ".join(metrics.get("classes") or []),
    }


def _headline(metrics: Mapping[str, Any], about: Mapping[str, Any]) -> str:
    if not metrics.get("pooled"):
        if not metrics:
            return "<p class='note'>No <code>metrics.json</code> in this run yet (03_loso writes it).</p>"
        from merkit.pipeline import format_metric, headline_metrics  # a metrics.json of another shape

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
    from merkit import viz

    table = comparison_table(run_dir)
    if table is None:
        body = figures.html(r"03_comparison\.png")
        return body or None
    figures.take(r"03_comparison\.png")
    classes = metrics.get("classes") or []
    chance = 1 / len(classes) if classes else None
    figure = viz.comparison_bars(table, "variant", ("uf1", "uar"), reference=chance, reference_label="chance",
                                 title=f"variants under {metrics.get('protocol', 'the same protocol')}")
    return (
        "<p>The same protocol, preprocessing, epochs and seeds for each variant; only the network changes.</p>"
        + _table(_with_intervals(table, "variant")) + _img(_figure_png(figure), "comparison of the variants")
    )


def _confusion(run_dir: Path, metrics: Mapping[str, Any], figures: _Figures) -> str | None:
    import numpy as np

    from merkit import viz

    confusion, classes = metrics.get("confusion"), metrics.get("classes")
    if not confusion or not classes:
        return figures.html(r"03_confusion\.png") or None
    figures.take(r"03_confusion\.png")
    figure = viz.confusion_heatmap(np.asarray(confusion), classes, title="confusion matrix, pooled over folds")
    return ("<p>Rows are the true class, columns the predicted one; each row is the share of its true class "
            "(count in brackets), so the diagonal is each class's recall.</p>" + _img(_figure_png(figure), "confusion"))


def _per_subject(run_dir: Path, metrics: Mapping[str, Any], figures: _Figures) -> str | None:
    from merkit import viz

    subjects = _read_csv(run_dir / "per_subject.csv")
    if subjects is None:
        predictions = _read_csv(run_dir / "predictions.csv")
        if predictions is None:
            return figures.html(r"03_per_subject\.png") or None
        from merkit.metrics import per_subject_table

        subjects = per_subject_table(predictions, metrics.get("classes"))
    figures.take(r"03_per_subject\.png")
    classes = metrics.get("classes") or []
    label = subjects["subject"].astype(str)
    if "dataset" in subjects and subjects["dataset"].nunique() > 1:
        label = subjects["dataset"].astype(str) + "/" + label
    figure = viz.per_group_bars(subjects.assign(subject=label), "subject", "accuracy",
                                reference=1 / len(classes) if classes else None, reference_label="chance",
                                title="accuracy per held-out subject")
    return (_img(_figure_png(figure), "per-subject accuracy")
            + f"<details><summary>table of {len(subjects)} subjects</summary>{_table(subjects)}</details>")


def _data(run_dir: Path, figures: _Figures) -> str | None:
    parts = []
    summary = _read_json(run_dir / "data_summary.json")
    if isinstance(summary, dict):
        flat = flatten_dict({k: v for k, v in summary.items()})
        parts.append(_key_values((k, ", ".join(map(str, v)) if isinstance(v, list) else v) for k, v in flat.items()))
    counts = _read_csv(run_dir / "counts_per_subject.csv")
    if counts is not None:
        parts.append(f"<details><summary>clips per subject and class ({len(counts) - 1} subjects)</summary>"
                     f"{_table(counts, digits=0)}</details>")
    problems = _read_csv(run_dir / "data_problems.csv")
    if problems is not None:
        if problems.empty:
            parts.append("<p>The builders found no problem in the data (<code>data_problems.csv</code> is empty).</p>")
        else:
            action = next((c for c in ("action",) if c in problems.columns), None)
            by = [c for c in ("dataset", action) if c and c in problems.columns]
            tally = problems.groupby(by).size().rename("samples").reset_index() if by else None
            parts.append(f"<h3>What was dropped or fixed ({len(problems)} entries, <code>data_problems.csv</code>)</h3>")
            if tally is not None:
                parts.append(_table(tally))
            parts.append(f"<details><summary>every entry</summary>{_table(problems)}</details>")
    parts.append(figures.html(r"01_.*\.png", {
        "01_class_counts": "clips per class", "01_clip": "one clip as read, onset/apex/offset marked",
        "01_preprocessed": "the same clip after preprocessing", "01_flow": "onset→apex optical flow and strain"}))
    return "".join(parts) or None


def _training(run_dir: Path, figures: _Figures) -> str | None:
    parts = []
    split = _read_json(run_dir / "train_split.json")
    if isinstance(split, dict):
        parts.append("<p>02_train: one model on one split of whole subjects (a noisy estimate; 03_loso gives the "
                     "real one).</p>")
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
        parts.append("<h3>Scores against the true motion region</h3><p>Share of each map's absolute mass inside the "
                     "true motion region, and whether its maximum falls there; <em>random</em> is the chance level."
                     "</p>" + _table(summary))
    control = _read_csv(run_dir / "explain_vs_untrained.csv")
    if control is not None:
        parts.append("<h3>Against an untrained network (control)</h3>" + _table(control))
    regions = _read_csv(run_dir / "explain_region_summary.csv")
    if regions is not None:
        parts.append(f"<details><summary>mass per facial region and method ({len(regions)} rows, "
                     f"explain_region_summary.csv)</summary>{_table(regions)}</details>")
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
    return ("<p class='note'>These numbers come from the papers, not from this run, each under its own protocol "
            "and data; a SynthME run cannot be compared with them.</p>" + _table(published))


def _configuration(run_dir: Path) -> str | None:
    parts = []
    config = _read_json(run_dir / "config.json")
    if isinstance(config, dict):
        parts.append("<h3>config.json</h3>" + _key_values(sorted(flatten_dict(config).items())))
    params = run_dir / "pipeline_params.yaml"
    if params.is_file():
        parts.append(f"<details><summary>pipeline parameters as given (pipeline_params.yaml)</summary>"
                     f"<pre>{_esc(params.read_text())}</pre></details>")
    env = _read_json(run_dir / "env.json")
    if isinstance(env, dict):
        parts.append("<h3>Environment (env.json)</h3>" + _key_values(
            (k, json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in sorted(flatten_dict(env).items())))
    return "".join(parts) or None


def _notebooks(run_dir: Path, records: Sequence[NotebookRecord]) -> str | None:
    if not records:
        return None
    rows = []
    for record in records:
        target = record.html or record.ipynb
        href = _esc(os.path.relpath(target, run_dir))
        seconds = f"{record.seconds:.1f} s" if record.seconds is not None else "–"
        rows.append(f"<tr class='{_esc(record.status)}'><td><a href='{href}'>{_esc(record.name)}</a></td>"
                    f"<td>{_esc(record.status)}</td><td>{seconds}</td>"
                    f"<td><a href='{_esc(os.path.relpath(record.ipynb, run_dir))}'>.ipynb</a></td></tr>")
    return ("<table><tr><th>notebook (HTML)</th><th>status</th><th>time</th><th>source</th></tr>"
            + "".join(rows) + "</table>")


def write_report(run_dir: str | os.PathLike, runs: Sequence["NotebookRun"] | None = None) -> Path:
    """Write ``run_dir/index.html`` from whatever the run directory holds; returns its path.

    ``runs`` are the pipeline's notebook records (status and time of this call); without them (``merkit
    report``) the notebooks are found in ``run_dir/notebooks/``. See the module docstring for the contract.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist")
    metrics = _metrics(run_dir)
    config = _read_json(run_dir / "config.json")
    config = config if isinstance(config, dict) else {}
    about = _describe(run_dir, metrics, config)
    figures = _Figures(run_dir)
    records = notebook_records(run_dir, runs)
    sections = [
        _section("headline", "Headline", lambda: _headline(metrics, about)),
        _section("scores", "Scores per dataset and class", lambda: _scores_tables(metrics)),
        _section("variants", "Variants compared", lambda: _comparison(run_dir, metrics, figures)),
        _section("confusion", "Confusion matrix", lambda: _confusion(run_dir, metrics, figures)),
        _section("subjects", "Per-subject scores", lambda: _per_subject(run_dir, metrics, figures)),
        _section("explain", "Attention and attributions", lambda: _explanation(run_dir, figures)),
        _section("training", "Training (one split)", lambda: _training(run_dir, figures)),
        _section("data", "Data", lambda: _data(run_dir, figures)),
        _section("published", "Published numbers (for reading, not comparing)", lambda: _published(run_dir)),
        _section("config", "Configuration and environment", lambda: _configuration(run_dir)),
        _section("notebooks", "Notebooks", lambda: _notebooks(run_dir, records)),
    ]
    rest = _section("other", "Other figures", lambda: "".join(_file_img(p) for p in figures.take(r".*")) or None)
    sections = [s for s in (*sections[:-1], rest, sections[-1]) if s is not None]
    failed = [r.name for r in records if r.status == "failed"]
    failed_note = (f"<p class='error'>Notebook {', '.join(map(_esc, failed))} failed: the sections below show what "
                   f"the run wrote before it.</p>" if failed else "")
    nav = "".join(f"<a href='#{s.anchor}'>{_esc(s.title)}</a>" for s in sections)
    body = "".join(f"<section id='{s.anchor}'><h2>{_esc(s.title)}</h2>{s.body}</section>" for s in sections)
    title = f"merkit run {run_dir.name}"
    if about.get("model"):
        title += f": {about['model']}"
    page = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'><title>{_esc(title)}</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<h1>{_esc(title)}</h1><p class='muted'>Run directory <code>{_esc(run_dir.resolve())}</code> · report "
        f"written {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC (<code>merkit report</code> rebuilds it)</p>"
        f"{failed_note}<nav>{nav}</nav>{body}</body></html>\n"
    )
    return atomic_write_text(run_dir / "index.html", page)


# ----------------------------------------------------------------------------------------------------------
# comparing runs
# ----------------------------------------------------------------------------------------------------------


@dataclass
class RunSummary:
    """What `compare_runs` reads of one run directory."""

    run_dir: Path
    name: str
    metrics: dict[str, Any]
    settings: dict[str, Any]  # flattened config.json (or the pipeline parameters when there is none)
    dataset: str
    wall_seconds: float | None


def summarise_run(run_dir: str | os.PathLike) -> RunSummary:
    """Read one run directory; raises `CompareError` naming it when it has no usable ``metrics.json``."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise CompareError(f"{run_dir}: not a directory")
    metrics = _metrics(run_dir)
    if not metrics.get("pooled"):
        raise CompareError(f"{run_dir}: no metrics.json with pooled scores (did 03_loso run?)")
    config = _read_json(run_dir / "config.json")
    if isinstance(config, dict):
        settings = flatten_dict(config)
    else:
        settings = dict(_read_yaml(run_dir / "pipeline_params.yaml") or {})
    settings = {k: v for k, v in settings.items() if not _PLACE_KEYS.search(k)}
    dataset = str(settings.get("data.dataset") or settings.get("dataset")
                  or ", ".join(sorted(metrics.get("per_dataset") or {})) or "?")
    seconds = [s for s in (_papermill_seconds(p) for p in sorted((run_dir / "notebooks").glob("[!.]*.ipynb"))
                           if not p.name.endswith(".failed.ipynb")) if s is not None]
    if not seconds:  # a run made by run_protocol alone: the folds' own times
        timings = _read_json(run_dir / "timings.json")
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
            low_high = _interval(summary.metrics, metric)
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
    from merkit import viz

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
        figure = viz.seed_spread_bars(table.assign(setting=[labels[i] for i in _group_positions(table, seeds, label_keys)]),
                                      "setting", ("uf1", "uar"), reference=chance,
                                      title=f"{len(table)} runs: mean ± sd over seeds (dots: single runs)")
    else:
        figure = viz.comparison_bars(table.assign(setting=labels), "setting", ("uf1", "uar"), reference=chance,
                                     reference_label="chance", title=f"{len(table)} runs side by side")
    png = atomic_write_bytes(out_dir / f"{name}.png", _figure_png(figure))
    page = _compare_page(table, seeds, differing, skipped, datasets, png, labels_table, label_keys)
    html_path = atomic_write_text(out_dir / f"{name}.html", page)
    return CompareResult(table, seeds, csv, html_path, png, skipped)


def _group_positions(table: pd.DataFrame, seeds: pd.DataFrame, keys: Sequence[str]) -> list[int]:
    """For each run, the row of ``seeds`` (its setting) it belongs to."""
    group = ["dataset", *keys]
    lookup = {tuple(str(row[k]) for k in group): i for i, (_, row) in enumerate(seeds.iterrows())}
    return [lookup[tuple(str(row[k]) for k in group)] for _, row in table.iterrows()]


def _compare_page(table: pd.DataFrame, seeds: pd.DataFrame | None, differing: Sequence[str], skipped: Sequence[str],
                  datasets: Sequence[str], png: Path, labels_table: pd.DataFrame, label_keys: Sequence[str]) -> str:
    notes = []
    if len(datasets) > 1:
        notes.append(f"<p class='note'>These runs are on different datasets ({_esc(', '.join(datasets))}): scores "
                     "of different datasets are not comparable with each other; the dataset is marked on every row.</p>")
    if skipped:
        notes.append("<p class='error'>Left out (no metrics): " + "; ".join(_esc(s) for s in skipped) + "</p>")
    shown = table.drop(columns=["run_dir"]).copy()
    for metric in ("uf1", "uar"):
        shown[metric] = [
            f"{v:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if pd.notna(lo) and pd.notna(hi) else "") if pd.notna(v) else "–"
            for v, lo, hi in zip(table[metric], table[f"{metric}_low"], table[f"{metric}_high"])]
        shown = shown.drop(columns=[f"{metric}_low", f"{metric}_high"])
    links = "".join(f"<li><a href='{_esc(Path(os.path.relpath(Path(r) / 'index.html', png.parent)).as_posix())}'>"
                    f"{_esc(n)}</a></li>" for n, r in zip(table["run"], table["run_dir"]))
    seeds_html = ""
    if seeds is not None:
        summary = seeds.copy()
        for metric in ("uf1", "uar", "accuracy", "wall_s"):
            summary[metric] = [f"{m:.3f} ± {s:.3f}" if pd.notna(s) else f"{m:.3f}" for m, s in
                               zip(seeds[f"{metric}_mean"], seeds[f"{metric}_sd"])]
            summary = summary.drop(columns=[f"{metric}_mean", f"{metric}_sd"])
        seeds_html = "<h2>Across seeds: mean ± sd</h2>" + _table(summary)
    differing_text = ", ".join(differing) if differing else "nothing (the configurations are identical)"
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>merkit: runs compared</title>"
        f"<style>{_CSS}</style></head><body><h1>{len(table)} runs compared</h1>{''.join(notes)}"
        f"<p>What differs in their configurations: {_esc(differing_text)}.</p>"
        f"<p class='muted'>Pooled UF1/UAR with 95 % bootstrap intervals over clips; wall time is the sum of the "
        f"executed notebooks' durations (or of the fold times).</p>"
        f"{seeds_html}<h2>Every run</h2>{_table(shown)}"
        f"<figure><img src='{_png_data_uri(png.read_bytes())}' alt='runs compared'></figure>"
        f"<h2>Run reports</h2><ul>{links}</ul></body></html>\n"
    )
