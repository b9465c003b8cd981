"""The kit's error root: every base is a MerkitError and also the builtin it stands for."""

from __future__ import annotations

import pytest

from merkit import errors


@pytest.mark.parametrize(
    ("base", "builtin"),
    [
        (errors.MerkitValueError, ValueError),
        (errors.MerkitRuntimeError, RuntimeError),
        (errors.MerkitFileNotFoundError, FileNotFoundError),
        (errors.MerkitFileExistsError, FileExistsError),
        (errors.MerkitPermissionError, PermissionError),
    ],
)
def test_each_base_is_caught_by_the_root_and_by_its_builtin(base: type[Exception], builtin: type[Exception]) -> None:
    with pytest.raises(errors.MerkitError):
        raise base("x")
    with pytest.raises(builtin):
        raise base("x")


def test_errors_module_imports_nothing_of_merkit() -> None:
    import ast
    from pathlib import Path

    tree = ast.parse(Path(errors.__file__).read_text())
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [name for name in imported if name.startswith("merkit")]


def _kit_modules() -> list[str]:
    import pkgutil

    import merkit

    names = (info.name for info in pkgutil.walk_packages(merkit.__path__, "merkit."))
    return sorted(name for name in names if not name.endswith(".__main__"))  # importing one runs the command


def test_every_exception_class_of_the_kit_is_a_merkit_error() -> None:
    """Every class the kit defines that can be raised (warnings aside) derives from MerkitError."""
    import importlib
    import inspect

    unrooted, seen = [], []
    for name in _kit_modules():
        module = importlib.import_module(name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != name or not issubclass(cls, BaseException) or issubclass(cls, Warning):
                continue
            seen.append(cls.__qualname__)
            if not issubclass(cls, errors.MerkitError):
                unrooted.append(f"{name}.{cls.__qualname__}({', '.join(b.__name__ for b in cls.__bases__)})")
    assert len(seen) >= 20, seen  # the walk found the kit's errors (ManifestError, StoreError, ...)
    assert not unrooted, "exception classes not under merkit.errors.MerkitError: " + "; ".join(unrooted)


@pytest.mark.parametrize(
    ("module", "name", "builtin"),
    [
        ("merkit.data.manifest", "ManifestError", ValueError),
        ("merkit.cache", "CacheError", PermissionError),
        ("merkit.prepare", "DataRootError", FileNotFoundError),
        ("merkit.data.synthetic", "SynthMEExistsError", FileExistsError),
        ("merkit.runlock", "RunLockedError", RuntimeError),
        ("merkit.data.store", "StoreCorruptError", RuntimeError),
    ],
)
def test_rerooted_errors_keep_their_builtin(module: str, name: str, builtin: type[Exception]) -> None:
    import importlib

    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, errors.MerkitError) and issubclass(cls, builtin)


def test_cli_reports_a_kit_error_in_one_line_without_traceback(tmp_path, capsys) -> None:
    """A flow folder whose PNG is not an image: the store build raises StoreBuildError, the CLI says so in one line."""
    from merkit.cli import EXIT_USAGE, main

    folder = tmp_path / "flow"
    folder.mkdir()
    (folder / "listing.csv").write_text("subject,filename,label\n01,x,0\n02,y,1\n")
    for name in ("01_x.png", "02_y.png"):
        (folder / name).write_text("not a png")
    code = main(
        [
            "prepare",
            "--flow-folder",
            str(folder),
            "--listing",
            str(folder / "listing.csv"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert err.startswith("merkit: error: ") and "01_x.png" in err and "not a readable image" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_reports_a_bad_setting_in_one_line(tmp_path, capsys) -> None:
    """A preprocessing setting the kit refuses (a traceback before the settings' errors had the root)."""
    from merkit.cli import EXIT_USAGE, main

    code = main(
        [
            "prepare",
            "--dataset",
            "synthme",
            "--data-root",
            str(tmp_path / "data"),
            "--frames",
            "0",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert code == EXIT_USAGE
    assert err.startswith("merkit: error: ") and "PreprocessConfig.frames=0" in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_an_unknown_model_is_a_kit_error_naming_the_known_ones() -> None:
    from merkit.models import create_model

    with pytest.raises(errors.MerkitValueError, match="known models: .*meranet"):
        create_model("meranet_huge")
