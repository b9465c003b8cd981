"""Reproducible installs: every third-party package merkit or its notebooks import is pinned in requirements.txt."""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parent.parent


def _imported_modules() -> set[str]:
    sources = [path.read_text() for path in (REPO / "merkit").rglob("*.py")]
    for notebook in (REPO / "notebooks").glob("*.ipynb"):
        node = nbformat.read(str(notebook), as_version=4)
        sources += [cell.source for cell in node.cells if cell.cell_type == "code"]
    names = set()
    for source in sources:
        for item in ast.walk(ast.parse(source)):
            if isinstance(item, ast.Import):
                names.update(alias.name.split(".")[0] for alias in item.names)
            elif isinstance(item, ast.ImportFrom) and item.level == 0 and item.module:
                names.add(item.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"merkit", "__future__"}


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            match = re.match(r"([A-Za-z0-9_.\-]+)==([^;\s]+)", line)
            assert match, f"requirements.txt line {line!r} is not an exact pin"
            pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def test_every_imported_package_is_pinned_exactly():
    distributions = metadata.packages_distributions()
    pins = _pins()
    unpinned = []
    for module in sorted(_imported_modules()):
        names = {d.lower().replace("_", "-") for d in distributions.get(module, [module])}
        if not names & set(pins):
            unpinned.append(f"{module} (distribution {sorted(names)})")
    assert not unpinned, f"imported but not pinned in requirements.txt: {unpinned}"
    assert {"scipy", "pillow", "decord"} <= set(pins)


def test_decord_is_installed_only_where_it_has_a_wheel():
    line = next(row for row in (REPO / "requirements.txt").read_text().splitlines() if row.startswith("decord"))
    assert 'platform_machine == "x86_64"' in line  # no wheel for arm64 macOS or aarch64 Linux: OpenCV reads there
