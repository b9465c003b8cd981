"""Run directory: atomic writes, environment capture, config checks and fold-level kill/resume."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from merkit.evaluation.metrics import PredictionsError
from merkit.training import runs
from merkit.training.runs import (
    CheckpointError,
    RunConfigMismatch,
    RunDir,
    atomic_torch_save,
    atomic_write_csv,
    atomic_write_json,
    atomic_write_text,
    capture_env,
    config_differences,
    git_commit,
    to_jsonable,
)

CONFIG = {
    "data": {"dataset": "synthme"},
    "train": {"epochs": 3, "lr": 0.001},
    "protocol": {"name": "loso", "executor": "sequential", "workers": 1},
}


def fold_predictions(fold, subject, n=2, with_fold=True):
    df = pd.DataFrame(
        {
            "dataset": ["synthme"] * n,
            "subject": [subject] * n,
            "sample": [f"{subject}_{i}" for i in range(n)],
            "gt": np.arange(n) % 3,
            "pred": (np.arange(n) + 1) % 3,
            "prob_a": np.full(n, 1 / 3),
            "prob_b": np.full(n, 0.123456789012345678),
            "prob_c": np.full(n, 0.5),
        }
    )
    if with_fold:
        df.insert(3, "fold", [fold] * n)
    return df


def stray_files(directory: Path) -> list[str]:
    return [p.name for p in directory.rglob("*.tmp")]


# -- atomic writes ---------------------------------------------------------------------------------


def test_atomic_write_text_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "a.txt"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two"
    assert stray_files(tmp_path) == []


def test_atomic_write_json_keeps_old_file_when_serialising_fails(tmp_path):
    path = tmp_path / "m.json"
    atomic_write_json(path, {"uf1": 0.5})
    with pytest.raises(TypeError, match="object"):
        atomic_write_json(path, {"uf1": object()})
    assert json.loads(path.read_text()) == {"uf1": 0.5}
    assert stray_files(tmp_path) == []


def test_atomic_write_keeps_old_file_when_replace_fails(tmp_path, monkeypatch):
    path = tmp_path / "p.csv"
    atomic_write_csv(pd.DataFrame({"x": [1]}), path)

    def crash(src, dst):
        raise OSError("disk gone")

    monkeypatch.setattr(runs.os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        atomic_write_csv(pd.DataFrame({"x": [2]}), path)
    monkeypatch.undo()
    assert pd.read_csv(path)["x"].tolist() == [1]
    assert stray_files(tmp_path) == []


def test_atomic_torch_save_round_trip_and_failure(tmp_path):
    path = tmp_path / "c.pt"
    atomic_torch_save({"w": torch.arange(3)}, path)
    assert torch.equal(torch.load(path)["w"], torch.arange(3))
    with pytest.raises(Exception):
        atomic_torch_save({"f": lambda: 0}, path)  # lambdas cannot be pickled
    assert torch.equal(torch.load(path)["w"], torch.arange(3))
    assert stray_files(tmp_path) == []


def test_csv_floats_round_trip_exactly(tmp_path):
    df = fold_predictions(0, "01")
    atomic_write_csv(df, tmp_path / "p.csv")
    back = pd.read_csv(tmp_path / "p.csv")
    assert back["prob_b"].tolist() == df["prob_b"].tolist()
    assert back["prob_a"].tolist() == df["prob_a"].tolist()


def test_to_jsonable_handles_numpy_nan_and_paths():
    out = to_jsonable(
        {
            "a": np.float32(0.5),
            "b": np.int64(3),
            "c": float("nan"),
            "d": Path("/x"),
            "e": (1, 2),
            "f": np.array([1.0, np.inf]),
            "g": np.bool_(True),
        }
    )
    assert out == {"a": 0.5, "b": 3, "c": None, "d": "/x", "e": [1, 2], "f": [1.0, None], "g": True}
    json.dumps(out, allow_nan=False)


# -- environment -----------------------------------------------------------------------------------


def test_capture_env_reports_versions_threads_and_device():
    env = capture_env()
    assert env["torch"] == torch.__version__
    assert env["numpy"] == np.__version__
    assert env["torch_threads"] == torch.get_num_threads()
    assert env["device"]["default"] in {"cpu", "cuda", "mps"}
    assert env["cpu_count"] >= 1
    json.dumps(env, allow_nan=False)


def test_git_commit_of_a_repo_and_of_no_repo(tmp_path):
    assert git_commit(tmp_path) == {"commit": None, "dirty": None}
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "f").write_text("x")
    subprocess.run([*git, "-C", str(tmp_path), "add", "f"], check=True)
    subprocess.run([*git, "-C", str(tmp_path), "commit", "-qm", "x"], check=True)
    head = subprocess.run(
        ["git", "-C", str(tmp_path), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert git_commit(tmp_path) == {"commit": head, "dirty": False}
    (tmp_path / "f").write_text("y")
    assert git_commit(tmp_path)["dirty"] is True


# -- config checks on resume -----------------------------------------------------------------------


def test_run_dir_writes_config_and_env(tmp_path):
    run = RunDir(tmp_path / "run", CONFIG, manifest_hash="abc")
    assert json.loads(run.config_path.read_text()) == CONFIG
    env = json.loads(run.env_path.read_text())
    assert env["torch"] == torch.__version__ and env["resumes"] == []
    assert json.loads((run.path / "manifest.json").read_text()) == {"manifest_hash": "abc"}
    assert not run.resumed
    again = RunDir(tmp_path / "run", CONFIG, manifest_hash="abc")
    assert again.resumed
    assert len(json.loads(again.env_path.read_text())["resumes"]) == 1


def test_config_object_with_to_dict_is_accepted(tmp_path):
    class Cfg:
        def to_dict(self):
            return {"train": {"epochs": (1, 2)}}

    run = RunDir(tmp_path / "run", Cfg(), capture=False)
    RunDir(tmp_path / "run", {"train": {"epochs": [1, 2]}}, capture=False)  # tuple == list after JSON
    assert run.config == {"train": {"epochs": [1, 2]}}


def test_resume_with_different_config_is_refused_naming_keys(tmp_path):
    run = RunDir(tmp_path / "run", CONFIG, capture=False)
    run.mark_fold_done("01", fold_predictions("01", "01"))
    changed = json.loads(json.dumps(CONFIG))
    changed["train"]["epochs"] = 5
    changed["data"]["extra"] = 1
    with pytest.raises(RunConfigMismatch) as err:
        RunDir(tmp_path / "run", changed, capture=False)
    message = str(err.value)
    assert "train.epochs: saved 3, now 5" in message
    assert "data.extra: absent in the saved config" in message
    assert "1 finished fold" in message and "new run directory" in message
    # the refused attempt did not overwrite the saved config
    assert json.loads((tmp_path / "run" / "config.json").read_text()) == CONFIG


def test_resume_allows_scheduling_keys_to_change(tmp_path):
    RunDir(tmp_path / "run", CONFIG, capture=False)
    changed = json.loads(json.dumps(CONFIG))
    changed["protocol"].update(executor="ray", workers=4)
    run = RunDir(tmp_path / "run", changed, capture=False)
    assert run.resumed
    assert json.loads(run.config_path.read_text())["protocol"]["executor"] == "ray"


def test_resume_refused_when_manifest_changed(tmp_path):
    run = RunDir(tmp_path / "run", CONFIG, manifest_hash="aaa", capture=False)
    run.mark_fold_done("01", fold_predictions("01", "01"))
    with pytest.raises(RunConfigMismatch, match="manifest_hash: saved 'aaa', now 'bbb'"):
        RunDir(tmp_path / "run", CONFIG, manifest_hash="bbb", capture=False)


def test_a_run_directory_with_no_finished_fold_takes_a_new_config(tmp_path):
    RunDir(tmp_path / "run", CONFIG, manifest_hash="aaa", capture=False)  # a run that stopped before its first fold
    elsewhere = json.loads(json.dumps(CONFIG))
    elsewhere["train"]["device"] = "cpu"
    elsewhere["train"]["epochs"] = 5
    run = RunDir(tmp_path / "run", elsewhere, manifest_hash="bbb", capture=False)
    assert run.resumed and json.loads(run.config_path.read_text()) == elsewhere
    assert json.loads((tmp_path / "run" / "manifest.json").read_text()) == {"manifest_hash": "bbb"}


def test_resume_refused_when_config_json_is_corrupt(tmp_path):
    RunDir(tmp_path / "run", CONFIG, capture=False)
    (tmp_path / "run" / "config.json").write_text("{not json")
    with pytest.raises(RunConfigMismatch, match="unreadable"):
        RunDir(tmp_path / "run", CONFIG, capture=False)


def test_config_differences_ignores_nested_resumable_prefix():
    saved = {"protocol": {"executor": "sequential", "name": "loso"}}
    now = {"protocol": {"executor": "ray", "name": "lodo"}}
    assert config_differences(saved, now, {"protocol.executor"}) == ["protocol.name: saved 'loso', now 'lodo'"]


# -- folds, kill and resume ------------------------------------------------------------------------


def test_completed_folds_and_predictions_keep_fold_and_subject_types(tmp_path):
    run = RunDir(tmp_path / "run", CONFIG, capture=False)
    run.mark_fold_done("006", fold_predictions("006", "006"), pd.DataFrame({"epoch": [0, 1]}))
    run.mark_fold_done("01", fold_predictions("01", "01", n=3))
    ints = RunDir(tmp_path / "ints", CONFIG, capture=False)
    for k in (10, 2):
        ints.mark_fold_done(k, fold_predictions(k, f"s{k}", with_fold=False))
    assert run.completed_folds() == ["006", "01"]
    assert ints.completed_folds() == [2, 10]
    preds = run.load_predictions()
    assert len(preds) == 5
    assert preds["fold"].tolist() == ["006"] * 2 + ["01"] * 3
    assert preds["subject"].tolist()[0] == "006"
    assert ints.load_predictions()["fold"].tolist() == [2, 2, 10, 10]
    assert run.load_history("006")["epoch"].tolist() == [0, 1]
    run.write_predictions()
    assert len(pd.read_csv(run.predictions_path)) == 5


def test_fold_with_files_but_no_marker_is_not_complete(tmp_path):
    run = RunDir(tmp_path / "run", CONFIG, capture=False)
    run.mark_fold_done("01", fold_predictions("01", "01"))
    atomic_write_csv(fold_predictions("02", "02"), run.fold_dir("02") / "predictions.csv")
    (run.fold_dir("02") / ".predictions.csv.x.tmp").write_text("half")  # debris of a killed write
    assert run.completed_folds() == ["01"]
    assert not run.is_done("02")
    assert set(run.load_predictions()["fold"]) == {"01"}


def test_crash_before_marker_leaves_fold_incomplete(tmp_path, monkeypatch):
    run = RunDir(tmp_path / "run", CONFIG, capture=False)
    run.mark_fold_done("01", fold_predictions("01", "01"))
    real = runs.atomic_write_json

    def crash_on_marker(path, obj, indent=2):
        if Path(path).name == "done.json":
            raise KeyboardInterrupt("killed")
        return real(path, obj, indent)

    monkeypatch.setattr(runs, "atomic_write_json", crash_on_marker)
    with pytest.raises(KeyboardInterrupt):
        run.mark_fold_done("01", fold_predictions("01", "01", n=4))  # re-running a done fold
    monkeypatch.undo()
    assert run.completed_folds() == []  # old marker removed first, new one never written


def test_killed_process_loses_only_the_running_fold(tmp_path):
    script = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_runs import CONFIG, fold_predictions
        from merkit.training.runs import RunDir, atomic_write_csv
        run = RunDir({str(tmp_path / "run")!r}, CONFIG, capture=False)
        run.mark_fold_done("01", fold_predictions("01", "01"))
        atomic_write_csv(fold_predictions("02", "02"), run.fold_dir("02") / "predictions.csv")
        os._exit(9)  # killed before fold 02's marker
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    run = RunDir(tmp_path / "run", CONFIG, capture=False)
    assert run.resumed and run.completed_folds() == ["01"]
    todo = [f for f in ["01", "02", "03"] if not run.is_done(f)]
    assert todo == ["02", "03"]
    for fold in todo:
        run.mark_fold_done(fold, fold_predictions(fold, fold))
    assert run.load_predictions()["fold"].tolist() == ["01", "01", "02", "02", "03", "03"]


def test_mark_fold_done_rejects_bad_predictions(tmp_path):
    run = RunDir(tmp_path / "run", CONFIG, capture=False)
    with pytest.raises(PredictionsError, match="other fold"):
        run.mark_fold_done("01", fold_predictions("02", "02"))
    with pytest.raises(PredictionsError, match="'pred'"):
        run.mark_fold_done("01", fold_predictions("01", "01").drop(columns="pred"))
    assert run.completed_folds() == []


def test_write_metrics_is_strict_json(tmp_path):
    run = RunDir(tmp_path / "run", CONFIG, capture=False)
    run.write_metrics({"pooled": {"uf1": np.float64(0.5), "f1_absent": float("nan")}})
    assert json.loads(run.metrics_path.read_text()) == {"pooled": {"uf1": 0.5, "f1_absent": None}}


# -- checkpoints -----------------------------------------------------------------------------------


def test_checkpoint_round_trip(tmp_path):
    run = RunDir(tmp_path / "run", CONFIG, capture=False)
    state = {"model": {"w": torch.ones(2, 3)}, "epoch": 4}
    run.save_checkpoint("01", state)
    back = run.load_checkpoint("01")
    assert back["epoch"] == 4 and torch.equal(back["model"]["w"], torch.ones(2, 3))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_checkpoint_raises_naming_the_file(tmp_path, damage):
    run = RunDir(tmp_path / "run", CONFIG, capture=False)
    path = run.save_checkpoint("01", {"model": {"w": torch.ones(64, 64)}})
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": bytes(range(200)), "empty": b""}[damage])
    with pytest.raises(CheckpointError, match="checkpoint.pt") as err:
        run.load_checkpoint("01")
    assert "fold '01'" in str(err.value)


def test_random_bytes_of_any_kind_are_a_corrupt_checkpoint(tmp_path):
    # the weights-only unpickler fails on random bytes with many exception types (IndexError, KeyError, ...)
    import random

    run = RunDir(tmp_path / "run", CONFIG, capture=False)
    path = run.save_checkpoint("01", {"model": {"w": torch.ones(4, 4)}})
    for seed in range(40):
        path.write_bytes(random.Random(seed).randbytes(200))
        with pytest.raises(CheckpointError, match="checkpoint.pt"):
            run.load_checkpoint("01")


def test_missing_checkpoint_raises(tmp_path):
    run = RunDir(tmp_path / "run", CONFIG, capture=False)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        run.load_checkpoint(3)


class NotAllowedByWeightsOnly:
    """A pickled class instance: weights_only loading refuses it (not corruption)."""


def test_checkpoint_refused_by_weights_only_says_so(tmp_path):
    run = RunDir(tmp_path / "run", CONFIG, capture=False)
    run.save_checkpoint(0, {"extra": NotAllowedByWeightsOnly()})
    with pytest.raises(CheckpointError, match="weights_only loading refuses"):
        run.load_checkpoint(0)
    assert isinstance(run.load_checkpoint(0, weights_only=False)["extra"], NotAllowedByWeightsOnly)
