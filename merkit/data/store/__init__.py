"""The clip store: every clip of a manifest preprocessed once into memory-mappable arrays on disk.

Axis letters: N clips, T frames, S side, C channels.

A store lives in ``cache_dir/<key>/`` where ``key`` hashes the manifest (``manifest_hash``), every
:class:`~merkit.data.preprocess.PreprocessConfig` field, the flow parameters (or none), whether masks were
stored, the manifest's ``cropped`` flags (which ``crop='auto'`` reads; not part of the manifest hash), and
:data:`STORE_FORMAT_VERSION`. Same key and unchanged input files → the store is reused without reading a
frame; one changed parameter → a new key → a new store beside the old one. The input files (every file of
each clip, by size and modification time: the make rule, :mod:`~merkit.data.store.inputs`) are recorded in
``inputs.json`` and checked on reuse: a changed, added or removed frame rebuilds the store under the same
key, with a warning naming the clips (the stale store is replaced once the new one is built).

Files:

- ``clips.npy``  uint8 (N, T, S, S, C), opened with ``np.load(mmap_mode='r')``
- ``masks.npy``  uint8 (N, S, S) of 0/1, optional: ``mask_loader(row)``'s region through the clip's crop/resize
- ``flow.npy``   float16 (N, F, F, 3) onset→apex (u, v, strain) (see ``merkit.data.flow``), optional
- ``index.csv``  the manifest's rows in store order plus ``position`` (0..N−1), the crop box (``crop_x``,
  ``crop_y``, ``crop_w``, ``crop_h``, in source-frame pixels), ``crop_method`` (the crop the clip got:
  ``dataset``, ``haar``, ``center`` or ``none``; ``crop='auto'`` decides per clip from the manifest's
  ``cropped`` flag), ``crop_fallback`` (no face found, centre used), ``apex_used`` and ``source_frames``
- ``inputs.json`` the input files' signatures (per clip: files, bytes, a hash of their names, sizes, mtimes)
- ``store.json`` preprocessing and flow parameters, manifest hash, manifest attrs (dataset, label_map, classes)
- ``COMPLETE``   written last: the key, N and the byte size and shape of every file above

A store is built in a temporary sibling directory and moved into place with ``os.replace``, so a crash
mid-build leaves nothing that looks complete. On load, a missing or unreadable ``COMPLETE`` marker or any
file whose size differs from the marker's is a :class:`StoreCorruptError`; :func:`build_store` then moves the
damaged store aside and rebuilds it, never reading it as data.

Rooms: `files` (what a store directory holds: the format version, the marker, the index CSV, `ClipStore`,
the integrity checks and the atomic publication of a finished build), `build` (preprocess a manifest into a
store: the key, one sample, the worker processes), `inputs` (the input files' signatures and the check on
reuse), `flow_folder` (a store of imported flow images, no clips).
"""

from merkit.data.store.build import (
    MotionMaskLoader,
    build_store,
    onset_apex_flow,
    process_row,
    store_key,
    warn_forced_dataset_crop,
)
from merkit.data.store.files import (
    MARKER,
    STORE_FORMAT_VERSION,
    ClipStore,
    StoreBuildError,
    StoreCorruptError,
    StoreError,
)
from merkit.data.store.flow_folder import FOLDER_FLOW_ASSUMED, build_flow_store

__all__ = [
    "STORE_FORMAT_VERSION",
    "MARKER",
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
