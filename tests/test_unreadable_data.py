"""`merkit prepare` on a data root or a clip folder the user may not read: one line naming it, no traceback,
nothing written to the cache.

Run as an ordinary user (``helpers_users.unprivileged``: effective user ``nobody`` when the tests run as root).
"""

from __future__ import annotations

import encodings.cp437  # noqa: F401 - zipfile (xlsx) decodes names with it: imported while still readable
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
from helpers_users import unprivileged as as_a_user

import merkit.config  # noqa: F401 - imported while the test user can still read the interpreter's files
import merkit.data.preprocess  # noqa: F401
import merkit.prepare  # noqa: F401
from merkit.cache import list_cache
from merkit.cli import main
from merkit.data.synthetic import SynthMEConfig, generate_synthme


@pytest.fixture()
def copy(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A tiny SynthME copy and a cache in a folder every user may enter (pytest's tmp folder is root's only)."""
    base = Path(tempfile.mkdtemp(prefix="merkit-unreadable-"))
    try:
        base.chmod(0o755)
        root = generate_synthme(
            base / "copy", SynthMEConfig(n_subjects=3, clips_per_subject=3, n_frames=8, size=32), progress=False
        )
        for path in [root, *root.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        (base / "cache").mkdir(mode=0o777)
        (base / "cache").chmod(0o777)
        monkeypatch.setenv("MERKIT_CACHE", str(base / "cache"))
        yield root
    finally:
        for path in [base, *base.rglob("*")]:
            if path.is_dir():
                path.chmod(0o755)
        shutil.rmtree(base)


def _prepare_as_a_user(root: Path, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    with as_a_user():
        code = main(["prepare", "--data-root", str(root), "--frames", "4", "--size", "16", "-q"])
    return code, capsys.readouterr().err


def test_an_unreadable_data_root_is_one_line_naming_it(copy: Path, capsys: pytest.CaptureFixture):
    copy.chmod(0o000)
    code, err = _prepare_as_a_user(copy, capsys)
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1
    assert f"merkit: error: data root {copy} cannot be read (permission denied)" in err
    assert list_cache() == []


def test_an_unreadable_clip_folder_is_one_line_naming_it(copy: Path, capsys: pytest.CaptureFixture):
    clip = copy / "sub02" / "EP01_02"
    clip.chmod(0o000)
    code, err = _prepare_as_a_user(copy, capsys)
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1
    assert f"merkit: error: synthme: cannot read {clip} (Permission denied)" in err
    assert list_cache() == [] and not list(Path(os.environ["MERKIT_CACHE"]).glob("store/*"))


def test_an_unreadable_sheet_is_one_line_naming_it(copy: Path, capsys: pytest.CaptureFixture):
    sheet = copy / "SynthME-coding.xlsx"
    sheet.chmod(0o000)
    code, err = _prepare_as_a_user(copy, capsys)
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1
    assert f"merkit: error: synthme: cannot read {sheet} (Permission denied)" in err
