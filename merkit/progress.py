"""Progress that crosses process boundaries: a small JSON file the fold runner writes and the pipeline polls.

A notebook executed by papermill runs in a kernel, whose progress bars end up inside the executed notebook,
not on the user's terminal. So long-running library loops (the fold runner) also report into a progress
file: ``$MERKIT_PROGRESS_FILE`` when set (the pipeline sets it to ``run_dir/progress.json`` for its kernels,
so the folds of 03_loso's comparison variants, which run into sub-directories, still reach it), else
``run_dir/progress.json``. The file is rewritten atomically; readers never see half of one.

``pause_point(name)`` is a test hook: when ``$MERKIT_PAUSE_AT`` equals ``name`` the process writes ``name``
into ``$MERKIT_PAUSE_FILE`` and sleeps until it is killed. It lets a test SIGKILL a pipeline at a named
point (during the store build, inside a fold, between folds, during 04_explain) without racing a timer.
It does nothing unless that variable is set.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from merkit._io import atomic_write_text

__all__ = [
    "PROGRESS_ENV",
    "PROGRESS_FILE",
    "progress_path",
    "write_progress",
    "read_progress",
    "FoldProgress",
    "pause_point",
    "format_eta",
]

PROGRESS_ENV = "MERKIT_PROGRESS_FILE"
PROGRESS_FILE = "progress.json"
PAUSE_ENV = "MERKIT_PAUSE_AT"
PAUSE_FILE_ENV = "MERKIT_PAUSE_FILE"


def progress_path(run_dir: str | os.PathLike) -> Path:
    """Where progress of work in ``run_dir`` is reported (see the module docstring)."""
    return Path(os.environ.get(PROGRESS_ENV) or Path(run_dir) / PROGRESS_FILE)


def write_progress(path: str | os.PathLike, record: dict[str, Any]) -> None:
    """Replace the progress file with ``record`` (plus ``updated``, seconds since the epoch); best effort."""
    path = Path(path)
    try:
        atomic_write_text(path, json.dumps({**record, "updated": time.time()}))
    except OSError:
        pass  # progress is a convenience: never fail a run over it


def read_progress(path: str | os.PathLike) -> dict[str, Any]:
    """The progress record at ``path`` ({} when absent or unreadable)."""
    try:
        loaded = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def format_eta(seconds: float | None) -> str:
    """``1:05`` / ``1:02:03`` / ``?`` for an unknown ETA."""
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class FoldProgress:
    """Folds done / total of one protocol run, with an ETA from the folds finished in this call."""

    def __init__(self, run_dir: str | os.PathLike, stage: str, total: int, done: int):
        self.path = progress_path(run_dir)
        self.stage = stage
        self.total = total
        self.done = done
        self.done_at_start = done
        self.started = time.time()
        self._write()

    def _write(self) -> None:
        finished_here = self.done - self.done_at_start
        elapsed = time.time() - self.started
        eta = elapsed / finished_here * (self.total - self.done) if finished_here else None
        write_progress(
            self.path,
            {
                "stage": self.stage,
                "done": self.done,
                "total": self.total,
                "done_at_start": self.done_at_start,
                "started": self.started,
                "eta_seconds": eta,
                "pid": os.getpid(),
            },
        )

    def update(self, folds: int = 1) -> None:
        self.done += folds
        self._write()


def pause_point(name: str) -> None:
    """Sleep forever at ``name`` when ``$MERKIT_PAUSE_AT`` names it (test hook; see the module docstring)."""
    if os.environ.get(PAUSE_ENV) != name:
        return
    marker = os.environ.get(PAUSE_FILE_ENV)
    if marker:
        Path(marker).write_text(f"{name} {os.getpid()}\n")
    while True:  # until SIGKILL
        time.sleep(3600)
