"""`merkit prepare` and the store's inputs: a store whose frames changed is rebuilt naming the clip, an unchanged
one is reused without reading a frame, and a failed build leaves nothing in the cache."""

from __future__ import annotations

import os
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

import merkit.data.store.build as build_module
from merkit.cache import list_cache
from merkit.cli import main
from merkit.data.io import read_sample
from merkit.data.synthetic import SynthMEConfig, generate_synthme

TINY = SynthMEConfig(n_subjects=3, clips_per_subject=3, n_frames=8, size=32)
PREPARE = ["--frames", "4", "--size", "16", "-q"]


@pytest.fixture()
def release(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MERKIT_CACHE", str(tmp_path / "cache"))
    return generate_synthme(tmp_path / "synthme", TINY, progress=False)


@pytest.fixture()
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every clip the store build reads, through the real reader."""
    seen: list[str] = []

    def counting(row, data_root):
        seen.append(str(row["path"]))
        return read_sample(row, data_root)

    monkeypatch.setattr(build_module, "read_sample", counting)
    return seen


def _prepare(root: Path, capsys: pytest.CaptureFixture) -> Path:
    assert main(["prepare", "--data-root", str(root), *PREPARE]) == 0
    out = capsys.readouterr().out
    return Path(re.search(r"^store: (\S+)", out, re.M).group(1))


def test_prepare_rebuilds_a_store_whose_frames_changed_and_names_the_clip(
    release: Path, reads: list[str], capsys: pytest.CaptureFixture
):
    store = _prepare(release, capsys)
    assert len(reads) == 9
    clips = np.load(store / "clips.npy")
    assert _prepare(release, capsys) == store and len(reads) == 9  # touch nothing: reused, no frame read

    clip = release / "sub02" / "EP01_02"
    for frame in sorted(clip.iterdir()):  # black out every frame of one clip, as a user re-cropping would
        before = frame.stat()
        cv2.imwrite(str(frame), np.zeros((32, 32, 3), np.uint8))
        os.utime(frame, ns=(before.st_atime_ns, before.st_mtime_ns + 10**9))
    with pytest.warns(UserWarning, match=r"synthme/02/EP01_02: a frame changed") as caught:
        assert _prepare(release, capsys) == store
    message = str(caught[0].message)
    assert message.count("synthme/") == 1 and "rebuilding" in message
    assert len(reads) == 18
    rebuilt = np.load(store / "clips.npy")
    changed = [k for k in range(len(clips)) if not np.array_equal(clips[k], rebuilt[k])]
    assert len(changed) == 1 and rebuilt[changed[0]].max() <= 1  # that clip, and only it, is now black
    assert [e.path for e in list_cache()] == [store]  # the stale store replaced, not kept beside


def test_a_failed_store_build_leaves_no_empty_entry(release: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    frame = sorted((release / "sub03" / "EP01_02").iterdir())[2]
    frame.write_bytes(frame.read_bytes()[:40])  # a truncated JPEG
    assert main(["prepare", "--data-root", str(release), *PREPARE]) == 2
    err = capsys.readouterr().err
    assert err.startswith("merkit: error: ") and "synthme/03/EP01_02" in err and "Traceback" not in err
    assert list(tmp_path.joinpath("cache", "store").rglob("*")) == []  # no store/<data root>/ left empty
    assert list_cache() == []
