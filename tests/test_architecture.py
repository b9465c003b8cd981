"""The shape of the house, read from the code: the import graph of merkit/, its names, and the size of its modules.

Floors, bottom up (an import may point down or sideways within a floor, never up); the folder a module sits in
tells its floor:

0. the ground floor: ``_io`` (atomic writes, to_jsonable, stable_hash), ``errors`` (MerkitError), ``upgrade``
   (saved files' older key names, read wherever a file is loaded)
1. services with no science in them: ``runlock``, ``progress``, ``cache``
2. the science rooms: ``data/``, ``models/``, ``evaluation/`` (fold splits, metrics, published numbers)
3. ``config/`` (the run's vocabulary: it names protocols, models, executors and checks them)
4. ``training/`` (one fold, the runner, executors, the run directory, ``batched/``), ``explain/``, ``viz/``
5. ``report/`` (the index page, compare, what a pipeline ran)
6. the notebooks' glue and the products: ``pipeline/``, ``prepare``, ``predict``
7. ``cli/`` (the command; its function-level imports keep ``merkit --help`` fast)
8. the public face, ``merkit`` itself: ``merkit/__init__.pyi`` lists what ``import merkit`` offers, loaded on first
   use (lazy_loader); it may name any floor, and no module of the kit takes a name from it

Every kind of import counts for the direction: module level, function level (a real arrow, only a later one),
``if TYPE_CHECKING:`` (kind "type": an annotation still ties the two rooms) and a package's ``__init__.pyi``
(the lazy_loader stub of ``merkit`` and ``merkit.report``, kind "lazy"). Module-level and type-only imports count
for cycles; a function-level or lazy import runs once every module is loaded, so it never meets a half-initialised
one.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "merkit"

# module or package -> floor. A package (data, models, explain, viz, report, cli) covers its submodules; every
# other module is named, so a new room has to be placed here (and in docs/architecture.md) on purpose.
FLOORS: dict[str, int] = {
    "merkit._io": 0,
    "merkit.errors": 0,
    "merkit.upgrade": 0,
    "merkit.runlock": 1,
    "merkit.progress": 1,
    "merkit.cache": 1,
    "merkit.data": 2,
    "merkit.models": 2,
    "merkit.evaluation": 2,
    "merkit.config": 3,
    "merkit.training": 4,
    "merkit.explain": 4,
    "merkit.viz": 4,
    "merkit.report": 5,
    "merkit.pipeline": 6,
    "merkit.prepare": 6,
    "merkit.predict": 6,
    "merkit.cli": 7,
}

# The package itself: its __init__.pyi is the public face, above every floor.
FACE = "merkit"
FACE_FLOOR = max(FLOORS.values()) + 1

# Counted on ruff-formatted code (one argument per line where a call does not fit), hence above the usual 500.
MAX_LINES = 600

# Modules still over MAX_LINES, each with the reason; the list must shrink, never grow (a module that drops
# under the limit has to leave it: the test says so).
OVER_LIMIT_ALLOWED: dict[str, str] = {}


@dataclass(frozen=True)
class Arrow:
    source: str
    target: str
    line: int
    kind: str  # "module" | "function" | "type" (if TYPE_CHECKING) | "lazy" (a lazy_loader stub, __init__.pyi)

    def __str__(self) -> str:
        return f"{self.source} -> {self.target} ({self.kind} level, line {self.line})"


def _modules() -> dict[str, Path]:
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


MODULES = _modules()


def _resolve(name: str) -> str:
    """The module a dotted import name lands in (``merkit.data.store.ClipStore`` -> ``merkit.data.store``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _is_type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def _sources() -> list[tuple[str, Path, str]]:
    """(module, file, kind of its top-level imports): every module, and the lazy stub of a package that has one."""
    sources = [(module, path, "module") for module, path in MODULES.items()]
    for module, path in MODULES.items():
        stub = path.with_suffix(".pyi")
        if path.name == "__init__.py" and stub.exists():
            sources.append((module, stub, "lazy"))
    return sources


def _arrows() -> list[Arrow]:
    arrows = []
    for module, path, top_kind in _sources():
        package = module if path.name.startswith("__init__.") else module.rpartition(".")[0]

        def visit(node: ast.AST, kind: str) -> None:
            for child in ast.iter_child_nodes(node):
                child_kind = "function" if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else kind
                if isinstance(child, ast.If) and _is_type_checking(child):
                    child_kind = "type"
                targets: list[str] = []
                if isinstance(child, ast.Import):
                    targets = [_resolve(alias.name) for alias in child.names if alias.name.startswith("merkit")]
                elif isinstance(child, ast.ImportFrom):
                    base = child.module or ""
                    if child.level:  # relative: from . import x, from ..data import y
                        anchor = package.split(".")[: len(package.split(".")) - (child.level - 1)]
                        base = ".".join(anchor + ([base] if base else []))
                    if base.startswith("merkit"):
                        targets = [_resolve(f"{base}.{alias.name}") for alias in child.names]
                for target in targets:
                    if target and target != module:
                        arrows.append(Arrow(module, target, child.lineno, child_kind))
                visit(child, child_kind)

        visit(ast.parse(path.read_text(encoding="utf-8")), top_kind)
    return arrows


ARROWS = _arrows()


def _placed(module: str, key: str) -> bool:
    return module == key or module.startswith(key + ".")


def floor_of(module: str) -> int:
    if module == FACE:
        return FACE_FLOOR
    matches = [key for key in FLOORS if _placed(module, key)]
    assert matches, f"{module} has no floor: add it to FLOORS in tests/test_architecture.py (and docs/architecture.md)"
    return FLOORS[max(matches, key=len)]


def test_the_graph_is_read() -> None:
    """Guards the reader itself: known arrows of the kit are found."""
    found = {(a.source, a.target) for a in ARROWS}
    assert ("merkit.training.runs", "merkit._io") in found
    assert ("merkit.data.manifest", "merkit.data.io") in found
    assert any(a.kind == "function" for a in ARROWS)
    assert floor_of("merkit.data.store.build") == 2 and floor_of("merkit.training.batched.wide") == 4
    assert floor_of("merkit.cli.parser") == 7 and floor_of("merkit.errors") == 0
    assert Arrow("merkit", "merkit.training.runner", 0, "lazy") in {
        Arrow(a.source, a.target, 0, a.kind) for a in ARROWS
    }  # the face's stub is read


def test_every_module_has_a_floor() -> None:
    missing = [module for module in MODULES if module != "merkit" and not any(_placed(module, key) for key in FLOORS)]
    assert not missing, f"modules with no floor in FLOORS: {missing}"


def test_no_import_runs_up_the_floors() -> None:
    up = [
        f"{arrow}: floor {floor_of(arrow.source)} imports floor {floor_of(arrow.target)}"
        for arrow in ARROWS
        if arrow.target != FACE and floor_of(arrow.target) > floor_of(arrow.source)
    ]
    assert not up, "imports that run up the floors:\n  " + "\n  ".join(up)


def test_no_module_takes_a_name_from_the_face() -> None:
    """The kit imports a name from where it lives; ``merkit`` itself gives only ``__version__`` (and its
    subpackages, ``from merkit import viz``)."""
    taken = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module == FACE and not node.level:
                taken += [
                    f"{module} (line {node.lineno}): {alias.name}"
                    for alias in node.names
                    if alias.name != "__version__" and f"{FACE}.{alias.name}" not in MODULES
                ]
    assert not taken, "modules that import from the public face:\n  " + "\n  ".join(taken)


def _cycles(graph: dict[str, set[str]]) -> list[str]:
    """Every cycle a depth-first walk meets, written ``a -> b -> a``."""
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                cycles.append(" -> ".join(stack[stack.index(target) :] + [target]))
            elif target not in state:
                visit(target, stack + [target])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return cycles


def test_the_cycle_finder_finds_a_known_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a -> b -> c -> a"]
    assert _cycles({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_no_import_cycle_at_module_level() -> None:
    graph: dict[str, set[str]] = {module: set() for module in MODULES}
    for arrow in ARROWS:
        if arrow.kind in ("module", "type"):
            graph[arrow.source].add(arrow.target)
    cycles = _cycles(graph)
    assert not cycles, "module-level import cycles:\n  " + "\n  ".join(cycles)


def _line_counts() -> dict[str, int]:
    return {module: len(path.read_text(encoding="utf-8").splitlines()) for module, path in MODULES.items()}


def test_no_module_is_over_the_size_limit() -> None:
    counts = _line_counts()
    over = {module: n for module, n in counts.items() if n > MAX_LINES and module not in OVER_LIMIT_ALLOWED}
    assert not over, f"modules over {MAX_LINES} lines (split them, one idea per module): " + ", ".join(
        f"{m} ({n})" for m, n in sorted(over.items(), key=lambda kv: -kv[1])
    )
    stale = [module for module in OVER_LIMIT_ALLOWED if counts.get(module, 0) <= MAX_LINES]
    assert not stale, f"now under {MAX_LINES} lines (or gone): remove from OVER_LIMIT_ALLOWED: {stale}"


# Packages whose modules still import private names from one another, each with the reason; the list must shrink.
PRIVATE_IMPORTS_PENDING: dict[str, str] = {}


def _private_imports() -> list[str]:
    """Every ``from merkit.x import _name`` (a private name taken from another module), as ``module: line``."""
    found = []
    for module, path in MODULES.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom):
                continue
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            if base.startswith("merkit"):
                found += [
                    f"{module} (line {node.lineno}): from {base} import {alias.name}"
                    for alias in node.names
                    if alias.name.startswith("_") and not alias.name.startswith("__")
                ]
    return found


def test_no_module_imports_a_private_name_of_another() -> None:
    found = _private_imports()
    pending = [line for line in found if any(_placed(line.split(" ")[0], key) for key in PRIVATE_IMPORTS_PENDING)]
    wrong = [line for line in found if line not in pending]
    assert not wrong, "private names imported across modules (make them public, or merge the files):\n  " + "\n  ".join(
        wrong
    )
    done = [key for key in PRIVATE_IMPORTS_PENDING if not any(_placed(line.split(" ")[0], key) for line in pending)]
    assert not done, f"no private import left in {done}: remove them from PRIVATE_IMPORTS_PENDING"


# Flat modules at the top of merkit/ beside its packages: the ground floor, the services and the two products
# (prepare, predict). More than this and the folders stop telling the floors.
MAX_TOP_LEVEL_MODULES = 10


def test_few_flat_modules_at_the_top() -> None:
    flat = sorted(path.name for path in PACKAGE.glob("*.py") if path.name != "__init__.py")
    assert len(flat) <= MAX_TOP_LEVEL_MODULES, f"{len(flat)} flat modules at the top of merkit/: {flat}"


def _module_getattr() -> list[str]:
    """Modules that resolve names through a module ``__getattr__`` the import graph cannot see: a hand-written
    ``def __getattr__``, or an assigned one without the ``__init__.pyi`` stub that declares what it loads."""
    found = []
    for module, path in MODULES.items():
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
                found.append(f"{module}: def __getattr__ (line {node.lineno})")
            assigned = isinstance(node, ast.Assign) and "__getattr__" in ast.unparse(node.targets[0])
            if assigned and not path.with_suffix(".pyi").is_file():
                found.append(f"{module}: __getattr__ assigned without a .pyi stub (line {node.lineno})")
    return found


def test_no_module_level_getattr_reexports() -> None:
    found = _module_getattr()
    assert not found, "module-level __getattr__ the architecture cannot read:\n  " + "\n  ".join(found)


def test_type_only_imports_are_read() -> None:
    """Guards the reader: an ``if TYPE_CHECKING:`` import is an arrow of kind "type" (it counts for cycles)."""
    import textwrap

    source = textwrap.dedent(
        """
        from typing import TYPE_CHECKING
        if TYPE_CHECKING:
            from merkit.errors import MerkitError
        """
    )
    tree = ast.parse(source)
    guard = next(node for node in tree.body if isinstance(node, ast.If))
    assert _is_type_checking(guard)
