"""Executed notebooks as files: the student view (solutions left out), the failing cell of a partial copy,
the HTML export, output names, and the temporaries a killed run leaves behind.

Cell positions always refer to the committed notebook (papermill's injected cells are not counted; cells left
out of the student view are mapped back).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Sequence

from merkit._io import atomic_write_text

__all__ = [
    "SOLUTION_TAG",
    "WIDGET_VIEW",
    "output_name",
    "export_html",
    "without_solutions",
    "failing_cell",
    "strip_widget_state",
    "remove_failed_copies",
    "remove_leftovers",
]

#: Tag of the exercise-solution cells the pipeline leaves out unless asked for them (`merkit.pipeline.teach`).
SOLUTION_TAG = "solution"
#: The MIME type of a widget's view in a cell output (a reference to a model in the live kernel).
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def output_name(position: int, source: Path) -> str:
    """``01_data`` stays ``01_data``; a notebook without a number prefix gets its position (``03_mine``)."""
    stem = source.stem
    prefix = stem.split("_", 1)[0]
    return stem if prefix.isdigit() else f"{position + 1:02d}_{stem}"


def export_html(notebook: str | os.PathLike, html_path: str | os.PathLike) -> Path:
    """Export an executed notebook to a standalone HTML page (nbconvert's lab template), atomically."""
    import nbformat
    from nbconvert import HTMLExporter

    node = nbformat.read(str(notebook), as_version=4)
    body, _ = HTMLExporter().from_notebook_node(node)
    html_path = Path(html_path)
    atomic_write_text(html_path, body)
    return html_path


def without_solutions(node: Any) -> tuple[Any, list[int]]:
    """A copy of notebook ``node`` without its ``solution`` cells, and the 1-based source position of each kept cell."""
    kept = [
        (position, cell)
        for position, cell in enumerate(node.cells, start=1)
        if SOLUTION_TAG not in cell.metadata.get("tags", [])
    ]
    stripped = copy.deepcopy(node)
    stripped.cells = [copy.deepcopy(cell) for _, cell in kept]
    return stripped, [position for position, _ in kept]


def failing_cell(partial: Path, positions: Sequence[int] | None = None) -> tuple[int | None, str]:
    """Find the failing cell in papermill's saved copy; return its 1-based position in the SOURCE notebook.

    papermill inserts an ``injected-parameters`` cell and error-marker cells (so its ``cell_index`` does not
    match the committed notebook); those are not counted. The failing cell is the one papermill marked
    ``failed`` (or ``running``), or the cell holding an error output; failing those, the last cell that started
    (a timeout marks its cell completed, with no error output). ``positions[i]`` is the source position of the
    i-th executed cell when cells were left out (solutions).
    """
    import nbformat

    try:
        node = nbformat.read(str(partial), as_version=4)
    except Exception:  # noqa: BLE001 - the partial file may not exist if the kernel never started
        return None, ""
    inserted = {"injected-parameters", "papermill-error-cell-tag"}
    counted = [cell for cell in node.cells if not inserted & set(cell.metadata.get("tags", []))]
    started = None
    for position, cell in enumerate(counted, start=1):
        papermill_state = cell.metadata.get("papermill", {})
        errored = any(output.get("output_type") == "error" for output in cell.get("outputs", []))
        if papermill_state.get("status") in ("failed", "running") or errored:
            return _source_position(position, positions), _first_line(cell)
        if papermill_state.get("start_time"):
            started = position
    if started is None:
        return None, ""
    return _source_position(started, positions), _first_line(counted[started - 1])


def _source_position(position: int, positions: Sequence[int] | None) -> int:
    return positions[position - 1] if positions is not None and position <= len(positions) else position


def _first_line(cell: Any) -> str:
    return next((line for line in cell.source.splitlines() if line.strip()), "").strip()[:80]


def remove_leftovers(run_dir: Path) -> list[Path]:
    """Delete temporary files a killed run left in ``run_dir`` (atomic-write temporaries, papermill partial
    notebooks); only safe while holding the run directory's lock. Returns what was removed."""
    removed = []
    for pattern in ("**/.*.tmp", "notebooks/.*.partial.ipynb", "notebooks/.*.source.ipynb"):
        for path in run_dir.glob(pattern):
            if path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


def strip_widget_state(path: Path) -> int:
    """Rewrite an executed notebook without widgets: no ``metadata.widgets`` and, in every output, no widget view
    (its ``text/plain`` form stays, e.g. a progress bar's last line). Returns the number of views removed.

    Widgets (tqdm's bars, the clip viewer) need the kernel that made them: in an executed copy their views only
    point at models a reopened notebook cannot find ("widget model not found")."""
    import nbformat

    node = nbformat.read(str(path), as_version=4)
    removed = 0
    changed = node.metadata.pop("widgets", None) is not None
    for cell in node.cells:
        kept = []
        for output in cell.get("outputs", []):
            data = output.get("data")
            if data is not None and WIDGET_VIEW in data:
                del data[WIDGET_VIEW]
                removed += 1
                if not data:
                    continue  # nothing but the widget: the output goes
            kept.append(output)
        if "outputs" in cell and len(kept) != len(cell.outputs):
            cell.outputs = kept
    if changed or removed:
        atomic_write_text(path, nbformat.writes(node))
    return removed


def remove_failed_copies(out_dir: Path, name: str) -> list[Path]:
    """Delete ``name.failed.ipynb`` and ``name.failed.html`` (an earlier failure's copies); returns those removed."""
    removed = []
    for suffix in (".failed.ipynb", ".failed.html"):
        path = out_dir / f"{name}{suffix}"
        if path.is_file():
            path.unlink()
            removed.append(path)
    return removed
