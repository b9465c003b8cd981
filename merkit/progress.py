"""Progress that crosses process boundaries: a small JSON file the fold runner writes and the pipeline polls.

A notebook executed by papermill runs in a kernel, whose progress bars end up inside the executed notebook,
not on the user's terminal. So long-running library loops (the fold runner) also report into a progress
file: ``$MERKIT_PROGRESS_FILE`` when set (the pipeline sets it to ``run_dir/progress.json`` for its kernels,
so the folds of 03_loso's comparison variants, which run into sub-directories, still reach it), else
``run_dir/progress.json``. The file is rewritten atomically; readers never see half of one. What it holds is
:class:`FoldProgress`'s record: folds done / total and, while a group of folds trains as one (the fold-batched
executor), the group and its epoch, so a reader can show progress inside a long group.

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
]

PROGRESS_ENV = "MERKIT_PROGRESS_FILE"
PROGRESS_FILE = "progress.json"
PAUSE_ENV = "MERKIT_PAUSE_AT"
PAUSE_FILE_ENV = "MERKIT_PAUSE_FILE"
#: How many times at most a fold group's epochs are written to the progress file (plus its last epoch).
EPOCH_REPORTS = 100


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


class FoldProgress:
    """Folds done / total of one protocol run, the fold group in training and its epoch, and an ETA.

    The record (``progress.json``): ``stage``, ``done``, ``total``, ``done_at_start`` (folds already done when this
    call began), ``started``, ``eta_seconds`` (None until something was measured), ``pid``, ``updated`` and
    ``group``: None, or ``{"index", "count", "folds", "epoch", "epochs"}`` while a group of folds trains
    together (``folds`` of them still to be written; ``epoch`` of ``epochs`` finished). The ETA counts the work
    done in this call, a group's folds in proportion to its finished epochs.
    """

    def __init__(self, run_dir: str | os.PathLike, stage: str, total: int, done: int):
        self.path = progress_path(run_dir)
        self.stage = stage
        self.total = total
        self.done = done
        self.done_at_start = done
        self.started = time.time()
        self.group: dict[str, int] | None = None
        self._write()

    def _in_group(self) -> float:
        """Folds' worth of work the group in training has done (its folds × the share of epochs finished)."""
        if not self.group:
            return 0.0
        return self.group["folds"] * self.group["epoch"] / max(1, self.group["epochs"])

    def _write(self) -> None:
        worked = self.done - self.done_at_start + self._in_group()
        elapsed = time.time() - self.started
        eta = elapsed / worked * (self.total - self.done - self._in_group()) if worked > 0 else None
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
                "group": dict(self.group) if self.group else None,
            },
        )

    def update(self, folds: int = 1) -> None:
        """``folds`` more folds are done (written); they leave the group in training, if they were in it."""
        self.done += folds
        if self.group:
            self.group["folds"] = max(0, self.group["folds"] - folds)
            if not self.group["folds"]:
                self.group = None
        self._write()

    def start_group(self, index: int, count: int, *, folds: int, epochs: int) -> None:
        """Group ``index`` of ``count`` (1-based) starts training ``folds`` folds still to do for ``epochs``."""
        self.group = {"index": index, "count": count, "folds": folds, "epoch": 0, "epochs": epochs}
        self._write()

    def epoch(self, epoch: int) -> None:
        """The group in training has finished ``epoch`` (1-based) of its epochs.

        Written for every hundredth of the group's epochs (every epoch of a group of at most 100) and its last:
        each write is an atomic, fsync'ed replace, which a group of many short epochs should not pay for each.
        """
        if not self.group:
            return
        self.group["epoch"] = epoch
        every = max(1, self.group["epochs"] // EPOCH_REPORTS)
        if epoch % every == 0 or epoch >= self.group["epochs"]:
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
