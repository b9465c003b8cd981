"""Where a run may not go: a device the machine does not have, and a run directory it cannot write. Each is one
line naming the device (with the ones the machine has) or the directory, before anything is written."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
import torch
from helpers_users import unprivileged

import merkit.pipeline.run  # noqa: F401  (loaded as root: as 'nobody' the interpreter's own files may be unreadable)
from merkit.cli import EXIT_USAGE, main
from merkit.config import ModelConfig, ProtocolConfig, RunConfig, TrainConfig
from merkit.runlock import RunDirNotWritableError, RunLock
from merkit.training.fold import DeviceError, resolve_device

REPO = Path(__file__).resolve().parent.parent
TINY_MODEL = dict(frames=8, size=16, widths=(4, 8, 8), reduction=2, dropout=0.0)


def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine as one without CUDA (only torch's probe is replaced; nothing else is)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_cuda_without_a_cuda_device_names_the_devices_there_are(monkeypatch: pytest.MonkeyPatch):
    no_cuda(monkeypatch)
    with pytest.raises(DeviceError, match=r"device 'cuda' is not available on this machine \(available: cpu\)"):
        resolve_device("cuda")
    assert resolve_device("cpu").type == "cpu" and resolve_device("auto").type in ("cpu", "mps")


def test_a_cuda_index_beyond_the_cards_names_the_cards(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(DeviceError, match=r"'cuda:3' is not available .*available: cpu, cuda:0, cuda:1"):
        resolve_device("cuda:3")
    assert resolve_device("cuda:1") == torch.device("cuda:1")


def test_device_auto_picks_cuda_when_there_is_one(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


def test_an_unknown_device_name_is_a_device_error():
    with pytest.raises(DeviceError, match="unknown device 'cdua'"):
        resolve_device("cdua")


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory: pytest.TempPathFactory):
    """SynthME, 3 subjects × 3 clips, as grey 8×16×16 clips."""
    from merkit.data.datasets import build_manifest
    from merkit.data.preprocess import PreprocessConfig
    from merkit.data.store import build_store
    from merkit.data.synthetic import SynthMEConfig, generate_synthme

    base = tmp_path_factory.mktemp("synthme")
    root = generate_synthme(
        base / "data",
        SynthMEConfig(n_subjects=3, clips_per_subject=3, n_frames=8, size=32, video_subjects=()),
        progress=False,
    )
    manifest = build_manifest("synthme", root, "synthme_3class")
    return build_store(
        manifest, root, PreprocessConfig(frames=8, size=16, color="grey"), base / "store", progress=False
    )


def tiny_config(device: str) -> RunConfig:
    return RunConfig(
        model=ModelConfig(name="meranet_small", overrides=dict(TINY_MODEL)),
        train=TrainConfig(epochs=1, batch_size=4, device=device, precision="fp32", seed=3),
        protocol=ProtocolConfig(name="loso"),
        preprocess={"frames": 8, "size": 16, "color": "grey"},
    )


def test_run_protocol_on_a_missing_device_writes_nothing(tiny_store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from merkit.training.runner import run_protocol

    no_cuda(monkeypatch)
    with pytest.raises(DeviceError, match=r"'cuda' is not available .*available: cpu"):
        run_protocol(tiny_config("cuda"), tiny_store, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()  # not even the lock: the directory is not committed to that device


def test_a_run_directory_with_no_finished_fold_restarts_under_another_device(tiny_store, tmp_path: Path):
    from merkit.training.runner import run_protocol
    from merkit.training.runs import RunDir

    RunDir(tmp_path / "run", tiny_config("cuda"), capture=False)  # what a run that never reached a fold left
    predictions = run_protocol(tiny_config("cpu"), tiny_store, tmp_path / "run", folds=["01"], progress=False)
    assert set(predictions["fold"]) == {"01"}
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["device"] == "cpu"


@pytest.mark.slow
def test_pipeline_with_device_cuda_on_a_machine_without_is_one_line(tmp_path: Path):
    """`merkit pipeline -p device cuda` where torch sees no CUDA device: exit 2 before any notebook runs."""
    run_dir = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "merkit.cli", "pipeline", "--run-dir", str(run_dir), "-p", "device", "cuda"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": ""},  # no CUDA device, on any machine
    )
    assert result.returncode == EXIT_USAGE, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("merkit: error:")]
    assert len(errors) == 1, result.stderr
    assert "device 'cuda' is not available on this machine (available: cpu" in errors[0]
    assert not (run_dir / "notebooks").exists() and not (run_dir / "config.json").exists()


@contextlib.contextmanager
def read_only_folder(with_lock_file: bool) -> Iterator[Path]:
    """A folder under /tmp that its owner (and, as root, ``nobody``) can read but not write."""
    folder = Path(tempfile.mkdtemp(prefix="merkit-ro-run-"))
    if with_lock_file:  # a run directory an earlier run left (its lock file free), then made read-only
        with RunLock(folder):
            pass
        (folder / "run.lock").chmod(0o444)
    folder.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
    try:
        yield folder
    finally:
        folder.chmod(0o700)
        shutil.rmtree(folder)


@pytest.mark.parametrize("with_lock_file", [False, True], ids=["empty", "after_a_run"])
def test_pipeline_into_a_read_only_run_directory_is_one_line(
    with_lock_file: bool, capsys: pytest.CaptureFixture, tmp_path: Path
):
    # As 'nobody' the interpreter's own files under root's home may be unreadable: walk the same checks once as
    # root first (a refused typo, which writes nothing), so every module they load is already imported.
    assert main(["pipeline", "--run-dir", str(tmp_path / "warm"), "-p", "epoch", "1"]) == EXIT_USAGE
    capsys.readouterr()
    with read_only_folder(with_lock_file) as run_dir:
        before = sorted(p.name for p in run_dir.iterdir())
        with unprivileged():
            code = main(["pipeline", "--run-dir", str(run_dir)])
        err = capsys.readouterr().err
        assert code == EXIT_USAGE and "Traceback" not in err
        errors = [line for line in err.splitlines() if line.startswith("merkit: error:")]
        assert len(errors) == 1 and f"run directory {run_dir} cannot be written" in errors[0], err
        assert sorted(p.name for p in run_dir.iterdir()) == before


def test_run_lock_of_a_read_only_run_directory_names_it():
    with read_only_folder(False) as run_dir, unprivileged():
        with pytest.raises(RunDirNotWritableError, match=f"run directory {run_dir} cannot be written"):
            RunLock(run_dir).acquire()
