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
