"""The ``merkit`` command: ``pipeline``, ``demo``, ``sweep``, ``compare``, ``report``, ``prepare``, ``synthme``,
``predict``, ``composite``, ``teach``, ``models``.

Every command has ``--help``. User errors (an unknown parameter, a missing data_root, a notebook that fails)
end with a one-line ``merkit: error: …`` on stderr and a non-zero exit code, without a traceback:

- exit 2: bad command line or parameters (nothing was run), or a file the system refused (a permission, a path
  through a regular file) or could not decode: the line names the file,
- exit 3: the run directory is locked by another live run (the message names its pid, host and start time),
- exit 1: a notebook or a command failed while running.

Heavy libraries (torch, papermill) are imported inside the commands so ``merkit --help`` answers at once.

The package: :mod:`~merkit.cli.exits` (exit codes, ``UserError``), :mod:`~merkit.cli.commands` (one
``cmd_<name>`` per command), :mod:`~merkit.cli.parser` (``build_parser``), and here ``main``, which maps every
:class:`merkit.errors.MerkitError` to its one-line message and exit code.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Sequence

from merkit.cli.exits import EXIT_FAILED, EXIT_LOCKED, EXIT_USAGE, UserError
from merkit.cli.parser import build_parser
from merkit.errors import MerkitError
from merkit.runlock import LOCK_FILE, RunLock, RunLockedError

__all__ = ["EXIT_FAILED", "EXIT_LOCKED", "EXIT_USAGE", "UserError", "build_parser", "main", "system_error_message"]


def _exit_code(err: MerkitError) -> int:
    """3 for a locked run directory, 1 for a notebook that failed while running, 2 for everything else."""
    if isinstance(err, RunLockedError):
        return EXIT_LOCKED
    from merkit.pipeline.run import PipelineError  # lazy: yaml and the pipeline stay out of ``merkit --help``

    if isinstance(err, PipelineError):
        return EXIT_FAILED
    return EXIT_USAGE


def _path_text(name: object) -> str:
    return os.fsdecode(name) if isinstance(name, (str, bytes, os.PathLike)) else str(name)  # an fd is an int


def system_error_message(err: OSError | UnicodeDecodeError) -> str:
    """One line for an operating-system error (or an undecodable text file) no command turned into a kit error.

    The file comes first, as the exception names it (``/data/run: Not a directory``); a decoding error carries
    no file name, so its line says what was wrong and how to see where."""
    if isinstance(err, UnicodeDecodeError):
        byte = err.object[err.start : err.start + 1].hex()
        return (
            f"a file is not {err.encoding} text (byte 0x{byte} at offset {err.start}: {err.reason}); "
            "save it as UTF-8 (--debug shows which file was read)"
        )
    reason = err.strerror or str(err) or type(err).__name__
    if err.filename is None:
        return " ".join(f"{type(err).__name__}: {reason}".split())
    where = _path_text(err.filename) + (f" -> {_path_text(err.filename2)}" if err.filename2 is not None else "")
    return " ".join(f"{where}: {reason} ({type(err).__name__})".split())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``merkit`` (and ``python -m merkit.cli``); returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    early_lock = None
    try:
        if args.command in ("pipeline", "demo") and args.run_dir and not args.list_params:
            # Before the heavy imports: a second pipeline into a busy run directory is refused in well under a
            # second. Only a directory that already has a lock file can be busy; a new one is not created here,
            # so a typo in the parameters (checked later) leaves nothing behind. run_pipeline takes the same lock
            # again (re-entrant within this process).
            if (Path(args.run_dir) / LOCK_FILE).is_file():
                early_lock = RunLock(args.run_dir).acquire()
        return int(args.func(args) or 0)
    except MerkitError as err:
        # Every error the kit raises on purpose is a MerkitError with a message meant for a person: one line,
        # no traceback. The exit code says what kind (see the module docstring).
        if args.debug:
            raise
        print(f"merkit: error: {err}", file=sys.stderr)
        return _exit_code(err)
    except (OSError, UnicodeDecodeError) as err:
        # The boundary: a file the system refused (permissions, a path through a regular file, a full disk) or
        # a text file in another encoding, which no command turned into a kit error. Still one line naming
        # the file; --debug shows the traceback.
        if args.debug:
            raise
        print(f"merkit: error: {system_error_message(err)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("merkit: interrupted", file=sys.stderr)
        return 130
    finally:
        if early_lock is not None:
            early_lock.release()
