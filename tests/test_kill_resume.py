"""Kill-anywhere resume: SIGKILL `merkit pipeline` (a real subprocess) during the store build, inside a fold,
between folds and during 04_explain; each resume carries on, and the end is byte-identical to an uninterrupted
run (predictions.csv, metrics.json), with no temporary file left in the run directory or the cache.

The kills are deterministic: ``$MERKIT_PAUSE_AT`` makes the process reaching that named point write
``$MERKIT_PAUSE_FILE`` and sleep (merkit.progress.pause_point); the test then kills the pipeline's process group
and the paused kernel (jupyter starts kernels in a session of their own).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
TINY = {
    "synthme_n_subjects": 3,
    "synthme_clips_per_subject": 3,
    "synthme_n_frames": 8,
    "synthme_size": 32,
    "frames": 8,
    "size": 16,
    "epochs": 1,
    "batch_size": 4,
    "device": "cpu",
    "k": 3,
    "compare": "",
    "n_boot": 20,
    "methods": "gradcam",
    "n_explain": 3,
    "viewer_clips": 1,
    "show_clips": 1,
}
POINTS = ("store.building", "loso.fold.inside", "loso.fold.between", "explain.running")
LEFTOVER_MARKS = (".tmp", ".partial.", "synthme-build", ".tmp-", ".stale-")


def _pipeline(
    run_dir: Path, cache: Path, params: Path, pause: str = "", pause_file: Path | None = None, log: Path | None = None
) -> subprocess.Popen:
    """Start `merkit pipeline` in a session of its own; its output goes to pipes, or to the file ``log`` (for a
    run nobody reads while it goes on: a full pipe would stall it)."""
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "MERKIT_CACHE": str(cache),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    for name in ("MERKIT_PAUSE_AT", "MERKIT_PAUSE_FILE", "MERKIT_RUN_LOCK", "MERKIT_PROGRESS_FILE"):
        env.pop(name, None)
    if pause:
        env.update(MERKIT_PAUSE_AT=pause, MERKIT_PAUSE_FILE=str(pause_file))
    output = subprocess.PIPE if log is None else log.open("w")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "merkit.cli", "pipeline", "--run-dir", str(run_dir), "--params", str(params)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT if log else subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
    finally:
        if log is not None:
            output.close()  # the child holds its own copy


def _kill_at(point: str, run_dir: Path, cache: Path, params: Path, tmp: Path) -> str:
    """Run until ``point`` is reached, then SIGKILL everything; returns the pipeline's stderr."""
    pause_file = tmp / f"paused-{point}"
    process = _pipeline(run_dir, cache, params, point, pause_file)
    deadline = time.monotonic() + 600
    while not pause_file.exists():
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"the pipeline ended (exit {process.returncode}) before reaching {point}:\n{err[-3000:]}")
        if time.monotonic() > deadline:
            os.killpg(process.pid, signal.SIGKILL)
            pytest.fail(f"{point} was not reached within 600 s")
        time.sleep(0.2)
    paused_pid = int(pause_file.read_text().split()[1])
    os.killpg(process.pid, signal.SIGKILL)
    os.kill(paused_pid, signal.SIGKILL)  # the kernel, in its own session
    _, err = process.communicate()
    return err


def _leftovers(*folders: Path) -> list[str]:
    return sorted(
        str(path)
        for folder in folders
        for path in folder.rglob("*")
        if any(mark in path.name for mark in LEFTOVER_MARKS)
    )


def test_sigkill_anywhere_then_resume_matches_an_uninterrupted_run(tmp_path: Path):
    params = tmp_path / "tiny.yaml"
    params.write_text(yaml.safe_dump(TINY))

    # The uninterrupted reference runs beside the killed sequence (its own run directory and cache; one thread
    # each, so on two cores neither waits for the other): the test costs the killed sequence, not both.
    reference_log = tmp_path / "reference.log"
    reference = _pipeline(tmp_path / "reference", tmp_path / "cache_reference", params, log=reference_log)
    try:
        run_dir, cache = tmp_path / "killed", tmp_path / "cache_killed"
        messages = [_kill_at(point, run_dir, cache, params, tmp_path) for point in POINTS]
        final = _pipeline(run_dir, cache, params)
        _, err = final.communicate(timeout=900)
        assert final.returncode == 0, err[-3000:]
        messages.append(err)
        assert reference.wait(timeout=900) == 0, reference_log.read_text()[-3000:]
    finally:
        if reference.poll() is None:  # a failure above: do not leave the reference running
            os.killpg(reference.pid, signal.SIGKILL)
            reference.wait()

    for name in ("predictions.csv", "metrics.json"):
        assert (run_dir / name).read_bytes() == (tmp_path / "reference" / name).read_bytes(), name
    assert _leftovers(run_dir, cache) == []
    # every resume found the dead run's lock and took it over; the last one only re-ran 04_explain
    assert all("took over the lock" in text for text in messages[1:])
    assert "[4/4] 04_explain: running" in err and "[3/4] 03_loso: skipped" in err
    # quiet terminal: no kernel transport warning, no papermill cell bar
    assert "without encryption" not in err and "Executing" not in err
