"""What the kit ships speaks of the project alone: no pointers to files a user never gets, no work-tracker talk.

Shipped: the package (code, notebooks, manifests), the docs, the README, the benchmarks and the build files.
The tests are not shipped (they may read the maintainers' reference files beside a clone, and skip without them).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ("merkit", "docs", "benchmarks", "README.md", "pyproject.toml", "Makefile", "requirements.txt", ".ci")
# A file beside the clone, and the way a work tracker numbers its items.
FORBIDDEN = re.compile(r"\.\./shared|shared/(DESIGN|REAL_FORMATS|tools|hooks)|\b(issue|session)s?[ -]#?\d+", re.I)


def _shipped_files() -> list[Path]:
    try:
        listed = subprocess.run(["git", "ls-files", *SHIPPED], cwd=REPO, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the shipped files are the ones git tracks")
    files = [REPO / name for name in listed.stdout.splitlines()]
    return [path for path in files if path.is_file() and not path.is_symlink()]


def test_forbidden_pattern_finds_what_it_should() -> None:
    for text in ("see ../shared/REAL_FORMATS.md", "fixed in issue 11", "Session 4 measured", "the session-3 row"):
        assert FORBIDDEN.search(text), text
    for text in ("one session of JupyterLab", "an issue with the sheet", "runs/shared/cache"):
        assert not FORBIDDEN.search(text), text


def test_no_shipped_file_mentions_the_work_tracker_or_files_beside_the_clone() -> None:
    found = []
    for path in _shipped_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # images and other binary files
        for number, line in enumerate(text.splitlines(), 1):
            if FORBIDDEN.search(line):
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()[:100]}")
    assert not found, "shipped text that points outside the project:\n  " + "\n  ".join(found)
