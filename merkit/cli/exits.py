"""Exit codes of the ``merkit`` command and the error a command raises for a bad path or option."""

from __future__ import annotations

from merkit.errors import MerkitError

EXIT_FAILED = 1  # a notebook or a command failed while running
EXIT_USAGE = 2  # bad command line or parameters, or any other MerkitError (nothing was run)
EXIT_LOCKED = 3  # another live process holds the run directory


class UserError(MerkitError):
    """A problem the user can fix (bad path, bad option); reported in one line, exit code 2."""
