"""Clip store (build, reuse, rebuild, corruption, workers, masks, flow) and the torch Datasets over it."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from helpers_preprocess import textured_frames

from merkit.data.flow import FlowConfig
from merkit.data.io import read_sample
from merkit.data.manifest import make_manifest
from merkit.data.preprocess import PreprocessConfig, preprocess_clip, spatial_transform_mask
from merkit.data.store import (
    ClipStore,
    MotionMaskLoader,
    StoreBuildError,
    StoreCorruptError,
    build_store,
    store_key,
)
from merkit.data.torch_dataset import Augmentation, ClipDataset, FlowDataset

# The toy frames are textures standing in for face crops (no face to detect): the crop is forced to 'dataset'.
CONFIG = PreprocessConfig(frames=6, size=16, crop="dataset")
CLASSES = ["negative", "positive", "surprise"]


def _write_clip(folder: Path, frames: np.ndarray, first: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for k, frame in enumerate(frames):
        cv2.imwrite(str(folder / f"img{first + k}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))


def _moving_frames(n: int, size: int, step: float, seed: int) -> np.ndarray:
    """Texture translated rightwards by ``step`` px per frame (for the flow test)."""
    base = textured_frames(1, size, size, seed)[0]
    frames = [
        cv2.warpAffine(base, np.float32([[1, 0, k * step], [0, 1, 0]]), (size, size), borderMode=cv2.BORDER_REFLECT)
        for k in range(n)
    ]
    return np.stack(frames)


def _dataset(root: Path, n_subjects: int = 2, clips: int = 2, frames: int = 10, size: int = 32) -> object:
    """A tiny CASME II-like tree of PNG frame folders and its manifest (invented rows)."""
    records = []
    for s in range(1, n_subjects + 1):
        for c in range(1, clips + 1):
            first = 10 * c + s
            path = f"sub{s:02d}/EP{c:02d}_01"
            _write_clip(root / path, _moving_frames(frames, size, 0.5 * c, seed=s * 10 + c), first)
            label = (s + c) % 3
            records.append(
                dict(
                    dataset="toy",
                    subject=f"{s:02d}",
                    sample=f"EP{c:02d}_01",
                    path=path,
                    onset=first,
                    apex=first + frames // 2,
                    offset=first + frames - 1,
                    fps=200.0,
                    emotion=["disgust", "happiness", "surprise"][label],
                    label=label,
                    action_units=("4", "L10"),
                )
            )
    return make_manifest(records, dataset="toy", label_map="toy_3class", classes=CLASSES)


def _mask_of(row) -> np.ndarray:
    """A mask loader: the left half of the frame for subject 01, the top half otherwise."""
    mask = np.zeros((32, 32), bool)
    if row["subject"] == "01":
        mask[:, :16] = True
    else:
        mask[:16, :] = True
    return mask


@pytest.fixture()
def toy(tmp_path):
    root = tmp_path / "data"
    return root, _dataset(root)


def test_build_writes_every_clip_as_preprocessed_with_index_and_marker(toy, tmp_path):
    root, manifest = toy
    store = build_store(manifest, root, CONFIG, tmp_path / "cache", progress=False)
    assert store.path == tmp_path / "cache" / store_key(manifest, CONFIG)
    assert store.clips.shape == (4, 6, 16, 16, 1) and store.clips.dtype == np.uint8
    assert isinstance(store.clips, np.memmap)
    assert (store.path / "COMPLETE").is_file() and store.masks is None and store.flow is None
    for position, (_, row) in enumerate(manifest.iterrows()):
        clip = read_sample(row, root)
        expected = preprocess_clip(clip.frames, clip.numbers, row.onset, row.apex, row.offset, CONFIG)
        np.testing.assert_array_equal(store.clips[position], expected)
    index = store.index
    assert list(index["position"]) == [0, 1, 2, 3]
    assert list(index["subject"]) == ["01", "01", "02", "02"] and list(index["sample"]) == list(manifest["sample"])
    assert index["label"].dtype == "Int64" and list(index["label"]) == list(manifest["label"])
    assert index["action_units"][0] == ("4", "L10") and index["crop_w"][0] == 32
    assert store.classes == CLASSES and store.key == store.path.name and store.config == CONFIG
    assert not list((tmp_path / "cache").glob(".tmp-*"))


def _count_reads(monkeypatch) -> list[str]:
    """Every clip the store build reads, through the real reader."""
    import merkit.data.store.build as build_module

    reads: list[str] = []

    def counting(row, data_root):
        reads.append(str(row["path"]))
        return read_sample(row, data_root)

    monkeypatch.setattr(build_module, "read_sample", counting)
    return reads


def test_unchanged_inputs_reuse_the_store_without_reading_a_frame(toy, tmp_path, monkeypatch):
    root, manifest = toy
    reads = _count_reads(monkeypatch)
    first = build_store(manifest, root, CONFIG, tmp_path / "cache", progress=False)
    assert len(reads) == 4
    marker = (first.path / "COMPLETE").stat().st_mtime_ns
    again = build_store(manifest, root, CONFIG, tmp_path / "cache", progress=False)
    assert len(reads) == 4  # reused: no frame read
    assert again.path == first.path and (again.path / "COMPLETE").stat().st_mtime_ns == marker
    np.testing.assert_array_equal(np.asarray(again.clips), np.asarray(first.clips))


def test_a_changed_added_or_removed_frame_rebuilds_the_store_naming_the_clip(toy, tmp_path, monkeypatch):
    root, manifest = toy
    reads = _count_reads(monkeypatch)
    first = build_store(manifest, root, CONFIG, tmp_path / "cache", progress=False)
    before = np.array(first.clips)
    frame = root / "sub02" / "EP01_01" / "img12.png"  # inside onset..offset of toy/02/EP01_01
    cv2.imwrite(str(frame), np.zeros((32, 32, 3), np.uint8))  # blacked out
    stat = frame.stat()
    os.utime(frame, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.warns(UserWarning, match=r"toy/02/EP01_01: a frame changed.*rebuilding") as caught:
        rebuilt = build_store(manifest, root, CONFIG, tmp_path / "cache", progress=False)
    assert "toy/01/" not in str(caught[0].message) and "toy/02/EP02_01" not in str(caught[0].message)
    assert len(reads) == 8 and rebuilt.path == first.path
    changed = list(manifest["sample"]).index("EP01_01") + 2  # toy/02/EP01_01's position
    assert not np.array_equal(np.asarray(rebuilt.clips[changed]), before[changed])
    np.testing.assert_array_equal(np.asarray(rebuilt.clips[0]), before[0])
    assert build_store(manifest, root, CONFIG, tmp_path / "cache", progress=False).path == first.path
    assert len(reads) == 8  # the rebuilt store is reused as is

    shutil.copy(frame, root / "sub01" / "EP02_01" / "img99.png")  # a frame added (outside the clip's range)
    with pytest.warns(UserWarning, match=r"toy/01/EP02_01: a frame was added or removed \(10 files, now 11\)"):
        build_store(manifest, root, CONFIG, tmp_path / "cache", progress=False)
    (root / "sub01" / "EP02_01" / "img99.png").unlink()
    with pytest.warns(UserWarning, match=r"toy/01/EP02_01: a frame was added or removed \(11 files, now 10\)"):
        build_store(manifest, root, CONFIG, tmp_path / "cache", progress=False)
    assert len(reads) == 16 and [p.name for p in (tmp_path / "cache").iterdir()] == [first.path.name]


def test_a_store_that_does_not_know_its_inputs_is_rebuilt_once(toy, tmp_path, monkeypatch):
    root, manifest = toy
    store = build_store(manifest, root, CONFIG, tmp_path / "cache", progress=False)
    marker = json.loads((store.path / "COMPLETE").read_text())  # as a store built before inputs.json was
    del marker["files"]["inputs.json"]
    (store.path / "COMPLETE").write_text(json.dumps(marker))
    (store.path / "inputs.json").unlink()
    reads = _count_reads(monkeypatch)
    with pytest.warns(UserWarning, match="inputs.json is missing or unreadable: the store's inputs are unknown"):
        rebuilt = build_store(manifest, root, CONFIG, tmp_path / "cache", progress=False)
    assert rebuilt.path == store.path and (rebuilt.path / "inputs.json").is_file() and len(reads) == 4
    build_store(manifest, root, CONFIG, tmp_path / "cache", progress=False)
    assert len(reads) == 4


def test_one_changed_parameter_or_row_builds_a_new_store(toy, tmp_path):
    root, manifest = toy
    base = build_store(manifest, root, CONFIG, tmp_path / "cache", progress=False)
    tim = build_store(
        manifest,
        root,
        PreprocessConfig(frames=6, size=16, temporal="tim", crop="dataset"),
        tmp_path / "cache",
        progress=False,
    )
    assert tim.path != base.path and base.path.is_dir()
    assert not np.array_equal(np.asarray(tim.clips), np.asarray(base.clips))
    changed = manifest.copy()
    changed.loc[0, "offset"] = changed.loc[0, "offset"] - 1
    assert store_key(changed, CONFIG) != base.key
    assert store_key(manifest, CONFIG, flow=FlowConfig()) != base.key
    assert store_key(manifest, CONFIG) == base.key


@pytest.mark.parametrize("damage", ["truncate", "marker"])
def test_a_damaged_store_is_detected_and_rebuilt_never_read(toy, tmp_path, damage):
    root, manifest = toy
    store = build_store(manifest, root, CONFIG, tmp_path / "cache", progress=False)
    original = np.array(store.clips)
    path = store.path
    del store
    if damage == "truncate":
        data = (path / "clips.npy").read_bytes()
        (path / "clips.npy").write_bytes(data[: len(data) // 2])
        message = "clips.npy"
    else:
        (path / "COMPLETE").unlink()
        message = "COMPLETE"
    with pytest.raises(StoreCorruptError, match=message):
        ClipStore.load(path)
    with pytest.warns(UserWarning, match="rebuilding"):
        rebuilt = build_store(manifest, root, CONFIG, tmp_path / "cache", progress=False)
    assert rebuilt.path == path
    np.testing.assert_array_equal(np.asarray(rebuilt.clips), original)
    assert not list((tmp_path / "cache").glob(".stale-*"))


def test_a_corrupt_frame_mid_clip_fails_the_build_naming_the_sample_and_leaves_no_store(toy, tmp_path):
    root, manifest = toy
    row = manifest.iloc[2]
    (root / row.path / f"img{row.onset + 4}.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(StoreBuildError, match="toy/02/EP01_01"):
        build_store(manifest, root, CONFIG, tmp_path / "cache", progress=False)
    assert not (tmp_path / "cache").exists()  # nothing left, not even the empty folder the build created


def test_onset_after_offset_fails_the_build_naming_the_sample(toy, tmp_path):
    root, manifest = toy
    bad = manifest.copy()
    bad.loc[1, ["onset", "offset"]] = [bad.loc[1, "offset"], bad.loc[1, "onset"]]
    bad.loc[1, "apex"] = bad.loc[1, "onset"]
    with pytest.raises(StoreBuildError, match="toy/01/EP02_01"):
        build_store(bad, root, CONFIG, tmp_path / "cache", progress=False)


def test_worker_processes_give_the_same_store(toy, tmp_path):
    root, manifest = toy
    serial = build_store(manifest, root, CONFIG, tmp_path / "serial", progress=False)
    parallel = build_store(manifest, root, CONFIG, tmp_path / "parallel", workers=2, progress=False)
    np.testing.assert_array_equal(np.asarray(parallel.clips), np.asarray(serial.clips))
    assert parallel.key == serial.key
    bad = manifest.copy()
    bad.loc[3, "path"] = "sub02/missing"
    with pytest.raises(StoreBuildError, match="toy/02/EP02_01"):
        build_store(bad, root, CONFIG, tmp_path / "bad", workers=2, progress=False)


def test_masks_go_through_the_clip_transform(toy, tmp_path):
    root, manifest = toy
    config = PreprocessConfig(frames=6, size=16, crop="center")
    store = build_store(manifest, root, config, tmp_path / "cache", mask_loader=_mask_of, progress=False)
    assert store.masks.shape == (4, 16, 16) and store.masks.dtype == np.uint8
    for position, (_, row) in enumerate(manifest.iterrows()):
        np.testing.assert_array_equal(store.masks[position], spatial_transform_mask(_mask_of(row), (32, 32, 3), config))
    assert store.masks[0][:, :8].all() and not store.masks[0][:, 8:].any()
    assert store.key != build_store(manifest, root, config, tmp_path / "cache", progress=False).key


def test_flow_is_stored_onset_to_apex(toy, tmp_path):
    root, manifest = toy
    store = build_store(
        manifest, root, CONFIG, tmp_path / "cache", flow=FlowConfig(method="dis", work_size=32, size=8), progress=False
    )
    assert store.flow.shape == (4, 8, 8, 3) and store.flow.dtype == np.float16
    # clip c moves 0.5·c px per frame rightwards over 5 frames (onset to apex): u ≈ 2.5·c
    u = np.asarray(store.flow[:, 2:-2, 2:-2, 0], dtype=np.float32).mean(axis=(1, 2))
    np.testing.assert_allclose(u, [2.5, 5.0, 2.5, 5.0], atol=0.6)
    data = FlowDataset(store, augment=False)
    x, label = data[1]
    assert x.shape == (3, 8, 8) and 0 <= float(x.min()) and float(x.max()) <= 1 and label == int(manifest.label[1])


def test_a_store_an_older_kit_saved_names_its_label_map_protocol_and_still_opens(toy, tmp_path):
    root, manifest = toy
    store = build_store(manifest, root, CONFIG, tmp_path / "cache", progress=False)
    assert store.index.attrs["label_map"] == "toy_3class"
    info_path, marker_path = store.path / "store.json", store.path / "COMPLETE"
    info = json.loads(info_path.read_text())
    info["attrs"] = {("protocol" if k == "label_map" else k): v for k, v in info["attrs"].items()}
    info_path.write_text(json.dumps(info, indent=2))  # what a store of before issue 11 holds
    marker = json.loads(marker_path.read_text())
    marker["files"]["store.json"] = info_path.stat().st_size
    marker_path.write_text(json.dumps(marker, indent=2))
    old = ClipStore.load(store.path)
    assert old.index.attrs["label_map"] == "toy_3class" and "protocol" not in old.index.attrs
    assert old.classes == CLASSES and old.key == store_key(manifest, CONFIG)  # the key never held the name


def test_store_pickles_by_path(toy, tmp_path):
    root, manifest = toy
    store = build_store(manifest, root, CONFIG, tmp_path / "cache", progress=False)
    payload = pickle.dumps(store)
    assert len(payload) < 1000  # no clip data copied
    back = pickle.loads(payload)
    np.testing.assert_array_equal(np.asarray(back.clips), np.asarray(store.clips))


def test_synthme_store_with_motion_masks(tmp_path):
    from merkit.data.datasets import build_manifest
    from merkit.data.synthetic import SynthMEConfig, generate_synthme, load_motion_mask

    root = generate_synthme(
        tmp_path / "synthme",
        SynthMEConfig(n_subjects=2, clips_per_subject=3, n_frames=10, size=32, video_subjects=(2,)),
        progress=False,
    )
    manifest = build_manifest("synthme", root, "synthme_3class")
    store = build_store(
        manifest, root, CONFIG, tmp_path / "cache", mask_loader=MotionMaskLoader(str(root)), progress=False
    )
    assert store.clips.shape == (6, 6, 16, 16, 1) and store.masks.shape == (6, 16, 16)
    row = store.index.iloc[4]
    mask = load_motion_mask(root, row["subject"], row["sample"])
    np.testing.assert_array_equal(store.masks[4], spatial_transform_mask(mask, mask.shape, CONFIG))
    assert store.masks.sum() > 0 and store.classes == list(manifest.attrs["classes"])


# ---------------------------------------------------------------------------------------------------------
# ClipDataset / FlowDataset


@pytest.fixture()
def store(toy, tmp_path):
    root, manifest = toy
    return build_store(
        manifest,
        root,
        PreprocessConfig(frames=6, size=16, color="rgb", crop="dataset"),
        tmp_path / "cache",
        progress=False,
    )


def test_clip_dataset_items_are_c_t_h_w_float_with_labels(store):
    data = ClipDataset(store, [3, 1], normalise="none")
    x, label = data[0]
    assert x.dtype == torch.float32 and x.shape == (3, 6, 16, 16)
    expected = (
        torch.from_numpy(np.array(store.clips[3])).permute(3, 0, 1, 2).float() / 255
    )  # (T, S, S, C) -> (C, T, S, S)
    torch.testing.assert_close(x, expected)
    assert label == int(store.index.label[3])
    np.testing.assert_array_equal(data.labels, store.index.label.to_numpy()[[3, 1]])
    clip_x, _ = ClipDataset(store, [3])[0]  # normalise='clip' by default
    assert abs(float(clip_x.mean())) < 1e-4 and abs(float(clip_x.std()) - 1) < 1e-3


def test_dataset_normalisation_uses_training_statistics(store):
    train = ClipDataset(store, [0, 1], normalise="dataset")
    clips = np.asarray(store.clips[[0, 1]], dtype=np.float64) / 255
    np.testing.assert_allclose(train.stats[0], clips.reshape(-1, 3).mean(axis=0), rtol=1e-5)
    test = ClipDataset(store, [2], normalise="dataset", stats=train.stats)
    x, _ = test[0]
    raw = np.asarray(store.clips[2], dtype=np.float32).transpose(3, 0, 1, 2) / 255  # (T, S, S, C) -> (C, T, S, S)
    expected = (raw - train.stats[0][:, None, None, None]) / (train.stats[1][:, None, None, None] + 1e-6)
    np.testing.assert_allclose(x.numpy(), expected, rtol=1e-4, atol=1e-4)


def test_augmentation_is_deterministic_per_seed_epoch_and_clip_and_absent_at_evaluation(store):
    plain = ClipDataset(store, normalise="none")
    assert torch.equal(plain[2][0], plain[2][0])
    a = ClipDataset(store, augment=True, seed=5, normalise="none")
    b = ClipDataset(store, [3, 2], augment=True, seed=5, normalise="none")
    assert torch.equal(a[2][0], b[1][0])  # same clip, same seed and epoch, different order: same draw
    draws = {a.set_epoch(e) or a[2][0].numpy().tobytes() for e in range(6)}
    assert len(draws) == 6  # every epoch draws anew
    assert not torch.equal(a[2][0], plain[2][0])
    a.set_epoch(0)
    first = a[2][0]
    a.set_epoch(3)
    a.set_epoch(0)
    assert torch.equal(a[2][0], first)
    x = a[2][0]
    assert x.shape == (3, 6, 16, 16) and float(x.min()) >= 0 and float(x.max()) <= 1


def test_each_augmentation_does_what_it_says(store):
    raw = ClipDataset(store, normalise="none")[0][0]
    flip_only = Augmentation(flip=1.0, crop_scale=(1.0, 1.0), temporal_shift=0, brightness=0.0, contrast=0.0)
    torch.testing.assert_close(
        ClipDataset(store, augment=flip_only, normalise="none")[0][0], torch.flip(raw, dims=(3,))
    )
    shift_only = Augmentation(flip=0.0, crop_scale=(1.0, 1.0), temporal_shift=2, brightness=0.0, contrast=0.0)
    shifted = ClipDataset(store, augment=shift_only, normalise="none", seed=1)
    seen = set()
    for epoch in range(12):
        shifted.set_epoch(epoch)
        x = shifted[0][0]
        matches = [k for k in range(-2, 3) if torch.equal(x, raw[:, np.clip(np.arange(6) + k, 0, 5)])]
        assert matches, "a temporal shift must be a clamped shift of the frames"
        seen.update(matches)
    assert len(seen) > 1
    bright = Augmentation(flip=0.0, crop_scale=(1.0, 1.0), temporal_shift=0, brightness=0.2, contrast=0.0)
    delta = ClipDataset(store, augment=bright, normalise="none")[0][0] - raw
    inside = (raw > 0.25) & (raw < 0.75)
    assert float(delta[inside].std()) < 1e-5 and float(delta[inside].abs().mean()) > 0


def test_crop_takes_a_square_and_resizes_it_back(store):
    raw = ClipDataset(store, normalise="none")[0][0]  # (C, T, S, S)
    half = Augmentation(flip=0.0, crop_scale=(0.5, 0.5), temporal_shift=0, brightness=0.0, contrast=0.0)
    x = ClipDataset(store, augment=half, normalise="none")[0][0]
    assert x.shape == raw.shape
    found = []
    for top in range(9):
        for left in range(9):
            crop = (
                raw[:, :, top : top + 8, left : left + 8].permute(2, 3, 1, 0).reshape(8, 8, -1).numpy()
            )  # (C, T, s, s) -> (s, s, T·C)
            resized = cv2.resize(np.ascontiguousarray(crop), (16, 16), interpolation=cv2.INTER_LINEAR)
            expected = torch.from_numpy(resized.reshape(16, 16, 6, 3)).permute(
                3, 2, 0, 1
            )  # (S, S, T, C) -> (C, T, S, S)
            if torch.allclose(x, expected, atol=1e-5):
                found.append((top, left))
    assert found, "the crop must be an 8x8 window of the clip resized to 16x16"


def test_default_augmentation_does_not_resample_space(store):
    # Measured on SynthME: the resized crop is the component that hurts (see Augmentation), so it is off.
    assert Augmentation().crop_scale == (1.0, 1.0)
    raw = ClipDataset(store, normalise="none")[0][0]
    shift_or_flip = Augmentation(brightness=0.0, contrast=0.0)
    data = ClipDataset(store, augment=shift_or_flip, normalise="none", seed=3)
    for epoch in range(4):
        data.set_epoch(epoch)
        x = data[0][0]
        candidates = [
            r[:, np.clip(np.arange(6) + k, 0, 5)] for r in (raw, torch.flip(raw, dims=(3,))) for k in (-1, 0, 1)
        ]
        assert any(torch.equal(x, c) for c in candidates), "only whole frames are moved: no resampling"


def test_augmentation_values_are_checked_and_round_trip_through_a_dict():
    with pytest.raises(ValueError, match="crop_scale must satisfy"):
        Augmentation(crop_scale=(0.0, 1.0))
    with pytest.raises(ValueError, match="flip must be a probability"):
        Augmentation(flip=-0.1)
    with pytest.raises(ValueError, match="unknown Augmentation field.*'shift'"):
        Augmentation.from_dict({"shift": 1})
    custom = Augmentation(crop_scale=(0.9, 1.0), temporal_shift=2)
    assert Augmentation.from_dict(custom.to_dict()) == custom
    assert custom.to_dict()["crop_scale"] == [0.9, 1.0]  # JSON-ready


def test_flow_dataset_flip_mirrors_the_motion():
    images = np.zeros((1, 4, 4, 3), np.float32)
    images[0, :, :, 0] = np.arange(4)[None, :] + 1.0  # u grows to the right
    images[0, :, :, 1] = 2.0
    data = FlowDataset((images, np.array([2])), augment=True, normalise="none", flip=1.0)
    x, label = data[0]
    assert label == 2 and x.shape == (3, 4, 4)
    np.testing.assert_allclose(x[0].numpy(), -images[0, :, ::-1, 0])
    np.testing.assert_allclose(x[1].numpy(), 2.0)


def test_flow_dataset_gives_the_named_channels_in_order():
    images = np.stack([np.full((4, 4), v, np.float32) for v in (1.0, 2.0, 3.0)], axis=-1)[None]  # (1, 4, 4, 3)
    images[0, :, :, 0] = np.arange(4)[None, :] + 1.0  # u grows to the right
    labels = np.array([1])
    x, _ = FlowDataset((images, labels), normalise="none", channels=("u", "v"))[0]
    assert x.shape == (2, 4, 4)
    np.testing.assert_allclose(x.numpy(), images[0, :, :, :2].transpose(2, 0, 1))
    x, _ = FlowDataset((images, labels), normalise="none", channels=("strain", "u"))[0]
    np.testing.assert_allclose(x[0].numpy(), 3.0)
    np.testing.assert_allclose(x[1].numpy(), images[0, :, :, 0])
    # the flip still negates u when strain is dropped
    x, _ = FlowDataset((images, labels), augment=True, normalise="none", flip=1.0, channels=("u", "v"))[0]
    np.testing.assert_allclose(x[0].numpy(), -images[0, :, ::-1, 0])
    for bad in (("u", "w"), (), ("u", "u")):
        with pytest.raises(ValueError, match="expected distinct names from"):
            FlowDataset((images, labels), channels=bad)


def test_haar_store_records_the_held_box_and_crops_masks_with_it(tmp_path):
    from helpers_preprocess import block_frame, write_block_cascade

    cascade = write_block_cascade(tmp_path)
    root = tmp_path / "data"
    _write_clip(root / "sub01" / "EP01_01", np.stack([block_frame(90, 120, 20, 50) for _ in range(5)]), 1)
    manifest = make_manifest(
        [
            dict(
                dataset="toy",
                subject="01",
                sample="EP01_01",
                path="sub01/EP01_01",
                onset=1,
                apex=3,
                offset=5,
                fps=200.0,
                emotion="surprise",
                label=2,
            )
        ],
        dataset="toy",
        classes=CLASSES,
    )

    def block_mask(row):
        mask = np.zeros((90, 120), bool)
        mask[20:60, 50:90] = True  # exactly the block
        return mask

    config = PreprocessConfig(frames=5, size=16, crop="haar", haar_cascade=str(cascade), crop_margin=0.25)
    store = build_store(manifest, root, config, tmp_path / "cache", mask_loader=block_mask, progress=False)
    row = store.index.iloc[0]
    box = (row["crop_x"], row["crop_y"], row["crop_w"], row["crop_h"])
    assert not row["crop_fallback"] and box[2] == box[3] and box[2] > 40  # square, margin included
    from merkit.data.preprocess import Box

    expected = spatial_transform_mask(block_mask(row), (90, 120, 3), config, Box(*map(int, box)))
    np.testing.assert_array_equal(store.masks[0], expected)
    assert 0 < expected.sum() < 16 * 16  # the block fills part of the crop, not all of it
