"""The run report: `write_report` renders ``run_dir/index.html`` from the sections of `merkit.report.sections`
through the templates of ``merkit/report/templates/``.

Contract (see the package docstring): a missing artefact makes its section disappear; a section that fails to
draw is replaced by a one-line note naming the error (and a warning); the page is written atomically.

The report touches only what it owns. A folder is a run directory when it holds one of `RUN_MARKERS`: the
``config.json`` that a run of folds writes (`merkit.training.runs.RunDir`) or the ``pipeline_params.yaml`` that
``merkit pipeline`` writes before its first notebook. Any other folder is refused, and so is an ``index.html``
that the report did not write (its pages name `merkit.report.pieces.GENERATOR` in their head): both raise
`ReportError` before anything is written.
"""

from __future__ import annotations

import datetime as _dt
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from merkit._io import atomic_write_text
from merkit.errors import MerkitValueError
from merkit.report.headline import read_metrics
from merkit.report.notebook_run import NotebookRun
from merkit.report.pieces import GENERATOR, read_json, render
from merkit.upgrade import upgrade_saved

if TYPE_CHECKING:  # pragma: no cover
    from merkit.report.sections import RunView, Section

#: Files of which one marks a folder as a run directory that the report may write ``index.html`` into.
RUN_MARKERS = ("config.json", "pipeline_params.yaml")
#: How far into an existing ``index.html`` the report looks for its own generator tag (it is in the head).
_HEAD_BYTES = 4096


class ReportError(MerkitValueError):
    """`write_report` refuses the folder: not a run directory, or its ``index.html`` is not the report's own."""


def check_report_target(run_dir: str | os.PathLike) -> Path:
    """The path ``index.html`` will be written to, after checking that the report owns it.

    Raises `ReportError` naming the folder when it does not exist or holds none of `RUN_MARKERS`, and naming the
    file when an ``index.html`` is there that the report did not write. Nothing is written.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ReportError(f"run directory {run_dir} does not exist")
    if not any((run_dir / marker).is_file() for marker in RUN_MARKERS):
        raise ReportError(
            f"{run_dir} is not a merkit run directory (it holds neither {' nor '.join(RUN_MARKERS)}); "
            "nothing was written"
        )
    return check_report_page(run_dir / "index.html")


def check_report_page(page: str | os.PathLike) -> Path:
    """``page`` after checking that the report may write it: absent, or a page the report wrote before.

    Raises `ReportError` naming the file when it holds a page the report did not write. Nothing is written.
    """
    page = Path(page)
    if page.exists() or page.is_symlink():
        try:
            with page.open("rb") as handle:
                head = handle.read(_HEAD_BYTES).decode("utf-8", errors="replace")
        except OSError as err:
            raise ReportError(f"cannot read {page} to check that it is a merkit report: {err.strerror}") from None
        if f"name='generator' content='{GENERATOR}'" not in head:
            raise ReportError(
                f"{page} was not written by merkit report; it is left as it is (move it away to rebuild the report)"
            )
    return page


@dataclass
class _Drawn:
    anchor: str
    title: str
    body: str  # rendered by an autoescaping template: markup already
    error: str = ""


def _draw(section: Section, run: RunView) -> _Drawn | None:
    """Read and render one section; a failure becomes a visible one-line note (and a warning), never a missing
    page."""
    try:
        values = section.read(run)
        if values is None:
            return None
        return _Drawn(section.anchor, section.title, render(f"sections/{section.anchor}.html.j2", **values))
    except Exception as err:  # noqa: BLE001 - a broken artefact must not cost the user the whole report
        message = f"{type(err).__name__}: {err}"
        warnings.warn(f"report section {section.title!r} could not be drawn: {message}", stacklevel=3)
        return _Drawn(section.anchor, section.title, "", message)


def write_report(run_dir: str | os.PathLike, runs: Sequence[NotebookRun] | None = None) -> Path:
    """Write ``run_dir/index.html`` from whatever the run directory holds; returns its path.

    ``runs`` are the pipeline's notebook records (status and time of this call); without them (``merkit
    report``) the notebooks are found in ``run_dir/notebooks/``. Raises `ReportError` (and writes nothing) for a
    folder that is not a run directory or an ``index.html`` the report did not write (`check_report_target`).
    See the module docstring for the contract.
    """
    page_path = check_report_target(run_dir)
    # The sections load the figures (matplotlib, and torch through merkit.viz): imported only once the folder is
    # known to be the report's, so that `merkit report` refuses a wrong folder at once.
    from merkit.report.sections import SECTIONS, Figures, RunView, describe_run, notebook_records

    run_dir = Path(run_dir)
    metrics = read_metrics(run_dir)
    config = read_json(run_dir / "config.json")
    config = upgrade_saved(config, "config") if isinstance(config, dict) else {}  # an older kit's key names
    records = notebook_records(run_dir, runs)
    run = RunView(run_dir, metrics, config, describe_run(metrics, config), Figures(run_dir), records)
    drawn = [section for section in (_draw(section, run) for section in SECTIONS) if section is not None]
    title = f"merkit run {run_dir.name}"
    if run.about.get("model"):
        title += f": {run.about['model']}"
    page = render(
        "report.html.j2",
        title=title,
        run_dir=run_dir.resolve(),
        written=f"{_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M}",
        failed=[record.name for record in records if record.status == "failed"],
        sections=drawn,
    )
    return atomic_write_text(page_path, page)
