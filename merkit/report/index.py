"""The run report: `write_report` assembles ``run_dir/index.html`` from the sections of `merkit.report.sections`.

Contract (see the package docstring): a missing artefact makes its section disappear; a section that fails to
draw is replaced by a one-line note naming the error (and a warning); the page is written atomically.
"""

from __future__ import annotations

import datetime as _dt
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from merkit.config.upgrade import upgrade_saved
from merkit.report.notebook_run import NotebookRun
from merkit.report.pieces import _CSS, _esc, _file_img, _metrics, _read_json
from merkit.report.sections import (
    _comparison,
    _configuration,
    _confusion,
    _data,
    _explanation,
    _Figures,
    _headline,
    _notebooks,
    _per_subject,
    _published,
    _scores_tables,
    _training,
    notebook_records,
)
from merkit.training.runs import atomic_write_text


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
        "class mapping": data.get("label_map"),
        "clips": metrics.get("n_samples"),
        "subjects": metrics.get("n_subjects"),
        "folds": metrics.get("n_folds"),
        "classes": ", ".join(metrics.get("classes") or []),
    }


def write_report(run_dir: str | os.PathLike, runs: Sequence[NotebookRun] | None = None) -> Path:
    """Write ``run_dir/index.html`` from whatever the run directory holds; returns its path.

    ``runs`` are the pipeline's notebook records (status and time of this call); without them (``merkit
    report``) the notebooks are found in ``run_dir/notebooks/``. See the module docstring for the contract.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir} does not exist")
    metrics = _metrics(run_dir)
    config = _read_json(run_dir / "config.json")
    config = upgrade_saved(config, "config") if isinstance(config, dict) else {}  # an older kit's key names
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
    failed_note = (
        f"<p class='error'>Notebook {', '.join(map(_esc, failed))} failed: the sections below show what "
        f"the run wrote before it.</p>"
        if failed
        else ""
    )
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
