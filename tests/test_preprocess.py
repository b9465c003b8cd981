"""Preprocessing: crop held per clip, temporal normalisation (linear, apex, TIM), spatial, bad inputs."""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest
from helpers_preprocess import block_frame, ramp_clip, textured_frames, write_block_cascade

from merkit.data.preprocess import (
    PreprocessConfig,
    PreprocessError,
    clip_crop_box,
    preprocess_clip,
    preprocess_clip_detailed,
    spatial_transform_mask,
    tim_weights,
)


def test_config_rejects_unknown_choices_and_is_a_plain_dict():
    with pytest.raises(ValueError, match="temporal"):
        PreprocessConfig(temporal="cubic")
    with pytest.raises(ValueError, match="crop"):
        PreprocessConfig(crop="dlib")
    assert PreprocessConfig(frames=8).to_dict()["frames"] == 8
    assert PreprocessConfig() == PreprocessConfig() and hash(PreprocessConfig()) == hash(PreprocessConfig())


@pytest.mark.parametrize("color, channels", [("grey", 1), ("rgb", 3)])
def test_exactly_T_frames_with_onset_and_offset_frames_preserved(color, channels):
    numbers = np.arange(100, 140)
    frames = textured_frames(len(numbers), 24, 24)
    config = PreprocessConfig(crop="dataset", frames=9, size=24, color=color)
    out = preprocess_clip(frames, numbers, 105, 118, 130, config)
    assert out.shape == (9, 24, 24, channels) and out.dtype == np.uint8
    expect_first, expect_last = frames[5], frames[30]  # numbers 105 and 130
    if color == "grey":
        expect_first = cv2.cvtColor(expect_first, cv2.COLOR_RGB2GRAY)[..., None]
        expect_last = cv2.cvtColor(expect_last, cv2.COLOR_RGB2GRAY)[..., None]
    assert np.abs(out[0].astype(int) - expect_first).max() <= 1
    assert np.abs(out[-1].astype(int) - expect_last).max() <= 1


def test_linear_interpolation_follows_frame_numbers_across_gaps():
    numbers = np.array([10, 11, 12, 15, 16, 20, 21, 22, 30])  # gaps in the numbering
    frames = ramp_clip(numbers)
    out = preprocess_clip(frames, numbers, 10, 20, 30, PreprocessConfig(crop="dataset", frames=11, size=8))
    np.testing.assert_allclose(out[:, 0, 0, 0], np.linspace(10, 30, 11), atol=0.51)


def test_onset_apex_ends_on_the_apex_frame():
    numbers = np.arange(0, 50)
    out = preprocess_clip(
        ramp_clip(numbers),
        numbers,
        5,
        25,
        45,
        PreprocessConfig(crop="dataset", frames=5, size=8, temporal="onset_apex"),
    )
    np.testing.assert_array_equal(out[:, 0, 0, 0], [5, 10, 15, 20, 25])


def test_apex_window_is_centred_on_the_apex_and_shifted_inside_the_clip():
    numbers = np.arange(0, 60)
    config = PreprocessConfig(crop="dataset", frames=5, size=8, temporal="apex_window", apex_window=4)
    out = preprocess_clip(ramp_clip(numbers), numbers, 0, 30, 59, config)
    np.testing.assert_array_equal(out[:, 0, 0, 0], [26, 28, 30, 32, 34])
    near_onset = preprocess_clip(ramp_clip(numbers), numbers, 0, 2, 59, config)
    np.testing.assert_array_equal(near_onset[:, 0, 0, 0], [0, 2, 4, 6, 8])


def test_missing_apex_uses_the_middle_frame_by_default_and_can_refuse():
    numbers = np.arange(0, 41)
    config = PreprocessConfig(crop="dataset", frames=3, size=8, temporal="onset_apex")
    result = preprocess_clip_detailed(ramp_clip(numbers), numbers, 0, pd.NA, 40, config)
    assert result.apex == 20
    np.testing.assert_array_equal(result.clip[:, 0, 0, 0], [0, 10, 20])
    assert preprocess_clip_detailed(ramp_clip(numbers), numbers, 0, None, 39, config).apex == 19
    with pytest.raises(PreprocessError, match="s1_ne_01.*no apex"):
        preprocess_clip(
            ramp_clip(numbers), numbers, 0, None, 40, PreprocessConfig(missing_apex="error"), sample="s1_ne_01"
        )


def test_tim_on_a_linear_ramp_returns_a_linear_ramp():
    numbers = np.arange(0, 10)
    frames = ramp_clip(numbers * 20)  # values 0, 20, ..., 180: one step is 20 grey levels
    out = preprocess_clip(frames, numbers, 0, 5, 9, PreprocessConfig(crop="dataset", frames=16, size=8, temporal="tim"))
    values = out[:, 0, 0, 0].astype(float)
    ideal = np.linspace(0, 180, 16)
    assert values[0] == 0 and values[-1] == 180  # first and last frames exact
    # TIM is a cosine interpolation: on a ramp its ripple stays under 5 % of one frame step (+ rounding).
    assert np.abs(values - ideal).max() <= 0.05 * 20 + 0.5
    assert np.all(np.diff(values) > 0)


def test_tim_weights_reproduce_the_input_frames_at_their_own_positions():
    np.testing.assert_allclose(tim_weights(7, 7), np.eye(7), atol=1e-9)
    np.testing.assert_allclose(tim_weights(7, 20).sum(axis=1), 1.0, atol=1e-9)  # a constant clip stays constant


def test_clip_shorter_than_T_is_upsampled_by_default_or_refused():
    numbers = np.arange(0, 6)  # 6 frames, T = 16
    out = preprocess_clip(
        ramp_clip(numbers * 30), numbers, 0, 3, 5, PreprocessConfig(crop="dataset", frames=16, size=8)
    )
    assert out.shape[0] == 16
    np.testing.assert_allclose(out[:, 0, 0, 0], np.linspace(0, 150, 16), atol=0.51)
    with pytest.raises(PreprocessError, match="EP02_01f.*fewer than T=16"):
        preprocess_clip(ramp_clip(numbers), numbers, 0, 3, 5, PreprocessConfig(short_clip="error"), sample="EP02_01f")


def test_bad_ranges_raise_errors_naming_the_sample():
    numbers = np.arange(0, 30)
    frames = ramp_clip(numbers)
    config = PreprocessConfig(frames=4, size=8)
    with pytest.raises(PreprocessError, match="006_1_2.*onset 20 is after offset 10"):
        preprocess_clip(frames, numbers, 20, 15, 10, config, sample="006_1_2")
    with pytest.raises(PreprocessError, match="006_1_2.*apex 40 outside"):
        preprocess_clip(frames, numbers, 0, 40, 20, config, sample="006_1_2")
    with pytest.raises(PreprocessError, match="006_1_2.*holds frame numbers 0..29"):
        preprocess_clip(frames, numbers, 10, 20, 35, config, sample="006_1_2")
    with pytest.raises(PreprocessError, match="006_1_2.*only 1 frame"):
        preprocess_clip(frames, numbers, 7, 7, 7, config, sample="006_1_2")
    with pytest.raises(PreprocessError, match="uint8"):
        preprocess_clip(frames.astype(np.float32), numbers, 0, 5, 10, config)


def test_haar_crop_holds_the_onset_box_for_the_whole_clip(tmp_path):
    cascade = write_block_cascade(tmp_path)
    # The "face" moves 12 px to the right after the onset frame: a per-frame detector would follow it,
    # the held box must not.
    frames = np.stack([block_frame(120, 160, 30, 40 + (12 if k else 0)) for k in range(5)])
    numbers = np.arange(1, 6)
    config = PreprocessConfig(frames=5, size=32, color="rgb", crop="haar", haar_cascade=str(cascade), crop_margin=0.1)
    result = preprocess_clip_detailed(frames, numbers, 1, 3, 5, config, sample="EP01_01")
    box = result.box
    assert not result.crop_fallback
    assert box.w == box.h and box.w >= 40  # a square around the 40 px block, margin included
    assert box.x <= 40 and box.x + box.w >= 80 and box.y <= 30 and box.y + box.h >= 70
    for k in range(5):  # every output frame is that one box cut from its own frame
        expect = cv2.resize(
            frames[k, box.y : box.y + box.h, box.x : box.x + box.w].astype(np.float32),
            (32, 32),
            interpolation=cv2.INTER_AREA,
        )
        assert np.abs(result.clip[k].astype(float) - expect).max() <= 1
    assert not np.array_equal(result.clip[0], result.clip[1])  # the block moved inside the held box


def test_no_face_raises_naming_the_sample_or_falls_back_to_the_centre_when_asked(tmp_path):
    cascade = write_block_cascade(tmp_path)
    frames = np.full((3, 60, 80, 3), 128, np.uint8)  # nothing to detect
    numbers = np.arange(3)
    config = PreprocessConfig(frames=3, size=16, crop="haar", haar_cascade=str(cascade))
    with pytest.raises(PreprocessError, match="sub07/EP03_02.*no face"):
        preprocess_clip(frames, numbers, 0, 1, 2, config, sample="sub07/EP03_02")
    fallback = PreprocessConfig(frames=3, size=16, crop="haar", haar_cascade=str(cascade), no_face="center")
    with pytest.warns(UserWarning, match="no face"):
        result = preprocess_clip_detailed(frames, numbers, 0, 1, 2, fallback, sample="sub07/EP03_02")
    assert result.crop_fallback and (result.box.x, result.box.y, result.box.w, result.box.h) == (10, 0, 60, 60)


def test_missing_cascade_file_is_a_clear_error(tmp_path):
    config = PreprocessConfig(crop="haar", haar_cascade=str(tmp_path / "nope.xml"))
    with pytest.raises(PreprocessError, match="nope.xml"):
        clip_crop_box(np.zeros((40, 40, 3), np.uint8), config)


def test_center_crop_and_mask_go_through_the_same_transform():
    frames = np.zeros((2, 40, 60, 3), np.uint8)
    frames[:, 10:20, 20:30] = 255  # bright block, also the mask
    mask = frames[0, ..., 0] > 0
    config = PreprocessConfig(frames=2, size=20, crop="center")
    clip = preprocess_clip(frames, np.arange(2), 0, 0, 1, config)
    small = spatial_transform_mask(mask, frames.shape, config)
    assert small.shape == (20, 20) and small.dtype == np.uint8
    expected = np.zeros((20, 20), np.uint8)
    expected[5:10, 5:10] = 1  # centre box starts at column 10; then halved
    np.testing.assert_array_equal(small, expected)
    np.testing.assert_array_equal(clip[0, ..., 0] > 127, expected.astype(bool))


def test_mask_transform_needs_the_detected_box_for_haar():
    with pytest.raises(PreprocessError, match="box"):
        spatial_transform_mask(np.zeros((10, 10), bool), (10, 10, 3), PreprocessConfig(crop="haar"))


def test_bundled_haar_cascade_finds_a_synthme_face_in_a_wider_frame():
    # The real cascade shipped in the opencv wheel, on a generated face pasted into a larger, uncropped frame.
    from merkit.data.preprocess import detect_face_box
    from merkit.data.synthetic import SynthMEConfig, render_clip

    face = render_clip(SynthMEConfig(), "01", "EP01_01", frames=[0]).frames[0]  # (96, 96, 3)
    frame = np.full((192, 192, 3), 90, np.uint8)
    frame[48:144, 48:144] = face
    box = detect_face_box(frame)
    assert box is not None
    # the box overlaps the pasted face (48..144 on both axes) by at least half of their union
    ix = max(0, min(box.x + box.w, 144) - max(box.x, 48))
    iy = max(0, min(box.y + box.h, 144) - max(box.y, 48))
    union = box.w * box.h + 96 * 96 - ix * iy
    assert ix * iy / union > 0.5
