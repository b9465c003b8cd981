"""Progress that reaches the terminal: the kernel's fold runner writes progress.json, the pipeline polls it into one
line (folds done / total, ETA); papermill's cell bar stays off."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers_pipeline import COMMON, make_notebook

from merkit.pipeline.run import run_pipeline
from merkit.progress import FoldProgress, format_eta, read_progress

FOLDS = (
    "import time\nfrom merkit.progress import FoldProgress\n"
    "tracker = FoldProgress(run_dir, 'loso folds', total=3, done=0)\n"
    "for _ in range(3):\n    time.sleep(1.5)\n    tracker.update(1)\ntime.sleep(1.5)\n"
)


def test_fold_progress_of_a_kernel_reaches_the_pipeline_terminal(tmp_path: Path, capsys: pytest.CaptureFixture):
    notebook = make_notebook(tmp_path / "nb" / "03_folds.ipynb", COMMON, FOLDS)
    result = run_pipeline(tmp_path / "run", {}, [notebook], progress=True)
    err = capsys.readouterr().err
    assert result.notebooks[0].status == "executed"
    assert "[1/1] 03_folds: running" in err and "[1/1] 03_folds: done in" in err
    assert "3/3 folds, ETA 0:00" in err and "0/3 folds, ETA ?" in err
    assert "Executing" not in err  # no papermill cell bar
    record = read_progress(tmp_path / "run" / "progress.json")  # written by the kernel, through $MERKIT_PROGRESS_FILE
    assert record["done"] == record["total"] == 3 and record["stage"] == "loso folds"


def test_eta_comes_from_the_folds_finished_in_this_call(tmp_path: Path):
    tracker = FoldProgress(tmp_path, "loso folds", total=10, done=4)  # resumed: 4 folds were done before
    assert read_progress(tmp_path / "progress.json")["eta_seconds"] is None  # nothing measured yet
    tracker.started -= 20.0  # as if the first fold of this call took 20 s
    tracker.update(1)
    record = json.loads((tmp_path / "progress.json").read_text())
    assert record["done"] == 5 and record["eta_seconds"] == pytest.approx(5 * 20.0, rel=0.05)
    assert format_eta(100) == "1:40" and format_eta(3725) == "1:02:05" and format_eta(None) == "?"
