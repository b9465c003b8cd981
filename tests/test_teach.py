"""Teaching material: the exercise convention of every notebook, student and instructor copies, the leakage lab.

The slow test builds the instructor copies with TINY settings (papermill, through `merkit.pipeline.run`), so every
solution's assert runs; the leakage lab's written results are checked against the invariant of selecting on the
held-out subject.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import papermill
import pytest
import torch
from helpers_pipeline import KERNELSPEC, TINY_SYNTHME
from torch import nn
from torch.utils.data import TensorDataset

from merkit.pipeline import teach
from merkit.pipeline.run import NOTEBOOK_DIR, PipelineError, run_pipeline
from merkit.training.fold import train_fold

TEACH_NOTEBOOKS = [NOTEBOOK_DIR / f"{name}.ipynb" for name in teach.TEACH_ORDER]
TINY = {
    **TINY_SYNTHME,
    "epochs": 2,
    "batch_size": 4,
    "k": 3,
    "compare": "meranet_small:none",
    "n_boot": 20,
    "n_explain": 2,
    "ig_steps": 4,
    "viewer_clips": 2,
    "methods": "ig,gradcam,attention",
    "device": "cpu",
    "leakage_seeds": 2,
}


def _tags(cell) -> list[str]:
    return cell.metadata.get("tags", [])


# ------------------------------------------------------------------------------------------ the convention


@pytest.mark.parametrize("path", TEACH_NOTEBOOKS, ids=[p.stem for p in TEACH_NOTEBOOKS])
def test_every_notebook_has_three_to_five_exercises_each_with_a_student_cell(path: Path):
    nb = nbformat.read(str(path), as_version=4)
    positions = [i for i, cell in enumerate(nb.cells) if "exercise" in _tags(cell)]
    assert 3 <= len(positions) <= 5
    for i in positions:
        follower = nb.cells[i + 1]
        assert follower.cell_type == "code" and "student" in _tags(follower)
        solutions = []
        for cell in nb.cells[i + 2 :]:
            if "solution" not in _tags(cell):
                break
            solutions.append(cell)
        assert solutions, f"exercise at cell {i + 1} has no solution"
        last = ast.parse(solutions[-1].source).body[-1]  # a statement, however many lines the formatter wraps
        assert isinstance(last, ast.Assert), f"exercise at cell {i + 1}: its last solution cell ends without an assert"
    assert teach.check_exercises(nb, path.name) == []


def test_check_exercises_names_a_broken_exercise():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("**Exercise 1.** do it", metadata={"tags": ["exercise"]}),
        nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["solution"]}),
    ]
    problems = teach.check_exercises(nb, "bad.ipynb")
    assert any("bad.ipynb cell 1" in p and "student" in p for p in problems)
    assert any("bad.ipynb cell 2" in p and "assert" in p for p in problems)


def test_student_copies_have_no_solution_and_no_output(tmp_path: Path):
    built = teach.build(tmp_path / "lab", execute=False)
    assert [p.name for p in built.student] == [p.name for p in TEACH_NOTEBOOKS]
    assert built.instructor == [] and built.pipeline is None
    for path, source in zip(built.student, TEACH_NOTEBOOKS):
        nb = nbformat.read(str(path), as_version=4)
        original = nbformat.read(str(source), as_version=4)
        assert not [c for c in nb.cells if "solution" in _tags(c)]
        assert len(nb.cells) == len([c for c in original.cells if "solution" not in _tags(c)])
        assert sum("exercise" in _tags(c) for c in nb.cells) >= 3
        for cell in nb.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None
        assert nb.metadata["kernelspec"] == KERNELSPEC
        assert papermill.inspect_notebook(str(path)) == papermill.inspect_notebook(str(source))


def _notebook_with_a_failing_solution(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell(
            'run_dir: str = ""  # where to write\ndata_root: str = ""  # unused', metadata={"tags": ["parameters"]}
        ),
        nbformat.v4.new_markdown_cell("**Exercise 1.** what is 1 + 1?", metadata={"tags": ["exercise"]}),
        nbformat.v4.new_code_cell("", metadata={"tags": ["student"]}),
        nbformat.v4.new_code_cell("answer = 3\nassert answer == 2", metadata={"tags": ["solution"]}),
        nbformat.v4.new_code_cell("done = True"),
    ]
    for cell in nb.cells:
        cell.pop("id", None)
    nb.nbformat_minor = 4
    nbformat.write(nb, str(path))
    return path


def test_the_pipeline_leaves_solutions_out_unless_asked(tmp_path: Path):
    source = _notebook_with_a_failing_solution(tmp_path / "01_toy.ipynb")
    result = run_pipeline(tmp_path / "plain", {}, [source], progress=False, cell_timeout=60)
    executed = nbformat.read(str(result.notebooks[0].output), as_version=4)
    assert not [c for c in executed.cells if "solution" in _tags(c)]
    assert any("exercise" in _tags(c) for c in executed.cells)
    assert not list((tmp_path / "plain" / "notebooks").glob(".*.ipynb"))  # no stripped copy left behind
    with pytest.raises(PipelineError) as caught:
        run_pipeline(tmp_path / "teacher", {}, [source], progress=False, cell_timeout=60, solutions=True)
    # the position is the one in the committed notebook (the solution is its 4th cell)
    assert caught.value.cell == 4 and caught.value.ename == "AssertionError"


def test_solution_times_sum_each_exercises_solution_cells():
    def timed(source: str, tags: list[str], seconds: float | None):
        duration = {} if seconds is None else {"papermill": {"duration": seconds}}
        return nbformat.v4.new_code_cell(source, metadata={"tags": tags, **duration})

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        timed("slow_setup()", [], 100.0),  # not a solution: not counted
        nbformat.v4.new_markdown_cell("**Exercise 1.**", metadata={"tags": ["exercise"]}),
        timed("", ["student"], 0.5),
        timed("a = 1", ["solution"], 2.0),
        timed("assert a", ["solution"], 0.25),
        nbformat.v4.new_markdown_cell("**Exercise 2.**", metadata={"tags": ["exercise"]}),
        timed("", ["student"], None),
        timed("assert True", ["solution"], None),  # never ran
    ]
    times = teach.solution_times(nb, "toy")
    assert list(times["exercise"]) == [1, 2] and list(times["cells"]) == [2, 1]
    assert times["seconds"].iloc[0] == 2.25 and np.isnan(times["seconds"].iloc[1])


def test_teach_build_refuses_run_dir(tmp_path: Path):
    with pytest.raises(ValueError, match="run_dir"):
        teach.build(tmp_path, {"run_dir": str(tmp_path)}, execute=False)


# ------------------------------------------------------------------------------------------ library helpers


def test_the_epoch_observer_sees_a_copy_and_does_not_change_training():
    generator = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(24, 6, generator=generator), torch.randint(0, 3, (24,), generator=generator))
    cfg = {"epochs": 3, "batch_size": 5, "lr": 0.01, "device": "cpu", "seed": 1}

    def fresh() -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(6, 8), nn.Dropout(0.5), nn.Linear(8, 3))

    plain, _ = train_fold(fresh(), data, cfg, progress=False, num_classes=3)
    seen = []

    def observe(epoch: int, snapshot: nn.Module) -> None:
        assert not snapshot.training
        seen.append((epoch, snapshot))
        with torch.no_grad():
            snapshot[0].weight.add_(1.0)  # vandalise the copy: the training must not notice

    observed, history = train_fold(fresh(), data, cfg, progress=False, num_classes=3, on_epoch_end=observe)
    assert [epoch for epoch, _ in seen] == [1, 2, 3] and all(s is not observed for _, s in seen)
    for key, value in plain.state_dict().items():
        assert torch.equal(value, observed.state_dict()[key])
    assert list(history["epoch"]) == [1, 2, 3]


def test_apex_by_frame_difference_finds_the_largest_change():
    frames = np.zeros((5, 4, 4), np.uint8)
    frames[2] = 10
    frames[3] = 30  # the largest change from onset: the apex
    frames[4] = 5
    assert teach.apex_by_frame_difference(frames, [46, 47, 48, 49, 50]) == 49
    assert np.allclose(teach.frame_differences(frames), [0, 0, 10, 30, 5])


def test_seed_interval_and_best_of_random_guessing():
    interval = teach.seed_interval([0.5, 0.6, 0.7])
    assert np.isclose(interval["mean"], 0.6) and interval["low"] < 0.6 < interval["high"]
    # t(0.975, 2) = 4.303; sd 0.1 -> half width 4.303 * 0.1 / sqrt(3)
    assert np.isclose(interval["high"] - 0.6, 4.3027 * 0.1 / np.sqrt(3), atol=1e-3)
    assert teach.seed_interval([0.4])["low"] == 0.4
    guessed = teach.best_of_random_guessing([9] * 12, 15, 3, runs=300)
    assert guessed.shape == (300,) and guessed.mean() > 0.5  # chance is 1/3; selection alone adds ~0.2
    assert abs(teach.best_of_random_guessing([9] * 12, 1, 3, runs=2000).mean() - 1 / 3) < 0.01


def test_subject_bootstrap_draws_whole_subjects():
    predictions = pd.DataFrame(
        {"subject": ["a"] * 4 + ["b"] * 4, "gt": [0, 1, 0, 1] * 2, "pred": [0, 1, 0, 1] + [1, 0, 1, 0]}
    )  # a: all right, b: all wrong
    interval = teach.subject_bootstrap(predictions, 2, n_boot=200, seed=0)
    # a draw is {a, a}, {a, b} or {b, b}: UF1 1.0, 0.5 or 0.0 and nothing in between
    assert interval["low"] == 0.0 and interval["high"] == 1.0


# ------------------------------------------------------------------------------------------ instructor build


@pytest.fixture(scope="module")
def instructor_build(tmp_path_factory):
    out = tmp_path_factory.mktemp("teach") / "lab"
    return teach.build(out, TINY, progress=False, cell_timeout=300)


@pytest.mark.slow
def test_instructor_copies_execute_every_solution(instructor_build):
    assert [p.name for p in instructor_build.instructor] == [p.name for p in TEACH_NOTEBOOKS]
    for path in instructor_build.instructor:
        nb = nbformat.read(str(path), as_version=4)
        solutions = [c for c in nb.cells if "solution" in _tags(c)]
        assert len(solutions) >= 3
        for cell in solutions:
            assert cell.execution_count is not None, f"{path.name}: a solution did not run"
            assert not [o for o in cell.outputs if o.get("output_type") == "error"]
        assert path.with_suffix(".html").is_file()
        # what benchmarks/bench_teach.py reads: one time per exercise, from papermill's per-cell durations
        times = teach.solution_times(nb, path.stem)
        assert list(times["exercise"]) == list(range(1, len(teach.exercises(nb)) + 1))
        assert (times["cells"] >= 1).all() and times["seconds"].notna().all() and (times["seconds"] >= 0).all()


@pytest.mark.slow
def test_leakage_lab_selection_never_loses_and_reports_the_gap(instructor_build):
    run_dir = instructor_build.out / "instructor" / "run"
    folds = pd.read_csv(run_dir / "leakage_folds.csv")
    assert len(folds) == TINY["leakage_seeds"] * TINY["synthme_n_subjects"]  # one row per seed and LOSO fold
    assert (folds["selected_accuracy"] >= folds["final_accuracy"]).all()
    assert folds["selected_epoch"].between(1, TINY["epochs"]).all()
    leakage = json.loads((run_dir / "leakage.json").read_text())
    assert leakage["seeds"] == TINY["leakage_seeds"] and leakage["n_folds"] == TINY["synthme_n_subjects"]
    per_seed = pd.DataFrame(leakage["per_seed"])
    assert np.allclose(per_seed["gap_uf1"], per_seed["selected_uf1"] - per_seed["honest_uf1"])
    assert np.isclose(leakage["gap_uf1"]["mean"], per_seed["gap_uf1"].mean())
    assert (per_seed["selected_accuracy"] >= per_seed["honest_accuracy"] - 1e-12).all()
    assert (run_dir / "figures" / "05_leakage.png").stat().st_size > 1000


def test_cli_teach_build_writes_student_copies_and_checks_parameters(tmp_path: Path, capsys):
    from merkit.cli import EXIT_USAGE, main

    assert main(["teach", "build", str(tmp_path / "lab"), "--no-execute"]) == 0
    assert sorted(p.name for p in (tmp_path / "lab" / "student").glob("*.ipynb")) == [p.name for p in TEACH_NOTEBOOKS]
    assert main(["teach", "build", str(tmp_path / "lab2"), "-p", "epochz", "1"]) == EXIT_USAGE
    assert "unknown parameter epochz" in capsys.readouterr().err
    assert not (tmp_path / "lab2").exists()  # refused before anything was written
