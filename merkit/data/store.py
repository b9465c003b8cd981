"""The clip store: every clip of a manifest preprocessed once into memory-mappable arrays on disk.

Axis letters: N clips, T frames, S side, C channels.

A store lives in ``cache_dir/<key>/`` where ``key`` hashes the manifest (``manifest_hash``), every
:class:`~merkit.data.preprocess.PreprocessConfig` field, the flow parameters (or none), whether masks were
stored, the manifest's ``cropped`` flags (which ``crop='auto'`` reads; not part of the manifest hash), and
:data:`STORE_FORMAT_VERSION`. Same inputs → same key → the store is reused without reading a
frame; one changed parameter → a new key → a new store beside the old one.

Files:

- ``clips.npy``  uint8 (N, T, S, S, C), opened with ``np.load(mmap_mode='r')``
- ``masks.npy``  uint8 (N, S, S) of 0/1, optional: ``mask_loader(row)``'s region through the clip's crop/resize
- ``flow.npy``   float16 (N, F, F, 3) onset→apex (u, v, strain) (see ``merkit.data.flow``), optional
- ``index.csv``  the manifest's rows in store order plus ``position`` (0..N−1), the crop box (``crop_x``,
  ``crop_y``, ``crop_w``, ``crop_h``, in source-frame pixels), ``crop_method`` (the crop the clip got:
  ``dataset``, ``haar``, ``center`` or ``none``; ``crop='auto'`` decides per clip from the manifest's
  ``cropped`` flag), ``crop_fallback`` (no face found, centre used), ``apex_used`` and ``source_frames``
- ``store.json`` preprocessing and flow parameters, manifest hash, manifest attrs (dataset, protocol, classes)
- ``COMPLETE``   written last: the key, N and the byte size and shape of every file above

A store is built in a temporary sibling directory and moved into place with ``os.replace``, so a crash
mid-build leaves nothing that looks complete. On load, a missing or unreadable ``COMPLETE`` marker or any
file whose size differs from the marker's is a :class:`StoreCorruptError`; :func:`build_store` then moves the
damaged store aside and rebuilds it, never reading it as data.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import socket
import uuid
import warnings
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import cv2
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from merkit._io import stable_hash, to_jsonable
from merkit.data.flow import FlowConfig, flow_image
from merkit.progress import pause_point
from merkit.data.preprocess import (
    Box,
    PreprocessConfig,
    output_shape,
    preprocess_clip_detailed,
    spatial_transform_mask,
)
from merkit.errors import MerkitRuntimeError

__all__ = [
    "STORE_FORMAT_VERSION",
    "ClipStore",
    "StoreError",
    "StoreCorruptError",
    "StoreBuildError",
    "MotionMaskLoader",
    "store_key",
    "build_store",
    "warn_forced_dataset_crop",
    "process_row",
    "onset_apex_flow",
    "build_flow_store",
    "FOLDER_FLOW_ASSUMED",
]

#: 2: the index records ``crop_method`` and the key covers the manifest's ``cropped`` flags (crop='auto').
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


def _row_label(row: Mapping[str, Any]) -> str:
    return "/".join(str(row.get(key, "?")) for key in ("dataset", "subject", "sample"))


def _failure(row: Mapping[str, Any], message: str) -> str:
    """The build error text: the sample's name first (once), then what went wrong."""
    label = _row_label(row)
    return message if label in message else f"{label}: {message}"


def store_key(
    manifest: pd.DataFrame,
    config: PreprocessConfig,
    *,
    flow: FlowConfig | None = None,
    masks: bool = False,
) -> str:
    """The cache key (16 hex digits) of a store: manifest hash + every parameter + the format version."""
    from merkit.data.manifest import manifest_hash

    payload = {
        "manifest": manifest_hash(manifest),
        "preprocess": config.to_dict(),
        "flow": None if flow is None else flow.to_dict(),
        "masks": bool(masks),
        "cropped": _cropped_flags(manifest),
        "format": STORE_FORMAT_VERSION,
    }
    return stable_hash(payload)


def _cropped_flags(manifest: pd.DataFrame) -> list[bool] | None:
    """The manifest's per-clip ``cropped`` flags (None when the column is absent: every clip taken as raw)."""
    if "cropped" not in manifest.columns:
        return None
    return [bool(v) if not pd.isna(v) else False for v in manifest["cropped"]]


def warn_forced_dataset_crop(manifest: pd.DataFrame, config: PreprocessConfig) -> list[str]:
    """Warn (once per call) when ``crop='dataset'`` is forced on clips the manifest calls raw frames.

    ``crop='dataset'`` resizes the whole frame: on a raw 640×480 frame with background that squashes the
    face into a corner of the clip. Returns the datasets named in the warning (empty: nothing to say).
    """
    if config.crop != "dataset" or "cropped" not in manifest.columns:
        return []
    raw = manifest[~manifest["cropped"].fillna(False).astype(bool)]
    if raw.empty:
        return []
    datasets = sorted(raw["dataset"].astype(str).unique())
    warnings.warn(
        f"crop='dataset' on {len(raw)} clip(s) whose manifest says the frames are raw, not face crops "
        f"(dataset {', '.join(datasets)}): the whole frame, background included, is resized. "
        "Use crop='auto' (Haar face box on raw frames) or crop='haar'.",
        stacklevel=3,
    )
    return datasets


@dataclass
class MotionMaskLoader:
    """``mask_loader`` for SynthME and its emulated releases: ``load_motion_mask(root, row.subject,
    row.sample, row.dataset)``; picklable for workers."""

    root: str

    def __call__(self, row: Mapping[str, Any]) -> np.ndarray:
        from merkit.data.synthetic import load_motion_mask

        dataset = row.get("dataset") if hasattr(row, "get") else None
        return load_motion_mask(self.root, row["subject"], str(row["sample"]), None if dataset is None else str(dataset))


# ---------------------------------------------------------------------------------------------------------
# one sample (runs in worker processes)


def _nearest_index(numbers: np.ndarray, number: int) -> int:
    return int(np.argmin(np.abs(np.asarray(numbers) - number)))


def onset_apex_flow(
    frames: np.ndarray, numbers: np.ndarray, onset: int, apex: int, box: Box, flow: FlowConfig
) -> np.ndarray:
    """A sample's stored flow: onset→apex (u, v, strain) float16 (F, F, 3) on the face crop ``box`` of the
    source frames (T, H, W[, C]) nearest to the ``onset`` and ``apex`` frame numbers. ``merkit.predict`` calls
    it too, so a new clip reaches a flow model exactly as the training samples did."""
    onset_frame = frames[_nearest_index(numbers, int(onset))]
    apex_frame = frames[_nearest_index(numbers, int(apex))]
    cut = (slice(box.y, box.y + box.h), slice(box.x, box.x + box.w))
    return flow_image(onset_frame[cut], apex_frame[cut], flow).astype(np.float16)


def process_row(
    row: Mapping[str, Any],
    data_root: str | os.PathLike,
    config: PreprocessConfig,
    flow: FlowConfig | None = None,
    mask_loader: Callable[[Mapping[str, Any]], np.ndarray] | None = None,
) -> dict[str, Any]:
    """Read and preprocess one manifest row: ``{"clip", "mask", "flow", "info"}`` (mask/flow None if not asked).

    Errors from reading (``ClipReadError``), preprocessing (``PreprocessError``) or the mask loader propagate
    unchanged; :func:`build_store` wraps them in :class:`StoreBuildError` naming the sample.
    """
    from merkit.data.io import read_sample

    sample = f"{_row_label(row)} ({Path(data_root) / str(row['path'])})"  # the file too: a no-face error names it
    cropped = row.get("cropped")
    clip = read_sample(row, data_root)
    result = preprocess_clip_detailed(
        clip.frames, clip.numbers, row["onset"], row["apex"], row["offset"], config, sample=sample, cropped=cropped
    )
    box: Box = result.box
    out: dict[str, Any] = {"clip": result.clip, "mask": None, "flow": None}
    if mask_loader is not None:
        mask = np.asarray(mask_loader(row)).astype(bool)
        out["mask"] = spatial_transform_mask(mask, clip.frames.shape, config, box, cropped=cropped)
    if flow is not None:
        out["flow"] = onset_apex_flow(clip.frames, clip.numbers, row["onset"], result.apex, box, flow)
    out["info"] = {
        "crop_x": box.x,
        "crop_y": box.y,
        "crop_w": box.w,
        "crop_h": box.h,
        "crop_method": result.crop_method,
        "crop_fallback": bool(result.crop_fallback),
        "apex_used": int(result.apex),
        "source_frames": int(result.source_frames),
    }
    return out


def _worker_init() -> None:
    # One OpenCV thread per worker process: the workers already use the cores.
    cv2.setNumThreads(1)


def _worker(
    chunk: list[tuple[int, dict]], data_root: str, config: PreprocessConfig, flow: FlowConfig | None, mask_loader: Any
) -> list[tuple[int, dict | None, str | None]]:
    """Process a chunk of rows in a worker; an error comes back as text (custom exceptions may not unpickle)."""
    results: list[tuple[int, dict | None, str | None]] = []
    for position, row in chunk:
        try:
            results.append((position, process_row(row, data_root, config, flow, mask_loader), None))
        except Exception as error:  # noqa: BLE001 - reported with the sample's name in the parent
            results.append((position, None, f"{type(error).__name__}: {error}"))
            break
    return results


# ---------------------------------------------------------------------------------------------------------
# the store


def _file_sizes(folder: Path, names: list[str]) -> dict[str, int]:
    return {name: (folder / name).stat().st_size for name in names}


def _index_to_csv(index: pd.DataFrame, path: Path) -> None:
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
            info = json.loads((path / "store.json").read_text())
            self.index = _index_from_csv(path / "index.csv")
        except (OSError, ValueError) as error:
            raise StoreCorruptError(f"{path}: cannot be opened ({error})") from None
        shapes = marker.get("shapes", {})
        for name, array in (("clips.npy", self.clips), ("masks.npy", self.masks), ("flow.npy", self.flow)):
            if array is not None and list(array.shape) != shapes.get(name):
                raise StoreCorruptError(f"{path}: {name} has shape {array.shape}, the marker says {shapes.get(name)}")
        stored = self.clips if self.clips is not None else self.flow
        if stored is None or len(self.index) != marker.get("n") or len(stored) != marker.get("n"):
            raise StoreCorruptError(f"{path}: {len(self.index)} index rows and "
                                    f"{None if stored is None else len(stored)} samples, marker says {marker.get('n')}")
        self.key: str = marker["key"]
        self.config = PreprocessConfig(**info["preprocess"]) if info.get("preprocess") is not None else None
        self.flow_config = FlowConfig(**info["flow"]) if info.get("flow") else None
        #: "clips" (flow, if any, computed from the stored clips' frames) or "folder" (images imported as given)
        self.flow_source: str = info.get("flow_source", "clips")
        self.manifest_hash: str = info["manifest_hash"]
        self.index.attrs.update(info.get("attrs", {}))

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
        """Class names in label order (from the manifest's attrs), empty without a protocol."""
        return list(self.index.attrs.get("classes", []) or [])

    @property
    def labels(self) -> np.ndarray:
        """int64 (N,) labels; −1 where the manifest has none."""
        return self.index["label"].fillna(-1).to_numpy(dtype=np.int64)


def _discard(path: Path) -> None:
    """Move a directory out of the way (atomic rename), then delete it."""
    if not path.exists():
        return
    trash = path.parent / f".stale-{path.name}-{uuid.uuid4().hex[:8]}"
    try:
        os.replace(path, trash)
    except OSError:
        trash = path
    shutil.rmtree(trash, ignore_errors=True)


_HOST = socket.gethostname().replace("-", "_")


def _remove_dead_builds(cache_dir: Path) -> None:
    """Delete build folders left by killed processes of this host (``.tmp-<key>-<host>-<pid>-<hex>``); a build of
    a live process, or of another host sharing the cache, is left alone."""
    for tmp in cache_dir.glob(".tmp-*"):
        parts = tmp.name.rsplit("-", 3)
        if len(parts) != 4 or parts[1] != _HOST or not parts[2].isdigit():
            continue
        if not _pid_alive(int(parts[2])):
            shutil.rmtree(tmp, ignore_errors=True)


def _pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host still runs (a zombie, killed but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc (macOS): os.kill said it exists


def _load_existing(final: Path, what: str) -> "ClipStore | None":
    """The finished store at ``final``, or None; a damaged one is moved aside (with a warning) to be rebuilt."""
    if not final.exists():
        return None
    try:
        return ClipStore.load(final)
    except StoreCorruptError as error:
        warnings.warn(f"{what} damaged, rebuilding: {error}", stacklevel=3)
        _discard(final)
        return None


def build_store(
    manifest: pd.DataFrame,
    data_root: str | os.PathLike,
    config: PreprocessConfig,
    cache_dir: str | os.PathLike,
    *,
    workers: int = 1,
    mask_loader: Callable[[Mapping[str, Any]], np.ndarray] | None = None,
    flow: FlowConfig | None = None,
    progress: bool = True,
) -> ClipStore:
    """Preprocess every manifest row into ``cache_dir/<key>/``, or open it if it is already complete.

    ``workers > 1`` preprocesses in that many processes (spawned; ``mask_loader`` must then be picklable,
    e.g. :class:`MotionMaskLoader`, not a lambda). ``mask_loader(row)`` returns the row's region mask as bool
    (H, W) in source-frame pixels. A damaged store under the same key is moved aside and rebuilt. A sample
    that fails raises :class:`StoreBuildError` naming dataset/subject/sample, and no store is left behind.
    """
    if len(manifest) == 0:
        raise StoreBuildError("the manifest has no rows: nothing to store")
    warn_forced_dataset_crop(manifest, config)
    cache_dir = Path(cache_dir)
    key = store_key(manifest, config, flow=flow, masks=mask_loader is not None)
    final = cache_dir / key
    existing = _load_existing(final, "clip store")
    if existing is not None:
        return existing
    cache_dir.mkdir(parents=True, exist_ok=True)
    _remove_dead_builds(cache_dir)
    tmp = cache_dir / f".tmp-{key}-{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        _build_into(tmp, key, manifest, Path(data_root), config, workers, mask_loader, flow, progress)
        try:
            os.replace(tmp, final)
        except OSError:  # another process finished the same store first: keep theirs if it is sound
            ClipStore.load(final)
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ClipStore.load(final)


def _build_into(
    folder: Path,
    key: str,
    manifest: pd.DataFrame,
    data_root: Path,
    config: PreprocessConfig,
    workers: int,
    mask_loader: Any,
    flow: FlowConfig | None,
    progress: bool,
) -> None:
    from merkit.data.manifest import manifest_hash

    n = len(manifest)
    rows = [dict(row) for _, row in manifest.iterrows()]
    clips = np.lib.format.open_memmap(folder / "clips.npy", mode="w+", dtype=np.uint8, shape=(n, *output_shape(config)))
    masks = None
    if mask_loader is not None:
        masks = np.lib.format.open_memmap(folder / "masks.npy", mode="w+", dtype=np.uint8, shape=(n, config.size, config.size))
    flows = None
    if flow is not None:
        flows = np.lib.format.open_memmap(folder / "flow.npy", mode="w+", dtype=np.float16, shape=(n, flow.size, flow.size, 3))
    infos: list[dict[str, Any] | None] = [None] * n

    def put(position: int, out: dict[str, Any]) -> None:
        clips[position] = out["clip"]
        if masks is not None:
            masks[position] = out["mask"]
        if flows is not None:
            flows[position] = out["flow"]
        infos[position] = out["info"]

    bar = tqdm(total=n, desc="clip store", unit="clip", disable=not progress)
    try:
        if workers <= 1:
            for position, row in enumerate(rows):
                try:
                    put(position, process_row(row, data_root, config, flow, mask_loader))
                except Exception as error:
                    raise StoreBuildError(_failure(row, f"{type(error).__name__}: {error}")) from error
                bar.update()
                pause_point("store.building")  # test hook (merkit.progress): a kill mid-build
        else:
            context = multiprocessing.get_context("spawn")  # fork after OpenCV/torch threads can deadlock
            # A few rows per task: fewer round trips, still small enough for a smooth progress bar.
            size = max(1, min(16, n // (workers * 8)))
            items = list(enumerate(rows))
            chunks = [items[start : start + size] for start in range(0, n, size)]
            with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_worker_init) as pool:
                pending = {pool.submit(_worker, chunk, str(data_root), config, flow, mask_loader) for chunk in chunks}
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        for position, out, error in future.result():
                            if error is not None:
                                for other in pending:
                                    other.cancel()
                                raise StoreBuildError(_failure(rows[position], error))
                            put(position, out)
                            bar.update()
    finally:
        bar.close()
    for array in (clips, masks, flows):
        if array is not None:
            array.flush()
    del clips, masks, flows

    index = manifest.reset_index(drop=True).copy()
    index["position"] = np.arange(n, dtype=np.int64)
    info_table = pd.DataFrame(infos)
    for column in info_table.columns:
        index[column] = info_table[column].to_numpy()
    _index_to_csv(index, folder / "index.csv")
    store_info = {
        "key": key,
        "format": STORE_FORMAT_VERSION,
        "manifest_hash": manifest_hash(manifest),
        "preprocess": config.to_dict(),
        "flow": None if flow is None else flow.to_dict(),
        "attrs": to_jsonable(dict(manifest.attrs), default=str),
    }
    (folder / "store.json").write_text(json.dumps(store_info, indent=2))
    names = ["clips.npy", "index.csv", "store.json"]
    names += ["masks.npy"] if mask_loader is not None else []
    names += ["flow.npy"] if flow is not None else []
    shapes = {name: list(np.load(folder / name, mmap_mode="r").shape) for name in names if name.endswith(".npy")}
    marker = {"key": key, "n": n, "files": _file_sizes(folder, names), "shapes": shapes}
    # The marker goes last, and is itself written whole before it gets its name.
    (folder / f".{MARKER}.tmp").write_text(json.dumps(marker, indent=2))
    os.replace(folder / f".{MARKER}.tmp", folder / MARKER)


# ---------------------------------------------------------------------------------------------------------
# a store of flow images imported from a community flow folder


#: The flow a folder-trained model is assumed to have seen, for ``merkit predict`` on a new clip. ASSUMPTION:
#: the community folders were made with TV-L1 (their papers say so) on face crops; their exact settings are
#: unknown, so a prediction on a new clip is only as comparable as this guess.
FOLDER_FLOW_ASSUMED = FlowConfig(method="tvl1", work_size=128, size=28)


def _folder_digest(paths: list[str]) -> str:
    """Hash of the image files' bytes: a changed image gives a new store key."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()


def build_flow_store(
    manifest: pd.DataFrame, data_root: str | os.PathLike, cache_dir: str | os.PathLike, *, progress: bool = True
) -> ClipStore:
    """A store of the flow images a flow-folder manifest lists (``merkit.data.datasets.flow_folder``): no clips.

    ``flow.npy`` holds each image as (u, v, strain) float16 in 0..1 (``merkit.data.flow.read_flow_png``), in
    manifest order; ``index.csv`` the manifest plus ``position`` and a whole-image crop box (``crop_method``
    ``"flow folder"``); ``store.json`` says ``flow_source: folder``
    and ``preprocess: null``. Keyed by the manifest hash and the images' bytes, written atomically like
    :func:`build_store`; an unreadable image raises :class:`StoreBuildError` naming the sample and the file.
    """
    from merkit.data.flow import FlowError, read_flow_images
    from merkit.data.manifest import manifest_hash

    if len(manifest) == 0:
        raise StoreBuildError("the manifest has no rows: nothing to store")
    root = Path(data_root)
    paths = [str(root / p) for p in manifest["path"]]
    payload = {"manifest": manifest_hash(manifest), "images": _folder_digest(paths), "source": "flow_folder", "layout": 2,
               "format": STORE_FORMAT_VERSION}
    key = stable_hash(payload, spaced=True)
    cache_dir = Path(cache_dir)
    final = cache_dir / key
    existing = _load_existing(final, "flow store")
    if existing is not None:
        return existing
    rows = manifest.reset_index(drop=True)
    try:
        images = read_flow_images(rows.assign(path=paths))
    except FlowError as error:
        raise StoreBuildError(f"{manifest.attrs.get('dataset', 'flow_folder')}: {error}") from None
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        np.save(tmp / "flow.npy", images.astype(np.float16))  # (N, F, F, 3) (u, v, strain) in 0..1
        index = rows.copy()
        index["position"] = np.arange(len(index), dtype=np.int64)
        # The image is taken whole, as given: its "crop box" is the whole F×F image, made by nobody here.
        side = int(images.shape[1])
        for column, value in (("crop_x", 0), ("crop_y", 0), ("crop_w", side), ("crop_h", side)):
            index[column] = value
        index["crop_method"] = "flow folder"
        index["crop_fallback"] = False
        _index_to_csv(index, tmp / "index.csv")
        info = {"key": key, "format": STORE_FORMAT_VERSION, "manifest_hash": manifest_hash(manifest),
                "preprocess": None, "flow": FOLDER_FLOW_ASSUMED.to_dict(), "flow_source": "folder",
                "flow_assumed": "flow settings of the folder's maker are unknown; predict assumes these",
                "attrs": to_jsonable(dict(manifest.attrs), default=str)}
        (tmp / "store.json").write_text(json.dumps(info, indent=2))
        names = ["flow.npy", "index.csv", "store.json"]
        marker = {"key": key, "n": len(index), "files": _file_sizes(tmp, names),
                  "shapes": {"flow.npy": list(images.shape)}}
        (tmp / MARKER).write_text(json.dumps(marker, indent=2))
        try:
            os.replace(tmp, final)
        except OSError:  # another process finished the same store first
            ClipStore.load(final)
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ClipStore.load(final)
