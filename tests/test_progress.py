"""Progress that reaches the terminal: the kernel's fold runner writes progress.json, the pipeline polls it into one
line (folds done / total, the fold group and its epoch, ETA); papermill's cell bar stays off."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers_pipeline import COMMON, make_notebook

from merkit.pipeline.run import run_pipeline
from merkit.progress import FoldProgress, read_progress

FOLDS = (
    "import time\nfrom merkit.progress import FoldProgress\n"
    "tracker = FoldProgress(run_dir, 'loso folds', total=3, done=0)\n"
    "time.sleep(1.2)\ntracker.start_group(1, 2, folds=2, epochs=3)\n"
    "for epoch in (1, 2, 3):\n    time.sleep(1.2)\n    tracker.epoch(epoch)\n"
    "time.sleep(1.2)\ntracker.update(2)\ntime.sleep(1.2)\ntracker.update(1)\ntime.sleep(1.2)\n"
)


def test_fold_progress_of_a_kernel_reaches_the_pipeline_terminal(tmp_path: Path, capsys: pytest.CaptureFixture):
    notebook = make_notebook(tmp_path / "nb" / "03_folds.ipynb", COMMON, FOLDS)
    result = run_pipeline(tmp_path / "run", {}, [notebook], progress=True)
    err = capsys.readouterr().err
    assert result.notebooks[0].status == "executed"
    assert "[1/1] 03_folds: running" in err and "[1/1] 03_folds: done in" in err
    assert "0/3 folds, ETA ?" in err and "3/3 folds, ETA 00:00" in err  # tqdm's format of intervals
    assert "0/3 folds · group 1/2 · epoch 2/3, ETA " in err  # the bar moves inside a group of folds
    assert "Executing" not in err  # no papermill cell bar
    record = read_progress(tmp_path / "run" / "progress.json")  # written by the kernel, through $MERKIT_PROGRESS_FILE
    assert record["done"] == record["total"] == 3 and record["stage"] == "loso folds" and record["group"] is None


def test_eta_comes_from_the_folds_finished_in_this_call(tmp_path: Path):
    tracker = FoldProgress(tmp_path, "loso folds", total=10, done=4)  # resumed: 4 folds were done before
    assert read_progress(tmp_path / "progress.json")["eta_seconds"] is None  # nothing measured yet
    tracker.started -= 20.0  # as if the first fold of this call took 20 s
    tracker.update(1)
    record = json.loads((tmp_path / "progress.json").read_text())
    assert record["done"] == 5 and record["eta_seconds"] == pytest.approx(5 * 20.0, rel=0.05)


def test_a_fold_group_reports_its_epochs_and_counts_them_in_the_eta(tmp_path: Path):
    tracker = FoldProgress(tmp_path, "loso folds", total=10, done=0)
    tracker.start_group(1, 2, folds=5, epochs=100)
    assert read_progress(tmp_path / "progress.json")["group"] == {
        "index": 1,
        "count": 2,
        "folds": 5,
        "epoch": 0,
        "epochs": 100,
    }
    tracker.started -= 30.0  # as if half the group's epochs took 30 s: 2.5 folds' worth of work
    tracker.epoch(50)
    record = read_progress(tmp_path / "progress.json")
    assert record["group"]["epoch"] == 50 and record["done"] == 0
    assert record["eta_seconds"] == pytest.approx(30.0 / 2.5 * 7.5, rel=0.05)
    tracker.update(5)  # the group's folds are written: the group is over
    record = read_progress(tmp_path / "progress.json")
    assert record["done"] == 5 and record["group"] is None


def test_a_long_group_is_written_every_hundredth_of_its_epochs(tmp_path: Path):
    tracker = FoldProgress(tmp_path, "loso folds", total=4, done=0)
    tracker.start_group(1, 1, folds=4, epochs=1000)
    for epoch in range(1, 16):
        tracker.epoch(epoch)
    assert read_progress(tmp_path / "progress.json")["group"]["epoch"] == 10  # 11..15 not written yet
    tracker.epoch(1000)
    assert read_progress(tmp_path / "progress.json")["group"]["epoch"] == 1000  # the last epoch always is
