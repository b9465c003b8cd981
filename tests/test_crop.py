"""crop='auto': face crops as is, raw frames get the Haar box, no face is an error or a recorded fallback.

The manifests carry the builders' ``cropped`` column; the "faces" are the dark-over-bright blocks that the
tests' one-feature cascade detects (helpers_preprocess), placed inside a larger frame with background the way
a raw CASME II frame holds its face. 01_data and 04_explain on a raw CASME II release (the crop figure, the regions
in the Haar crop) are checked on the emulated-release run of tests/test_release_notebooks.py.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers_preprocess import block_frame, textured_frames, write_block_cascade

from merkit.data.manifest import make_manifest
from merkit.data.preprocess import PreprocessConfig, PreprocessError, preprocess_clip_detailed, resolve_crop
from merkit.data.store import ClipStore, StoreBuildError, build_store, store_key

CLASSES = ["negative", "positive", "surprise"]


def _write_clip(folder: Path, frames: np.ndarray, first: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for k, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"img{first + k}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))


def _row(subject: str, sample: str, **extra) -> dict:
    return dict(
        dataset="toy",
        subject=subject,
        sample=sample,
        path=f"sub{subject}/{sample}",
        onset=1,
        apex=3,
        offset=5,
        fps=200.0,
        emotion="surprise",
        label=2,
        **extra,
    )


@pytest.fixture()
def tree(tmp_path):
    """Three clips: a face crop (texture filling the frame), a raw 120×160 frame with a face block at
    (30, 70), and a raw frame with nothing to detect."""
    root = tmp_path / "data"
    _write_clip(root / "sub01" / "EP01_01", textured_frames(5, 48, 48, seed=1), 1)
    _write_clip(root / "sub02" / "EP01_01", np.stack([block_frame(120, 160, 30, 70) for _ in range(5)]), 1)
    _write_clip(root / "sub03" / "EP01_01", np.full((5, 120, 160, 3), 128, np.uint8), 1)
    return root, write_block_cascade(tmp_path)


def _manifest(rows):
    return make_manifest(rows, dataset="toy", label_map="toy_3class", classes=CLASSES)


def test_auto_is_the_default_and_resolves_per_clip_from_the_cropped_flag():
    config = PreprocessConfig()
    assert config.crop == "auto"
    assert resolve_crop(config, True) == "dataset"
    assert [resolve_crop(config, flag) for flag in (False, None, float("nan"), "False")] == ["haar"] * 4
    assert resolve_crop(config, "True") == "dataset"  # the flag as read back from a CSV
    assert resolve_crop(PreprocessConfig(crop="center"), True) == "center"  # an explicit crop wins


def test_auto_uses_a_face_crop_as_is_and_boxes_the_face_of_a_raw_frame(tree, tmp_path):
    root, cascade = tree
    manifest = _manifest([_row("01", "EP01_01", cropped=True), _row("02", "EP01_01", cropped=False)])
    config = PreprocessConfig(frames=5, size=16, haar_cascade=str(cascade), crop_margin=0.1)
    store = build_store(manifest, root, config, tmp_path / "cache", progress=False)
    index = store.index
    assert list(index["crop_method"]) == ["dataset", "haar"]
    assert list(index["cropped"]) == [True, False] and not index["crop_fallback"].any()
    whole = index.iloc[0]
    assert (whole["crop_x"], whole["crop_y"], whole["crop_w"], whole["crop_h"]) == (0, 0, 48, 48)
    face = index.iloc[1]
    x, y, w, h = (int(face[c]) for c in ("crop_x", "crop_y", "crop_w", "crop_h"))
    # The 40 px block at rows 30..70, columns 70..110 lies inside the recorded square, which is much smaller
    # than the 120×160 frame (not the whole frame squashed).
    assert w == h and 40 <= w <= 80 and x <= 70 and x + w >= 110 and y <= 30 and y + h >= 70
    # The index survives the CSV round trip on reopening.
    again = ClipStore.load(store.path)
    assert list(again.index["crop_method"]) == ["dataset", "haar"] and again.index["crop_w"].dtype == np.int64


def test_a_manifest_without_the_cropped_column_is_taken_as_raw(tree, tmp_path):
    root, cascade = tree
    manifest = _manifest([_row("02", "EP01_01")])
    assert "cropped" not in manifest.columns
    config = PreprocessConfig(frames=5, size=16, haar_cascade=str(cascade))
    store = build_store(manifest, root, config, tmp_path / "cache", progress=False)
    assert store.index["crop_method"].tolist() == ["haar"] and store.index["crop_w"][0] < 120


def test_raw_clip_with_no_face_is_an_error_naming_the_sample_and_its_folder(tree, tmp_path):
    root, cascade = tree
    manifest = _manifest([_row("02", "EP01_01", cropped=False), _row("03", "EP01_01", cropped=False)])
    config = PreprocessConfig(frames=5, size=16, haar_cascade=str(cascade))
    with pytest.raises(StoreBuildError, match=r"toy/03/EP01_01.*sub03/EP01_01.*no face found.*no_face='center'"):
        build_store(manifest, root, config, tmp_path / "cache", progress=False)
    assert not list((tmp_path / "cache").glob("*"))  # nothing half-written is left


def test_no_face_center_fallback_is_recorded_in_the_index(tree, tmp_path):
    root, cascade = tree
    manifest = _manifest([_row("02", "EP01_01", cropped=False), _row("03", "EP01_01", cropped=False)])
    config = PreprocessConfig(frames=5, size=16, haar_cascade=str(cascade), no_face="center")
    with pytest.warns(UserWarning, match="no face"):
        store = build_store(manifest, root, config, tmp_path / "cache", progress=False)
    index = store.index
    assert index["crop_method"].tolist() == ["haar", "center"] and index["crop_fallback"].tolist() == [False, True]
    fallback = index.iloc[1]
    assert (fallback["crop_x"], fallback["crop_y"], fallback["crop_w"], fallback["crop_h"]) == (20, 0, 120, 120)


def test_forcing_dataset_on_raw_frames_warns_naming_the_dataset(tree, tmp_path):
    root, cascade = tree
    manifest = _manifest([_row("02", "EP01_01", cropped=False)])
    with pytest.warns(UserWarning, match=r"crop='dataset' on 1 clip.*raw.*dataset toy"):
        store = build_store(
            manifest, root, PreprocessConfig(frames=5, size=16, crop="dataset"), tmp_path / "cache", progress=False
        )
    assert store.index["crop_method"].tolist() == ["dataset"] and store.index["crop_w"][0] == 160


def test_the_store_key_follows_the_cropped_flags():
    rows = [_row("02", "EP01_01", cropped=False)]
    raw, cropped = _manifest(rows), _manifest([{**rows[0], "cropped": True}])
    config = PreprocessConfig()
    assert store_key(raw, config) != store_key(cropped, config)  # same rows, another crop under 'auto'


def test_explicit_crops_keep_working_and_say_so():
    frames = np.stack([block_frame(60, 80, 10, 20) for _ in range(3)])
    numbers = np.arange(3)
    for crop, expected in (("dataset", (0, 0, 80, 60)), ("none", (0, 0, 80, 60)), ("center", (10, 0, 60, 60))):
        result = preprocess_clip_detailed(
            frames, numbers, 0, 1, 2, PreprocessConfig(frames=3, size=8, crop=crop), cropped=False
        )
        assert result.crop_method == crop and (result.box.x, result.box.y, result.box.w, result.box.h) == expected
    with pytest.raises(PreprocessError, match="EP09_05.*crop='auto' on raw frames"):
        preprocess_clip_detailed(
            np.full((3, 60, 80, 3), 128, np.uint8),
            numbers,
            0,
            1,
            2,
            PreprocessConfig(frames=3, size=8, haar_cascade=""),
            sample="EP09_05",
        )


def test_crop_box_figure_draws_the_recorded_box_with_labels_and_legend(tree, tmp_path):
    from merkit import viz

    root, cascade = tree
    manifest = _manifest([_row("02", "EP01_01", cropped=False)])
    store = build_store(
        manifest,
        root,
        PreprocessConfig(frames=5, size=16, haar_cascade=str(cascade)),
        tmp_path / "cache",
        progress=False,
    )
    row = store.index.iloc[0]
    box = tuple(int(row[c]) for c in ("crop_x", "crop_y", "crop_w", "crop_h"))
    frame = block_frame(120, 160, 30, 70)
    figure = viz.crop_box_figure(frame, box, method=row["crop_method"], truth=(70, 30, 40, 40))
    ax = figure.axes[0]
    assert ax.get_xlabel() == "x (pixels)" and ax.get_ylabel() == "y (pixels)" and "160×120" in ax.get_title()
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert labels[0].startswith("crop box (haar)") and labels[1] == "true face box"
    drawn = ax.patches[0]
    assert abs(drawn.get_x() - (box[0] + 1)) < 1e-9 and abs(drawn.get_width() - (box[2] - 2)) < 1e-9
    figure.savefig(tmp_path / "box.png")
    assert (tmp_path / "box.png").stat().st_size > 1000


# ------------------------------------------------------------------------------ emulated CASME II releases


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return ix * iy / (a[2] * a[3] + b[2] * b[3] - ix * iy)


@pytest.fixture(scope="module")
def casme2_raw(tmp_path_factory) -> Path:
    """An emulated CASME II copy with the raw release only (640×480 frames, face with background)."""
    from merkit.data.synthetic import write_release

    return write_release("casme2", tmp_path_factory.mktemp("rel") / "CASME2", small=True, layout="raw", progress=False)


def test_auto_boxes_every_raw_casme2_clip_on_its_true_face(casme2_raw, tmp_path):
    import pandas as pd

    from merkit.data.datasets import build_manifest

    manifest = build_manifest("casme2", casme2_raw, "casme2_5class")
    assert not manifest["cropped"].any()
    store = build_store(manifest, casme2_raw, PreprocessConfig(frames=4, size=16), tmp_path / "cache", progress=False)
    index = store.index
    assert set(index["crop_method"]) == {"haar"} and not index["crop_fallback"].any()
    truth = pd.read_csv(casme2_raw / "synthme_truth" / "face_boxes.csv").set_index("folder")
    for _, row in index.iterrows():
        true_box = tuple(int(v) for v in truth.loc[row["path"], ["x", "y", "w", "h"]])
        box = (row["crop_x"], row["crop_y"], row["crop_w"], row["crop_h"])
        # The held box is the detected face grown by crop_margin (0.1 a side): it holds the true face and is
        # not much larger (the face, not the whole frame squashed).
        inside = _iou(box, true_box) * (box[2] * box[3] + true_box[2] * true_box[3]) / (1 + _iou(box, true_box))
        assert inside / (true_box[2] * true_box[3]) >= 0.9 and box[2] <= 1.6 * true_box[2], (
            row["sample"],
            box,
            true_box,
        )
    with pytest.warns(UserWarning, match="dataset casme2"):
        build_store(
            manifest,
            casme2_raw,
            PreprocessConfig(frames=4, size=16, crop="dataset"),
            tmp_path / "cache",
            progress=False,
        )
