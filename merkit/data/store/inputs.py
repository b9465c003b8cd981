"""What a clip store was built from, and whether it still is: the make/ccache rule on every input file.

A clip's inputs are every file in its frame folder (a video or an image: that one file), each taken by name,
size and modification time in nanoseconds, never by its bytes; the motion masks' inputs are every file under
the folders the mask loader names (``input_folders()``). The store keeps them in ``inputs.json``; when the
store is opened for reuse they are taken again (one ``stat`` per file, no frame is read), and any difference
(a changed, added or removed file) names the clip and rebuilds the store. A content hash would read every byte
of every frame on each reuse, a cost that grows with the frames' bytes where the check's grows with their
number (``benchmarks/bench_store_inputs.py`` measures both): it is not offered. As with make, a file rewritten
with the same size and modification time goes unnoticed.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

from merkit.data.io import sample_label

__all__ = ["INPUTS_FILE", "Signature", "path_signature", "store_inputs", "changed_inputs"]

INPUTS_FILE = "inputs.json"
#: (number of files, their total bytes, sha256 of their sorted (name, size, mtime_ns) lines)
Signature = tuple[int, int, str]
_MISSING: Signature = (0, 0, "missing")


def _files(path: Path, recursive: bool) -> Iterable[tuple[str, os.stat_result]]:
    """(name relative to ``path``, stat) of every file at ``path``: the file itself, or the files in the folder."""
    if path.is_file():
        yield path.name, path.stat()
        return
    if recursive:
        for folder, _, names in os.walk(path):
            for name in names:
                file = Path(folder) / name
                yield file.relative_to(path).as_posix(), file.stat()
        return
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.is_file():
                yield entry.name, entry.stat()


def path_signature(path: str | os.PathLike, *, recursive: bool = False) -> Signature:
    """The :data:`Signature` of a file, or of the files in a folder (its sub-folders too with ``recursive``);
    ``(0, 0, "missing")`` when there is nothing at ``path``."""
    path = Path(path)
    if not path.exists():
        return _MISSING
    lines = sorted(f"{name}\0{info.st_size}\0{info.st_mtime_ns}" for name, info in _files(path, recursive))
    total = sum(int(line.split("\0")[1]) for line in lines)
    return len(lines), total, hashlib.sha256("\n".join(lines).encode("utf-8", "surrogateescape")).hexdigest()


def store_inputs(rows: list[Mapping[str, Any]], data_root: Path, mask_loader: Any = None) -> dict[str, Any]:
    """The inputs of a store built from ``rows`` (manifest rows in store order): ``inputs.json``'s content."""
    folders = getattr(mask_loader, "input_folders", None)
    masks = {} if folders is None else {str(f): path_signature(f, recursive=True) for f in folders()}
    return {
        "rule": "every file of each clip by name, size and mtime_ns (the make rule); mask folders likewise",
        "clips": [path_signature(data_root / str(row["path"])) for row in rows],
        "masks": masks,
    }


def _difference(old: Signature, new: Signature) -> str:
    if tuple(new) == _MISSING:
        return "its frames are gone"
    if tuple(old) == _MISSING:
        return "its frames appeared"
    if old[0] != new[0]:
        return f"a frame was added or removed ({old[0]} files, now {new[0]})"
    return f"a frame changed (size or modification time; {new[0]} files)"


def changed_inputs(
    store_path: Path, rows: list[Mapping[str, Any]], data_root: Path, mask_loader: Any = None
) -> list[str]:
    """What changed since the store at ``store_path`` was built, one line per clip (``dataset/subject/sample:
    what``) or mask folder; empty when nothing did. A store without a readable ``inputs.json`` counts as
    changed (its inputs are unknown)."""
    try:
        recorded = json.loads((store_path / INPUTS_FILE).read_text())
        old_clips = [tuple(s) for s in recorded["clips"]]
        old_masks = {k: tuple(v) for k, v in recorded.get("masks", {}).items()}
    except (OSError, ValueError, KeyError, TypeError):
        return [f"{store_path / INPUTS_FILE} is missing or unreadable: the store's inputs are unknown"]
    now = store_inputs(rows, data_root, mask_loader)
    if len(old_clips) != len(rows):
        return [f"the store holds {len(old_clips)} clips, the manifest {len(rows)}"]
    changes = []
    for row, old, new in zip(rows, old_clips, now["clips"]):
        if old != tuple(new):
            changes.append(f"{sample_label(row)}: {_difference(old, tuple(new))}")
    for folder, new in now["masks"].items():
        if old_masks.get(folder) != tuple(new):
            changes.append(f"motion masks under {folder} changed")
    return changes
