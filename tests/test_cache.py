"""merkit.cache: one cache per user ($MERKIT_CACHE or runs/cache), shared by runs and `merkit prepare`, never in
data_root."""

from __future__ import annotations

import io
import stat
import tempfile
from pathlib import Path

import pytest
from helpers_users import unprivileged

from merkit.cache import (
    CACHE_TAG,
    STORE_MARKER,
    SYNTHME_MARKER,
    CacheError,
    ForeignCacheError,
    cache_dir,
    clear_cache,
    is_merkit_cache,
    list_cache,
)
from merkit.cli import main
from merkit.config import DataConfig
from merkit.data.preprocess import PreprocessConfig
from merkit.prepare import notebook_dirs, prepare_data

TINY = dict(synthme_n_subjects=3, synthme_clips_per_subject=3, synthme_n_frames=8, synthme_size=32)
PREPROCESS = PreprocessConfig(frames=4, size=16)


def _tree(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))}


def test_default_is_runs_cache_of_the_checkout(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("MERKIT_CACHE", raising=False)
    checkout = Path(__file__).resolve().parent.parent
    assert cache_dir(create=False) == checkout / "runs" / "cache"


def test_two_run_directories_build_the_store_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MERKIT_CACHE", str(tmp_path / "cache"))
    _, cache_a = notebook_dirs(str(tmp_path / "run_a"), "")
    first = prepare_data(DataConfig(**TINY), PREPROCESS, cache_dir=cache_a, progress=False)
    built = _tree(first.store.path)
    _, cache_b = notebook_dirs(str(tmp_path / "run_b"), "")
    second = prepare_data(DataConfig(**TINY), PREPROCESS, cache_dir=cache_b, progress=False)
    assert second.store.path == first.store.path and second.data_root == first.data_root
    assert _tree(second.store.path) == built  # opened, not rebuilt (same files, same modification times)
    kinds = sorted(entry.kind for entry in list_cache(tmp_path / "cache"))
    assert kinds == ["store", "synthme"]
    assert not (tmp_path / "run_a" / "cache").exists() and not (tmp_path / "run_b" / "cache").exists()


def test_read_only_cache_is_a_clear_error(monkeypatch: pytest.MonkeyPatch):
    locked = Path(tempfile.mkdtemp(prefix="merkit-ro-cache-"))
    try:
        locked.chmod(stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)
        monkeypatch.setenv("MERKIT_CACHE", str(locked))
        with unprivileged(), pytest.raises(CacheError, match=rf"{locked}.*MERKIT_CACHE.*cannot be written"):
            prepare_data(DataConfig(**TINY), PREPROCESS, progress=False)
    finally:
        locked.chmod(0o700)
        locked.rmdir()


def test_read_only_cache_exits_2_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, tmp_path: Path
):
    monkeypatch.setenv("MERKIT_CACHE", str(tmp_path / "a_file"))
    (tmp_path / "a_file").write_text("not a folder")
    code = main(["prepare", "--data-root", str(tmp_path / "synthme")])
    err = capsys.readouterr().err
    assert code == 2 and "a_file" in err and "cannot be written" in err and "Traceback" not in err


def test_prepare_with_a_read_only_data_root_writes_nothing_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    from merkit.data.synthetic import SynthMEConfig, generate_synthme

    root = generate_synthme(
        tmp_path / "licensed_copy",
        SynthMEConfig(n_subjects=3, clips_per_subject=3, n_frames=8, size=32),
        progress=False,
    )
    before = _tree(root)
    for path in [root, *root.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    monkeypatch.setenv("MERKIT_CACHE", str(tmp_path / "cache"))
    try:
        code = main(["prepare", "--data-root", str(root), "--frames", "4", "--size", "16", "-q"])
    finally:
        for path in [root, *root.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
    out = capsys.readouterr().out
    assert code == 0, out
    assert _tree(root) == before  # nothing added or touched inside data_root (also when root ignores modes)
    assert str(tmp_path / "cache") in out and [e.kind for e in list_cache(tmp_path / "cache")] == ["store"]


def test_cache_list_shows_sizes_and_clear_empties_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    monkeypatch.setenv("MERKIT_CACHE", str(tmp_path / "cache"))
    prepare_data(DataConfig(**TINY), PREPROCESS, progress=False)
    assert main(["cache", "list"]) == 0
    out = capsys.readouterr().out
    assert f"cache: {tmp_path / 'cache'}  ($MERKIT_CACHE)" in out
    lines = [line.split() for line in out.splitlines() if line.strip().startswith(("synthme", "store"))]
    assert sorted(line[0] for line in lines) == ["store", "synthme"]
    assert all(float(line[1]) > 0 and line[2] in ("B", "KiB", "MiB") for line in lines)
    assert main(["cache", "clear", "--yes"]) == 0
    assert "freed" in capsys.readouterr().out and list_cache(tmp_path / "cache") == []
    assert clear_cache(tmp_path / "cache") == 0


def _foreign_files(folder: Path) -> dict[str, bytes]:
    """A user's files in ``folder``, some where the kit keeps its entries (``store/``, ``synthme/``)."""
    files = {
        "store/notes.txt": b"my notes",
        "store/project/weights.bin": b"\x00\x01",
        "synthme/draft/figure.png": b"not really a png",
        "thesis.tex": b"\\documentclass{article}",
    }
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return files


def test_cache_clear_refuses_a_folder_merkit_did_not_create(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    mine = tmp_path / "my_folder"
    files = _foreign_files(mine)
    monkeypatch.setenv("MERKIT_CACHE", str(mine))
    before = _tree(mine)
    assert main(["cache", "list"]) == 0
    out = capsys.readouterr().out
    assert "(empty)" in out and "no merkit cache tag CACHEDIR.TAG" in out
    assert main(["cache", "clear", "--yes"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"merkit: error: {mine} has no merkit cache tag (CACHEDIR.TAG)" in err
    assert "Traceback" not in err
    assert _tree(mine) == before and all((mine / name).read_bytes() == data for name, data in files.items())
    with pytest.raises(ForeignCacheError, match="no merkit cache tag"):
        clear_cache(mine)
    # Using it as a cache does not claim it: the kit adds its entries, the folder stays untagged.
    prepare_data(DataConfig(**TINY), PREPROCESS, progress=False)
    assert not (mine / CACHE_TAG).exists() and main(["cache", "clear", "--yes"]) == 2
    assert all((mine / name).read_bytes() == data for name, data in files.items())


def test_cache_clear_deletes_only_the_entries_merkit_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    cache = tmp_path / "cache"
    monkeypatch.setenv("MERKIT_CACHE", str(cache))
    prepare_data(DataConfig(**TINY), PREPROCESS, progress=False)  # the kit creates the folder: tagged
    assert is_merkit_cache(cache)
    files = _foreign_files(cache)
    entries = list_cache(cache)
    assert sorted(e.kind for e in entries) == ["store", "synthme"]
    assert main(["cache", "clear", "--yes"]) == 0
    out = capsys.readouterr().out
    size = sum(e.size for e in entries)
    assert "delete 2 entries" not in out and "freed" in out  # --yes: not asked
    assert f"freed {size / 1024:.1f} KiB" in out or f"freed {size / 1024**2:.1f} MiB" in out
    assert list_cache(cache) == [] and not any(e.path.exists() for e in entries)
    assert all((cache / name).read_bytes() == data for name, data in files.items())
    assert is_merkit_cache(cache)


def test_cache_clear_asks_first_and_refuses_without_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    cache = tmp_path / "cache"
    monkeypatch.setenv("MERKIT_CACHE", str(cache))
    prepare_data(DataConfig(**TINY), PREPROCESS, progress=False)
    entries = list_cache(cache)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # a script: no terminal, no --yes
    assert main(["cache", "clear"]) == 2
    captured = capsys.readouterr()
    assert "cache clear would delete 2 entries (" in captured.err
    assert "but there is no terminal to ask: nothing deleted (add --yes)" in captured.err
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    assert list_cache(cache) == entries

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    assert main(["cache", "clear"]) == 0
    out = capsys.readouterr().out
    assert (
        "delete 2 entries (" in out and "? [y/N]" in out and "nothing deleted" in out and list_cache(cache) == entries
    )
    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    assert main(["cache", "clear"]) == 0
    assert "freed" in capsys.readouterr().out and list_cache(cache) == []


def test_the_tag_is_written_only_into_a_folder_the_kit_creates_or_finds_empty(tmp_path: Path):
    assert is_merkit_cache(cache_dir(tmp_path / "new"))
    (tmp_path / "empty").mkdir()
    assert is_merkit_cache(cache_dir(tmp_path / "empty"))
    _foreign_files(tmp_path / "used")
    assert not is_merkit_cache(cache_dir(tmp_path / "used")) and not (tmp_path / "used" / CACHE_TAG).exists()
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / CACHE_TAG).write_text("Signature: 8a477f597d28d172789f06886806bc55\n# another tool\n")
    assert not is_merkit_cache(tmp_path / "other")  # another program's cache: not merkit's to clear


def test_entry_markers_are_the_ones_the_data_layer_writes():
    from merkit.data.store import MARKER
    from merkit.data.synthetic import COMPLETION_MARKER

    assert (SYNTHME_MARKER, STORE_MARKER) == (COMPLETION_MARKER, MARKER)
