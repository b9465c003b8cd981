"""The root of every error the kit raises on purpose, and its few builtin-flavoured bases.

Every exception class of merkit derives from :class:`MerkitError`, so a caller (the CLI, a sweep, a notebook)
can tell "the kit refused, with a message meant for a person" from a bug (any other exception) with one
``except MerkitError``. Each base below is *also* the builtin it stands for, so code that catches the builtin
keeps working: ``except ValueError`` still catches a ``ManifestError`` (a ``MerkitValueError``).

Which base to take:

- :class:`MerkitValueError`: the input is wrong (a config, a sheet, a parameter, a prediction file).
- :class:`MerkitFileNotFoundError`: a file or folder the user named is not there.
- :class:`MerkitFileExistsError`: a target is already there and the kit will not overwrite it.
- :class:`MerkitPermissionError`: a place the kit must write is not writable.
- :class:`MerkitRuntimeError`: the state on disk or of a run does not allow the step (a lock is held, a
  checkpoint does not match, a store is corrupt).
- :class:`MerkitError` itself: none of the above fits.

This module imports nothing of merkit: it is on the ground floor, every module may import it.
"""

from __future__ import annotations

__all__ = [
    "MerkitError",
    "MerkitFileExistsError",
    "MerkitFileNotFoundError",
    "MerkitPermissionError",
    "MerkitRuntimeError",
    "MerkitValueError",
]


class MerkitError(Exception):
    """Root of the kit's errors: raised on purpose, with a message that names the file, sample or setting."""


class MerkitValueError(MerkitError, ValueError):
    """A value the user gave (config, sheet, parameter, file content) is wrong."""


class MerkitRuntimeError(MerkitError, RuntimeError):
    """The state of a run, store or lock does not allow the step asked for."""


class MerkitFileNotFoundError(MerkitError, FileNotFoundError):
    """A file or folder the kit was pointed at does not exist."""


class MerkitFileExistsError(MerkitError, FileExistsError):
    """The target exists already and the kit will not overwrite it."""


class MerkitPermissionError(MerkitError, PermissionError):
    """A place the kit has to write (a cache, a run directory) is not writable."""
