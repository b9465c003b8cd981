"""The user's one cache: generated SynthME trees and clip stores, shared by every run, notebook and `merkit prepare`.

Where it is (``cache_dir()``):

1. ``$MERKIT_CACHE`` when set;
2. else ``runs/cache`` of the checkout holding merkit (beside ``runs/demo``, ``runs/lab`` and the other run
   directories), when merkit runs from a checkout (``pyproject.toml`` beside the package);
3. else (an installed package) ``$XDG_CACHE_HOME/merkit`` (default ``~/.cache/merkit``).

Layout, keyed by content (so two runs that need the same data share it, and a change makes a new entry)::

    <cache>/synthme/<hash of the SynthME config>/        a generated tree (completion marker inside)
    <cache>/store/<hash of the data root>/<store key>/   a clip store (manifest hash + preprocessing + flow)

Nothing is ever written inside a dataset's ``data_root``: a licensed copy is often read-only, and a cache
there would be invisible to every other run. A cache folder that cannot be written raises :class:`CacheError`
naming the folder and how it was chosen, before any work starts.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from merkit.errors import MerkitPermissionError

__all__ = [
    "CacheError",
    "CACHE_ENV",
    "CACHE_DEFAULT_HELP",
    "cache_dir",
    "cache_source",
    "check_writable",
    "CacheEntry",
    "list_cache",
    "clear_cache",
]

#: Environment variable naming the cache folder.
CACHE_ENV = "MERKIT_CACHE"
#: Where an empty cache_dir / no --cache-dir puts the cache, in a help text's words (the rule above, shortened);
#: the CLI's help and the notebooks' cache_dir help say this (tests/test_defaults.py holds them to it).
CACHE_DEFAULT_HELP = "$MERKIT_CACHE, else the checkout's runs/cache or ~/.cache/merkit"
_CHECKOUT = Path(__file__).resolve().parent.parent


class CacheError(MerkitPermissionError):
    """The cache folder cannot be created or written (read-only, not a directory, no permission)."""


def _default() -> tuple[Path, str]:
    if (_CHECKOUT / "pyproject.toml").is_file():
        return _CHECKOUT / "runs" / "cache", "the checkout's runs/cache (default; set MERKIT_CACHE to move it)"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "merkit", "the platform cache folder (default; set MERKIT_CACHE to move it)"


def cache_source(explicit: str | os.PathLike = "") -> str:
    """Words saying how the cache folder was chosen (for messages and `merkit cache list`)."""
    if str(explicit):
        return "given explicitly (cache_dir / --cache-dir)"
    if os.environ.get(CACHE_ENV):
        return f"${CACHE_ENV}"
    return _default()[1]


def check_writable(path: Path, how: str) -> Path:
    """Create ``path`` (with parents) and prove a file can be written there; `CacheError` otherwise.

    ``os.access`` alone is not enough (root ignores modes; a read-only mount answers yes to some checks), so a
    probe file is created and removed.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".merkit-probe-", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise CacheError(
            f"the merkit cache {path} ({how}) cannot be written: {err.strerror or err}. "
            f"Point {CACHE_ENV} at a folder you can write, e.g. export {CACHE_ENV}=~/.cache/merkit"
        ) from None
    return path


def cache_dir(explicit: str | os.PathLike = "", *, create: bool = True) -> Path:
    """The absolute cache folder: ``explicit`` when given, else ``$MERKIT_CACHE``, else the default above.

    With ``create`` (default) the folder is created and checked writable (`CacheError` naming it otherwise).
    """
    if str(explicit):
        path = Path(explicit).expanduser()
    elif os.environ.get(CACHE_ENV):
        path = Path(os.environ[CACHE_ENV]).expanduser()
    else:
        path = _default()[0]
    path = path.resolve()
    return check_writable(path, cache_source(explicit)) if create else path


@dataclass(frozen=True)
class CacheEntry:
    """One cached item: ``kind`` is ``"synthme"`` or ``"store"``; ``size`` in bytes."""

    kind: str
    path: Path
    size: int
    complete: bool  # False for a leftover of an interrupted build (a hidden temporary folder)


def _size(path: Path) -> int:
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += (Path(dirpath) / name).lstat().st_size
            except OSError:
                continue
    return total


def list_cache(path: str | os.PathLike = "") -> list[CacheEntry]:
    """Every SynthME tree and clip store in the cache, with its size (nothing is created or changed)."""
    root = cache_dir(path, create=False)
    entries: list[CacheEntry] = []
    synthme = root / "synthme"
    if synthme.is_dir():
        for tree in sorted(synthme.iterdir()):
            if tree.is_dir():
                entries.append(CacheEntry("synthme", tree, _size(tree), not tree.name.startswith(".")))
    store = root / "store"
    if store.is_dir():
        for per_root in sorted(store.iterdir()):
            if not per_root.is_dir():
                continue
            for folder in sorted(per_root.iterdir()):
                if folder.is_dir():
                    entries.append(CacheEntry("store", folder, _size(folder), not folder.name.startswith(".")))
    return entries


def clear_cache(path: str | os.PathLike = "") -> int:
    """Delete the cache's SynthME trees and stores; returns the bytes freed. The folder itself stays."""
    root = cache_dir(path, create=False)
    freed = 0
    for sub in ("synthme", "store"):
        folder = root / sub
        if folder.is_dir():
            freed += _size(folder)
            shutil.rmtree(folder)
    return freed
