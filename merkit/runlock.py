"""One writer per run directory: an advisory lock that names its holder and is taken over when the holder died.

``RunLock(run_dir)`` locks ``run_dir/run.lock`` with ``fcntl.flock`` (exclusive, non-blocking) and writes the
holder into it as JSON: pid, host, start time, command and a random token. A second ``merkit pipeline`` or
``run_protocol`` into the same directory fails at once with :class:`RunLockedError`, whose message names the
holder. The kernel releases a flock when its process dies (SIGKILL included), so a lock file left by a killed
run is simply lockable again: it is taken over, and ``RunLock.stale`` holds what the dead holder had written.

Nesting: the pipeline holds the lock of its run directory while the notebooks it starts call ``run_protocol``
on that same directory (in a kernel, another process). The pipeline puts its token into ``$MERKIT_RUN_LOCK``
for its children; a child whose environment carries the holder's token proceeds without locking (its
parent holds it). Within one process the lock is re-entrant.

The lock file is never deleted (deleting a lock file races with a process that has just opened it); an empty
file means "free". Only this module is imported (stdlib), so a refused second run answers in well under a
second.
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import socket
import sys
import uuid
from pathlib import Path
from typing import Any

from merkit.errors import MerkitRuntimeError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock; runs are not locked there
    fcntl = None  # type: ignore[assignment]

__all__ = ["LOCK_FILE", "LOCK_ENV", "RunLockedError", "RunLock", "read_holder"]

LOCK_FILE = "run.lock"
#: Environment variable through which a lock holder lets its child processes (notebook kernels) in.
LOCK_ENV = "MERKIT_RUN_LOCK"

# path -> [fd, depth, holder, stale record taken over] of the locks this process holds (flock is per open file, so
# re-opening the same file in the same process would lock against ourselves)
_HELD: dict[str, list[Any]] = {}


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
        return held[2]["token"] if held else None

    def acquire(self) -> "RunLock":
        key = str(self.path)
        if key in _HELD:
            _HELD[key][1] += 1
            self._owned = True
            self.stale = _HELD[key][3]  # what the outermost acquire took over, for whoever reports it
            return self
        if fcntl is None:  # pragma: no cover
            return self
        self.run_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = read_holder(self.run_dir)
            tokens = os.environ.get(LOCK_ENV, "").split(os.pathsep)
            if holder.get("token") and holder["token"] in tokens:
                self.inherited = True  # our parent (the pipeline) holds it and let us in
                return self
            raise RunLockedError(self.run_dir, holder) from None
        previous = read_holder(self.run_dir)
        self.stale = previous or None  # a record left in an unlocked file: its writer died without releasing
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:])[:300] if sys.argv else "",
            "token": uuid.uuid4().hex,
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder) + "\n").encode(), 0)
        os.fsync(fd)
        _HELD[key] = [fd, 1, holder, self.stale]
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
        held[1] -= 1
        if held[1] > 0:
            return
        del _HELD[key]
        fd = held[0]
        try:
            os.ftruncate(fd, 0)  # an empty lock file reads as "free" (never unlinked: see the module docstring)
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

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
