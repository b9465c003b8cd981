"""The seam between the fold runner and the executors, read from the code: merkit/training/ modules use one
another's public names only, and nothing below the runner reaches back up into it."""

from __future__ import annotations

import ast
from pathlib import Path

TRAINING = Path(__file__).resolve().parent.parent / "merkit" / "training"


def _imports(path: Path) -> list[tuple[str, str, int]]:
    """(module, name, line) of every ``from merkit... import name`` in ``path``, at any level."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("merkit"):
            found += [(node.module, alias.name, node.lineno) for alias in node.names]
    return found


def test_training_modules_import_no_private_name_of_another_module():
    private = [
        f"{path.relative_to(TRAINING.parent.parent)}:{line} imports {name} from {module}"
        for path in sorted(TRAINING.rglob("*.py"))
        for module, name, line in _imports(path)
        if name.startswith("_")
    ]
    assert not private, "private names imported across modules:\n  " + "\n  ".join(private)


def test_only_the_runner_knows_the_runner():
    """Executors and the fold job get everything they need handed down; none imports the runner, even lazily."""
    upward = [
        f"{path.relative_to(TRAINING.parent.parent)}:{line}"
        for path in sorted(TRAINING.rglob("*.py"))
        if path.name != "runner.py"
        for module, _name, line in _imports(path)
        if module == "merkit.training.runner"
    ]
    assert not upward, f"imports of merkit.training.runner below it: {upward}"
