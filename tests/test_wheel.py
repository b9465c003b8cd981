"""The kit runs where it is installed: a wheel built from the checkout, installed into a folder outside it and run
from another directory, finds its notebooks and dataset manifests (package data) and runs the pipeline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers_pipeline import TINY_SYNTHME

REPO = Path(__file__).resolve().parents[1]
# What a wheel build never needs: the venv, run outputs, caches and git's own files.
NOT_SOURCES = shutil.ignore_patterns(".venv", ".git", "runs", "build", "*.egg-info", "__pycache__", ".pytest_cache")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The kit as a user gets it from a wheel: ``pip install --target`` into a folder outside the checkout."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"  # a copy, so the in-tree build leaves no build/ or egg-info in the checkout
    shutil.copytree(REPO, source, ignore=NOT_SOURCES, symlinks=True)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(work / "dist"), str(source)], check=True
    )
    (wheel,) = (work / "dist").glob("merkit-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--target", str(work / "site"), str(wheel)], check=True)
    return work


def test_the_wheel_holds_the_notebooks_and_the_manifests(installed: Path):
    (wheel,) = (installed / "dist").glob("merkit-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in ("merkit/notebooks/01_data.ipynb", "merkit/notebooks/demo.yaml", "merkit/data_manifests/samm.yaml"):
        assert required in names
    assert "merkit/report/__init__.pyi" in names  # the lazy face's stub is package data too


@pytest.mark.slow
def test_an_installed_kit_runs_the_pipeline_from_another_directory(installed: Path):
    elsewhere = installed / "elsewhere"
    elsewhere.mkdir()
    # PYTHONPATH puts the installed copy first for this process and for the kernels papermill starts from it.
    env = {**os.environ, "PYTHONPATH": str(installed / "site"), "MERKIT_CACHE": str(installed / "cache")}
    env.pop("MERKIT_MANIFESTS", None)
    where = subprocess.run(
        [sys.executable, "-c", "import merkit; print(merkit.__file__)"],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(installed / "site")

    params = [arg for name, value in TINY_SYNTHME.items() for arg in ("-p", name, str(value))]
    run = subprocess.run(
        [sys.executable, "-m", "merkit.cli", "pipeline", "--notebooks", "01_data", "--run-dir", "run", *params],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    run_dir = elsewhere / "run"
    assert (run_dir / "notebooks" / "01_data.ipynb").is_file()
    assert json.loads((run_dir / "data_summary.json").read_text())["clips"] == 9
    # The pipeline's record of the kit: the installed copy has no git checkout around it.
    state = json.loads((run_dir / "notebooks" / "pipeline_state.json").read_text())
    kits = [entry["kit"] for entry in state.values() if isinstance(entry, dict) and "kit" in entry]
    assert kits and all(kit["commit"] is None for kit in kits)
