"""merkit.pipeline.sweep / `merkit sweep`: grids checked before anything runs, one run directory per point, sequential
and process execution, a failing point reported while the others run, and the comparison at the end. The mechanics
use a throwaway notebook that writes real metrics (merkit.evaluation.metrics.summarise); one slow test sweeps 03_loso on
a tiny SynthME."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml
from helpers_pipeline import COMMON, make_notebook

from merkit.cli import main
from merkit.pipeline.run import ParameterError
from merkit.pipeline.sweep import expand_grid, load_grid, run_sweep, sweep_from_file

SCORE_CELL = """
import pathlib
import numpy as np, pandas as pd
from merkit.config import ModelConfig, RunConfig, TrainConfig
from merkit.evaluation.metrics import summarise
from merkit.training.runs import atomic_write_json
if fail:
    raise RuntimeError("asked to fail")
rng = np.random.default_rng(seed + 10 * len(model))
gt = np.arange(24) % 3
pred = np.where(rng.random(24) < 0.6, gt, rng.integers(0, 3, 24))
subjects = [f"s{i % 4}" for i in range(24)]
table = pd.DataFrame({"dataset": "synthme", "subject": subjects, "sample": [f"c{i}" for i in range(24)],
                      "fold": subjects, "gt": gt, "pred": pred})
atomic_write_json(pathlib.Path(run_dir) / "metrics.json", summarise(table, ["a", "b", "c"], n_boot=20))
atomic_write_json(pathlib.Path(run_dir) / "config.json",
                  RunConfig(model=ModelConfig(name=model), train=TrainConfig(seed=seed)).to_dict())
"""


@pytest.fixture()
def notebook_dir(tmp_path: Path) -> Path:
    make_notebook(
        tmp_path / "nbs" / "01_score.ipynb",
        COMMON + 'model: str = "stcnn"  # model name\nseed: int = 0  # seed\nfail: bool = False  # raise\n',
        SCORE_CELL,
    )
    return tmp_path / "nbs"


def _grid(tmp_path: Path, body: dict) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({"notebooks": ["01_score"], "out": str(tmp_path / "sweep"), **body}))
    return path


def test_grid_expands_to_the_product_with_readable_names(tmp_path: Path):
    spec = load_grid(
        _grid(tmp_path, {"grid": {"model": ["meranet_small:none", "stcnn"], "seed": [0, 1]}, "params": {"epochs": 2}})
    )
    points = expand_grid(spec)
    assert [p.name for p in points] == [
        "model=meranet_small-none_seed=0",
        "model=meranet_small-none_seed=1",
        "model=stcnn_seed=0",
        "model=stcnn_seed=1",
    ]
    assert points[1].params == {"epochs": 2, "model": "meranet_small:none", "seed": 1}
    assert points[3].run_dir == tmp_path / "sweep" / "model=stcnn_seed=1"


def test_bad_grids_are_refused_before_anything_runs(tmp_path: Path, notebook_dir: Path, capsys):
    unknown = _grid(tmp_path, {"grid": {"model": ["a", "b"], "epochz": [1, 2]}})
    assert main(["sweep", str(unknown), "--notebook-dir", str(notebook_dir)]) == 2
    err = capsys.readouterr().err
    assert "unknown parameter epochz" in err and "model" in err
    assert not (tmp_path / "sweep").exists(), "nothing ran, nothing was written"
    wrong_type = _grid(tmp_path, {"grid": {"seed": [0, "one"]}})
    with pytest.raises(ParameterError, match="seed=one.*expects an integer"):
        run_sweep(sweep_from_file(wrong_type), notebook_dir=notebook_dir, progress=False)
    assert not (tmp_path / "sweep").exists()
    with pytest.raises(ParameterError, match="unknown key gird"):
        load_grid(_grid(tmp_path, {"gird": {"seed": [0]}}))
    with pytest.raises(ParameterError, match="ray"):
        run_sweep(
            sweep_from_file(_grid(tmp_path, {"grid": {"seed": [0]}, "executor": "ray"})), notebook_dir=notebook_dir
        )


@pytest.mark.slow
def test_sweep_in_processes_runs_every_point_and_compares_them(tmp_path: Path, notebook_dir: Path):
    """Sequential sweeps are the slow test at the end of this file; here two runs at once in worker processes."""
    grid = _grid(tmp_path, {"grid": {"model": ["stcnn"], "seed": [0, 1]}, "executor": "processes", "workers": 2})
    result = run_sweep(sweep_from_file(grid), notebook_dir=notebook_dir, progress=False)
    assert [p.status for p in result.points] == ["done"] * 2
    table = pd.read_csv(tmp_path / "sweep" / "compare.csv")
    assert sorted(table["run"]) == sorted(p.name for p in result.points)
    for point in result.points:
        metrics = json.loads((point.run_dir / "metrics.json").read_text())
        assert table.loc[table["run"] == point.name, "uf1"].item() == pytest.approx(metrics["pooled"]["uf1"])
    seeds = pd.read_csv(tmp_path / "sweep" / "compare_seeds.csv")
    assert list(seeds["n_runs"]) == [2] and seeds["uf1_mean"].item() == pytest.approx(table["uf1"].mean())
    state = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert [r["status"] for r in state["runs"]] == ["done"] * 2
    assert (tmp_path / "sweep" / "compare.html").is_file() and (tmp_path / "sweep" / "compare.png").is_file()


@pytest.mark.slow
def test_a_failing_point_is_reported_and_the_others_still_run(tmp_path: Path, notebook_dir: Path, capsys):
    grid = _grid(tmp_path, {"grid": {"fail": [False, True]}, "params": {"model": "stcnn"}})
    assert main(["sweep", str(grid), "--notebook-dir", str(notebook_dir), "-q"]) == 1
    err = capsys.readouterr().err
    assert "run fail=true failed" in err.lower() and "asked to fail" in err
    state = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert [r["status"] for r in state["runs"]] == ["done", "failed"]
    assert list(pd.read_csv(tmp_path / "sweep" / "compare.csv")["run"]) == ["fail=False"]


@pytest.mark.slow
def test_sweep_of_two_models_on_tiny_synthme(tmp_path: Path):
    """The real thing: 03_loso on 3 subjects x 3 clips, 8 frames of 32², one epoch, one run per model (the seed
    axis and its spread table are the mechanics tests' above)."""
    grid = tmp_path / "grid.yaml"
    grid.write_text(
        yaml.safe_dump(
            {
                "grid": {"model": ["meranet_small", "resnet3d"]},
                "params": {
                    "synthme_n_subjects": 3,
                    "synthme_clips_per_subject": 3,
                    "synthme_n_frames": 10,
                    "synthme_size": 32,
                    "frames": 8,
                    "size": 32,
                    "epochs": 1,
                    "batch_size": 4,
                    "compare": "",
                    "n_boot": 20,
                    "device": "cpu",
                    "cache_dir": str(tmp_path / "cache"),
                },
                "notebooks": ["03_loso"],
                "out": str(tmp_path / "sweep"),
            }
        )
    )
    result = run_sweep(sweep_from_file(grid), cell_timeout=300, progress=False)
    assert [p.status for p in result.points] == ["done"] * 2, [p.error for p in result.points]
    table = result.compare.table
    assert len(table) == 2 and set(table["model.name"]) == {"meranet_small", "resnet3d"}
    assert table["uf1"].between(0, 1).all() and table["wall_s"].gt(0).all()
    for point in result.points:
        metrics = json.loads((point.run_dir / "metrics.json").read_text())
        assert table.loc[table["run"] == point.name, "uf1"].item() == pytest.approx(metrics["pooled"]["uf1"])
        assert (point.run_dir / "index.html").is_file()
        assert len(pd.read_csv(point.run_dir / "predictions.csv")) == 9
