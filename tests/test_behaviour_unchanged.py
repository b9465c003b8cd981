"""Behaviour does not change (issue 11): a tiny LOSO gives the predictions it gave before the refactor, and a
``config.json`` written before it still loads to the same values.

The golden files (``tests/fixtures/behaviour/<run>/``) were written at commit af411c4 by
``tests/helpers_behaviour.make_golden``; two runs there were byte-identical (CPU, fp32, fixed seed), so the
only slack allowed is 1e-5 on probabilities (float32 printed with 8 significant digits).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from merkit.config import load_config
from tests.helpers_behaviour import FIXTURES, PARAMS, RUNS, notebook_config, run_tiny_loso

EXACT = ["dataset", "subject", "sample", "fold", "gt", "pred"]


def read_predictions(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype={"dataset": str, "subject": str, "sample": str, "fold": str})


def assert_same_values(golden: object, now: object, where: str = "metrics") -> None:
    """Every value of ``golden`` is in ``now`` (floats to 1e-9; new keys in ``now`` are allowed)."""
    if isinstance(golden, dict):
        assert isinstance(now, dict), where
        for key, value in golden.items():
            assert key in now, f"{where}.{key} is gone"
            assert_same_values(value, now[key], f"{where}.{key}")
    elif isinstance(golden, list):
        assert isinstance(now, list) and len(now) == len(golden), where
        for i, (a, b) in enumerate(zip(golden, now)):
            assert_same_values(a, b, f"{where}[{i}]")
    elif isinstance(golden, float):
        assert isinstance(now, (int, float)) and math.isclose(golden, now, rel_tol=0, abs_tol=1e-9), (
            where,
            golden,
            now,
        )
    else:
        assert golden == now, (where, golden, now)


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("behaviour")
    runs = {}
    for name in RUNS:
        run_tiny_loso(name, base / name, base / "cache")
        runs[name] = base / name
    return runs


@pytest.mark.parametrize("name", list(RUNS))
def test_tiny_loso_gives_the_pre_refactor_predictions(tiny_runs: dict[str, Path], name: str) -> None:
    golden = read_predictions(FIXTURES / name / "predictions.csv")
    now = read_predictions(tiny_runs[name] / "predictions.csv")
    assert list(now.columns) == list(golden.columns)
    pd.testing.assert_frame_equal(now[EXACT], golden[EXACT])  # labels, folds and predicted classes exactly
    probs = [c for c in golden.columns if c.startswith("prob_")]
    assert len(probs) == 3
    np.testing.assert_allclose(now[probs].to_numpy(), golden[probs].to_numpy(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", list(RUNS))
def test_tiny_loso_gives_the_pre_refactor_metrics(tiny_runs: dict[str, Path], name: str) -> None:
    golden = json.loads((FIXTURES / name / "metrics.json").read_text())
    now = json.loads((tiny_runs[name] / "metrics.json").read_text())
    assert golden["n_samples"] == 9 and golden["n_folds"] == 3
    assert_same_values(golden, now)


@pytest.mark.parametrize("name", list(RUNS))
def test_config_json_of_the_pre_refactor_format_loads_to_the_same_values(name: str) -> None:
    saved = json.loads((FIXTURES / name / "config.json").read_text())
    assert saved["data"]["protocol"] == "synthme_3class"  # the class mapping's name then, upgraded when loaded
    loaded = load_config(FIXTURES / name / "config.json")
    assert loaded.data.label_map == "synthme_3class"
    assert loaded.model.name == RUNS[name]["model"]
    assert loaded.train.epochs == PARAMS["epochs"] and loaded.train.seed == PARAMS["seed"]
    assert loaded.data.synthme_n_subjects == PARAMS["synthme_n_subjects"]
    assert loaded.preprocess == saved["preprocess"]
    _, _, built = notebook_config(PARAMS, RUNS[name]["model"])
    assert loaded == built  # the config today's code builds from the same parameters
    assert loaded.config_hash() == built.config_hash()


@pytest.mark.parametrize("name", list(RUNS))
def test_from_params_builds_the_config_the_notebooks_built_by_hand(name: str) -> None:
    from merkit.config import RunConfig

    _, preprocess, built = notebook_config(PARAMS, RUNS[name]["model"])
    config = RunConfig.from_params(**PARAMS, model=RUNS[name]["model"])
    assert config == built and config.config_hash() == built.config_hash()
    assert config.preprocess_config() == preprocess
