"""The kit's notebooks: hygiene of the committed files, and a smoke run of all of them under papermill.

The smoke run executes the notebooks in order through `merkit.pipeline.run.run_pipeline` with TINY parameters
(a few SynthME subjects, small clips, one epoch) and a per-cell timeout, into one run directory; each test
below then checks the artefacts one notebook writes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pandas as pd
import papermill
import pytest
from helpers_pipeline import KERNELSPEC, TINY_SYNTHME

from merkit.pipeline.run import (
    DEFAULT_ORDER,
    DEMO_PARAMS,
    NOTEBOOK_DIR,
    check_parameters,
    load_params_file,
    run_pipeline,
)

NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
TINY = TINY_SYNTHME


# ------------------------------------------------------------------------------------------------ hygiene


def test_the_default_notebooks_exist():
    for name in DEFAULT_ORDER:
        if name in [path.stem for path in NOTEBOOKS]:
            continue
        pytest.fail(f"notebooks/{name}.ipynb is missing")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_hygiene(path: Path):
    nb = nbformat.read(str(path), as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec") == KERNELSPEC
    assert nb.metadata.get("language_info", {}).get("name") == "python"
    assert "papermill" not in nb.metadata
    tagged = [cell for cell in nb.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged `parameters`"
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        assert "injected-parameters" not in tags
        assert "papermill" not in cell.metadata
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "committed without outputs"


#: Files the library writes into a run directory (merkit.training.runs.RunDir, merkit.training.runner): a notebook never
#: rewrites them.
LIBRARY_FILES = (
    "metrics.json",
    "predictions.csv",
    "config.json",
    "env.json",
    "timings.json",
    "executor.json",
    "manifest.json",
)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_no_notebook_writes_a_file_the_library_writes(path: Path):
    nb = nbformat.read(str(path), as_version=4)
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for line in cell.source.splitlines():
            if re.search(r"atomic_write|to_csv|to_json|write_text|write_bytes|open\(|json\.dump|savefig", line):
                written = [name for name in LIBRARY_FILES if re.search(r"[\"/]" + re.escape(name) + '"', line)]
                assert not written, f"{path.name} writes the library's {written}: {line}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebooks_configuration_cell_is_one_from_params_call(path: Path):
    """The cell after `parameters` builds the run's config with RunConfig.from_params, not section by section."""
    nb = nbformat.read(str(path), as_version=4)
    first = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    setup = nb.cells[first + 1].source
    assert setup.count("RunConfig.from_params(") == 1
    for cell in nb.cells:
        assert not re.search(r"\b(DataConfig|TrainConfig|ProtocolConfig|PreprocessConfig)\(", cell.source), path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_parameters_cell_is_typed_and_documented(path: Path):
    """Every line `name: type = value  # help` must be understood by papermill (an `=` in the help breaks it)."""
    nb = nbformat.read(str(path), as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    lines = [line for line in cell.source.splitlines() if line.strip() and not line.strip().startswith("#")]
    declared = papermill.inspect_notebook(str(path))
    assert len(declared) == len(lines), f"papermill parsed {sorted(declared)} from {len(lines)} lines"
    for line in lines:
        assert re.match(r"^\w+: (int|float|str|bool) = .+  # \S", line), f"not `name: type = value  # help`: {line}"
    for name in ("run_dir", "data_root"):
        assert name in declared
    assert all(info["help"] for info in declared.values())


def test_demo_params_are_declared_by_the_notebooks():
    params = load_params_file(DEMO_PARAMS)
    check_parameters(
        params, [NOTEBOOK_DIR / f"{name}.ipynb" for name in DEFAULT_ORDER if (NOTEBOOK_DIR / f"{name}.ipynb").exists()]
    )


# ------------------------------------------------------------------------------------------------ smoke run


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("notebooks") / "run"
    names = [name for name in DEFAULT_ORDER if (NOTEBOOK_DIR / f"{name}.ipynb").exists()]
    params = {k: v for k, v in TINY.items()}
    sources = [NOTEBOOK_DIR / f"{name}.ipynb" for name in names]
    declared = set().union(*(papermill.inspect_notebook(str(s)) for s in sources))
    extra = {
        "epochs": 1,
        "batch_size": 4,  # k: the default, more folds than TINY's 3 subjects (02/04 hold out one, with a warning)
        "compare": "meranet_small:none",
        "compare_seeds": 2,
        "n_boot": 20,
        "n_explain": 2,
        "ig_steps": 4,
        "viewer_clips": 2,
        "methods": "ig,gradcam,attention",
        "device": "cpu",
    }
    params.update({k: v for k, v in extra.items() if k in declared})
    result = run_pipeline(run_dir, params, names, cell_timeout=240, progress=False)
    assert [r.status for r in result.notebooks] == ["executed"] * len(names)
    return run_dir


def _no_errors(notebook: Path) -> None:
    nb = nbformat.read(str(notebook), as_version=4)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            assert output.get("output_type") != "error"


@pytest.mark.slow
def test_01_data_artefacts(tiny_run: Path):
    _no_errors(tiny_run / "notebooks" / "01_data.ipynb")
    manifest = pd.read_csv(tiny_run / "manifest.csv")
    assert len(manifest) == 9 and manifest["subject"].nunique() == 3
    summary = json.loads((tiny_run / "data_summary.json").read_text())
    assert summary["clips"] == 9 and summary["preprocess"]["frames"] == 8
    for figure in ("01_class_counts", "01_clip", "01_preprocessed", "01_crop_box", "01_flow"):
        assert (tiny_run / "figures" / f"{figure}.png").stat().st_size > 1000
    assert (tiny_run / "notebooks" / "01_data.html").is_file()
    assert "01_data.html" in (tiny_run / "index.html").read_text()


@pytest.mark.slow
def test_02_train_artefacts(tiny_run: Path):
    _no_errors(tiny_run / "notebooks" / "02_train.ipynb")
    history = pd.read_csv(tiny_run / "train_history.csv")
    assert list(history["epoch"]) == [1] and history["loss"].notna().all()
    split = json.loads((tiny_run / "train_split.json").read_text())
    assert 0 <= split["uf1"] <= 1 and split["n_test"] == 3 and len(split["held_out_subjects"]) == 1
    assert "using k=3" in (tiny_run / "notebooks" / "02_train.ipynb").read_text()  # the default k, lowered, says so
    assert len(pd.read_csv(tiny_run / "train_predictions.csv")) == 3
    from merkit.predict import load_model

    bundle = load_model(tiny_run / "model.pt")
    assert bundle.classes == ["negative", "positive", "surprise"] and bundle.preprocess["frames"] == 8
    for figure in ("02_loss", "02_attention_0"):
        assert (tiny_run / "figures" / f"{figure}.png").stat().st_size > 1000


@pytest.mark.slow
def test_03_loso_artefacts(tiny_run: Path):
    _no_errors(tiny_run / "notebooks" / "03_loso.ipynb")
    predictions = pd.read_csv(tiny_run / "predictions.csv")
    assert len(predictions) == 9 and predictions["fold"].nunique() == 3  # LOSO: one fold per subject
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert set(metrics["pooled"]) >= {"uf1", "uar", "accuracy"} and metrics["n_folds"] == 3
    assert metrics["ci"]["uf1"]["n_boot"] == 20 and metrics["model"] == "meranet_small"
    assert (tiny_run / "config.json").is_file() and (tiny_run / "env.json").is_file()
    comparison = pd.read_csv(tiny_run / "comparison.csv")
    assert list(comparison["variant"])[1:] == ["meranet_small:none"]
    assert (tiny_run / "compare" / "meranet_small_none" / "metrics.json").is_file()
    seeds = pd.read_csv(tiny_run / "comparison_seeds.csv")  # compare_seeds=2: every variant twice, this run's too
    assert seeds.groupby("variant")["seed"].apply(sorted).tolist() == [[0, 1], [0, 1]]
    assert comparison["n_seeds"].tolist() == [2, 2] and comparison["uf1_seed_sd"].notna().all()
    assert (tiny_run / "figures" / "03_comparison_seeds.png").stat().st_size > 1000
    assert len(pd.read_csv(tiny_run / "per_subject.csv")) == 3
    published = pd.read_csv(tiny_run / "published_results.csv")
    assert published["protocol"].notna().all() and published["source"].notna().all()
    for figure in ("03_confusion", "03_per_subject", "03_comparison"):
        assert (tiny_run / "figures" / f"{figure}.png").stat().st_size > 1000
    index = (tiny_run / "index.html").read_text()
    assert "uf1" in index and "03_loso.html" in index


@pytest.mark.slow
def test_04_explain_artefacts(tiny_run: Path):
    _no_errors(tiny_run / "notebooks" / "04_explain.ipynb")
    scores = pd.read_csv(tiny_run / "explain_scores.csv")
    assert set(scores["method"]) >= {"ig", "gradcam", "attention", "random"}
    assert scores["clip"].nunique() == 2
    # a map with no mass at all (Grad-CAM's ReLU on a clip with only negative evidence) scores NaN, by contract
    assert scores["mass_in_region"].dropna().between(0, 1).all()
    assert scores.loc[scores["method"].isin(["ig", "random"]), "mass_in_region"].notna().all()
    summary = pd.read_csv(tiny_run / "explain_summary.csv")
    assert summary["auc"].between(0, 1).all() and set(summary["method"]) >= {"attention", "random"}
    modules = pd.read_csv(tiny_run / "explain_attention_modules.csv")  # one row per module, trained and controls
    assert list(modules.columns[:3]) == ["network", "module", "grid"]
    assert {"auc", "auc_lo", "auc_hi", "pointing", "pointing_lo", "pointing_hi", "mass_above_median", "n_clips"} <= set(
        modules.columns
    )
    trained = modules[modules["network"] == "trained"]
    assert trained["module"].astype(str).tolist() == ["0", "1", "2", "mean"] and (trained["n_clips"] == 2).all()
    assert set(modules["network"]) == {"trained", "untrained", "random map"}
    control = pd.read_csv(tiny_run / "explain_vs_untrained.csv")  # every method scored on an untrained twin too
    assert set(control["method"]) == set(scores["method"])
    assert control["mass_over_chance_untrained"].notna().all()
    for figure in ("04_scores", "04_montage", "04_attention_modules", "04_viewer", "04_overlay"):
        assert (tiny_run / "figures" / f"{figure}.png").stat().st_size > 1000
    html = (tiny_run / "notebooks" / "04_explain.html").read_text()
    assert "04_explain" in html or "Explain" in html
