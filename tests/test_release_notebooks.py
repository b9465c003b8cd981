"""The four notebooks on an emulated real release, read with that dataset's own builder and yaml.

A user with a CASME II copy that holds only the raw frames (``CASME2_RAW_selected/``, 640×480 with the face
inside a scene) points ``data_root`` at it and picks ``dataset=casme2``, ``protocol=casme2_5class``; every
other parameter keeps the notebooks' defaults except the tiny sizes that keep the run short.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pandas as pd
import papermill
import pytest

from merkit.data.synthetic import write_release
from merkit.pipeline import DEFAULT_ORDER, NOTEBOOK_DIR, run_pipeline

TINY = {"frames": 8, "size": 32}
EXTRA = {"epochs": 1, "batch_size": 4, "k": 3, "compare": "", "n_boot": 20, "n_explain": 2, "ig_steps": 4,
         "viewer_clips": 2, "methods": "ig,attention", "device": "cpu"}


@pytest.fixture(scope="module")
def casme2_raw_run(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("release_notebooks")
    release = write_release("casme2", base / "CASME2", small=True, layout="raw", progress=False)
    names = [name for name in DEFAULT_ORDER if (NOTEBOOK_DIR / f"{name}.ipynb").exists()]
    declared = set().union(*(papermill.inspect_notebook(str(NOTEBOOK_DIR / f"{n}.ipynb")) for n in names))
    params = {"dataset": "casme2", "data_root": str(release), "protocol": "casme2_5class", **TINY}
    params.update({k: v for k, v in EXTRA.items() if k in declared})
    run_dir = base / "run"
    result = run_pipeline(run_dir, params, names, cell_timeout=300, progress=False)
    assert [r.status for r in result.notebooks] == ["executed"] * len(names)
    return run_dir


def _no_errors(notebook: Path) -> None:
    nb = nbformat.read(str(notebook), as_version=4)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            assert output.get("output_type") != "error", "".join(output.get("traceback", []))[-2000:]


@pytest.mark.slow
def test_all_four_notebooks_run_on_a_raw_casme2_release(casme2_raw_run: Path):
    for name in ("01_data", "02_train", "03_loso", "04_explain"):
        _no_errors(casme2_raw_run / "notebooks" / f"{name}.ipynb")
    manifest = pd.read_csv(casme2_raw_run / "manifest.csv")
    # casme2_5class drops fear and sadness: the small release's 16 clips of 5 subjects remain
    assert len(manifest) == 16 and manifest["subject"].nunique() == 5
    assert manifest["path"].str.startswith("CASME2_RAW_selected/").all()
    metrics = json.loads((casme2_raw_run / "metrics.json").read_text())
    assert metrics["n_folds"] == 5 and 0 <= metrics["pooled"]["uf1"] <= 1
    scores = pd.read_csv(casme2_raw_run / "explain_scores.csv")
    assert set(scores["method"]) >= {"ig", "attention"}
