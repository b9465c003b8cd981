"""What a store directory holds and how it is trusted: the format, the index CSV, `ClipStore` (opened read-only
after every integrity check) and the atomic publication of a finished build (see the package docstring).
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from merkit.data.flow import FlowConfig
from merkit.data.preprocess import PreprocessConfig
from merkit.errors import MerkitRuntimeError
from merkit.upgrade import upgrade_saved

#: 2: the index records ``crop_method`` and the key covers the manifest's ``cropped`` flags (crop='auto').
#: A clip store built before ``inputs.json`` existed keeps its key; its inputs are unknown, so it is rebuilt
#: once on reuse (:func:`merkit.data.store.inputs.changed_inputs`).
STORE_FORMAT_VERSION = 2
MARKER = "COMPLETE"
_INT_COLUMNS = ("onset", "offset", "position", "crop_x", "crop_y", "crop_w", "crop_h", "apex_used", "source_frames")
_NULLABLE_INT_COLUMNS = ("apex", "label")


class StoreError(MerkitRuntimeError):
    """Base class of clip store problems."""


class StoreCorruptError(StoreError):
    """A store directory is incomplete or damaged (missing marker, truncated file); never read as data."""


class StoreBuildError(StoreError):
    """A sample could not be preprocessed while building a store; the message names dataset/subject/sample."""


def _file_sizes(folder: Path, names: list[str]) -> dict[str, int]:
    return {name: (folder / name).stat().st_size for name in names}


def index_to_csv(index: pd.DataFrame, path: Path) -> None:
    table = index.copy()
    if "action_units" in table:
        table["action_units"] = [json.dumps([str(a) for a in (value or ())]) for value in table["action_units"]]
    table.to_csv(path, index=False)


def _index_from_csv(path: Path) -> pd.DataFrame:
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    for column in _INT_COLUMNS:
        if column in table:
            table[column] = table[column].astype(np.int64)
    for column in _NULLABLE_INT_COLUMNS:
        if column in table:
            table[column] = pd.to_numeric(table[column].replace("", None)).astype("Int64")
    if "fps" in table:
        table["fps"] = pd.to_numeric(table["fps"], errors="coerce").astype(float)  # "" (a flow folder: no fps) -> NaN
    for column in ("crop_fallback", "cropped"):
        if column in table:
            table[column] = table[column] == "True"
    if "action_units" in table:
        table["action_units"] = [tuple(json.loads(value)) if value else () for value in table["action_units"]]
    return table


class ClipStore:
    """A built store, opened read-only: ``clips`` (memmap), ``masks``, ``flow``, ``index``, ``key``, ``config``.

    Open with :meth:`load` (or get one from :func:`build_store`). Pickling keeps only the path and reopens
    the memmaps on the other side, so handing a store to worker processes copies no clip data.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._open()

    @classmethod
    def load(cls, path: str | os.PathLike) -> "ClipStore":
        """Open the store at ``path``; :class:`StoreCorruptError` when it is incomplete or damaged."""
        return cls(Path(path))

    def _open(self) -> None:
        path = self.path
        marker_path = path / MARKER
        try:
            marker = json.loads(marker_path.read_text())
        except FileNotFoundError:
            raise StoreCorruptError(f"{path}: no {MARKER} marker (build interrupted or not a store)") from None
        except (OSError, ValueError) as error:
            raise StoreCorruptError(f"{path}: unreadable {MARKER} marker ({error})") from None
        files: dict[str, int] = marker.get("files", {})
        for name, size in files.items():
            file = path / name
            actual = file.stat().st_size if file.is_file() else None
            if actual != size:
                raise StoreCorruptError(
                    f"{path}: {name} is {actual if actual is not None else 'missing'} bytes, "
                    f"the marker says {size} (truncated or altered)"
                )
        try:
            # A flow-folder store (build_flow_store) holds flow images only: no clips, no preprocessing.
            self.clips = np.load(path / "clips.npy", mmap_mode="r") if "clips.npy" in files else None
            self.masks = np.load(path / "masks.npy", mmap_mode="r") if "masks.npy" in files else None
            self.flow = np.load(path / "flow.npy", mmap_mode="r") if "flow.npy" in files else None
            info = upgrade_saved(json.loads((path / "store.json").read_text()), "store")  # an older kit's key names
            self.index = _index_from_csv(path / "index.csv")
        except (OSError, ValueError) as error:
            raise StoreCorruptError(f"{path}: cannot be opened ({error})") from None
        shapes = marker.get("shapes", {})
        for name, array in (("clips.npy", self.clips), ("masks.npy", self.masks), ("flow.npy", self.flow)):
            if array is not None and list(array.shape) != shapes.get(name):
                raise StoreCorruptError(f"{path}: {name} has shape {array.shape}, the marker says {shapes.get(name)}")
        stored = self.clips if self.clips is not None else self.flow
        if stored is None or len(self.index) != marker.get("n") or len(stored) != marker.get("n"):
            raise StoreCorruptError(
                f"{path}: {len(self.index)} index rows and "
                f"{None if stored is None else len(stored)} samples, marker says {marker.get('n')}"
            )
        self.key: str = marker["key"]
        self.config = PreprocessConfig(**info["preprocess"]) if info.get("preprocess") is not None else None
        self.flow_config = FlowConfig(**info["flow"]) if info.get("flow") else None
        #: "clips" (flow, if any, computed from the stored clips' frames) or "folder" (images imported as given)
        self.flow_source: str = info.get("flow_source", "clips")
        self.manifest_hash: str = info["manifest_hash"]
        self.index.attrs.update(dict(info.get("attrs", {})))

    def __getstate__(self) -> dict[str, Any]:
        return {"path": str(self.path)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = Path(state["path"])
        self._open()

    def __len__(self) -> int:
        return len(self.index)

    @property
    def has_clips(self) -> bool:
        """False for a flow-folder store (flow images only)."""
        return self.clips is not None

    def __repr__(self) -> str:
        if self.clips is None:
            return f"ClipStore({self.path}, flow only={tuple(self.flow.shape)}, from a flow folder)"
        extra = "".join(f", {n}" for n in ("masks", "flow") if getattr(self, n) is not None)
        return f"ClipStore({self.path}, clips={tuple(self.clips.shape)}{extra})"

    @property
    def classes(self) -> list[str]:
        """Class names in label order (from the manifest's attrs), empty without a label map."""
        return list(self.index.attrs.get("classes", []) or [])

    @property
    def labels(self) -> np.ndarray:
        """int64 (N,) labels; −1 where the manifest has none."""
        return self.index["label"].fillna(-1).to_numpy(dtype=np.int64)


def discard_folder(path: Path) -> None:
    """Move a directory out of the way (atomic rename), then delete it."""
    if not path.exists():
        return
    trash = path.parent / f".stale-{path.name}-{uuid.uuid4().hex[:8]}"
    try:
        os.replace(path, trash)
    except OSError:
        trash = path
    shutil.rmtree(trash, ignore_errors=True)


def load_existing(final: Path, what: str) -> "ClipStore | None":
    """The finished store at ``final``, or None; a damaged one is moved aside (with a warning) to be rebuilt."""
    if not final.exists():
        return None
    try:
        return ClipStore.load(final)
    except StoreCorruptError as error:
        warnings.warn(f"{what} damaged, rebuilding: {error}", stacklevel=3)
        discard_folder(final)
        return None


@contextmanager
def build_folder(tmp: Path) -> Iterator[Path]:
    """A fresh build folder ``tmp`` (beside the final store), removed again when the build fails in any way."""
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_info_and_marker(
    folder: Path, key: str, n: int, info: dict[str, Any], names: list[str], shapes: dict[str, list[int]]
) -> None:
    """Write ``store.json`` (``info``), then the ``COMPLETE`` marker over ``names`` (store.json included) last."""
    (folder / "store.json").write_text(json.dumps(info, indent=2))
    marker = {"key": key, "n": n, "files": _file_sizes(folder, names), "shapes": shapes}
    # The marker goes last, and is itself written whole before it gets its name.
    (folder / f".{MARKER}.tmp").write_text(json.dumps(marker, indent=2))
    os.replace(folder / f".{MARKER}.tmp", folder / MARKER)


def publish(tmp: Path, final: Path) -> None:
    """Move the finished build ``tmp`` to ``final``; when another process got there first, keep theirs if sound."""
    try:
        os.replace(tmp, final)
    except OSError:  # another process finished the same store first
        ClipStore.load(final)
        shutil.rmtree(tmp, ignore_errors=True)
