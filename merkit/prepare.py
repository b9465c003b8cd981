"""From a data config to a manifest and a clip store: the first step every notebook and `merkit prepare` share.

``prepare_data(data, preprocess, cache_dir=…)``:

1. ``data.data_root`` empty and ``data.dataset == "synthme"``: SynthME is generated (once; generation is
   idempotent) under ``cache_dir/synthme/<config hash>/``, so runs with different SynthME sizes never
   collide. A non-empty ``data_root`` must exist (a real dataset is never generated or downloaded).
2. The manifest is built from the dataset's official sheet (``merkit.data.datasets.build_manifest``), with
   ``data.on_problem`` (error / fix / drop); with ``run_dir`` what was fixed, dropped or left out by a rule is
   written there as ``data_problems.csv`` (atomic; empty table when nothing was).
3. With a ``preprocess`` config, every clip is preprocessed into the clip store (with ``flow='tvl1'`` etc. also
   its onset→apex flow image, for the flow baselines) under
   ``cache_dir/store/<data root hash>/`` (cached by manifest hash + preprocessing parameters, so a second call
   is a lookup; the data-root level keeps two copies with the same sheet, e.g. SynthME at two sizes, apart).

Errors are :class:`DataRootError` (missing directory, or an empty data_root for a real dataset) and whatever
the dataset builder raises (``ManifestError`` naming dataset/subject/sample).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from merkit._io import stable_hash
from merkit.cache import cache_dir as user_cache
from merkit.cache import source_checkout
from merkit.data.datasets import build_manifest, load_spec, write_problems
from merkit.data.flow import FlowConfig
from merkit.data.preprocess import PreprocessConfig
from merkit.data.store import MotionMaskLoader, build_flow_store, build_store
from merkit.data.synthetic import SynthMEConfig, generate_synthme, has_motion_masks
from merkit.errors import MerkitFileNotFoundError, MerkitValueError
from merkit.models import create_model

__all__ = [
    "DataRootError",
    "PreparedData",
    "notebook_dirs",
    "lab_run_dir",
    "synthme_root",
    "resolve_data_root",
    "prepare_data",
    "is_flow_folder",
    "flow_method_for",
]


def lab_run_dir() -> Path:
    """Where a notebook opened by hand (run_dir left empty) writes: ``runs/lab`` in the kit's checkout, or in the
    current directory when the kit is installed."""
    return (source_checkout() or Path.cwd()) / "runs" / "lab"


class DataRootError(MerkitFileNotFoundError):
    """The data root is missing, is not a directory, or is empty for a dataset the kit cannot generate."""


@dataclass
class PreparedData:
    """What `prepare_data` produced: the data root used, the manifest, and the clip store (None without one)."""

    data_root: Path
    manifest: pd.DataFrame
    store: Any = None  # merkit.data.store.ClipStore
    generated: bool = False  # True when SynthME was generated (or found already generated) under the cache
    problems_file: Path | None = None  # data_problems.csv written (prepare_data(run_dir=...)), else None

    @property
    def classes(self) -> list[str]:
        """Class names in label order (from the manifest's class mapping, ``label_map``)."""
        return list(self.manifest.attrs.get("classes", []))


def notebook_dirs(run_dir: str | os.PathLike = "", cache_dir: str | os.PathLike = "") -> tuple[Path, Path]:
    """Absolute ``(run_dir, cache_dir)`` for a notebook, created: ``""`` run_dir is the kit's ``runs/lab``,
    ``""`` cache_dir is the user's one cache (``merkit.cache.cache_dir``: ``$MERKIT_CACHE`` or ``runs/cache``),
    shared by every run. Relative paths are taken as given (relative to where the kernel runs); the pipeline
    always passes absolute ones. An unwritable cache raises ``merkit.cache.CacheError`` naming it."""
    run = Path(run_dir).expanduser().resolve() if str(run_dir) else lab_run_dir()
    cache = user_cache(cache_dir)
    (run / "figures").mkdir(parents=True, exist_ok=True)
    return run, cache


def _synthme_config(data: Any) -> Any:
    return SynthMEConfig(**data.synthme_kwargs())


def synthme_root(cache_dir: str | os.PathLike, synthme_config: Any) -> Path:
    """Where SynthME generated with ``synthme_config`` lives under ``cache_dir`` (one folder per config)."""
    return Path(cache_dir) / "synthme" / stable_hash(synthme_config.to_dict(), 12, spaced=True)


def resolve_data_root(data: Any, cache_dir: str | os.PathLike, *, progress: bool = True) -> tuple[Path, bool]:
    """The data root of ``data`` (a ``merkit.config.DataConfig``); generates SynthME when it is left empty.

    Returns ``(root, generated)``. Raises `DataRootError` for a missing directory or an empty data_root
    of a real (licensed) dataset.
    """
    if data.data_root:
        root = Path(data.data_root).expanduser()
        if not root.is_dir():
            raise DataRootError(f"data_root {root} for dataset {data.dataset!r} does not exist or is not a directory")
        if data.dataset == "synthme" and not any(root.iterdir()):
            generate_synthme(root, _synthme_config(data), progress=progress)
            return root, True
        return root, False
    if data.dataset != "synthme":
        raise DataRootError(
            f"dataset {data.dataset!r} needs data_root: the path of your own licensed copy "
            "(the kit never downloads or ships it); leave data_root empty only for synthme"
        )

    config = _synthme_config(data)
    root = synthme_root(cache_dir, config)
    generate_synthme(root, config, progress=progress)
    return root, True


def prepare_data(
    data: Any,
    preprocess: Any = None,
    *,
    cache_dir: str | os.PathLike = "",
    flow: Any = None,  # FlowConfig, a method name ('tvl1', 'farneback', 'dis'), or ''/None
    masks: bool | None = None,
    workers: int = 1,
    progress: bool = True,
    run_dir: str | os.PathLike | None = None,
) -> PreparedData:
    """Resolve the data root (generating SynthME if needed), build the manifest, and (optionally) the store.

    ``data`` is a ``merkit.config.DataConfig``; ``preprocess`` a ``PreprocessConfig`` (or a dict of its fields)
    or None for the manifest only. ``cache_dir`` holds generated SynthME trees and the clip store (default ``""``:
    the user's one cache, ``merkit.cache.cache_dir()``; never inside ``data_root``). ``flow``
    also stores onset→apex (u, v, strain) flow images, which the flow models (``ststnet``, ``offapexnet``)
    read: a flow method name (``'tvl1'``, ``'farneback'`` or ``'dis'``; ``''`` or None = no flow; the other
    flow settings keep ``FlowConfig``'s defaults, 28×28 images) or a ``FlowConfig``. The flow is computed on
    the same face crop as the clips, so it needs ``preprocess``. Its settings are part of the store key: a
    store with flow is a separate store from the clip-only one. ``masks`` stores the ground-truth motion
    masks (default: when the data root has them, i.e. SynthME and SynthME's emulated releases). ``run_dir``
    receives ``data_problems.csv`` (see :func:`merkit.data.datasets.problems_table`).
    """
    if isinstance(flow, str):
        flow = FlowConfig(method=flow) if flow else None  # FlowConfig names the known methods on a bad one
    if flow is not None and preprocess is None:
        raise MerkitValueError(
            "prepare_data(flow=...) needs a preprocess config: the flow is computed on the clips' face crop"
        )

    cache_dir = user_cache(cache_dir)  # CacheError naming the folder when it cannot be written
    root, generated = resolve_data_root(data, cache_dir, progress=progress)
    if is_flow_folder(data.dataset):
        return _prepare_flow_folder(data, root, preprocess is not None or flow is not None, cache_dir, progress)
    manifest = build_manifest(
        data.dataset, root, data.label_map or None, on_problem=getattr(data, "on_problem", "error")
    )
    problems_file = None
    if run_dir is not None:
        problems_file = write_problems(manifest, Path(run_dir) / "data_problems.csv")
    store = None
    if preprocess is not None:
        if isinstance(preprocess, dict):
            preprocess = PreprocessConfig(**preprocess)
        if masks is None:
            masks = has_motion_masks(root)
        # The store key hashes the manifest (relative paths) and the preprocessing, not the frames: two data
        # roots with the same sheet (e.g. SynthME generated at two sizes) would share a store. One store
        # folder per data root keeps them apart.
        root_key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:12]
        store = build_store(
            manifest,
            root,
            preprocess,
            cache_dir / "store" / root_key,
            workers=workers,
            mask_loader=MotionMaskLoader(str(root)) if masks else None,
            flow=flow,
            progress=progress,
        )
    return PreparedData(root, manifest, store, generated, problems_file)


def is_flow_folder(dataset: str) -> bool:
    """True when ``dataset``'s yaml uses the ``flow_folder`` builder (a folder of flow images, no frames)."""
    try:
        return load_spec(dataset).builder == "flow_folder"
    except Exception:  # noqa: BLE001 - an unknown dataset is reported by build_manifest with the known ones
        return False


def _prepare_flow_folder(data: Any, root: Path, with_store: bool, cache_dir: Path, progress: bool) -> PreparedData:
    """A flow folder: manifest from its listing, and a flow-only store (no clips, no preprocessing)."""
    label_map = (
        data.label_map if data.label_map and data.label_map != "synthme_3class" else None
    )  # the notebooks' default
    manifest = build_manifest(data.dataset, root, label_map, annotation=data.listing or None)
    store = None
    if with_store:
        root_key = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:12]
        store = build_flow_store(manifest, root, cache_dir / "store" / root_key, progress=progress)
    return PreparedData(root, manifest, store, False)


def flow_method_for(model: str, flow_method: str = "", dataset: str = "", compare: str = "") -> str:
    """The flow to store for ``model`` (and the ``compare`` variants, a comma list of ``name[:attention]``):
    ``flow_method`` when given; ``'tvl1'`` (the MER community's default) when any of them is a flow model;
    ``''`` when none is, or for a flow-folder dataset (its flow is given, not computed)."""
    if dataset and is_flow_folder(dataset):
        return ""
    if flow_method:
        return flow_method
    names = [model] + [item.strip().partition(":")[0] for item in compare.split(",") if item.strip()]
    return "tvl1" if any(create_model(name).input_spec.kind == "flow" for name in names) else ""
