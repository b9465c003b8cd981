"""One writer per run directory: a lock that names its holder and is taken over when the holder died.

``RunLock(run_dir)`` locks ``run_dir/run.lock`` with :mod:`filelock` (an OS lock on the file: ``flock`` on
Unix, ``msvcrt`` on Windows; non-blocking) and writes the holder into it as JSON: pid, host, start time,
command and a random token. A second ``merkit pipeline`` or ``run_protocol`` into the same directory fails at
once with :class:`RunLockedError`, whose message names the holder. The OS releases the lock when its process
dies (SIGKILL included), so a lock file left by a killed run is simply lockable again: it is taken over, and
``RunLock.stale`` holds what the dead holder had written. A run directory that cannot be written raises
:class:`RunDirNotWritableError` naming it.

Nesting: the pipeline holds the lock of its run directory while the notebooks it starts call ``run_protocol``
on that same directory (in a kernel, another process). The pipeline puts its token into ``$MERKIT_RUN_LOCK``
for its children; a child whose environment carries the holder's token proceeds without locking (its
parent holds it). Within one process the lock is re-entrant.

The lock file is never deleted (deleting a lock file races with a process that has just opened it); an empty
file means "free". Only this module and filelock are imported, so a refused second run answers in well under
a second.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import sys
import uuid
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from merkit.errors import MerkitPermissionError, MerkitRuntimeError

__all__ = ["LOCK_FILE", "LOCK_ENV", "RunLockedError", "RunDirNotWritableError", "RunLock", "read_holder"]

LOCK_FILE = "run.lock"
#: Environment variable through which a lock holder lets its child processes (notebook kernels) in.
LOCK_ENV = "MERKIT_RUN_LOCK"

# lock file path -> (the held FileLock, the holder record written, the stale record taken over) of the locks this
# process holds; the FileLock counts the re-entrant acquisitions.
_HELD: dict[str, tuple[FileLock, dict[str, Any], dict[str, Any] | None]] = {}


class RunLockedError(MerkitRuntimeError):
    """Another live process holds the run directory's lock; ``holder`` is what it wrote (pid, host, started)."""

    def __init__(self, run_dir: Path, holder: dict[str, Any]):
        self.run_dir = run_dir
        self.holder = holder
        who = (
            f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, started {holder.get('started', '?')}"
            if holder
            else "a process that has not written its name yet"
        )
        command = f" ({holder['command']})" if holder.get("command") else ""
        super().__init__(
            f"run directory {run_dir} is in use by {who}{command}. Wait for it to finish, use another run "
            f"directory, or stop that process (a killed process's lock is taken over automatically)."
        )


class RunDirNotWritableError(MerkitPermissionError):
    """The run directory (or its lock file) cannot be created or written; the message names it."""

    def __init__(self, run_dir: Path, err: OSError):
        self.run_dir = run_dir
        super().__init__(
            f"run directory {run_dir} cannot be written ({err.strerror or type(err).__name__}); "
            "give a run directory you can write to"
        )


def read_holder(run_dir: str | os.PathLike) -> dict[str, Any]:
    """What the current (or last, if stale) holder wrote into ``run_dir/run.lock``; {} if nothing readable."""
    try:
        text = (Path(run_dir) / LOCK_FILE).read_text()
        loaded = json.loads(text) if text.strip() else {}
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


class RunLock:
    """Exclusive lock of one run directory (context manager); see the module docstring.

    Attributes after `acquire`: ``inherited`` (True when a parent process holds it for us), ``stale`` (the
    holder record of a dead process that was taken over, else None).
    """

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir).resolve()
        self.path = self.run_dir / LOCK_FILE
        self.inherited = False
        self.stale: dict[str, Any] | None = None
        self._owned = False

    @property
    def token(self) -> str | None:
        """The holder token children need in ``$MERKIT_RUN_LOCK`` (None unless this process holds the lock)."""
        held = _HELD.get(str(self.path))
        return held[1]["token"] if held else None

    def acquire(self) -> "RunLock":
        key = str(self.path)
        if key in _HELD:
            lock, _holder, self.stale = _HELD[key]  # the stale record the outermost acquire took over
            lock.acquire()
            self._owned = True
            return self
        # thread_local=False: one holder per process, whichever thread re-enters (a notebook's progress thread)
        lock = FileLock(self.path, timeout=0, thread_local=False)
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            lock.acquire()
        except Timeout:
            holder = read_holder(self.run_dir)
            tokens = os.environ.get(LOCK_ENV, "").split(os.pathsep)
            if holder.get("token") and holder["token"] in tokens:
                self.inherited = True  # our parent (the pipeline) holds it and let us in
                return self
            raise RunLockedError(self.run_dir, holder) from None
        except OSError as err:
            raise RunDirNotWritableError(self.run_dir, err) from None
        previous = read_holder(self.run_dir)
        self.stale = previous or None  # a record left in an unlocked file: its writer died without releasing
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:])[:300] if sys.argv else "",
            "token": uuid.uuid4().hex,
        }
        try:
            _write_record(self.path, json.dumps(holder) + "\n")
        except OSError as err:
            lock.release()
            raise RunDirNotWritableError(self.run_dir, err) from None
        _HELD[key] = (lock, holder, self.stale)
        self._owned = True
        return self

    def release(self) -> None:
        if not self._owned:
            return
        self._owned = False
        key = str(self.path)
        held = _HELD.get(key)
        if held is None:
            return
        lock = held[0]
        if lock.lock_counter == 1:  # the outermost release: the lock file reads "free" before it is unlocked
            del _HELD[key]
            try:
                _write_record(self.path, "")  # never unlinked: see the module docstring
            finally:
                lock.release()
        else:
            lock.release()

    def child_env(self) -> dict[str, str]:
        """``os.environ`` plus this lock's token in ``$MERKIT_RUN_LOCK``, for child processes that may re-enter."""
        token = self.token
        env = dict(os.environ)
        if token:
            env[LOCK_ENV] = os.pathsep.join(filter(None, [env.get(LOCK_ENV, ""), token]))
        return env

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _write_record(path: Path, text: str) -> None:
    """Replace the lock file's content in place (the lock is on this very file: it cannot be swapped for another)."""
    with open(path, "r+", encoding="utf-8") as handle:
        handle.truncate(0)
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
