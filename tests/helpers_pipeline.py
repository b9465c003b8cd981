"""Tiny throwaway notebooks for the pipeline and CLI tests (kernel start-up dominates; the cells are trivial)."""

from __future__ import annotations

from pathlib import Path

import nbformat

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
#: The smallest SynthME and clip sizes the kit's notebooks run on in about a minute (smoke runs of the real notebooks).
TINY_SYNTHME = {
    "synthme_n_subjects": 3,
    "synthme_clips_per_subject": 3,
    "synthme_n_frames": 12,
    "synthme_size": 48,
    "frames": 8,
    "size": 32,
}
COMMON = 'run_dir: str = "unset"  # output directory\ndata_root: str = ""  # dataset directory\n'


def make_notebook(path: Path, parameters: str, *cells: str) -> Path:
    """Write a notebook: one markdown cell, a `parameters` cell (source given), then the given code cells."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    params = nbformat.v4.new_code_cell(parameters)
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {path.stem}"), params]
    nb.cells += [nbformat.v4.new_code_cell(source) for source in cells]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def recorder_notebook(path: Path, extra_parameters: str = "", *cells: str) -> Path:
    """A notebook that records which of the candidate names exist as globals into run_dir/<stem>.json."""
    record = (
        "import json, pathlib\n"
        "candidates = ['run_dir', 'data_root', 'epochs', 'lr', 'model', 'subject', 'flag', 'other']\n"
        "seen = {k: globals()[k] for k in candidates if k in globals()}\n"
        f"pathlib.Path(run_dir, '{path.stem}.json').write_text(json.dumps(seen))"
    )
    return make_notebook(path, COMMON + extra_parameters, record, *cells)
