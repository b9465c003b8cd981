"""The README's commands and examples still match the kit (issue 11: "the README's commands still run").

Running every command for real would train for minutes, so this checks what a renamed flag, parameter or
import would break: every ``merkit …`` line of the README parses with the real argument parser, every
``-p name value`` names a parameter some notebook declares, and the Python
example's imports resolve to the names it uses.
"""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import pytest

from merkit.cli.parser import build_parser
from merkit.pipeline.params import COMMON_PARAMETERS, NOTEBOOK_DIR, notebook_parameters

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")


def _code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def _merkit_commands() -> list[list[str]]:
    """Every ``.venv/bin/merkit …`` line of the README's bash blocks, as argv (comments stripped)."""
    commands = []
    for block in _code_blocks("bash"):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith(".venv/bin/merkit "):
                commands.append(shlex.split(line)[1:])
    return commands


def test_the_readme_shows_the_main_commands():
    names = {argv[0] for argv in _merkit_commands()}
    assert {"pipeline", "sweep", "compare", "prepare", "predict", "composite", "teach"} <= names


@pytest.mark.parametrize("argv", _merkit_commands(), ids=lambda argv: " ".join(argv)[:60])
def test_every_readme_command_parses(argv: list[str]):
    build_parser().parse_args(argv)  # argparse exits (SystemExit) on an unknown flag or a missing argument


def test_every_readme_notebook_parameter_is_declared():
    declared = {name for nb in sorted(NOTEBOOK_DIR.glob("0*.ipynb")) for name in notebook_parameters(nb)}
    declared |= set(COMMON_PARAMETERS)
    used = {argv[i + 1] for argv in _merkit_commands() for i, word in enumerate(argv[:-1]) if word == "-p"}
    used |= set(re.findall(r"`-p (\w+) ", README))  # the parameters named in the release table
    assert used, "the README names no -p parameter: the pattern above no longer matches it"
    assert used - declared == set()


def test_the_python_example_imports_what_it_uses():
    (example,) = [block for block in _code_blocks("python") if "run_protocol" in block]
    tree = ast.parse(example)
    imported = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    called = {node.func.id for node in ast.walk(tree) if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert called <= imported
    for node in ast.walk(tree):  # every import of the example resolves
        if isinstance(node, ast.ImportFrom):
            module = __import__(node.module, fromlist=[a.name for a in node.names])
            for alias in node.names:
                assert hasattr(module, alias.name), f"{node.module} has no {alias.name}"
