"""Run directories: atomic writes, environment capture, and fold-level resume.

Every file a run writes goes through an atomic write: the bytes go to a temporary file in the same
directory, are flushed and fsync'ed, then ``os.replace`` swaps it in. A process killed mid-write leaves
either the old file or the new one, never half of one (at worst a stray ``.*.tmp`` file, ignored).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd

__all__ = [
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_write_csv",
    "atomic_torch_save",
    "to_jsonable",
]

TMP_SUFFIX = ".tmp"


@contextlib.contextmanager
def _atomic_handle(path: str | os.PathLike, mode: str, **open_kwargs: Any) -> Iterator[IO]:
    """Yield a handle on a temp file beside ``path``; on clean exit fsync it and replace ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, mode, **open_kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
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
    with _atomic_handle(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` atomically; returns the path."""
    with _atomic_handle(path, "w", encoding=encoding, newline="") as handle:
        handle.write(text)
    return Path(path)


def to_jsonable(obj: Any) -> Any:
    """Plain JSON values from numpy scalars/arrays, paths, dataclasses, tuples, sets and DataFrames.

    Non-finite floats (NaN, inf) become ``None`` so the file is strict JSON.
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (set, frozenset)):
        return sorted((to_jsonable(v) for v in obj), key=repr)
    if isinstance(obj, pd.DataFrame):
        return to_jsonable(obj.to_dict(orient="records"))
    if isinstance(obj, pd.Series):
        return to_jsonable(obj.to_dict())
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if obj is None or isinstance(obj, str):
        return obj
    if obj is pd.NA or obj is pd.NaT:
        return None
    raise TypeError(f"cannot write a {type(obj).__name__} to JSON: {obj!r}")


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    """Write ``obj`` as strict JSON (see :func:`to_jsonable`) atomically; returns the path.

    The object is serialised before the temp file is opened, so an unserialisable object leaves any
    existing file untouched.
    """
    text = json.dumps(to_jsonable(obj), indent=indent, allow_nan=False) + "\n"
    return atomic_write_text(path, text)


def atomic_write_csv(df: pd.DataFrame, path: str | os.PathLike, index: bool = False) -> Path:
    """Write ``df`` as CSV atomically (floats at full round-trip precision); returns the path."""
    return atomic_write_text(path, df.to_csv(index=index, lineterminator="\n"))


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically; returns the path."""
    import torch  # imported here so metrics/runs stay light for callers that never save tensors

    with _atomic_handle(path, "wb") as handle:
        torch.save(obj, handle)
    return Path(path)
