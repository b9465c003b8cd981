"""merkit.prepare: SynthME generated under the cache when data_root is empty, manifest + store, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from merkit.config import DataConfig
from merkit.data.preprocess import PreprocessConfig
from merkit.prepare import DataRootError, notebook_dirs, prepare_data, synthme_root

TINY = dict(synthme_n_subjects=3, synthme_clips_per_subject=3, synthme_n_frames=10, synthme_size=32)


def test_empty_data_root_generates_synthme_under_cache_and_builds_store(tmp_path: Path):
    data = DataConfig(**TINY)
    prepared = prepare_data(data, PreprocessConfig(frames=4, size=16), cache_dir=tmp_path, progress=False)
    assert prepared.generated
    assert prepared.data_root.parent == tmp_path / "synthme"
    assert len(prepared.manifest) == 9 and prepared.manifest["subject"].nunique() == 3
    assert prepared.classes == ["negative", "positive", "surprise"]
    assert prepared.store.clips.shape == (9, 4, 16, 16, 1)
    assert prepared.store.masks is not None  # SynthME has ground-truth motion masks
    again = prepare_data(data, PreprocessConfig(frames=4, size=16), cache_dir=tmp_path, progress=False)
    assert again.store.path == prepared.store.path


def test_synthme_root_differs_per_config(tmp_path: Path):
    from merkit.data.synthetic import SynthMEConfig

    assert synthme_root(tmp_path, SynthMEConfig(n_subjects=3)) != synthme_root(tmp_path, SynthMEConfig(n_subjects=4))


def test_manifest_only_without_preprocess(tmp_path: Path):
    prepared = prepare_data(DataConfig(**TINY), None, cache_dir=tmp_path, progress=False)
    assert prepared.store is None and len(prepared.manifest) == 9


def test_missing_data_root_names_the_path(tmp_path: Path):
    missing = tmp_path / "CASME2"
    with pytest.raises(DataRootError, match="CASME2.*does not exist"):
        prepare_data(
            DataConfig(dataset="casme2", data_root=str(missing), label_map="casme2_5class"), cache_dir=tmp_path
        )


def test_real_dataset_needs_a_data_root(tmp_path: Path):
    with pytest.raises(DataRootError, match="needs data_root"):
        prepare_data(DataConfig(dataset="samm", data_root="", label_map=""), cache_dir=tmp_path)


def test_notebook_dirs_defaults_and_creates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MERKIT_CACHE", str(tmp_path / "user_cache"))
    run, cache = notebook_dirs(str(tmp_path / "run"), "")
    assert run == (tmp_path / "run").resolve() and cache == (tmp_path / "user_cache").resolve()
    assert (run / "figures").is_dir() and cache.is_dir()
    assert not (run / "cache").exists()  # one cache per user, not one per run directory


def test_two_synthme_sizes_with_the_same_sheet_get_different_stores(tmp_path: Path):
    small = prepare_data(
        DataConfig(**{**TINY, "synthme_size": 32}),
        PreprocessConfig(frames=4, size=16),
        cache_dir=tmp_path,
        progress=False,
    )
    large = prepare_data(
        DataConfig(**{**TINY, "synthme_size": 64}),
        PreprocessConfig(frames=4, size=16),
        cache_dir=tmp_path,
        progress=False,
    )
    assert small.store.path != large.store.path
    assert not (small.store.clips[0] == large.store.clips[0]).all()


def test_flow_by_method_name_builds_a_separate_store_with_flow(tmp_path: Path):
    data, preprocess = DataConfig(**TINY), PreprocessConfig(frames=4, size=16)
    plain = prepare_data(data, preprocess, cache_dir=tmp_path, flow="", progress=False)
    assert plain.store.flow is None
    with_flow = prepare_data(data, preprocess, cache_dir=tmp_path, flow="dis", progress=False)
    assert with_flow.store.flow.shape == (9, 28, 28, 3)  # FlowConfig's default 28×28 (u, v, strain)
    assert with_flow.store.flow_config.method == "dis"
    assert with_flow.store.path != plain.store.path  # flow settings are part of the store key
    assert np.array_equal(np.asarray(with_flow.store.clips), np.asarray(plain.store.clips))
    with pytest.raises(ValueError, match="FlowConfig.method='tvl2'"):
        prepare_data(data, preprocess, cache_dir=tmp_path, flow="tvl2", progress=False)
    with pytest.raises(ValueError, match="needs a preprocess config"):
        prepare_data(data, None, cache_dir=tmp_path, flow="dis", progress=False)
