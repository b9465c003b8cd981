"""Videos without decord (no wheel on macOS arm64 / aarch64 Linux): read through OpenCV, said once."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import merkit.data.io as io
from merkit.data.synthetic import SynthMEConfig, generate_synthme

CONFIG = SynthMEConfig(n_subjects=3, clips_per_subject=3, n_frames=8, size=64, video_subjects=(1,))


@pytest.fixture(scope="module")
def video_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_synthme(tmp_path_factory.mktemp("synthme") / "data", CONFIG, progress=False)


def test_a_synthme_mp4_reads_the_same_without_decord(video_tree: Path, monkeypatch: pytest.MonkeyPatch):
    from merkit.data.datasets import build_manifest

    manifest = build_manifest("synthme", video_tree, "synthme_3class")
    row = manifest[manifest["path"].astype(str).str.endswith(".mp4")].iloc[0]
    assert io.video_backend() == "decord"
    with_decord = io.read_sample(row, video_tree)
    decord_length = io.video_length(video_tree / row["path"])
    monkeypatch.setitem(sys.modules, "decord", None)  # `import decord` now raises ImportError
    monkeypatch.setattr(io, "_BACKEND_SAID", False)
    with pytest.warns(io.VideoBackendWarning, match="OpenCV"):
        without = io.read_sample(row, video_tree)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once: a second read is silent
        io.read_sample(row, video_tree)
        length = io.video_length(video_tree / row["path"])
    assert io.video_backend() == "opencv"
    assert without.frames.shape == with_decord.frames.shape and (without.numbers == with_decord.numbers).all()
    assert np.abs(without.frames.astype(int) - with_decord.frames.astype(int)).mean() < 2.0  # same decoder family
    assert length == decord_length


def test_synthme_generates_without_decord(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "decord", None)
    monkeypatch.setattr(io, "_BACKEND_SAID", True)
    root = generate_synthme(tmp_path / "data", CONFIG, progress=False)  # reads each video back through OpenCV
    assert list(root.rglob("*.mp4"))


def test_out_of_range_is_a_clip_read_error_through_opencv(video_tree: Path, monkeypatch: pytest.MonkeyPatch):
    video = next(video_tree.rglob("*.mp4"))
    monkeypatch.setitem(sys.modules, "decord", None)
    monkeypatch.setattr(io, "_BACKEND_SAID", True)
    with pytest.raises(io.ClipReadError, match=rf"{video.name}.*decodes to"):
        io.read_clip(video, 0, 10_000)
