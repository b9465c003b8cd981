"""One source for every default: the notebooks, notebooks/demo.yaml and the CLI follow the library's defaults or
the one declared profile (merkit.config.profiles); on_problem fixes the declared errata by default; 02_train's k
fits the subjects it is given; the published STSTNet recipe runs its folds batched under executor auto.
"""

from __future__ import annotations

import ast
import csv
import inspect
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import papermill
import pytest

from merkit.cache import CACHE_DEFAULT_HELP
from merkit.cli import main
from merkit.cli.parser import build_parser
from merkit.config import ConfigError, DataConfig, RunConfig, run_parameter_names
from merkit.config.profiles import NOTEBOOK_PROFILE, PROFILES, library_defaults, profile_differences, profile_params
from merkit.pipeline.run import DEMO_PARAMS, NOTEBOOK_DIR, load_params_file, run_pipeline

NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("0*.ipynb"))

#: Differences from the profile a notebook declares on purpose: (notebook, parameter) -> why. A difference
#: not listed here fails the test below. Empty: every notebook follows the profile.
DECLARED_DIFFERENCES: dict[tuple[str, str], str] = {}

#: Parameters several notebooks declare with different defaults on purpose: (notebook, parameter) -> why.
OWN_DEFAULTS: dict[tuple[str, str], str] = {
    ("01_data", "flow_method"): "01 draws one flow image and needs a method; 02-04 compute flow only for a flow model",
}


def _declared_defaults(path: Path) -> dict[str, object]:
    """Every parameter of a notebook's parameters cell with its literal default, as papermill reads it."""
    return {name: ast.literal_eval(info["default"]) for name, info in papermill.inspect_notebook(str(path)).items()}


# ------------------------------------------------------------------------------------------- the profile


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_notebook_runs_the_declared_profile_over_the_library_defaults(path: Path):
    declared = {k: v for k, v in _declared_defaults(path).items() if k in run_parameter_names()}
    undeclared = [
        line
        for line in profile_differences(declared, NOTEBOOK_PROFILE)
        if (path.stem, line.split(":")[0]) not in DECLARED_DIFFERENCES
    ]
    assert not undeclared, f"{path.name} differs from profile {NOTEBOOK_PROFILE!r}: {undeclared}"
    # The configuration the notebook builds from its defaults is the profile's (values, types and all).
    expected = profile_params(NOTEBOOK_PROFILE)
    built = RunConfig.from_params(**declared).to_dict()
    assert built == RunConfig.from_params(**{k: expected[k] for k in declared}).to_dict()
    for name in ("precision", "device", "executor"):  # "auto" everywhere
        if name in declared:
            assert declared[name] == "auto", f"{path.name}: {name}"


def test_the_profile_changes_only_run_parameters_and_only_away_from_the_library():
    defaults = library_defaults()
    for name, values in PROFILES.items():
        assert set(values) <= run_parameter_names(), name
        same = [key for key, value in values.items() if defaults[key] == value]
        assert not same, f"profile {name!r} repeats library defaults: {same}"
    assert profile_params(NOTEBOOK_PROFILE)["model"] == "meranet_small"
    assert RunConfig.from_params().model.name == defaults["model"] != "meranet_small"  # the library keeps its own
    with pytest.raises(ConfigError, match="unknown profile 'tiny'; known: laptop"):
        profile_params("tiny")


def test_a_parameter_shared_by_notebooks_has_one_default():
    seen: dict[str, tuple[str, object]] = {}
    for path in NOTEBOOKS:
        for name, value in _declared_defaults(path).items():
            if (path.stem, name) in OWN_DEFAULTS:
                continue
            first = seen.setdefault(name, (path.stem, value))
            assert value == first[1], f"{name}: {first[1]!r} in {first[0]}, {value!r} in {path.stem}"


def test_demo_yaml_sets_no_run_parameter_against_the_profile():
    params = load_params_file(DEMO_PARAMS)
    assert profile_differences(params, NOTEBOOK_PROFILE) == []
    assert params["dataset"] == "synthme"


def test_cache_dir_help_says_where_the_cache_is(capsys):
    for path in NOTEBOOKS:
        help_text = papermill.inspect_notebook(str(path))["cache_dir"]["help"]
        assert help_text.endswith("empty: " + CACHE_DEFAULT_HELP), path.name
    for command in ("prepare", "cache"):
        with pytest.raises(SystemExit):
            build_parser().parse_args([command, "--help"])
        assert CACHE_DEFAULT_HELP in " ".join(capsys.readouterr().out.split()), command


def test_merkit_prepare_takes_the_notebooks_defaults(tmp_path: Path, capsys):
    args = build_parser().parse_args(["prepare", "--data-root", str(tmp_path)])
    assert (args.dataset, args.size, args.frames, args.on_problem, args.label_map) == (None,) * 5  # filled later
    root = tmp_path / "synthme"
    code = main(["prepare", "--data-root", str(root), "--cache-dir", str(tmp_path / "cache"), "--subjects", "2",
                 "--clips-per-subject", "3", "-q"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    laptop = profile_params(NOTEBOOK_PROFILE)
    shape = (6, laptop["frames"], laptop["size"], laptop["size"], 1)
    assert f"clips {shape}" in out and "dataset: synthme" in out


# ------------------------------------------------------------------------------------------- on_problem


def test_on_problem_has_one_default_and_it_fixes():
    from merkit.data.datasets import DEFAULT_ON_PROBLEM, build_manifest, build_megc2019

    assert DataConfig().on_problem == DEFAULT_ON_PROBLEM == "fix"
    for builder in (build_manifest, build_megc2019):
        assert inspect.signature(builder).parameters["on_problem"].default == DEFAULT_ON_PROBLEM
    assert build_parser().parse_args(["composite", "x", "--write", "y"]).on_problem is None  # the notebooks'


def test_a_samm_release_runs_with_the_defaults_and_lists_its_fixed_rows(tmp_path: Path):
    from merkit.data.synthetic import write_release
    from merkit.prepare import prepare_data

    root = write_release("samm", tmp_path / "SAMM", small=True, scale=0.25, progress=False)
    data = DataConfig(dataset="samm", data_root=str(root), label_map="samm_5class")  # on_problem left as it is
    prepared = prepare_data(data, None, cache_dir=tmp_path / "cache", run_dir=tmp_path / "run", progress=False)
    assert prepared.problems_file == tmp_path / "run" / "data_problems.csv"
    with prepared.problems_file.open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert sorted((r["sample"], r["field"], r["action"]) for r in rows) == [
        ("028_4_1", "apex", "fixed"),
        ("032_3_1", "apex", "fixed"),
    ]
    apex = dict(zip(prepared.manifest["sample"], prepared.manifest["apex"]))
    assert (apex["028_4_1"], apex["032_3_1"]) == (1105, 4945)  # the declared errata's values


def test_an_undeclared_problem_still_stops_the_default_build_naming_file_and_sample(tmp_path: Path):
    from helpers_sheets import full_samm_rows, write_samm_tree

    from merkit.data.datasets import build_manifest
    from merkit.data.manifest import ManifestError

    rows = full_samm_rows()
    clip = next(r for r in rows if r.sample not in ("028_4_1", "032_3_1", "032_3_2"))
    clip.apex = clip.offset + 40  # a fault no dataset file declares
    root = write_samm_tree(tmp_path / "SAMM", rows)
    with pytest.raises(ManifestError, match=rf"(?s)SAMM_Micro_FACS_Codes_v2.xlsx.*samm/\w+/{clip.sample}: apex"):
        build_manifest("samm", root)


# ------------------------------------------------------------------------------------------- k and subjects


def _index(subjects: int) -> pd.DataFrame:
    return pd.DataFrame(
        {"subject": [f"{s:02d}" for s in range(subjects) for _ in range(3)], "label": [0, 1, 2] * subjects}
    )


def test_the_held_out_split_fits_k_to_the_subjects():
    from merkit.evaluation.splits import FewerSubjectsWarning, ProtocolError, held_out_split

    k = profile_params(NOTEBOOK_PROFILE)["k"]
    with pytest.warns(FewerSubjectsWarning, match=rf"k={k} subject folds need {k} subjects.*has 3: using k=3"):
        fold = held_out_split(_index(3), k)
    assert len(set(_index(3).iloc[fold.test]["subject"])) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", FewerSubjectsWarning)
        fold = held_out_split(_index(12), k)  # enough subjects: a quarter held out, no warning
    assert len(set(_index(12).iloc[fold.test]["subject"])) == 12 // k
    with pytest.raises(ProtocolError, match="number of subjects"):
        held_out_split(_index(1), k)


# ------------------------------------------------------------------------------------------- executor auto


@pytest.mark.slow
def test_the_published_ststnet_recipe_runs_its_folds_batched(tmp_path: Path, monkeypatch):
    """notebooks/ststnet_published.yaml as shipped (800 epochs on 12 flow images: seconds) on a tiny exported flow
    folder: executor auto trains the folds together, and executor.json says so. The recipe fixes the epochs (a
    shorter run would be refused), so torch.compile is switched off in the kernel instead: at 800 epochs the fused
    step would compile its epilogues (tens of seconds), which tests/test_batched.py checks on its own."""
    monkeypatch.setenv("TORCH_COMPILE_DISABLE", "1")  # the notebook kernel inherits it
    from merkit.data.flow import export_flow_release
    from merkit.data.preprocess import PreprocessConfig
    from merkit.prepare import prepare_data

    data = DataConfig(synthme_n_subjects=4, synthme_clips_per_subject=3, synthme_n_frames=12, synthme_size=48)
    store = prepare_data(
        data, PreprocessConfig(frames=8, size=16), cache_dir=tmp_path / "cache", flow="dis", progress=False
    ).store
    parts = {"01": "casme2", "02": "casme2", "03": "samm", "04": "smic_hs"}  # invented composite membership
    index = store.index.assign(dataset=lambda t: t["subject"].map(parts))
    listing = export_flow_release(tmp_path / "folder", np.asarray(store.flow, dtype=np.float32), index)
    params = load_params_file(NOTEBOOK_DIR / "ststnet_published.yaml")
    assert "executor" not in params and params["recipe"] == "published"  # the notebook's default decides
    run_dir = tmp_path / "run"
    declared = papermill.inspect_notebook(str(NOTEBOOK_DIR / "03_loso.ipynb"))
    params = {k: v for k, v in params.items() if k in declared}  # 04_explain's methods and n_explain: not run here
    params.update(data_root=str(tmp_path / "folder"), listing=str(listing), n_boot=20)
    result = run_pipeline(run_dir, params, ["03_loso"], cell_timeout=400, progress=False)
    assert [r.status for r in result.notebooks] == ["executed"]
    chosen = json.loads((run_dir / "executor.json").read_text())
    assert chosen["requested"] == "auto" and chosen["executor"] == "batched", chosen
    assert json.loads((run_dir / "metrics.json").read_text())["n_folds"] == 4
