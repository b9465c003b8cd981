"""merkit.data.io: frame numbers, numeric order, selection by frame number, videos, and every read error."""

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from merkit.data.io import ClipReadError, frame_number, list_frames, read_clip, read_sample


def _frame(value: int, size: int = 8) -> np.ndarray:
    """An RGB frame whose three channels differ, so a BGR/RGB swap would show."""
    frame = np.zeros((size, size, 3), np.uint8)
    frame[..., 0] = value
    frame[..., 1] = (value * 3) % 256
    frame[..., 2] = 255 - value
    return frame


def _write_folder(folder: Path, numbers, pattern: str = "img{n}.png") -> dict[int, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    drawn = {}
    for n in numbers:
        drawn[n] = _frame(n % 200)
        cv2.imwrite(str(folder / pattern.format(n=n)), cv2.cvtColor(drawn[n], cv2.COLOR_RGB2BGR))
    return drawn


def _write_video(path: Path, count: int, fourcc: str) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 30, (32, 32))
    for i in range(count):
        writer.write(np.full((32, 32, 3), i * 10, np.uint8))
    writer.release()


@pytest.mark.parametrize(
    "name, number",
    [("img46.jpg", 46), ("reg_img46.jpg", 46), ("006_05562.jpg", 5562), ("image106522.bmp", 106522), ("17.jpg", 17)],
)
def test_frame_number_reads_the_last_number_of_the_stem(name, number):
    assert frame_number(name) == number


def test_frame_number_without_digits_is_a_value_error():
    with pytest.raises(ValueError, match="cover.jpg"):
        frame_number("cover.jpg")


def test_list_frames_sorts_numerically_and_ignores_non_images(tmp_path):
    _write_folder(tmp_path, [10, 9, 100, 11])
    (tmp_path / "Thumbs.db").write_bytes(b"x")
    assert [n for n, _ in list_frames(tmp_path)] == [9, 10, 11, 100]


def test_list_frames_rejects_two_files_with_the_same_number(tmp_path):
    _write_folder(tmp_path, [46])
    _write_folder(tmp_path, [46], pattern="img0{n}.png")
    with pytest.raises(ClipReadError, match="frame 46"):
        list_frames(tmp_path)


def test_read_clip_selects_by_frame_number_not_position(tmp_path):
    drawn = _write_folder(tmp_path / "EP02_01f", range(46, 56))
    clip = read_clip(tmp_path / "EP02_01f", 48, 50)
    assert clip.numbers.dtype == np.int64 and clip.numbers.tolist() == [48, 49, 50]
    assert clip.frames.dtype == np.uint8 and clip.frames.shape == (3, 8, 8, 3)
    np.testing.assert_array_equal(clip.frames, np.stack([drawn[48], drawn[49], drawn[50]]))


def test_read_clip_without_range_reads_the_whole_folder_across_digit_counts(tmp_path):
    _write_folder(tmp_path, range(8, 12), pattern="reg_img{n}.png")
    assert read_clip(tmp_path).numbers.tolist() == [8, 9, 10, 11]


def test_grey_frames_are_returned_as_rgb(tmp_path):
    cv2.imwrite(str(tmp_path / "img1.png"), np.full((4, 5), 77, np.uint8))
    clip = read_clip(tmp_path)
    assert clip.frames.shape == (1, 4, 5, 3) and (clip.frames == 77).all()


def test_missing_frame_inside_the_range_names_frame_and_sample(tmp_path):
    _write_folder(tmp_path, [1, 2, 4, 5])
    with pytest.raises(ClipReadError, match=r"sample casme2/01/EP01_01.*missing.*: 3") as error:
        read_clip(tmp_path, 1, 5, sample="casme2/01/EP01_01")
    assert error.value.sample == "casme2/01/EP01_01"


def test_missing_folder_names_folder_and_sample(tmp_path):
    with pytest.raises(ClipReadError, match=r"sample s1: frame folder not found: .*nowhere"):
        read_clip(tmp_path / "nowhere", 1, 2, sample="s1")


def test_truncated_jpeg_is_an_error_naming_the_file(tmp_path):
    rng = np.random.default_rng(0)
    cv2.imwrite(str(tmp_path / "img1.jpg"), rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    cv2.imwrite(str(tmp_path / "img2.jpg"), rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    data = (tmp_path / "img2.jpg").read_bytes()
    (tmp_path / "img2.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(ClipReadError, match=r"sample x: unreadable image .*img2\.jpg"):
        read_clip(tmp_path, 1, 2, sample="x")


def test_garbage_image_is_an_error(tmp_path):
    (tmp_path / "img1.bmp").write_bytes(b"not an image")
    with pytest.raises(ClipReadError, match=r"img1\.bmp"):
        read_clip(tmp_path)


def test_frames_of_different_sizes_are_an_error(tmp_path):
    cv2.imwrite(str(tmp_path / "img1.png"), np.zeros((4, 4, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "img2.png"), np.zeros((5, 4, 3), np.uint8))
    with pytest.raises(ClipReadError, match="different sizes"):
        read_clip(tmp_path)


def test_onset_after_offset_is_an_error(tmp_path):
    _write_folder(tmp_path, [1, 2])
    with pytest.raises(ClipReadError, match="after offset"):
        read_clip(tmp_path, 2, 1)


@pytest.mark.parametrize("suffix, fourcc", [(".mp4", "mp4v"), (".avi", "MJPG")])
def test_video_frame_number_is_the_zero_based_index(tmp_path, suffix, fourcc):
    path = tmp_path / f"EP01_01{suffix}"
    _write_video(path, 12, fourcc)
    clip = read_clip(path, 3, 6)
    assert clip.numbers.tolist() == [3, 4, 5, 6]
    assert clip.frames.shape == (4, 32, 32, 3) and clip.frames.dtype == np.uint8
    # lossy codecs: each frame's mean is within a few levels of what was drawn (i * 10)
    np.testing.assert_allclose(clip.frames.mean(axis=(1, 2, 3)), [30, 40, 50, 60], atol=4)
    assert read_clip(path).numbers.tolist() == list(range(12))


@pytest.mark.parametrize("suffix, fourcc", [(".mp4", "mp4v"), (".avi", "MJPG")])
def test_truncated_video_is_an_error_naming_file_and_sample(tmp_path, suffix, fourcc):
    path = tmp_path / f"clip{suffix}"
    _write_video(path, 20, fourcc)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ClipReadError, match=rf"sample synthme/05/EP01_01: .*clip\{suffix}"):
        read_clip(path, 0, 19, sample="synthme/05/EP01_01")


def test_range_beyond_the_video_is_an_error(tmp_path):
    path = tmp_path / "v.avi"
    _write_video(path, 5, "MJPG")
    with pytest.raises(ClipReadError, match="has 5 frames"):
        read_clip(path, 2, 9, sample="v")


def test_missing_video_is_an_error(tmp_path):
    with pytest.raises(ClipReadError, match=r"video not found: .*gone\.mp4"):
        read_clip(tmp_path / "gone.mp4", sample="v")


def test_read_sample_reads_the_row_relative_to_the_data_root(tmp_path):
    drawn = _write_folder(tmp_path / "sub01" / "EP02_01f", range(1, 6))
    row = pd.Series(
        {"dataset": "casme2", "subject": "01", "sample": "EP02_01f", "path": "sub01/EP02_01f", "onset": 2, "offset": 4}
    )
    clip = read_sample(row, tmp_path)
    np.testing.assert_array_equal(clip.frames, np.stack([drawn[2], drawn[3], drawn[4]]))
    with pytest.raises(ClipReadError, match="casme2/01/EP02_01f"):
        read_sample({**row.to_dict(), "offset": 9}, tmp_path)
