"""A store of flow images imported from a community flow folder (``flow_source == "folder"``): no clips."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from merkit._io import stable_hash, to_jsonable
from merkit.data.flow import FlowConfig, FlowError, read_flow_images
from merkit.data.manifest import manifest_hash
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
    if len(manifest) == 0:
        raise StoreBuildError("the manifest has no rows: nothing to store")
    root = Path(data_root)
    paths = [str(root / p) for p in manifest["path"]]
    payload = {
        "manifest": manifest_hash(manifest),
        "images": _folder_digest(paths),
        "source": "flow_folder",
        "layout": 2,
        "format": STORE_FORMAT_VERSION,
    }
    key = stable_hash(payload, spaced=True)
    cache_dir = Path(cache_dir)
    final = cache_dir / key
    existing = load_existing_store(final, "flow store")
    if existing is not None:
        return existing
    rows = manifest.reset_index(drop=True)
    try:
        images = read_flow_images(rows.assign(path=paths))
    except FlowError as error:
        raise StoreBuildError(f"{manifest.attrs.get('dataset', 'flow_folder')}: {error}") from None
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = cache_dir / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
    with build_folder(tmp):
        np.save(tmp / "flow.npy", images.astype(np.float16))  # (N, F, F, 3) (u, v, strain) in 0..1
        index = rows.copy()
        index["position"] = np.arange(len(index), dtype=np.int64)
        # The image is taken whole, as given: its "crop box" is the whole F×F image, made by nobody here.
        side = int(images.shape[1])
        for column, value in (("crop_x", 0), ("crop_y", 0), ("crop_w", side), ("crop_h", side)):
            index[column] = value
        index["crop_method"] = "flow folder"
        index["crop_fallback"] = False
        index_to_csv(index, tmp / "index.csv")
        info = {
            "key": key,
            "format": STORE_FORMAT_VERSION,
            "manifest_hash": manifest_hash(manifest),
            "preprocess": None,
            "flow": FOLDER_FLOW_ASSUMED.to_dict(),
            "flow_source": "folder",
            "flow_assumed": "flow settings of the folder's maker are unknown; predict assumes these",
            "attrs": to_jsonable(dict(manifest.attrs), default=str),
        }
        write_info_and_marker(
            tmp, key, len(index), info, ["flow.npy", "index.csv", "store.json"], {"flow.npy": list(images.shape)}
        )
        publish_store(tmp, final)
    return ClipStore.load(final)
