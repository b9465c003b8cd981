"""The ``merkit`` command: ``pipeline``, ``demo``, ``sweep``, ``compare``, ``report``, ``prepare``, ``synthme``,
``predict``, ``composite``, ``teach``, ``models``.

Every command has ``--help``. User errors (an unknown parameter, a missing data_root, a notebook that fails)
end with a one-line ``merkit: error: …`` on stderr and a non-zero exit code, without a traceback:

- exit 2: bad command line or parameters (nothing was run),
- exit 3: the run directory is locked by another live run (the message names its pid, host and start time),
- exit 1: a notebook or a command failed while running.

Heavy libraries (torch, papermill) are imported inside the commands so ``merkit --help`` answers at once.

The package: :mod:`~merkit.cli.exits` (exit codes, ``UserError``), :mod:`~merkit.cli.commands` (one
``cmd_<name>`` per command), :mod:`~merkit.cli.parser` (``build_parser``), and here ``main``, which maps every
:class:`merkit.errors.MerkitError` to its one-line message and exit code.
"""

from __future__ import annotations

import sys
from typing import Sequence

from merkit.cli.exits import EXIT_FAILED, EXIT_LOCKED, EXIT_USAGE, UserError
from merkit.cli.parser import build_parser
from merkit.errors import MerkitError
from merkit.runlock import RunLock, RunLockedError

__all__ = ["EXIT_FAILED", "EXIT_LOCKED", "EXIT_USAGE", "UserError", "build_parser", "main"]


def _exit_code(err: MerkitError) -> int:
    """3 for a locked run directory, 1 for a notebook that failed while running, 2 for everything else."""
    if isinstance(err, RunLockedError):
        return EXIT_LOCKED
    from merkit.pipeline.run import PipelineError  # lazy: yaml and the pipeline stay out of ``merkit --help``

    if isinstance(err, PipelineError):
        return EXIT_FAILED
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``merkit`` (and ``python -m merkit.cli``); returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    early_lock = None
    if args.command in ("pipeline", "demo") and args.run_dir and not args.list_params:
        # Before the heavy imports: a second pipeline into a busy run directory is refused in well under a
        # second. run_pipeline takes the same lock again (re-entrant within this process).
        try:
            early_lock = RunLock(args.run_dir).acquire()
        except MerkitError as err:  # locked by another run (exit 3), or not writable (exit 2)
            print(f"merkit: error: {err}", file=sys.stderr)
            return _exit_code(err)
    try:
        return int(args.func(args) or 0)
    except MerkitError as err:
        # Every error the kit raises on purpose is a MerkitError with a message meant for a person: one line,
        # no traceback. The exit code says what kind (see the module docstring).
        if args.debug:
            raise
        print(f"merkit: error: {err}", file=sys.stderr)
        return _exit_code(err)
    except KeyboardInterrupt:
        print("merkit: interrupted", file=sys.stderr)
        return 130
    finally:
        if early_lock is not None:
            early_lock.release()
