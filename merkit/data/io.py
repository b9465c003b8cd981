"""Reading clips: frame folders (jpg/png/bmp) and video files (mp4/avi through decord, or OpenCV without it).

Videos are decoded by decord where it is installed (it has wheels for x86-64 Linux, Windows and Intel macOS
only; requirements.txt installs it there) and by OpenCV's VideoCapture elsewhere (e.g. macOS on Apple
silicon, aarch64 Linux); the switch is said once, as a warning. Both return RGB frames by 0-based index.

Axis letters: T frames, H height, W width, 3 RGB channels.

Frame numbers are the absolute frame numbers the annotation sheets use: for a folder they are parsed
from the file names (``img46.jpg``, ``reg_img46.jpg``, ``006_05562.jpg``, ``image106522.bmp`` -> 46, 46,
5562, 106522) and sorted numerically (``img9`` before ``img10``); for a video the frame number is the
0-based index of the decoded frame. A clip is selected by onset/offset frame NUMBERS, never by positions
in a sorted list, so a folder that starts at ``img46`` is read correctly with ``onset=46``.

Every failure is a :class:`ClipReadError` naming the file and, when given, the sample.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from merkit.data.flow import FlowError, read_flow_png
from merkit.errors import MerkitError

FRAME_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
VIDEO_EXTENSIONS = (".mp4", ".avi")

_LAST_NUMBER = re.compile(r"(\d+)(?!.*\d)")


class ClipReadError(MerkitError):
    """A clip could not be read. ``path`` is the offending file or folder, ``sample`` the sample id (or None)."""

    def __init__(self, message: str, *, path: str | PathLike | None = None, sample: str | None = None) -> None:
        self.path = None if path is None else Path(path)
        self.sample = sample
        where = f"sample {sample}: " if sample else ""
        super().__init__(f"{where}{message}")


class Clip(NamedTuple):
    """Frames of one clip and the frame number of each.

    ``frames`` uint8 ``(T, H, W, 3)`` RGB; ``numbers`` int64 ``(T,)``, strictly increasing.
    """

    frames: np.ndarray
    numbers: np.ndarray


def frame_number(filename: str | PathLike) -> int:
    """The frame number in a frame file's name: the last run of digits of its stem.

    ``img46.jpg`` -> 46, ``reg_img46.jpg`` -> 46, ``006_05562.jpg`` -> 5562 (the subject prefix is not the
    frame), ``image106522.bmp`` -> 106522, ``17.jpg`` -> 17. Raises ``ValueError`` when the stem has no digits.
    """
    stem = Path(filename).stem
    match = _LAST_NUMBER.search(stem)
    if match is None:
        raise ValueError(f"no frame number in file name {Path(filename).name!r}")
    return int(match.group(1))


def is_video(path: str | PathLike) -> bool:
    """True when ``path`` names a video file (by extension), whether or not it exists."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def list_frames(folder: str | PathLike, *, sample: str | None = None) -> list[tuple[int, Path]]:
    """Frame files of ``folder`` as ``(frame_number, path)`` in numeric order.

    Only image files count (other files such as ``Thumbs.db`` are ignored). Raises :class:`ClipReadError`
    when the folder does not exist, when an image name has no number, or when two files share a number
    (``img046.jpg`` and ``img46.jpg``), since either would make frame selection ambiguous.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ClipReadError(f"frame folder not found: {folder}", path=folder, sample=sample)
    frames: dict[int, Path] = {}
    for file in folder.iterdir():
        if file.suffix.lower() not in FRAME_EXTENSIONS or not file.is_file():
            continue
        try:
            number = frame_number(file)
        except ValueError:
            raise ClipReadError(f"frame file without a frame number: {file}", path=file, sample=sample) from None
        if number in frames:
            raise ClipReadError(
                f"two files hold frame {number}: {frames[number].name} and {file.name} in {folder}",
                path=folder,
                sample=sample,
            )
        frames[number] = file
    return sorted(frames.items())


def _read_image(file: Path, sample: str | None) -> np.ndarray:
    """One image as uint8 (H, W, 3) RGB; truncated or undecodable files raise ClipReadError.

    Pillow is used rather than cv2.imread because OpenCV silently returns a half-grey image for a
    truncated JPEG; Pillow raises.
    """
    from PIL import Image

    try:
        with Image.open(file) as image:
            image.load()
            rgb = image.convert("RGB")
    except (OSError, ValueError, SyntaxError) as error:  # PIL reports corrupt data as any of these
        raise ClipReadError(f"unreadable image {file}: {error}", path=file, sample=sample) from None
    return np.asarray(rgb, dtype=np.uint8)


def _check_range(onset: int | None, offset: int | None, path: Path, sample: str | None) -> None:
    if onset is not None and offset is not None and onset > offset:
        raise ClipReadError(f"onset {onset} is after offset {offset} for {path}", path=path, sample=sample)


def _read_folder(folder: Path, onset: int | None, offset: int | None, sample: str | None) -> Clip:
    frames = list_frames(folder, sample=sample)
    if not frames:
        raise ClipReadError(f"no frame files in {folder}", path=folder, sample=sample)
    first = frames[0][0] if onset is None else int(onset)
    last = frames[-1][0] if offset is None else int(offset)
    by_number = dict(frames)
    # Frame numbers are absolute: every number from onset to offset must exist, a gap is a missing file.
    missing = [n for n in range(first, last + 1) if n not in by_number]
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (" ..." if len(missing) > 5 else "")
        raise ClipReadError(
            f"{len(missing)} frame(s) missing in {folder} between {first} and {last}: {shown}",
            path=folder,
            sample=sample,
        )
    numbers = np.arange(first, last + 1, dtype=np.int64)
    images = [_read_image(by_number[int(n)], sample) for n in numbers]
    shapes = {image.shape for image in images}
    if len(shapes) > 1:
        raise ClipReadError(f"frames of different sizes {sorted(shapes)} in {folder}", path=folder, sample=sample)
    return Clip(np.stack(images), numbers)  # T x (H, W, 3) -> (T, H, W, 3)


_BACKEND_SAID = False


class VideoBackendWarning(UserWarning):
    """decord is not installed: videos are read through OpenCV (said once per process)."""


def video_backend() -> str:
    """``"decord"`` when it can be imported, else ``"opencv"`` (warning once, `VideoBackendWarning`)."""
    global _BACKEND_SAID
    try:
        import decord  # noqa: F401
    except ImportError:
        if not _BACKEND_SAID:
            import warnings

            _BACKEND_SAID = True
            warnings.warn(
                "decord is not installed (it has no wheel for this platform): videos are read through OpenCV instead",
                VideoBackendWarning,
                stacklevel=3,
            )
        return "opencv"
    return "decord"


def _opencv_frames(path: Path, last: int | None) -> list[np.ndarray]:
    """Decode frames 0..last (all when None) with OpenCV, as RGB; stops early at the end of the stream."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise OSError("OpenCV cannot open it")
    frames = []
    try:
        while last is None or len(frames) <= last:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))  # (H, W, 3) BGR -> RGB
    finally:
        capture.release()
    if not frames:
        raise OSError("no frame could be decoded")
    return frames


def video_length(path: str | PathLike, *, sample: str | None = None) -> int:
    """Number of frames a video decodes to; ClipReadError when it cannot be opened."""
    path = Path(path)
    if not path.is_file():
        raise ClipReadError(f"video not found: {path}", path=path, sample=sample)
    if video_backend() == "opencv":
        try:
            return len(_opencv_frames(path, None))
        except OSError as error:
            raise ClipReadError(f"unreadable video {path}: {error}", path=path, sample=sample) from None
    import decord

    try:
        return len(decord.VideoReader(str(path)))
    except Exception as error:  # decord raises DECORDError or RuntimeError for corrupt containers
        raise ClipReadError(f"unreadable video {path}: {_first_line(error)}", path=path, sample=sample) from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _read_video_opencv(path: Path, onset: int | None, offset: int | None, sample: str | None) -> Clip:
    first = 0 if onset is None else int(onset)
    try:
        frames = _opencv_frames(path, None if offset is None else int(offset))
    except OSError as error:
        raise ClipReadError(f"unreadable video {path}: {error}", path=path, sample=sample) from None
    last = len(frames) - 1 if offset is None else int(offset)
    if first < 0 or last >= len(frames):
        raise ClipReadError(
            f"frames {first}..{last} requested but {path} decodes to {len(frames)} frames (0..{len(frames) - 1})",
            path=path,
            sample=sample,
        )
    numbers = np.arange(first, last + 1, dtype=np.int64)
    return Clip(np.ascontiguousarray(np.stack(frames[first : last + 1]), dtype=np.uint8), numbers)  # (T, H, W, 3)


def _read_video(path: Path, onset: int | None, offset: int | None, sample: str | None) -> Clip:
    if not path.is_file():
        raise ClipReadError(f"video not found: {path}", path=path, sample=sample)
    if video_backend() == "opencv":
        return _read_video_opencv(path, onset, offset, sample)
    import decord

    try:
        reader = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
        length = len(reader)
    except Exception as error:
        raise ClipReadError(f"unreadable video {path}: {_first_line(error)}", path=path, sample=sample) from None
    first = 0 if onset is None else int(onset)
    last = length - 1 if offset is None else int(offset)
    if first < 0 or last >= length:
        raise ClipReadError(
            f"frames {first}..{last} requested but {path} has {length} frames (0..{length - 1})",
            path=path,
            sample=sample,
        )
    numbers = np.arange(first, last + 1, dtype=np.int64)
    try:
        frames = reader.get_batch(numbers.tolist()).asnumpy()  # (T, H, W, 3) RGB uint8
    except Exception as error:  # a truncated stream fails here rather than at open
        raise ClipReadError(
            f"could not decode frames {first}..{last} of {path}: {_first_line(error)}", path=path, sample=sample
        ) from None
    if frames.shape[0] != len(numbers):
        raise ClipReadError(
            f"decoded {frames.shape[0]} of {len(numbers)} frames from {path} (truncated video?)",
            path=path,
            sample=sample,
        )
    return Clip(np.ascontiguousarray(frames, dtype=np.uint8), numbers)


def read_clip(
    path: str | PathLike,
    onset: int | None = None,
    offset: int | None = None,
    *,
    sample: str | None = None,
) -> Clip:
    """Read frames ``onset..offset`` (inclusive, frame numbers) of a frame folder or a video file.

    ``onset``/``offset`` None mean the first/last frame. Folders select by the number in the file name and
    require every number in the range to be present; videos (``.mp4``/``.avi``) use the 0-based decoded
    frame index as the frame number. ``sample`` only labels error messages.

    Raises :class:`ClipReadError` for a missing folder or video, a missing frame inside the range, an
    unreadable or truncated image, a truncated or undecodable video, or a range outside the video.
    """
    path = Path(path)
    _check_range(onset, offset, path, sample)
    if is_video(path):
        return _read_video(path, onset, offset, sample)
    return _read_folder(path, onset, offset, sample)


def sample_label(row: Mapping[str, Any]) -> str:
    """``dataset/subject/sample`` of a manifest row, the name errors use."""
    return "/".join(str(row.get(key, "?")) for key in ("dataset", "subject", "sample"))


def read_sample(row: Mapping[str, Any], data_root: str | PathLike) -> Clip:
    """The clip of one manifest row (a pandas Series or a dict): ``data_root / row['path']``, onset..offset.

    A flow-folder row (its path a ``.png``: ``merkit.data.datasets.flow_folder``) has no frames: its "clip" is
    the flow image itself, one RGB frame (R = u, G = v, B = strain, 0..255 as in the file), number 0."""
    path = Path(data_root) / str(row["path"])
    if path.suffix.lower() == ".png":
        try:
            image = read_flow_png(path)  # (F, F, 3) (u, v, strain) in 0..1
        except FlowError as error:
            raise ClipReadError(str(error), path=path, sample=sample_label(row)) from None
        frames = np.rint(image * 255.0).astype(np.uint8)[None]  # (F, F, 3) -> (1, F, F, 3)
        return Clip(frames, np.zeros(1, dtype=np.int64))
    return read_clip(path, int(row["onset"]), int(row["offset"]), sample=sample_label(row))
