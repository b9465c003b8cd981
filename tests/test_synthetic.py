"""SynthME: determinism, idempotent atomic generation, the CASME II sheet form, motion ground truth,
learnable-but-not-trivial default, and the round trip through the manifest builder and readers."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from merkit.data import synthetic
from merkit.data.synthetic import (
    COMPLETION_MARKER,
    EMOTIONS,
    MASK_CSV,
    SHEET_HEADER,
    SHEET_NAME,
    SynthMEConfig,
    SynthMEExistsError,
    clip_spec,
    generate_synthme,
    list_clips,
    load_motion_mask,
    render_clip,
)

# Tiny: 3 subjects x 3 clips x 12 frames at 64 px, subject 2 as video. Generates in well under a second.
TINY = SynthMEConfig(n_subjects=3, clips_per_subject=3, n_frames=12, size=64, video_subjects=(2,), crop_jitter=1)
# Everything class-independent switched off: only the class motion moves pixels.
STILL = dataclasses.replace(TINY, blink_probability=0.0, head_drift=0.0, flicker=0.0, noise_std=0.0, n_frames=16)
# Mean absolute error (grey levels) allowed between drawn and decoded frames, measured at the default
# quality with margin: JPEG q95 ~2.2, OpenCV mp4v ~3.6 at most per clip.
JPEG_TOLERANCE = 4.0
MP4V_TOLERANCE = 6.0


def tree_digest(root: Path) -> dict[str, str]:
    """sha256 of every file under root (relative POSIX path -> digest), excluding the xlsx (zip timestamps)."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix != ".xlsx"
    }


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> Path:
    return generate_synthme(tmp_path_factory.mktemp("synthme") / "tiny", TINY, progress=False)


# ---------------------------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "change, word",
    [
        ({"n_subjects": 0}, "n_subjects"),
        ({"n_frames": 5}, "n_frames"),
        ({"video_subjects": (0,)}, "video_subjects"),
        ({"frame_format": "gif"}, "frame_format"),
        ({"motion_amplitude": 0.0}, "motion_amplitude"),
        ({"apex_intensity": (0.9, 0.5)}, "apex_intensity"),
        ({"noise_std": -1.0}, "noise_std"),
    ],
)
def test_invalid_config_names_the_field(change, word):
    with pytest.raises(ValueError, match=word):
        dataclasses.replace(TINY, **change)


def test_video_subjects_beyond_n_subjects_are_ignored():
    config = SynthMEConfig(n_subjects=4)  # default video_subjects (5, 10): no subject 5 here
    assert not any(spec.is_video for spec in list_clips(config))
    assert [s.is_video for s in list_clips(dataclasses.replace(config, n_subjects=5))[-1:]] == [True]


def test_config_survives_its_json_round_trip():
    config = dataclasses.replace(TINY, video_subjects=[1, 2], apex_intensity=[0.5, 0.7])
    assert SynthMEConfig(**json.loads(json.dumps(config.to_dict()))) == config


# ------------------------------------------------------------------------------------------ clip list


def test_clips_are_balanced_and_timed_in_order():
    config = SynthMEConfig()
    clips = list_clips(config)
    assert len(clips) == config.n_subjects * config.clips_per_subject
    for subject in {c.subject for c in clips}:
        emotions = sorted(c.emotion for c in clips if c.subject == subject)
        assert emotions == sorted(EMOTIONS * 3)
    for clip in clips:
        assert 0 < clip.onset_index < clip.apex_index < clip.offset_index < clip.n_frames - 1
        assert clip.action_units == synthetic.CLASS_ACTION_UNITS[clip.emotion]
        if clip.is_video:
            assert clip.first_number == 0 and clip.path.endswith(".mp4")
        else:
            assert clip.first_number >= 1 and "." not in clip.path
    # Timing and first frame numbers differ between clips (they are drawn, not fixed).
    assert len({c.onset_index for c in clips}) > 3
    assert len({c.apex_index - c.onset_index for c in clips}) > 3
    assert len({c.first_number for c in clips if not c.is_video}) > 20


def test_unknown_clip_is_rejected():
    with pytest.raises(ValueError, match="EP09_01"):
        clip_spec(TINY, "01", "EP09_01")
    with pytest.raises(ValueError, match="subject"):
        clip_spec(TINY, "xx", "EP01_01")


# ------------------------------------------------------------------------------------------ determinism


def test_render_is_deterministic_and_depends_on_seed():
    first = render_clip(TINY, "01", "EP01_02")
    again = render_clip(TINY, 1, "EP01_02")
    other_seed = render_clip(dataclasses.replace(TINY, seed=1), "01", "EP01_02")
    assert first.frames.shape == (TINY.n_frames, TINY.size, TINY.size, 3) and first.frames.dtype == np.uint8
    np.testing.assert_array_equal(first.frames, again.frames)
    assert np.abs(first.frames.astype(int) - other_seed.frames.astype(int)).mean() > 5


def test_a_clip_does_not_depend_on_how_many_subjects_there_are():
    small = render_clip(TINY, "02", "EP01_01")
    larger = render_clip(dataclasses.replace(TINY, n_subjects=5), "02", "EP01_01")
    np.testing.assert_array_equal(small.frames, larger.frames)


def test_rendering_some_positions_equals_the_full_clip():
    full = render_clip(TINY, "03", "EP01_03")
    some = render_clip(TINY, "03", "EP01_03", frames=[full.spec.apex_index, 0])
    np.testing.assert_array_equal(some.frames, full.frames[[full.spec.apex_index, 0]])
    assert list(some.numbers) == [full.spec.apex, full.spec.first_number]
    with pytest.raises(ValueError, match="positions"):
        render_clip(TINY, "03", "EP01_03", frames=[TINY.n_frames])


def test_subjects_look_different():
    faces = [render_clip(TINY, s, "EP01_01", frames=[0]).frames[0].astype(float) for s in (1, 2, 3)]
    for i in range(3):
        for j in range(i + 1, 3):
            assert np.abs(faces[i] - faces[j]).mean() > 8


def test_generation_is_deterministic(tmp_path):
    a = generate_synthme(tmp_path / "a", TINY, progress=False)
    b = generate_synthme(tmp_path / "b", TINY, progress=False)
    c = generate_synthme(tmp_path / "c", dataclasses.replace(TINY, seed=7), progress=False)
    assert tree_digest(a) == tree_digest(b)
    digest_c = tree_digest(c)
    frames = [k for k in digest_c if k.endswith(".jpg")]
    assert frames and sum(tree_digest(a).get(k) != digest_c[k] for k in frames) > len(frames) // 2


# ------------------------------------------------------------------------------------------ motion


def test_class_motion_is_local_and_inside_the_mask():
    """With every nuisance off, apex - onset changes only pixels near the ground-truth region."""
    for spec in list_clips(STILL):
        clip = render_clip(STILL, spec.subject, spec.sample)
        frames = clip.frames.astype(float)
        # Neutral before onset: with no nuisance the face does not move at all.
        np.testing.assert_array_equal(frames[0], frames[spec.onset_index])
        change = np.abs(frames[spec.apex_index] - frames[spec.onset_index]).sum(-1)
        assert change.sum() > 0
        # The mask (25 % of the peak displacement) holds most of the change; the Gaussian tails hold the rest.
        for grow, share in ((3, 0.85), (7, 0.97)):
            near = cv2.dilate(clip.mask.astype(np.uint8), np.ones((grow, grow), np.uint8)).astype(bool)
            assert change[near].sum() / change.sum() > share, (spec.subject, spec.sample, spec.emotion, grow)


def test_motion_is_at_most_the_amplitude_and_points_the_au_way():
    config = SynthMEConfig()
    for spec in list_clips(config)[:18]:
        clip = render_clip(config, spec.subject, spec.sample, frames=[])
        magnitude = np.linalg.norm(clip.displacement, axis=-1)
        assert config.motion_amplitude * config.apex_intensity[0] - 1e-4 <= magnitude.max()
        assert magnitude.max() <= config.motion_amplitude + 1e-4
        rows, _ = np.nonzero(clip.mask)
        dy = clip.displacement[..., 1][clip.mask].mean()
        if spec.emotion == "happiness":  # mouth corners: lower half, pulled up
            assert rows.mean() > config.size * 0.6 and dy < 0
        elif spec.emotion == "disgust":  # brows: upper half, lowered
            assert rows.mean() < config.size * 0.45 and dy > 0
        else:  # surprise: brows raised
            assert rows.mean() < config.size * 0.45 and dy < 0


def test_nuisances_move_pixels_outside_the_motion_region():
    noisy = dataclasses.replace(STILL, blink_probability=1.0, head_drift=0.5, flicker=0.02)
    spec = list_clips(noisy)[0]
    clip = render_clip(noisy, spec.subject, spec.sample)
    outside = ~cv2.dilate(clip.mask.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    frames = clip.frames.astype(float)
    per_frame = [np.abs(frames[t] - frames[0])[outside].mean() for t in range(1, len(frames))]
    assert max(per_frame) > 1.0


def test_default_is_learnable_but_not_trivial():
    """LOSO logistic regression: the apex frame alone is far from 100 %, the onset->apex change carries the class."""
    from merkit.data.synthetic import linear_probe_accuracies

    apex_accuracy, change_accuracy = linear_probe_accuracies(SynthMEConfig())
    assert apex_accuracy < 0.8, apex_accuracy
    assert change_accuracy > 0.5, change_accuracy
    assert change_accuracy > apex_accuracy + 0.1, (apex_accuracy, change_accuracy)


# ------------------------------------------------------------------------------------------ the tree


def test_sheet_has_the_casme2_form(tiny_root):
    from openpyxl import load_workbook

    book = load_workbook(tiny_root / SHEET_NAME, read_only=True)
    rows = list(book.worksheets[0].iter_rows(values_only=True))
    assert rows[0] == SHEET_HEADER
    assert SHEET_HEADER == (
        "Subject", "Filename", None, "OnsetFrame", "ApexFrame", "OffsetFrame", None, "Action Units", "Estimated Emotion"
    )  # fmt: skip
    specs = list_clips(TINY)
    assert len(rows) - 1 == len(specs)
    for row, spec in zip(rows[1:], specs):
        subject, sample, blank1, onset, apex, offset, blank2, aus, emotion = row
        assert (subject, sample, blank1, blank2) == (spec.subject, spec.sample, None, None)
        assert (onset, apex, offset) == (spec.onset, spec.apex, spec.offset)
        assert aus == {"happiness": "12", "disgust": "4", "surprise": "1+2"}[emotion] and emotion == spec.emotion
        assert len(subject) == 2 and sample.startswith("EP")
        if spec.is_video:
            assert 0 <= onset < apex < offset < TINY.n_frames  # 0-based indices into the video
    assert {r[0] for r in rows[1:]} == {"01", "02", "03"}


def test_tree_layout_frames_videos_masks(tiny_root):
    import decord

    for spec in list_clips(TINY):
        path = tiny_root / spec.path
        if spec.is_video:
            assert path.is_file() and path.parent.name == f"sub{spec.subject}"
            assert len(decord.VideoReader(str(path))) == TINY.n_frames
        else:
            names = sorted(p.name for p in path.iterdir())
            assert names == sorted(f"img{n}.jpg" for n in spec.numbers)
            assert (path / f"img{spec.onset}.jpg").is_file() and (path / f"img{spec.offset}.jpg").is_file()
        mask = load_motion_mask(tiny_root, spec.subject, spec.sample)
        assert mask.dtype == bool and mask.shape == (TINY.size, TINY.size) and mask.any()
        np.testing.assert_array_equal(mask, render_clip(TINY, spec.subject, spec.sample, frames=[]).mask)
    import csv

    with open(tiny_root / MASK_CSV, newline="") as handle:
        table = list(csv.DictReader(handle))
    assert [(r["subject"], r["sample"]) for r in table] == [(s.subject, s.sample) for s in list_clips(TINY)]
    for row in table:
        mask = load_motion_mask(tiny_root, row["subject"], row["sample"])
        ys, xs = np.nonzero(mask)
        assert (int(row["x0"]), int(row["y0"]), int(row["x1"]), int(row["y1"])) == (
            xs.min(),
            ys.min(),
            xs.max() + 1,
            ys.max() + 1,
        )
        assert int(row["mask_pixels"]) == mask.sum()


def test_load_motion_mask_accepts_subject_forms_and_names_missing(tiny_root):
    a = load_motion_mask(tiny_root, "01", "EP01_01")
    np.testing.assert_array_equal(a, load_motion_mask(tiny_root, 1, "EP01_01"))
    np.testing.assert_array_equal(a, load_motion_mask(tiny_root, "sub01", "EP01_01"))
    with pytest.raises(FileNotFoundError, match="EP05_01"):
        load_motion_mask(tiny_root, "01", "EP05_01")


def test_a_video_decord_cannot_read_back_is_caught_at_generation(tmp_path):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    with pytest.raises(OSError, match="decord cannot read"):
        synthetic._check_video_decodes(broken, 12)
    clip = render_clip(TINY, "02", "EP01_01")
    synthetic._write_video(tmp_path / "ok.mp4", clip, TINY)  # checks itself; 12 frames written and read
    with pytest.raises(OSError, match="decodes to 12 frames, 13 were written"):
        synthetic._check_video_decodes(tmp_path / "ok.mp4", 13)


def test_a_frame_size_decord_cannot_read_fails_before_drawing(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(synthetic, "render_clip", lambda *a, **k: calls.append(a) or pytest.fail("drew a clip"))

    def refuse(path, n_frames):
        raise OSError(f"decord cannot read the SynthME video {path} back (stand-in)")

    monkeypatch.setattr(synthetic, "_check_video_decodes", refuse)
    with pytest.raises(OSError, match="probe.mp4"):
        generate_synthme(tmp_path / "s", TINY, progress=False)
    assert calls == [] and list(tmp_path.iterdir()) == []


def test_decoded_frames_match_the_drawing_within_codec_tolerance(tiny_root):
    read_clip = pytest.importorskip("merkit.data.io").read_clip  # folders by frame number, videos by decord

    for spec in list_clips(TINY):
        drawn = render_clip(TINY, spec.subject, spec.sample)
        read = read_clip(tiny_root / spec.path)
        np.testing.assert_array_equal(read.numbers, drawn.numbers)
        error = np.abs(read.frames.astype(float) - drawn.frames.astype(float)).mean()
        assert error <= (MP4V_TOLERANCE if spec.is_video else JPEG_TOLERANCE), (spec.path, error)


# ------------------------------------------------------------------------------ idempotent and atomic


def test_same_config_returns_at_once_without_rewriting(tmp_path):
    root = generate_synthme(tmp_path / "s", TINY, progress=False)
    marker = root / COMPLETION_MARKER
    before = marker.stat().st_mtime_ns
    (root / "sub01" / "user_note.txt").write_text("kept")  # proof nothing is rebuilt
    assert generate_synthme(root, TINY, progress=False) == root
    assert marker.stat().st_mtime_ns == before
    assert (root / "sub01" / "user_note.txt").read_text() == "kept"


def test_different_config_is_an_error_unless_overwrite(tmp_path):
    root = generate_synthme(tmp_path / "s", TINY, progress=False)
    other = dataclasses.replace(TINY, seed=5, n_frames=10)
    with pytest.raises(SynthMEExistsError, match=r"seed: 0 -> 5.*n_frames|n_frames.*seed"):
        generate_synthme(root, other, progress=False)
    assert json.loads((root / COMPLETION_MARKER).read_text())["config"] == TINY.to_dict()
    generate_synthme(root, other, overwrite=True, progress=False)
    assert json.loads((root / COMPLETION_MARKER).read_text())["config"] == other.to_dict()
    assert len(list((root / "sub01" / "EP01_01").iterdir())) == 10
    assert [p.name for p in tmp_path.iterdir()] == ["s"]  # no build or old tree left beside it


def test_foreign_directory_is_never_touched(tmp_path):
    root = tmp_path / "mine"
    root.mkdir()
    (root / "thesis.tex").write_text("precious")
    for overwrite in (False, True):
        with pytest.raises(SynthMEExistsError, match="not a SynthME tree"):
            generate_synthme(root, TINY, overwrite=overwrite, progress=False)
    assert (root / "thesis.tex").read_text() == "precious"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert (generate_synthme(empty, TINY, progress=False) / COMPLETION_MARKER).is_file()


def test_a_crash_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        raise RuntimeError("simulated crash while writing the sheet")

    monkeypatch.setattr(synthetic, "_write_sheet", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        generate_synthme(tmp_path / "s", TINY, progress=False)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    assert (generate_synthme(tmp_path / "s", TINY, progress=False) / COMPLETION_MARKER).is_file()


def test_a_killed_build_is_cleaned_up_and_never_mistaken_for_a_tree(tmp_path):
    dead_pid = 4_194_000
    try:
        os.kill(dead_pid, 0)
        pytest.skip("the stand-in pid happens to be alive")
    except ProcessLookupError:
        pass
    stale = tmp_path / f".s.synthme-build-{dead_pid}-abc"
    (stale / "sub01").mkdir(parents=True)
    root = generate_synthme(tmp_path / "s", TINY, progress=False)
    assert not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s"]
    assert (root / COMPLETION_MARKER).is_file()


# ------------------------------------------------------------------------- round trip through the builder


def _builder():
    datasets = pytest.importorskip("merkit.data.datasets")
    if not hasattr(datasets, "build_manifest"):
        pytest.skip("merkit.data.datasets.build_manifest is not in yet")
    read_sample = pytest.importorskip("merkit.data.io").read_sample
    return datasets.build_manifest, read_sample


@pytest.mark.parametrize("frame_format", ["png", "jpg"])
def test_round_trip_generate_build_manifest_read_sample(tmp_path, frame_format):
    """generate -> build_manifest('synthme', root, 'synthme_3class') -> read_sample == what was drawn.

    png frames are lossless: bit-exact. jpg and the mp4v video subject: mean error within the codec tolerance.
    """
    build_manifest, read_sample = _builder()
    config = dataclasses.replace(TINY, frame_format=frame_format)
    root = generate_synthme(tmp_path / "s", config, progress=False)
    manifest = build_manifest("synthme", root, "synthme_3class")
    specs = {(s.subject, s.sample): s for s in list_clips(config)}
    assert len(manifest) == len(specs)
    # The protocol may rename the classes (synthme_3class uses negative/positive/surprise): one label each.
    assert len(manifest.attrs["classes"]) == len(EMOTIONS)
    label_of = manifest.groupby("emotion")["label"].agg(lambda labels: set(labels.astype(int)))
    assert all(len(labels) == 1 for labels in label_of) and len(set.union(*label_of)) == len(EMOTIONS)
    for _, row in manifest.iterrows():
        spec = specs[(row["subject"], row["sample"])]
        assert (row["onset"], row["apex"], row["offset"]) == (spec.onset, spec.apex, spec.offset)
        assert row["emotion"] == spec.emotion and tuple(row["action_units"]) == spec.action_units
        assert Path(row["path"]).as_posix() == spec.path
        assert float(row["fps"]) == config.fps
        read = read_sample(row, root)
        drawn = render_clip(config, spec.subject, spec.sample, frames=range(spec.onset_index, spec.offset_index + 1))
        np.testing.assert_array_equal(read.numbers, drawn.numbers)
        if spec.is_video:
            assert np.abs(read.frames.astype(float) - drawn.frames.astype(float)).mean() <= MP4V_TOLERANCE
        elif frame_format == "png":
            np.testing.assert_array_equal(read.frames, drawn.frames)
        else:
            assert np.abs(read.frames.astype(float) - drawn.frames.astype(float)).mean() <= JPEG_TOLERANCE
