"""merkit.runlock: one writer per run directory; a second pipeline or run_protocol is refused at once naming the
holder; a lock left by a killed process is taken over; a pipeline's own kernels are let in."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from merkit.runlock import LOCK_ENV, RunLock, RunLockedError, read_holder

REPO = Path(__file__).resolve().parent.parent
HOLD = (
    "import sys, time\nfrom merkit.runlock import RunLock\nlock = RunLock(sys.argv[1]).acquire()\n"
    "print('held', flush=True)\ntime.sleep(120)\n"
)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _hold(run_dir: Path) -> subprocess.Popen:
    """Another process holding ``run_dir``'s lock (returns once it holds it)."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdout=subprocess.PIPE, text=True, env=_env())
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_lock_is_refused_naming_the_holder(tmp_path: Path):
    holder = _hold(tmp_path / "run")
    try:
        with pytest.raises(RunLockedError) as caught:
            RunLock(tmp_path / "run").acquire()
        message = str(caught.value)
        assert f"pid {holder.pid}" in message and socket.gethostname() in message and "started 20" in message
        assert caught.value.holder["pid"] == holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_second_pipeline_into_a_locked_directory_exits_at_once(tmp_path: Path):
    run_dir = tmp_path / "run"
    holder = _hold(run_dir)
    try:
        started = time.monotonic()
        second = subprocess.run(
            [sys.executable, "-m", "merkit.cli", "pipeline", "--run-dir", str(run_dir)],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=60,
        )
        elapsed = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()
    assert second.returncode == 3, second.stderr
    assert f"pid {holder.pid}" in second.stderr and socket.gethostname() in second.stderr
    assert "Traceback" not in second.stderr
    assert not (run_dir / "notebooks").exists()  # refused before anything ran
    # Refused before the heavy imports (no numpy, pandas, torch, papermill): 0.1 s measured on the idle 2-core
    # machine, 0.5 s at load 11. The issue asks for "within a second"; the subprocess start is included.
    assert elapsed < 1, f"refusal took {elapsed:.2f} s (the issue asks for under a second)"


def test_stale_lock_of_a_killed_process_is_taken_over(tmp_path: Path):
    holder = _hold(tmp_path / "run")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert read_holder(tmp_path / "run")["pid"] == holder.pid  # the dead holder's record is still there
    with RunLock(tmp_path / "run") as lock:
        assert lock.stale is not None and lock.stale["pid"] == holder.pid
        assert read_holder(tmp_path / "run")["pid"] == os.getpid()
        with RunLock(tmp_path / "run") as inner:  # the pipeline re-entering the CLI's lock still learns of it
            assert inner.stale == lock.stale
    assert read_holder(tmp_path / "run") == {}  # released: an empty lock file is a free one


def test_reentrant_in_one_process_and_inherited_by_children(tmp_path: Path):
    with RunLock(tmp_path / "run") as outer:
        with RunLock(tmp_path / "run"):  # the pipeline re-enters its own lock
            pass
        assert read_holder(tmp_path / "run")["pid"] == os.getpid()  # still held after the inner release
        probe = "import sys\nfrom merkit.runlock import RunLock\nprint(RunLock(sys.argv[1]).acquire().inherited)\n"
        child = subprocess.run(
            [sys.executable, "-c", probe, str(tmp_path / "run")],
            capture_output=True,
            text=True,
            env={**outer.child_env(), "PYTHONPATH": str(REPO)},
        )
        assert child.stdout.strip() == "True", child.stderr
        stranger = subprocess.run(
            [sys.executable, "-c", probe, str(tmp_path / "run")],
            capture_output=True,
            text=True,
            env={k: v for k, v in _env().items() if k != LOCK_ENV},
        )
        assert stranger.returncode != 0 and "RunLockedError" in stranger.stderr


def test_run_protocol_into_a_locked_directory_is_refused_before_any_fold(tmp_path: Path):
    from merkit.config import ModelConfig, ProtocolConfig, RunConfig, TrainConfig
    from merkit.data.datasets import build_manifest
    from merkit.data.preprocess import PreprocessConfig
    from merkit.data.store import build_store
    from merkit.data.synthetic import SynthMEConfig, generate_synthme
    from merkit.training.runner import run_protocol

    root = generate_synthme(
        tmp_path / "data",
        SynthMEConfig(n_subjects=3, clips_per_subject=3, n_frames=8, size=32, video_subjects=()),
        progress=False,
    )
    store = build_store(
        build_manifest("synthme", root, "synthme_3class"),
        root,
        PreprocessConfig(frames=8, size=16),
        tmp_path / "store",
        progress=False,
    )
    config = RunConfig(
        model=ModelConfig(name="meranet_small", overrides={"frames": 8, "size": 16}),
        train=TrainConfig(epochs=1, device="cpu"),
        protocol=ProtocolConfig(name="loso"),
        preprocess=PreprocessConfig(frames=8, size=16).to_dict(),
    )
    holder = _hold(tmp_path / "run")
    try:
        with pytest.raises(RunLockedError, match=f"pid {holder.pid}"):
            run_protocol(config, store, tmp_path / "run", progress=False)
    finally:
        holder.kill()
        holder.wait()
    assert not (tmp_path / "run" / "config.json").exists() and not (tmp_path / "run" / "folds").exists()
