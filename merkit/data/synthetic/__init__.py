"""SynthME: a generated micro-expression dataset written exactly like CASME II, with known motion.

SynthME lets every notebook and test run without a licensed dataset. Each subject is a procedurally drawn,
already face-cropped face (the face fills the frame, like CASME II's Cropped release) whose shape, skin tone
and texture, eye/brow/mouth geometry and colours differ from subject to subject. Each clip runs
neutral -> onset -> apex -> offset -> neutral at a high frame rate, and the class is defined only by a
subtle LOCAL motion of at most ``motion_amplitude`` pixels:

==========  ===============  =======================================================
emotion     action units     motion
==========  ===============  =======================================================
happiness   ``12``           lip-corner puller: both mouth corners up and outward
disgust     ``4``            brow lowerer: inner brows down and towards the midline
surprise    ``1+2``          inner + outer brow raiser: both brows up
==========  ===============  =======================================================

Class-independent nuisances: blinks, a small global head drift, illumination flicker, a per-clip lighting
gradient, a per-clip crop offset of a pixel or two, and sensor noise. Per-subject geometry varies more than
the motion, so a classifier that sees only the apex frame cannot simply read the class off the face; the
onset -> apex change carries it.

On disk (``generate_synthme``), in the real CASME II form so that the dataset builders read it like real
data::

    root/
      SynthME-coding.xlsx          first sheet, CASME II 2014 header (Subject, Filename, <blank>, OnsetFrame,
                                   ApexFrame, OffsetFrame, <blank>, Action Units, Estimated Emotion)
      sub01/EP01_01/img137.jpg ... frame folders; numbers start at an arbitrary offset per clip
      sub05/EP01_01.mp4            video subjects (mp4v); the sheet's frame numbers are 0-based indices
      masks/01_EP01_01.png         ground-truth motion region of each clip (0/255, H x W)
      masks/motion_regions.csv     one row per clip: region, bounding box, peak displacement
      synthme_complete.json        completion marker holding the config (written last)

Generation is deterministic from ``SynthMEConfig.seed``: every random draw comes from a generator seeded by
``(seed, subject, clip, ...)``, so a clip looks the same whatever the number of subjects, and
``render_clip`` re-draws any clip in memory bit for bit (the round-trip tests compare against it).

Axis letters: T frames, H height, W width, 3 RGB channels.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from merkit.data.io import read_clip, video_backend
from merkit.data.synthetic.config import CLASS_ACTION_UNITS, EMOTIONS, SynthMEConfig
from merkit.data.synthetic.releases import (
    RELEASE_KINDS,
    TRUTH_DIR,
    ReleaseExistsError,
    has_motion_masks,
    load_release_mask,
    release_info,
    write_release,
)
from merkit.data.synthetic.render import (
    MOTIONS,
    ClipSpec,
    RenderedClip,
    clip_spec,
    list_clips,
    render_clip,
    render_motion_clip,
    subject_number,
)
from merkit.errors import MerkitFileExistsError

__all__ = [
    "linear_probe_accuracies",
    "CLASS_ACTION_UNITS",
    "COMPLETION_MARKER",
    "EMOTIONS",
    "FORMAT_VERSION",
    "MASK_CSV",
    "SHEET_HEADER",
    "SHEET_NAME",
    "ClipSpec",
    "RenderedClip",
    "SynthMEConfig",
    "SynthMEExistsError",
    "clip_spec",
    "generate_synthme",
    "list_clips",
    "load_motion_mask",
    "render_clip",
    "render_motion_clip",
    "MOTIONS",
    "RELEASE_KINDS",
    "TRUTH_DIR",
    "ReleaseExistsError",
    "has_motion_masks",
    "load_release_mask",
    "release_info",
    "write_release",
]

#: File name of the coding sheet, in the place CASME II keeps its sheet.
SHEET_NAME = "SynthME-coding.xlsx"
#: The CASME II 2014 coding sheet header; ``None`` is a blank header cell, as in the real sheet.
SHEET_HEADER: tuple[str | None, ...] = (
    "Subject",
    "Filename",
    None,
    "OnsetFrame",
    "ApexFrame",
    "OffsetFrame",
    None,
    "Action Units",
    "Estimated Emotion",
)
#: Written last into the tree; holds the config. A tree without it is not a finished SynthME.
COMPLETION_MARKER = "synthme_complete.json"
#: Per-clip ground truth table, next to the mask images.
MASK_CSV = "masks/motion_regions.csv"
#: Bumped when the drawing changes so that an old tree is not mistaken for the current one.
FORMAT_VERSION = 1


class SynthMEExistsError(MerkitFileExistsError):
    """The root holds something other than the SynthME tree asked for (and ``overwrite`` was not given)."""


# --------------------------------------------------------------------------------------------------------
# Writing the tree
# --------------------------------------------------------------------------------------------------------


def _mask_name(subject: str, sample: str) -> str:
    return f"masks/{subject}_{sample}.png"


def _write_frames(folder: Path, clip: RenderedClip, config: SynthMEConfig) -> None:
    folder.mkdir(parents=True)
    params = (
        [cv2.IMWRITE_JPEG_QUALITY, config.jpeg_quality]
        if config.frame_format == "jpg"
        else [cv2.IMWRITE_PNG_COMPRESSION, 3]
    )
    for number, frame in zip(clip.numbers, clip.frames):
        path = folder / f"img{number}.{config.frame_format}"
        if not cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), params):
            raise OSError(f"could not write frame {path}")


def _write_video(path: Path, clip: RenderedClip, config: SynthMEConfig) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), config.fps, (config.size, config.size))
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot open a mp4v VideoWriter for {path}")
    try:
        for frame in clip.frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    _check_video_decodes(path, len(clip.frames))


def _check_video_decodes(path: Path, n_frames: int) -> None:
    """Fail at generation, not in training, when decord cannot read the video back.

    decord 0.6.0 fails on some mp4v frame sizes (48 and 72 px do; 40, 56, 64, 80, 96, 112, 128 work). Without
    decord (no wheel on this platform) the video is read back the way the kit will read it: through OpenCV.
    """
    if video_backend() == "opencv":
        try:
            length = len(read_clip(path).frames)
        except Exception as error:  # noqa: BLE001 - ClipReadError, named below
            raise OSError(f"OpenCV cannot read the SynthME video {path} back ({error})") from None
        if length != n_frames:
            raise OSError(f"SynthME video {path} decodes to {length} frames, {n_frames} were written")
        return
    import decord

    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
        length = len(reader)
        reader.get_batch([0, length - 1]).asnumpy()
    except Exception as error:  # decord raises DECORDError/RuntimeError with a C++ trace
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise OSError(
            f"decord cannot read the SynthME video {path} back ({first_line[-120:]}); "
            "choose another `size` (e.g. 64, 96 or 128) or no video_subjects"
        ) from None
    if length != n_frames:
        raise OSError(f"SynthME video {path} decodes to {length} frames, {n_frames} were written")


def _write_sheet(path: Path, clips: Sequence[ClipSpec]) -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "Sheet1"
    sheet.append(list(SHEET_HEADER))
    for spec in clips:
        # Videos: frame numbers are 0-based indices (first_number is 0), as the video reader numbers them.
        sheet.append(
            [spec.subject, spec.sample, None, spec.onset, spec.apex, spec.offset, None]
            + [spec.action_units_text, spec.emotion]
        )
    book.save(path)


def _bounding_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _read_marker(root: Path) -> dict | None:
    try:
        return json.loads((root / COMPLETION_MARKER).read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as error:
        raise SynthMEExistsError(f"unreadable SynthME completion marker {root / COMPLETION_MARKER}: {error}") from None


def _marker_for(config: SynthMEConfig) -> dict:
    return {"generator": "merkit.data.synthetic", "format_version": FORMAT_VERSION, "config": config.to_dict()}


def _describe_difference(old: dict, new: dict) -> str:
    if old.get("format_version") != new["format_version"]:
        return f"format_version {old.get('format_version')} != {new['format_version']}"
    old_cfg, new_cfg = old.get("config", {}), new["config"]
    changed = [f"{k}: {old_cfg.get(k)!r} -> {new_cfg[k]!r}" for k in new_cfg if old_cfg.get(k) != new_cfg[k]]
    return "; ".join(changed) or "unknown difference"


def _remove_stale_temporaries(root: Path) -> None:
    """Delete build directories left by crashed runs (their process is gone); never another live build."""
    for tmp in root.parent.glob(f".{root.name}.synthme-build-*"):
        match = re.search(r"-build-(\d+)-", tmp.name)
        if match is None:
            continue
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            shutil.rmtree(tmp, ignore_errors=True)
        except PermissionError:  # alive, someone else's
            pass


def generate_synthme(
    root: str | PathLike, config: SynthMEConfig = SynthMEConfig(), *, overwrite: bool = False, progress: bool = True
) -> Path:
    """Write the SynthME tree for `config` at `root` and return `root` as a Path.

    Idempotent: if `root` already holds a finished tree (its completion marker) with the same config,
    return at once without touching it. If it holds a different config (or an older format), raise
    :class:`SynthMEExistsError` naming the differences, unless `overwrite` is true, in which case the old
    tree is replaced. A non-empty `root` that is not a SynthME tree is never deleted (SynthMEExistsError).

    Atomic: the tree is built in a temporary directory next to `root` and renamed into place with the
    completion marker already inside, so a crash never leaves a tree at `root` that looks complete.
    """
    root = Path(root)
    wanted = _marker_for(config)
    existing = _read_marker(root) if root.is_dir() else None
    if existing is not None:
        if existing == wanted:
            return root
        if not overwrite:
            raise SynthMEExistsError(
                f"{root} already holds SynthME generated with a different config "
                f"({_describe_difference(existing, wanted)}); pass overwrite=True or use another root"
            )
    elif root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise SynthMEExistsError(
            f"{root} exists and is not a SynthME tree (no {COMPLETION_MARKER}); refusing to write there"
        )

    root.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(root)
    build = Path(tempfile.mkdtemp(prefix=f".{root.name}.synthme-build-{os.getpid()}-", dir=root.parent))
    try:
        _build_tree(build, config, progress)
        (build / COMPLETION_MARKER).write_text(json.dumps(wanted, indent=2) + "\n")
        _move_into_place(build, root, wanted)
    finally:
        if build.exists():
            shutil.rmtree(build, ignore_errors=True)
    return root


def _probe_video_size(build: Path, config: SynthMEConfig) -> None:
    """Write and read back a 3-frame grey video first: a size decord cannot read fails in a second, not midway."""
    probe = build / "probe.mp4"
    writer = cv2.VideoWriter(str(probe), cv2.VideoWriter_fourcc(*"mp4v"), config.fps, (config.size, config.size))
    if not writer.isOpened():
        raise OSError(f"OpenCV cannot open a mp4v VideoWriter for {probe}")
    for level in (64, 128, 192):
        writer.write(np.full((config.size, config.size, 3), level, np.uint8))
    writer.release()
    _check_video_decodes(probe, 3)
    probe.unlink()


def _build_tree(build: Path, config: SynthMEConfig, progress: bool) -> None:
    clips = list_clips(config)
    if any(spec.is_video for spec in clips):
        _probe_video_size(build, config)
    (build / "masks").mkdir()
    rows = []
    for spec in tqdm(clips, desc="SynthME", unit="clip", disable=not progress):
        clip = render_clip(config, spec.subject, spec.sample)
        if spec.is_video:
            _write_video(build / spec.path, clip, config)
        else:
            _write_frames(build / spec.path, clip, config)
        mask_name = _mask_name(spec.subject, spec.sample)
        cv2.imwrite(str(build / mask_name), clip.mask.astype(np.uint8) * 255)
        x0, y0, x1, y1 = _bounding_box(clip.mask)
        rows.append(
            {
                "subject": spec.subject,
                "sample": spec.sample,
                "path": spec.path,
                "emotion": spec.emotion,
                "action_units": spec.action_units_text,
                "onset": spec.onset,
                "apex": spec.apex,
                "offset": spec.offset,
                "mask": mask_name,
                "mask_pixels": int(clip.mask.sum()),
                "x0": x0,
                "y0": y0,
                "x1": x1,
                "y1": y1,
                "peak_displacement_px": round(float(np.linalg.norm(clip.displacement, axis=-1).max()), 4),
            }
        )
    with open(build / MASK_CSV, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    _write_sheet(build / SHEET_NAME, clips)


def _move_into_place(build: Path, root: Path, wanted: dict) -> None:
    """Rename the finished build onto `root`, replacing an old SynthME tree or an empty directory."""
    if root.is_dir() and _read_marker(root) is not None:
        # Replacing an old tree (overwrite was checked by the caller): move it aside, then swap.
        trash = root.parent / f".{root.name}.synthme-old-{os.getpid()}"
        os.replace(root, trash)
        try:
            os.replace(build, root)
        except OSError:
            os.replace(trash, root)  # put the old tree back rather than leave nothing
            raise
        shutil.rmtree(trash, ignore_errors=True)
        return
    try:
        os.replace(build, root)  # POSIX rename also replaces an empty directory
    except OSError:
        # Another process finished the same root first: fine if it wrote what we wanted.
        if _read_marker(root) != wanted:
            raise


def load_motion_mask(root: str | PathLike, subject: str | int, sample: str, dataset: str | None = None) -> np.ndarray:
    """Ground-truth motion region of one clip, bool (H, W), read from ``root/masks/<subject>_<sample>.png``.

    For an emulated release (:func:`write_release`; ``root/synthme_truth``) it reads the release's side
    files instead (:func:`load_release_mask`, in the release's frame coordinates; ``dataset`` picks the part
    of a MEGC2019 composite).

    The region is where the class-defining displacement at the apex reaches 25 % of its peak, in the clip's
    own pixel grid (same H, W as its frames, crop offset included; resize it like the frames when they are
    resized). It is the same in every frame: the global head drift (at most ``head_drift`` px) is left out.
    `subject` may be ``"01"``, ``1`` or ``"sub01"``. Raises FileNotFoundError naming root, subject and sample.
    """
    if (Path(root) / TRUTH_DIR / "motion_regions.csv").is_file():
        return load_release_mask(root, subject, sample, dataset)
    number = subject_number(subject)
    path = Path(root) / _mask_name(f"{number:02d}", sample)
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) if path.is_file() else None
    if mask is None:
        raise FileNotFoundError(
            f"no SynthME motion mask for subject {number:02d} sample {sample} under {root} ({path})"
        )
    return mask > 127


def linear_probe_accuracies(config: SynthMEConfig = SynthMEConfig()) -> tuple[float, float]:
    """How learnable ``config`` is: leave-one-subject-out accuracy of a logistic regression on raw pixels.

    Returns ``(apex_alone, apex_minus_onset)``. A good SynthME is learnable but not trivial: the apex frame
    alone should stay far from 1.0 (subjects differ more than the motion), while the onset→apex change should
    score clearly above chance (1/3). Frames are drawn in memory (nothing written) and averaged down to
    32 × 32 grey pixels to keep the probe quick.
    """
    from sklearn.linear_model import LogisticRegression

    apex, change, labels, groups = [], [], [], []
    for spec in list_clips(config):
        clip = render_clip(config, spec.subject, spec.sample, frames=[spec.onset_index, spec.apex_index])
        grey = clip.frames.astype(np.float32).mean(-1) / 255  # (2, H, W, 3) -> (2, H, W)
        small = np.stack([cv2.resize(g, (32, 32), interpolation=cv2.INTER_AREA) for g in grey])  # (2, 32, 32)
        apex.append(small[1].ravel())
        change.append((small[1] - small[0]).ravel())
        labels.append(EMOTIONS.index(spec.emotion))
        groups.append(spec.subject)
    y, g = np.array(labels), np.array(groups)

    def loso_accuracy(features: list[np.ndarray]) -> float:
        x = np.stack(features)
        predicted = np.empty_like(y)
        for subject in np.unique(g):
            train = g != subject
            centred = x - x[train].mean(0)  # centred on the training subjects only
            model = LogisticRegression(max_iter=1000).fit(centred[train], y[train])
            predicted[~train] = model.predict(centred[~train])
        return float((predicted == y).mean())

    return loso_accuracy(apex), loso_accuracy(change)
