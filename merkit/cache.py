"""The user's one cache: generated SynthME trees and clip stores, shared by every run, notebook and `merkit prepare`.

Where it is (``cache_dir()``):

1. ``$MERKIT_CACHE`` when set;
2. else ``runs/cache`` of the checkout holding merkit (beside ``runs/demo``, ``runs/lab`` and the other run
   directories), when merkit runs from a checkout (``pyproject.toml`` beside the package);
3. else (an installed package) ``$XDG_CACHE_HOME/merkit`` (default ``~/.cache/merkit``).

Layout (so two runs that need the same data share it, and a change makes a new entry)::

    <cache>/CACHEDIR.TAG                                 the kit's tag: this folder is merkit's cache
    <cache>/synthme/<hash of the SynthME config>/        a generated tree (completion marker inside)
    <cache>/store/<hash of the data root>/<store key>/   a clip store (manifest hash + preprocessing + flow;
                                                         its input files are checked on reuse, see
                                                         ``merkit.data.store``)

The tag follows the Cache Directory Tagging Specification (https://bford.info/cachedir/; backup tools skip
a tagged folder) and names merkit. It is written when the kit creates the folder (or finds it empty), never
into a folder that already holds something else. ``clear_cache`` refuses a folder without it
(:class:`ForeignCacheError`) and, in a tagged one, deletes only the entries :func:`list_cache` shows: folders
named and marked the way the kit writes them. Anything else in the folder is left alone.

Nothing is ever written inside a dataset's ``data_root``: a licensed copy is often read-only, and a cache
there would be invisible to every other run. A cache folder that cannot be written raises :class:`CacheError`
naming the folder and how it was chosen, before any work starts.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from merkit._io import atomic_write_text
from merkit.errors import MerkitPermissionError, MerkitRuntimeError

__all__ = [
    "CacheError",
    "ForeignCacheError",
    "CACHE_ENV",
    "CACHE_TAG",
    "STORE_MARKER",
    "SYNTHME_MARKER",
    "CACHE_DEFAULT_HELP",
    "cache_dir",
    "cache_source",
    "check_writable",
    "CacheEntry",
    "is_merkit_cache",
    "check_merkit_cache",
    "list_cache",
    "clear_cache",
    "source_checkout",
]

#: Environment variable naming the cache folder.
CACHE_ENV = "MERKIT_CACHE"


def source_checkout() -> Path | None:
    """The source checkout the kit runs from (the folder holding ``pyproject.toml`` beside ``merkit/``), or None
    when the kit is installed (a wheel in site-packages): the defaults that live in a checkout's ``runs/`` then
    move to the user's cache folder or the current directory."""
    root = Path(__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() else None


#: Where an empty cache_dir / no --cache-dir puts the cache, in a help text's words (the rule of `cache_dir`,
#: shortened); the CLI's help and the notebooks' cache_dir help say this (tests/test_defaults.py holds them to it).
CACHE_DEFAULT_HELP = "$MERKIT_CACHE, else the checkout's runs/cache or ~/.cache/merkit"

#: The tag file at the root of a cache the kit created (Cache Directory Tagging Specification).
CACHE_TAG = "CACHEDIR.TAG"
_TAG_SIGNATURE = "Signature: 8a477f597d28d172789f06886806bc55"
_TAG_OWNER = "created by merkit"
_TAG_TEXT = (
    f"{_TAG_SIGNATURE}\n"
    f"# This file is a cache directory tag {_TAG_OWNER} (facial micro-expression recognition kit).\n"
    "# `merkit cache clear` deletes only the SynthME trees and clip stores merkit wrote in this folder.\n"
    "# For information about cache directory tags, see https://bford.info/cachedir/\n"
)
#: The completion files the data layer writes last into a finished entry (``merkit.data.synthetic`` and
#: ``merkit.data.store``, which sit above this module; tests check the names agree).
SYNTHME_MARKER = "synthme_complete.json"
STORE_MARKER = "COMPLETE"
# Entry names as the kit writes them: hex hashes, and the hidden build/discard folders beside them.
_SYNTHME_TREE = re.compile(r"[0-9a-f]{12}")
_SYNTHME_BUILD = re.compile(r"\.[0-9a-f]{12}\.synthme-build-\d+-.+")
_STORE_ROOT = re.compile(r"[0-9a-f]{12}")
_STORE = re.compile(r"[0-9a-f]{16}")
_STORE_LEFTOVER = re.compile(r"\.(tmp|stale)-[0-9a-f]{16}-.+")


class CacheError(MerkitPermissionError):
    """The cache folder cannot be created or written (read-only, not a directory, no permission)."""


class ForeignCacheError(MerkitRuntimeError):
    """``clear_cache`` was pointed at a folder without merkit's cache tag: the kit did not create it."""


def _default() -> tuple[Path, str]:
    checkout = source_checkout()
    if checkout is not None:
        return checkout / "runs" / "cache", "the checkout's runs/cache (default; set MERKIT_CACHE to move it)"
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

    With ``create`` (default) the folder is created and checked writable (`CacheError` naming it otherwise),
    and tagged as merkit's cache (``CACHEDIR.TAG``) when the kit created it or found it empty.
    """
    if str(explicit):
        path = Path(explicit).expanduser()
    elif os.environ.get(CACHE_ENV):
        path = Path(os.environ[CACHE_ENV]).expanduser()
    else:
        path = _default()[0]
    path = path.resolve()
    if not create:
        return path
    ours = not path.exists() or (path.is_dir() and not any(path.iterdir()))
    check_writable(path, cache_source(explicit))
    if ours and not (path / CACHE_TAG).exists():
        atomic_write_text(path / CACHE_TAG, _TAG_TEXT)
    return path


def is_merkit_cache(path: str | os.PathLike) -> bool:
    """Whether ``path`` carries merkit's cache tag (a ``CACHEDIR.TAG`` with the signature that names merkit)."""
    try:
        text = (Path(path) / CACHE_TAG).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return text.startswith(_TAG_SIGNATURE) and _TAG_OWNER in text


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


def _folders(path: Path) -> list[Path]:
    """The sub-folders of ``path`` (not links), sorted; none when it is not a readable folder."""
    try:
        return sorted(p for p in path.iterdir() if p.is_dir() and not p.is_symlink())
    except OSError:
        return []


def _entry(kind: str, folder: Path, name: re.Pattern, leftover: re.Pattern, marker: str) -> CacheEntry | None:
    """``folder`` as a cache entry when the kit wrote it: a finished one (hex name, completion file inside) or
    the leftover of an interrupted build; None for anything else."""
    if name.fullmatch(folder.name) and (folder / marker).is_file():
        return CacheEntry(kind, folder, _size(folder), True)
    if leftover.fullmatch(folder.name):
        return CacheEntry(kind, folder, _size(folder), False)
    return None


def check_merkit_cache(path: str | os.PathLike) -> Path:
    """``path`` when it carries merkit's cache tag; :class:`ForeignCacheError` naming it otherwise."""
    if not is_merkit_cache(path):
        raise ForeignCacheError(
            f"{path} has no merkit cache tag ({CACHE_TAG}): merkit did not create this folder, so it deletes "
            "nothing in it; delete what you no longer need by hand"
        )
    return Path(path)


def list_cache(path: str | os.PathLike = "") -> list[CacheEntry]:
    """Every SynthME tree and clip store the kit wrote in the cache, with its size (nothing is created or
    changed). Folders and files the kit did not write (by name and completion file) are not listed."""
    root = cache_dir(path, create=False)
    entries: list[CacheEntry | None] = []
    for tree in _folders(root / "synthme"):
        entries.append(_entry("synthme", tree, _SYNTHME_TREE, _SYNTHME_BUILD, SYNTHME_MARKER))
    for per_root in _folders(root / "store"):
        if _STORE_ROOT.fullmatch(per_root.name):
            entries += [_entry("store", f, _STORE, _STORE_LEFTOVER, STORE_MARKER) for f in _folders(per_root)]
    return [entry for entry in entries if entry is not None]


def clear_cache(path: str | os.PathLike = "") -> int:
    """Delete the entries :func:`list_cache` shows; returns the bytes freed. Anything else in the folder stays,
    and so do the folders holding it (``store/<root>/``, ``store/``, ``synthme/`` are removed only once empty).

    A folder without merkit's cache tag is refused with :class:`ForeignCacheError`: nothing is deleted.
    """
    root = cache_dir(path, create=False)
    if not root.is_dir():
        return 0
    check_merkit_cache(root)
    freed = 0
    for entry in list_cache(root):
        shutil.rmtree(entry.path)
        freed += entry.size
    per_root = [folder for folder in _folders(root / "store") if _STORE_ROOT.fullmatch(folder.name)]
    for folder in [*per_root, root / "store", root / "synthme"]:
        try:
            folder.rmdir()  # only once empty: whatever else is in it was not written by the kit
        except OSError:
            pass
    return freed
