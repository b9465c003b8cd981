"""Optical flow and optical strain between two frames, and the 28×28 (u, v, strain) interchange format.

Axis letters: H height, W width, T frames. A flow field is float32 (H, W, 2) holding (u, v): u the
horizontal displacement in pixels (positive = rightwards), v the vertical one (positive = downwards),
such that ``b[y + v, x + u] ≈ a[y, x]`` for ``optical_flow(a, b)``.

Methods: ``'tvl1'`` (Dual TV-L1, OpenCV contrib ``cv2.optflow``; the MER community's default since
Liong et al.), ``'farneback'`` and ``'dis'`` (OpenCV core).

Optical strain (Liong et al.; used by STSTNet, HTNet): the magnitude of the infinitesimal strain tensor of
the flow, ``sqrt(εxx² + εyy² + 2·εxy²)`` with ``εxx = ∂u/∂x``, ``εyy = ∂v/∂y``, ``εxy = ½(∂u/∂y + ∂v/∂x)``.
A rigid translation has zero strain; a zoom or a local deformation does not.

Interchange format (STSTNet/HTNet "norm_u_v_os" folders): one 28×28 3-channel 8-bit PNG per sample whose
channels are u, v and strain, each min-max normalised to 0..255 on its own, in the file's R, G and B
channels (measured on a real copy of a community folder: R and G means near 126 and 135, B, the
strain, mostly dark). OpenCV reads a PNG in B, G, R order, so ``cv2.imread(path)`` is (strain, v, u), which
is what the STSTNet authors' code feeds its network (``merkit.models.STSTNet``, ``encoding="bgr255"``).
Min-max normalisation drops each channel's scale and offset: an import gives back the *normalised*
(u, v, strain) in 0..1, in that order.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from merkit._io import atomic_write_bytes, atomic_write_text
from merkit.errors import MerkitValueError

__all__ = [
    "FLOW_METHODS",
    "FlowConfig",
    "FlowError",
    "optical_flow",
    "optical_strain",
    "flow_features",
    "flow_image",
    "flow_clip",
    "normalise_flow_image",
    "write_flow_png",
    "read_flow_png",
    "export_flow_folder",
    "import_flow_folder",
    "read_flow_listing",
    "read_flow_images",
    "flow_png_name",
    "export_flow_release",
    "COMPOSITE_LISTING_COLUMNS",
]

FLOW_METHODS = ("tvl1", "farneback", "dis")


class FlowError(MerkitValueError):
    """Flow cannot be computed, written or imported; the message names the sample or file."""


@dataclass(frozen=True)
class FlowConfig:
    """Onset→apex flow parameters; ``asdict`` goes into the clip store's cache key."""

    method: str = "tvl1"  # 'tvl1', 'farneback' or 'dis'
    work_size: int = 128  # both frames resized to this square side before flow (0 = keep crop size)
    size: int = 28  # side of the stored (u, v, strain) image (28 for STSTNet/HTNet)

    def __post_init__(self) -> None:
        if self.method not in FLOW_METHODS:
            raise FlowError(f"FlowConfig.method={self.method!r}; expected one of {FLOW_METHODS}")
        if self.size < 2 or self.work_size < 0:
            raise FlowError(f"FlowConfig sizes must be positive: {self}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every field, for cache keys and run records."""
        return asdict(self)


def _grey(image: np.ndarray) -> np.ndarray:
    """uint8 grey (H, W) from grey (H, W), (H, W, 1) or RGB (H, W, 3)."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]  # (H, W, 1) -> (H, W)
    if image.ndim == 3:
        image = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY)
    if image.dtype != np.uint8:
        image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image)


def optical_flow(a: np.ndarray, b: np.ndarray, method: str = "tvl1") -> np.ndarray:
    """Dense flow from frame ``a`` to frame ``b`` (same size, grey or RGB uint8): float32 (H, W, 2) = (u, v)."""
    if method not in FLOW_METHODS:
        raise FlowError(f"unknown flow method {method!r}; expected one of {FLOW_METHODS}")
    ga, gb = _grey(a), _grey(b)
    if ga.shape != gb.shape:
        raise FlowError(f"flow needs frames of one size, got {ga.shape} and {gb.shape}")
    if method == "tvl1":
        flow = cv2.optflow.DualTVL1OpticalFlow_create().calc(ga, gb, None)
    elif method == "farneback":
        flow = cv2.calcOpticalFlowFarneback(
            ga, gb, None, pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0
        )
    else:
        flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(ga, gb, None)
    return np.asarray(flow, dtype=np.float32)


def optical_strain(flow: np.ndarray) -> np.ndarray:
    """Strain magnitude float32 (H, W) of a flow field (H, W, 2); central differences, one-sided at edges."""
    u, v = flow[..., 0].astype(np.float64), flow[..., 1].astype(np.float64)
    du_dy, du_dx = np.gradient(u)  # np.gradient gives the row (y) derivative first
    dv_dy, dv_dx = np.gradient(v)
    exy = 0.5 * (du_dy + dv_dx)
    return np.sqrt(du_dx**2 + dv_dy**2 + 2.0 * exy**2).astype(np.float32)


def flow_features(a: np.ndarray, b: np.ndarray, method: str = "tvl1") -> np.ndarray:
    """(u, v, strain) float32 (H, W, 3) from ``a`` to ``b``."""
    flow = optical_flow(a, b, method)
    return np.concatenate([flow, optical_strain(flow)[..., None]], axis=-1)  # (H, W, 2) + (H, W, 1)


def flow_image(onset: np.ndarray, apex: np.ndarray, config: FlowConfig = FlowConfig()) -> np.ndarray:
    """Onset→apex (u, v, strain) resized to float32 (size, size, 3); values are not normalised.

    Frames are first resized to ``work_size`` (so clips with different crop sizes give comparable pixel
    displacements); the feature map is then area-averaged down to ``size``.
    """
    a, b = _grey(onset), _grey(apex)
    if config.work_size:
        a = cv2.resize(a, (config.work_size, config.work_size), interpolation=cv2.INTER_AREA)
        b = cv2.resize(b, (config.work_size, config.work_size), interpolation=cv2.INTER_AREA)
    features = flow_features(a, b, config.method)
    return cv2.resize(features, (config.size, config.size), interpolation=cv2.INTER_AREA).astype(np.float32)


def flow_clip(frames: np.ndarray, method: str = "tvl1", *, reference: str = "previous") -> np.ndarray:
    """Flow for every frame pair of a clip, for 3D models: float32 (T−1, H, W, 3) of (u, v, strain).

    ``frames`` (T, H, W[, C]) uint8, e.g. a preprocessed clip. ``reference='previous'`` pairs frame t with
    t+1; ``'first'`` pairs the first frame (the onset after temporal normalisation) with every later frame.
    """
    if reference not in ("previous", "first"):
        raise FlowError(f"reference={reference!r}; expected 'previous' or 'first'")
    if len(frames) < 2:
        raise FlowError(f"a flow clip needs at least 2 frames, got {len(frames)}")
    out = [
        flow_features(frames[0] if reference == "first" else frames[t - 1], frames[t], method)
        for t in range(1, len(frames))
    ]
    return np.stack(out)  # T-1 x (H, W, 3) -> (T-1, H, W, 3)


# ---------------------------------------------------------------------------------------------------------
# 28x28 PNG interchange


def normalise_flow_image(features: np.ndarray) -> np.ndarray:
    """Each channel min-max scaled to 0..1 (a constant channel becomes 0): float32, same shape."""
    features = np.asarray(features, dtype=np.float32)
    low = features.min(axis=(0, 1), keepdims=True)
    span = features.max(axis=(0, 1), keepdims=True) - low
    return np.where(span > 0, (features - low) / np.where(span > 0, span, 1.0), 0.0).astype(np.float32)


def write_flow_png(path: str | os.PathLike, features: np.ndarray) -> Path:
    """Write (u, v, strain) float (H, W, 3) as the community's normalised 8-bit PNG (R=u, G=v, B=strain), atomically."""
    path = Path(path)
    features = np.asarray(features)
    if features.ndim != 3 or features.shape[-1] != 3:
        raise FlowError(f"{path}: expected (H, W, 3) (u, v, strain), got {features.shape}")
    pixels = np.rint(normalise_flow_image(features) * 255.0).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.ascontiguousarray(pixels[..., ::-1])  # (u, v, strain) -> OpenCV's (B, G, R) = (strain, v, u)
    ok, encoded = cv2.imencode(".png", pixels)
    if not ok:
        raise FlowError(f"{path}: PNG encoding failed")
    return atomic_write_bytes(path, encoded.tobytes())


def read_flow_png(path: str | os.PathLike) -> np.ndarray:
    """A (u, v, strain) PNG as float32 (H, W, 3) in 0..1; FlowError naming the file when unreadable."""
    path = Path(path)
    data = np.fromfile(path, dtype=np.uint8) if path.is_file() else None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data is not None and data.size else None
    if image is None:
        raise FlowError(f"{path}: missing or not a readable image")
    return image[..., ::-1].astype(np.float32) / 255.0  # OpenCV's (B, G, R) = (strain, v, u) -> (u, v, strain)


def flow_png_name(subject: str, sample: str, *, space: bool = True) -> str:
    """The community's file name ``<subject>_<sample> .png`` (note the space before the extension)."""
    return f"{subject}_{sample}{' ' if space else ''}.png"


def export_flow_folder(
    folder: str | os.PathLike,
    features: np.ndarray,
    subjects: list[str] | pd.Series,
    samples: list[str] | pd.Series,
    *,
    space: bool = True,
) -> list[Path]:
    """Write one PNG per sample, named by :func:`flow_png_name`; ``features`` (N, H, W, 3)."""
    folder = Path(folder)
    subjects, samples = list(subjects), list(samples)
    if not len(features) == len(subjects) == len(samples):
        raise FlowError(f"{len(features)} flow images for {len(subjects)} subjects and {len(samples)} samples")
    return [
        write_flow_png(folder / flow_png_name(str(s), str(c), space=space), f)
        for f, s, c in zip(features, subjects, samples)
    ]


# Column names seen in the composite CSVs that list such folders (MEGC2019 / HTNet style), lower case.
_SUBJECT_COLUMNS = ("sub", "subject", "subjects")
_SAMPLE_COLUMNS = ("filename_o", "filename", "sample", "clip", "imagename", "video")
_LABEL_COLUMNS = ("label", "labels", "class", "emotion_label")
_DATASET_COLUMNS = ("dataset", "database", "source")


def _pick(columns: dict[str, str], candidates: tuple[str, ...], given: str | None, what: str, csv: Path) -> str | None:
    if given is not None:
        if given not in columns.values():
            raise FlowError(f"{csv}: no column {given!r} ({what}); columns are {list(columns.values())}")
        return given
    for name in candidates:
        if name in columns:
            return columns[name]
    return None


def _listing_table(listing: str | os.PathLike | pd.DataFrame) -> tuple[pd.DataFrame, str]:
    if isinstance(listing, pd.DataFrame):
        return listing, "<listing DataFrame>"
    where = Path(listing)
    if not where.is_file():
        raise FlowError(f"flow listing not found: {where}")
    try:
        table = pd.read_csv(where, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as error:
        raise FlowError(f"{where}: not a readable CSV listing ({error})") from None
    table.columns = [str(c).strip() for c in table.columns]  # headers written "dataset, sub, filename_o, ..."
    return table, str(where)


def read_flow_listing(
    folder: str | os.PathLike,
    listing: str | os.PathLike | pd.DataFrame,
    *,
    subject_column: str | None = None,
    sample_column: str | None = None,
    label_column: str | None = None,
) -> pd.DataFrame:
    """The rows of a flow folder's listing, each matched to its image file, without reading the images.

    ``listing`` is a CSV path or DataFrame: the HTNet-style composite list (header ``dataset, sub,
    filename_o, label, apex, imagename, sub_filename``) or any CSV with subject / sample (and label,
    dataset) columns, matched case-insensitively or named explicitly. A row's file is, in this order: the
    ``imagename`` cell when the listing has one and it names a file in ``folder`` (ASSUMPTION: in the
    composite list it is the image's file name, with or without ``.png``), else ``<subject>_<sample> .png``
    with or without the space. Returns ``subject``, ``sample``, ``path`` (absolute), ``row`` (the CSV line,
    header = line 1) and, when listed, ``label`` (text as written) and ``dataset``. A row whose file is
    missing raises :class:`FlowError` naming the listing, the line, the sample and every file tried.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FlowError(f"flow folder not found: {folder}")
    table, where = _listing_table(listing)
    columns = {str(c).strip().lower(): c for c in table.columns}
    subject_col = _pick(columns, _SUBJECT_COLUMNS, subject_column, "subject", Path(where))
    sample_col = _pick(columns, _SAMPLE_COLUMNS, sample_column, "sample", Path(where))
    label_col = _pick(columns, _LABEL_COLUMNS, label_column, "label", Path(where))
    dataset_col = _pick(columns, _DATASET_COLUMNS, None, "dataset", Path(where))
    image_col = columns.get("imagename") if columns.get("imagename") != sample_col else None
    if subject_col is None or sample_col is None:
        raise FlowError(f"{where}: cannot tell the subject and sample columns apart in {list(table.columns)}")
    if table.empty:
        raise FlowError(f"{where}: the listing has no rows")
    rows = []
    for number, (_, row) in enumerate(table.iterrows()):
        line = number + 2  # the header is line 1
        subject, sample = str(row[subject_col]).strip(), str(row[sample_col]).strip()
        candidates = []
        if image_col is not None and str(row[image_col]).strip():
            named = str(row[image_col]).strip()
            candidates += (
                [folder / named]
                if named.lower().endswith(".png")
                else [folder / f"{named} .png", folder / f"{named}.png"]
            )
        candidates += [folder / flow_png_name(subject, sample, space=s) for s in (True, False)]
        path = next((p for p in candidates if p.is_file()), None)
        if path is None:
            raise FlowError(
                f"{where} line {line}: subject {subject!r} sample {sample!r}: none of "
                f"{[str(p) for p in dict.fromkeys(candidates)]} exists"
            )
        record = {"subject": subject, "sample": sample, "path": str(path), "row": line}
        if label_col is not None:
            record["label"] = str(row[label_col]).strip()
        if dataset_col is not None:
            record["dataset"] = str(row[dataset_col]).strip()
        rows.append(record)
    return pd.DataFrame(rows)


def import_flow_folder(
    folder: str | os.PathLike,
    listing: str | os.PathLike | pd.DataFrame | None = None,
    *,
    subject_column: str | None = None,
    sample_column: str | None = None,
    label_column: str | None = None,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Read a folder of 28×28 (u, v, strain) PNGs: ``(images float32 (N, H, W, 3) in 0..1, index)``.

    With ``listing`` (see :func:`read_flow_listing`) the rows are read in the listing's order. Without a
    listing every ``*.png`` is read in sorted order and ``sample`` is the file stem. ``index`` has
    ``subject``, ``sample``, ``path`` and, when listed, ``label`` (Int64) and ``dataset``. A listed file that
    is missing or unreadable raises FlowError naming the sample and the file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FlowError(f"flow folder not found: {folder}")
    if listing is None:
        paths = sorted(folder.glob("*.png"))
        if not paths:
            raise FlowError(f"{folder}: no .png files")
        index = pd.DataFrame(
            {"subject": [""] * len(paths), "sample": [p.stem.strip() for p in paths], "path": [str(p) for p in paths]}
        )
        return np.stack([read_flow_png(p) for p in paths]), index
    index = read_flow_listing(
        folder, listing, subject_column=subject_column, sample_column=sample_column, label_column=label_column
    )
    images = read_flow_images(index)
    index = index.drop(columns=["row"])
    if "label" in index:
        index["label"] = pd.to_numeric(index["label"], errors="coerce").astype("Int64")
    return images, index


def read_flow_images(index: pd.DataFrame) -> np.ndarray:
    """The images of a :func:`read_flow_listing` index, float32 (N, H, W, 3) (u, v, strain) in 0..1.

    An unreadable file or images of different sizes raise FlowError naming the sample and the file."""
    images = []
    for _, row in index.iterrows():
        try:
            images.append(read_flow_png(row["path"]))
        except FlowError as error:
            raise FlowError(f"subject {row['subject']!r} sample {row['sample']!r}: {error}") from None
    shapes = {image.shape for image in images}
    if len(shapes) > 1:
        first = {shape: row for shape, row in zip((i.shape for i in images), index["path"])}
        raise FlowError(f"flow images of different sizes: {[(s, first[s]) for s in sorted(first)]}")
    return np.stack(images)


#: Header of the HTNet-style composite listing (as the community folders ship it), written with ", " separators.
COMPOSITE_LISTING_COLUMNS = ("dataset", "sub", "filename_o", "label", "apex", "imagename", "sub_filename")
_LISTING_DATASET_NAMES = {"smic_hs": "smic"}  # the MEGC2019 ground truth's database names


def export_flow_release(
    folder: str | os.PathLike, features: np.ndarray, index: pd.DataFrame, *, listing_name: str = "listing.csv"
) -> Path:
    """Write a flow folder as the community circulates them: one ``<subject>_<sample> .png`` per row of
    ``index`` (columns ``subject``, ``sample``, ``label``, optional ``dataset`` and ``apex``) from ``features``
    (N, H, W, 3) (u, v, strain), plus the composite listing CSV (header :data:`COMPOSITE_LISTING_COLUMNS`,
    ``", "``-separated like the circulating one). ASSUMPTION: ``imagename`` and ``sub_filename`` hold the
    file stem ``<subject>_<sample>``; what the real list writes there is not known to us, and the importer
    does not need it. Returns the listing's path."""
    folder = Path(folder)
    export_flow_folder(folder, features, index["subject"].astype(str), index["sample"].astype(str))
    lines = [", ".join(COMPOSITE_LISTING_COLUMNS)]
    for _, row in index.iterrows():
        dataset = str(row.get("dataset", ""))
        stem = f"{row['subject']}_{row['sample']}"
        apex = row.get("apex_used", row.get("apex", ""))
        apex = "" if apex is None or pd.isna(apex) else str(int(apex))
        cells = [
            _LISTING_DATASET_NAMES.get(dataset, dataset),
            str(row["subject"]),
            str(row["sample"]),
            str(int(row["label"])),
            apex,
            stem,
            stem,
        ]
        lines.append(",".join(cells))
    path = folder / listing_name
    return atomic_write_text(path, "\n".join(lines) + "\n")
