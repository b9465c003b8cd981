import os
import shutil
import subprocess
from pathlib import Path

import pytest

import merkit


def test_version_is_a_release_string():
    major, minor, patch = merkit.__version__.split(".")
    assert all(part.isdigit() for part in (major, minor, patch))


def test_make_lab_starts_jupyterlab_as_root_only_with_allow_root():
    """JupyterLab refuses to run as root unless told to; `make lab` tells it, and says so, only under uid 0."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    repo = Path(__file__).resolve().parents[1]
    dry_run = subprocess.run(["make", "-n", "lab"], cwd=repo, capture_output=True, text=True, check=True).stdout
    jupyter = next(line for line in dry_run.splitlines() if "jupyter lab" in line and "echo" not in line)
    assert ("--allow-root" in jupyter) == (os.geteuid() == 0)
