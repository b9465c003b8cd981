"""The ground floor's atomic writes: whole files or nothing, and ordinary permissions."""

from __future__ import annotations

import os
import stat

import pytest

from merkit._io import atomic_write_bytes, atomic_write_text


def test_written_files_get_the_permissions_open_would_give(tmp_path):
    previous = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "index.html", "<html></html>")
    finally:
        os.umask(previous)
    # mkstemp alone makes 0o600 files: a report nobody else (or no web server) could read
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert path.read_text() == "<html></html>"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = atomic_write_bytes(tmp_path / "a.bin", b"old")
    with pytest.raises(TypeError):
        atomic_write_bytes(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]
