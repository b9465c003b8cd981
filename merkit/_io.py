"""Ground floor: atomic file writes, plain JSON values and stable hashes; every module of the kit may use it
(it imports nothing of merkit).

An atomic write puts the bytes in a temporary file in the target's own folder (``.<name>.<random>.tmp``),
flushes and fsyncs it, gives it the permissions an ordinary ``open()`` would (the process umask applied to
0o666, not mkstemp's private 0o600), then ``os.replace``s it over the target. A process killed mid-write leaves
the old file or the new one, never half of one; on any error the temporary file is removed.

:func:`to_jsonable` is the one converter to plain JSON values (numpy, pandas, paths, dataclasses, sets);
:func:`stable_hash` the one sha256 of canonical JSON that cache keys, store keys, config hashes and resume
states are made of (so its text must never change: every cache on disk is named by it);
:func:`atomic_write_json` writes strict JSON through both; :func:`flatten_dict` gives the dotted keys
(``train.epochs``) that configs are compared and hashed by. ``merkit.training.runs`` re-exports the writers and adds
the CSV and torch ones.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

__all__ = [
    "TMP_SUFFIX",
    "atomic_handle",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "flatten_dict",
    "stable_hash",
    "to_jsonable",
]

TMP_SUFFIX = ".tmp"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_handle(path: str | os.PathLike, mode: str = "wb", **open_kwargs: Any) -> Iterator[IO]:
    """Yield a handle on a temporary file beside ``path``; on a clean exit it replaces ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, mode, **open_kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o666 & ~_umask())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (best effort: not every OS/filesystem allows it)."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_handle(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically (no newline translation); returns the path."""
    with atomic_handle(path, "w", encoding=encoding, newline="") as handle:
        handle.write(text)
    return Path(path)


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    """Write ``obj`` as strict JSON (see :func:`to_jsonable`) atomically; returns the path.

    The object is serialised before the temp file is opened, so an unserialisable object leaves any
    existing file untouched.
    """
    text = json.dumps(to_jsonable(obj), indent=indent, allow_nan=False) + "\n"
    return atomic_write_text(path, text)


def to_jsonable(obj: Any, *, default: Callable[[Any], Any] | None = None) -> Any:
    """Plain JSON values from numpy scalars/arrays, paths, dataclasses, tuples, sets, Series and DataFrames.

    Non-finite floats (NaN, inf) and ``pd.NA``/``pd.NaT`` become ``None``, so the result dumps as strict JSON;
    dict keys become strings; a set becomes a sorted list. Anything else raises ``TypeError``, unless
    ``default`` is given: then ``default(obj)`` stands for it (``default=str`` keeps a description).
    """
    # numpy and pandas are not imported here: an object of theirs can only exist once its package is loaded,
    # and the ground floor stays cheap for the fast paths (``merkit --help``, the run lock's refusal).
    np, pd = sys.modules.get("numpy"), sys.modules.get("pandas")
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj), default=default)
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v, default=default) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v, default=default) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((to_jsonable(v, default=default) for v in obj), key=repr)
    if pd is not None and isinstance(obj, pd.DataFrame):
        return to_jsonable(obj.to_dict(orient="records"), default=default)
    if pd is not None and isinstance(obj, pd.Series):
        return to_jsonable(obj.to_dict(), default=default)
    if np is not None and isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist(), default=default)
    if isinstance(obj, bool) or (np is not None and isinstance(obj, np.bool_)):
        return bool(obj)
    if isinstance(obj, int) or (np is not None and isinstance(obj, np.integer)):
        return int(obj)
    if isinstance(obj, float) or (np is not None and isinstance(obj, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if obj is None or isinstance(obj, str):
        return obj
    if pd is not None and (obj is pd.NA or obj is pd.NaT):
        return None
    if default is not None:
        return default(obj)
    raise TypeError(f"cannot write a {type(obj).__name__} to JSON: {obj!r}")


def stable_hash(obj: Any, length: int = 16, *, spaced: bool = False) -> str:
    """The first ``length`` hex digits of the sha256 of ``obj`` as canonical JSON.

    Canonical: keys sorted, UTF-8 of ASCII-escaped text, ``str()`` for what JSON has no type for, compact
    separators (``,`` and ``:``). ``spaced=True`` keeps json's default ``, `` and ``: `` instead: the SynthME
    folder, the flow-folder store key and the pipeline's SynthME identity were first made that way, and
    their caches stay valid only while the text stays byte for byte the same. Same value, same hash, in any
    process on any machine (``PYTHONHASHSEED`` plays no part).
    """
    separators = (", ", ": ") if spaced else (",", ":")
    text = json.dumps(obj, sort_keys=True, separators=separators, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def flatten_dict(d: dict, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; empty dicts stay as leaves so they still compare."""
    flat: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten_dict(value, name + "."))
        else:
            flat[name] = value
    return flat
