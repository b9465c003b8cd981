"""The notebooks with flow models: ststnet on a clip dataset, and all four notebooks on a flow folder.

Both run through `merkit.pipeline.run.run_pipeline` with tiny settings (papermill, per-cell timeout), like
tests/test_notebooks.py does for the default clip model.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest

from merkit.pipeline.run import NOTEBOOK_DIR, check_parameters, load_params_file, run_pipeline

TINY_SYNTHME = {
    "synthme_n_subjects": 3,
    "synthme_clips_per_subject": 3,
    "synthme_n_frames": 12,
    "synthme_size": 48,
    "frames": 8,
    "size": 32,
}
TINY_TRAIN = {
    "epochs": 2,
    "batch_size": 8,
    "k": 3,
    "device": "cpu",
    "n_explain": 2,
    "ig_steps": 4,
    "viewer_clips": 2,
    "methods": "ig,gradcam,occlusion",
}
# Invented: which dataset each tiny SynthME subject plays in the exported composite listing.
PARTS = {"01": "casme2", "02": "casme2", "03": "samm", "04": "smic_hs"}


def _no_errors(notebook: Path) -> None:
    nb = nbformat.read(str(notebook), as_version=4)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            assert output.get("output_type") != "error", output


@pytest.mark.parametrize("recipe", ["published", "fast"])
def test_the_ststnet_params_files_are_declared_by_the_notebooks(recipe):
    params = load_params_file(NOTEBOOK_DIR / f"ststnet_{recipe}.yaml")
    assert params["model"] == "ststnet" and params["recipe"] == recipe and params["evaluation"] == "megc2019"
    check_parameters(
        {**params, "data_root": "", "listing": "x.csv"},
        [NOTEBOOK_DIR / f"{n}.ipynb" for n in ("01_data", "02_train", "03_loso", "04_explain")],
    )


@pytest.mark.slow
def test_02_train_and_04_explain_take_ststnet_on_a_clip_dataset(tmp_path):
    run_dir = tmp_path / "run"
    params = {**TINY_SYNTHME, **TINY_TRAIN, "model": "ststnet"}  # no flow_method: a flow model gets TV-L1 flow
    result = run_pipeline(run_dir, params, ["02_train", "04_explain"], cell_timeout=240, progress=False)
    assert [r.status for r in result.notebooks] == ["executed", "executed"]
    for name in ("02_train", "04_explain"):
        _no_errors(run_dir / "notebooks" / f"{name}.ipynb")
    from merkit.predict import load_model

    bundle = load_model(run_dir / "model.pt")
    assert type(bundle.model).__name__ == "STSTNet" and bundle.flow["method"] == "tvl1"
    assert "frames" not in bundle.model.model_config or bundle.model.model_config.get("size") == 28  # no clip sizes
    scores = pd.read_csv(run_dir / "explain_scores.csv")
    assert set(scores["method"]) == {"ig", "gradcam", "occlusion", "random"}
    assert set(scores["region_source"]) == {"motion mask"}  # SynthME's true masks, on the flow image's grid
    assert scores.loc[scores["method"] == "ig", "mass_in_region"].between(0, 1).all()
    for figure in ("02_attention_0", "04_scores", "04_montage", "04_overlay"):
        assert (run_dir / "figures" / f"{figure}.png").stat().st_size > 1000


@pytest.fixture(scope="module")
def flow_folder(tmp_path_factory):
    """The kit's own export of a tiny SynthME release: a 28×28 flow folder with a composite listing."""
    from merkit.config import DataConfig
    from merkit.data.flow import export_flow_release
    from merkit.data.preprocess import PreprocessConfig
    from merkit.prepare import prepare_data

    base = tmp_path_factory.mktemp("flow_nb")
    data = DataConfig(synthme_n_subjects=4, synthme_clips_per_subject=3, synthme_n_frames=12, synthme_size=48)
    store = prepare_data(
        data, PreprocessConfig(frames=8, size=16), cache_dir=base / "cache", flow="dis", progress=False
    ).store
    index = store.index.assign(dataset=lambda t: t["subject"].map(PARTS))
    listing = export_flow_release(base / "folder", np.asarray(store.flow, dtype=np.float32), index)
    return base / "folder", listing


@pytest.mark.slow
def test_all_four_notebooks_run_on_an_exported_then_imported_flow_folder(flow_folder, tmp_path):
    folder, listing = flow_folder
    run_dir = tmp_path / "run"
    params = {
        **load_params_file(NOTEBOOK_DIR / "ststnet_published.yaml"),
        **TINY_TRAIN,
        "data_root": str(folder),
        "listing": str(listing),
        "recipe": "",
        "n_boot": 20,
    }
    result = run_pipeline(
        run_dir, params, ["01_data", "02_train", "03_loso", "04_explain"], cell_timeout=240, progress=False
    )
    assert [r.status for r in result.notebooks] == ["executed"] * 4
    for name in ("01_data", "02_train", "03_loso", "04_explain"):
        _no_errors(run_dir / "notebooks" / f"{name}.ipynb")
    assert json.loads((run_dir / "data_summary.json").read_text())["clips"] == 12
    for figure in ("01_clip", "01_preprocessed", "01_flow"):  # 01_data shows the flow images
        assert (run_dir / "figures" / f"{figure}.png").stat().st_size > 1000
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["protocol"] == "megc2019" and metrics["n_folds"] == 4
    assert set(metrics["per_dataset"]) == {"casme2", "samm", "smic_hs"}
    assert not (run_dir / "explain_scores.csv").exists()  # no motion masks in a flow folder: no mask scores
    regions = pd.read_csv(run_dir / "explain_region_scores.csv")  # read against facial regions instead
    assert {"ig", "gradcam", "occlusion"} <= set(regions["method"]) and regions["mass"].between(0, 1).all()
    sources = pd.read_csv(run_dir / "explain_region_sources.csv")
    assert set(sources["region_source"]) == {"geometry"}  # no frames to run the cascades on
    for figure in ("04_regions", "04_region_mass", "04_montage", "04_overlay"):
        assert (run_dir / "figures" / f"{figure}.png").stat().st_size > 1000
