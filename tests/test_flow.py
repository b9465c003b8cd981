"""Optical flow, optical strain and the 28×28 (u, v, strain) PNG interchange format."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from merkit.data.flow import (
    FLOW_METHODS,
    FlowConfig,
    FlowError,
    export_flow_folder,
    flow_clip,
    flow_image,
    import_flow_folder,
    normalise_flow_image,
    optical_flow,
    optical_strain,
    read_flow_png,
    write_flow_png,
)


def _texture(size: int = 80, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    grey = cv2.GaussianBlur(rng.uniform(0, 255, (size, size)).astype(np.float32), (0, 0), 2.0)
    return cv2.normalize(grey, None, 0, 255, cv2.NORM_MINMAX)


def _warp(image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    size = image.shape[1], image.shape[0]
    return cv2.warpAffine(image, np.float32(matrix), size, borderMode=cv2.BORDER_REFLECT).astype(np.uint8)


@pytest.mark.parametrize("method", FLOW_METHODS)
@pytest.mark.parametrize("dx, dy", [(1.5, -1.0), (-2.0, 0.5)])
def test_flow_recovers_a_synthetic_translation(method, dx, dy):
    base = _texture()
    moved = _warp(base, [[1, 0, dx], [0, 1, dy]])  # content moves by (+dx, +dy)
    flow = optical_flow(base.astype(np.uint8), moved, method)
    assert flow.shape == (80, 80, 2) and flow.dtype == np.float32
    centre = flow[16:-16, 16:-16]  # away from the reflected borders
    assert centre[..., 0].mean() == pytest.approx(dx, abs=0.15)
    assert centre[..., 1].mean() == pytest.approx(dy, abs=0.15)
    assert np.sign(np.median(centre[..., 0])) == np.sign(dx) and np.sign(np.median(centre[..., 1])) == np.sign(dy)


def test_flow_accepts_rgb_and_rejects_unknown_methods_and_size_mismatch():
    rgb = np.repeat(_texture().astype(np.uint8)[..., None], 3, axis=-1)
    assert optical_flow(rgb, rgb, "dis").shape == (80, 80, 2)
    with pytest.raises(FlowError, match="unknown flow method"):
        optical_flow(rgb, rgb, "lucas")
    with pytest.raises(FlowError, match="one size"):
        optical_flow(rgb, rgb[:40], "dis")


@pytest.mark.parametrize("method", FLOW_METHODS)
def test_strain_of_a_pure_translation_is_near_zero_and_of_a_zoom_is_not(method):
    base = _texture()
    moved = _warp(base, [[1, 0, 1.5], [0, 1, -1.0]])
    strain = optical_strain(optical_flow(base.astype(np.uint8), moved, method))[16:-16, 16:-16]
    assert np.median(strain) < 0.02
    zoomed = _warp(base, cv2.getRotationMatrix2D((40, 40), 0, 1.05))
    zoom_strain = optical_strain(optical_flow(base.astype(np.uint8), zoomed, method))[16:-16, 16:-16]
    assert np.median(zoom_strain) > 3 * np.median(strain) and np.median(zoom_strain) > 0.03


def test_strain_of_an_analytic_field_matches_the_formula():
    ys, xs = np.mgrid[0:20, 0:20].astype(np.float32)
    flow = np.stack([0.1 * xs + 0.3, 0.2 * xs], axis=-1)  # εxx = 0.1, εyy = 0, εxy = 0.1
    strain = optical_strain(flow)
    np.testing.assert_allclose(strain, np.sqrt(0.1**2 + 2 * 0.1**2), rtol=1e-5)
    np.testing.assert_allclose(optical_strain(np.full((9, 9, 2), 3.0, np.float32)), 0.0)


def test_flow_image_and_flow_clip_shapes():
    frames = np.stack([_warp(_texture(48), [[1, 0, k * 0.5], [0, 1, 0]]) for k in range(4)])
    image = flow_image(frames[0], frames[3], FlowConfig(method="farneback", work_size=48, size=28))
    assert image.shape == (28, 28, 3) and image.dtype == np.float32
    assert image[8:-8, 8:-8, 0].mean() == pytest.approx(1.5, abs=0.2)  # 3 steps of 0.5 px, u rightwards
    clip = flow_clip(frames, "dis")
    assert clip.shape == (3, 48, 48, 3)
    assert clip[:, 12:-12, 12:-12, 0].mean() == pytest.approx(0.5, abs=0.15)
    from_first = flow_clip(frames, "dis", reference="first")
    assert from_first[-1, 12:-12, 12:-12, 0].mean() == pytest.approx(1.5, abs=0.2)
    with pytest.raises(FlowError, match="at least 2"):
        flow_clip(frames[:1])


def test_png_export_import_round_trip_is_lossless_up_to_quantisation(tmp_path):
    rng = np.random.default_rng(3)
    features = rng.normal(size=(28, 28, 3)).astype(np.float32) * [2.0, 0.5, 0.1]
    path = write_flow_png(tmp_path / "06_EP02_01f .png", features)
    assert path.name == "06_EP02_01f .png"
    back = read_flow_png(path)
    assert back.shape == (28, 28, 3)
    assert np.abs(back - normalise_flow_image(features)).max() <= 0.5 / 255 + 1e-6
    # As in the real folders: R = u, G = v, B = strain; OpenCV reads them as (B, G, R) = (strain, v, u).
    raw = cv2.imread(str(path))
    for opencv_channel, feature in ((2, 0), (1, 1), (0, 2)):
        assert np.argmax(raw[..., opencv_channel]) == np.argmax(features[..., feature])
    assert not list(tmp_path.glob(".tmp-*"))  # atomic write left no temp file


def test_import_follows_a_composite_listing_with_spaced_names(tmp_path):
    rng = np.random.default_rng(4)
    listing = pd.DataFrame(  # invented rows mimicking a composite list's structure
        {
            "sub": ["s03", "011", "17"],
            "filename_o": ["s3_po_05", "011_2_1", "EP01_12"],
            "label": [2, 0, 1],
            "dataset": ["smic", "samm", "casme2"],
        }
    )
    features = rng.normal(size=(3, 28, 28, 3)).astype(np.float32)
    export_flow_folder(tmp_path / "flow", features, listing["sub"], listing["filename_o"])
    assert (tmp_path / "flow" / "011_011_2_1 .png").is_file()
    listing.iloc[::-1].to_csv(tmp_path / "list.csv", index=False)  # listing order differs from file order
    images, index = import_flow_folder(tmp_path / "flow", tmp_path / "list.csv")
    assert list(index["sample"]) == ["EP01_12", "011_2_1", "s3_po_05"]
    assert list(index["subject"]) == ["17", "011", "s03"]  # zero-padding kept (read as strings)
    assert index["label"].dtype == "Int64" and list(index["label"]) == [1, 0, 2]
    assert list(index["dataset"]) == ["casme2", "samm", "smic"]
    for k, original in zip(range(3), features[::-1]):
        assert np.abs(images[k] - normalise_flow_image(original)).max() <= 0.5 / 255 + 1e-6
    all_images, all_index = import_flow_folder(tmp_path / "flow")  # no listing: every png, sorted
    assert len(all_images) == 3 and all_index["sample"].str.contains(" ").sum() == 0


def test_import_names_the_missing_sample_and_the_file(tmp_path):
    (tmp_path / "flow").mkdir()
    write_flow_png(tmp_path / "flow" / "01_EP01 .png", np.zeros((28, 28, 3)))
    listing = pd.DataFrame({"Subject": ["01", "02"], "Filename": ["EP01", "EP09"], "Label": [0, 1]})
    with pytest.raises(FlowError, match="subject '02' sample 'EP09'.*02_EP09"):
        import_flow_folder(tmp_path / "flow", listing)
    (tmp_path / "flow" / "02_EP09 .png").write_bytes(b"not a png")
    with pytest.raises(FlowError, match="EP09.*not a readable image"):
        import_flow_folder(tmp_path / "flow", listing)
