"""Build a clip store: the key, one sample read and preprocessed (in worker processes when asked), the build
into a temporary folder published whole (`merkit.data.store.files`)."""

from __future__ import annotations

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
from merkit.data.io import read_sample
from merkit.data.manifest import manifest_hash
from merkit.data.preprocess import (
    Box,
    PreprocessConfig,
    output_shape,
    preprocess_clip_detailed,
    spatial_transform_mask,
)
from merkit.data.store.files import (
    STORE_FORMAT_VERSION,
    ClipStore,
    StoreBuildError,
    build_folder,
    index_to_csv,
    load_existing_store,
    publish_store,
    write_info_and_marker,
)
from merkit.data.synthetic import load_motion_mask
from merkit.progress import pause_point


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
        dataset = row.get("dataset") if hasattr(row, "get") else None
        return load_motion_mask(
            self.root, row["subject"], str(row["sample"]), None if dataset is None else str(dataset)
        )


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
    existing = load_existing_store(final, "clip store")
    if existing is not None:
        return existing
    cache_dir.mkdir(parents=True, exist_ok=True)
    _remove_dead_builds(cache_dir)
    tmp = cache_dir / f".tmp-{key}-{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    with build_folder(tmp):
        _build_into(tmp, key, manifest, Path(data_root), config, workers, mask_loader, flow, progress)
        publish_store(tmp, final)
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
    n = len(manifest)
    rows = [dict(row) for _, row in manifest.iterrows()]
    clips = np.lib.format.open_memmap(folder / "clips.npy", mode="w+", dtype=np.uint8, shape=(n, *output_shape(config)))
    masks = None
    if mask_loader is not None:
        masks = np.lib.format.open_memmap(
            folder / "masks.npy", mode="w+", dtype=np.uint8, shape=(n, config.size, config.size)
        )
    flows = None
    if flow is not None:
        flows = np.lib.format.open_memmap(
            folder / "flow.npy", mode="w+", dtype=np.float16, shape=(n, flow.size, flow.size, 3)
        )
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
    clips = masks = flows = None  # drop the memmaps so their pages are flushed and the files closed

    index = manifest.reset_index(drop=True).copy()
    index["position"] = np.arange(n, dtype=np.int64)
    info_table = pd.DataFrame(infos)
    for column in info_table.columns:
        index[column] = info_table[column].to_numpy()
    index_to_csv(index, folder / "index.csv")
    store_info = {
        "key": key,
        "format": STORE_FORMAT_VERSION,
        "manifest_hash": manifest_hash(manifest),
        "preprocess": config.to_dict(),
        "flow": None if flow is None else flow.to_dict(),
        "attrs": to_jsonable(dict(manifest.attrs), default=str),
    }
    arrays = (
        ["clips.npy"] + (["masks.npy"] if mask_loader is not None else []) + (["flow.npy"] if flow is not None else [])
    )
    shapes = {name: list(np.load(folder / name, mmap_mode="r").shape) for name in arrays}
    write_info_and_marker(folder, key, n, store_info, ["clips.npy", "index.csv", "store.json", *arrays[1:]], shapes)
