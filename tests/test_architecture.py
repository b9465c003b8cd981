"""The shape of the house, read from the code: the import graph of merkit/, its names, and the size of its modules.

Floors, bottom up (an import may point down or sideways within a floor, never up); the folder a module sits in
tells its floor:

0. the ground floor: ``_io`` (atomic writes, to_jsonable, stable_hash), ``errors`` (MerkitError)
1. services with no science in them: ``runlock``, ``progress``, ``cache``
2. the science rooms: ``data/``, ``models/``, ``evaluation/`` (fold splits, metrics, published numbers)
3. ``config/`` (the run's vocabulary: it names protocols, models, executors and checks them)
4. ``training/`` (one fold, the runner, executors, the run directory, ``batched/``), ``explain/``, ``viz/``
5. ``report/`` (the index page, compare, what a pipeline ran)
6. the notebooks' glue and the products: ``pipeline/``, ``prepare``, ``predict``
7. ``cli/`` (the command; its function-level imports keep ``merkit --help`` fast)
``merkit`` itself (``__init__.py`` + ``__init__.pyi``) is the public face above them all; no module imports it
but for ``__version__``.

Every kind of import counts for the direction: module level, function level (a real arrow, only a later one),
``if TYPE_CHECKING:`` (an annotation still ties the two rooms), and the names a lazy package lists in its
``__init__.pyi`` stub (``lazy_loader.attach_stub``). Module-level and type-only imports count for cycles; a
function-level or lazy import runs once every module is loaded, so it never meets a half-initialised one.
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
    kind: str  # "module" | "function" | "type" (if TYPE_CHECKING) | "lazy" (an __init__.pyi stub)

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


def _import_targets(child: ast.AST, package: str) -> list[str]:
    """The merkit modules an import statement lands in (relative imports resolved against ``package``)."""
    if isinstance(child, ast.Import):
        return [_resolve(alias.name) for alias in child.names if alias.name.startswith("merkit")]
    if isinstance(child, ast.ImportFrom):
        base = child.module or ""
        if child.level:  # relative: from . import x, from ..data import y
            anchor = package.split(".")[: len(package.split(".")) - (child.level - 1)]
            base = ".".join(anchor + ([base] if base else []))
        if base.startswith("merkit"):
            return [_resolve(f"{base}.{alias.name}") for alias in child.names]
    return []


def _arrows() -> list[Arrow]:
    arrows = []
    for module, path in MODULES.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]

        def visit(node: ast.AST, kind: str) -> None:
            for child in ast.iter_child_nodes(node):
                child_kind = "function" if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else kind
                if isinstance(child, ast.If) and _is_type_checking(child):
                    child_kind = "type"
                for target in _import_targets(child, package):
                    if target and target != module:
                        arrows.append(Arrow(module, target, child.lineno, child_kind))
                visit(child, child_kind)

        visit(ast.parse(path.read_text(encoding="utf-8")), "module")
        stub = path.with_suffix(".pyi")
        if stub.is_file():
            for child in ast.walk(ast.parse(stub.read_text(encoding="utf-8"))):
                for target in _import_targets(child, package):
                    if target and target != module:
                        arrows.append(Arrow(module, target, child.lineno, "lazy"))
    return arrows


ARROWS = _arrows()


def _placed(module: str, key: str) -> bool:
    return module == key or module.startswith(key + ".")


def floor_of(module: str) -> int:
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


def test_every_module_has_a_floor() -> None:
    missing = [module for module in MODULES if module != "merkit" and not any(_placed(module, key) for key in FLOORS)]
    assert not missing, f"modules with no floor in FLOORS: {missing}"


def test_no_import_runs_up_the_floors() -> None:
    up = [
        f"{arrow}: floor {floor_of(arrow.source)} imports floor {floor_of(arrow.target)}"
        for arrow in ARROWS
        if arrow.target != "merkit" and floor_of(arrow.target) > floor_of(arrow.source)
    ]
    assert not up, "imports that run up the floors:\n  " + "\n  ".join(up)


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


# Flat modules at the top of merkit/ beside its packages: the ground floor, the services and the two products
# (prepare, predict). More than this and the folders stop telling the floors.
MAX_TOP_LEVEL_MODULES = 10


def test_few_flat_modules_at_the_top() -> None:
    flat = sorted(path.name for path in PACKAGE.glob("*.py") if path.name != "__init__.py")
    assert len(flat) <= MAX_TOP_LEVEL_MODULES, f"{len(flat)} flat modules at the top of merkit/: {flat}"


def _private_imports() -> list[str]:
    """``from merkit.x import _name`` in another module: a seam drawn through the middle of an idea."""
    found = []
    for module, path in MODULES.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom):
                continue
            for alias in node.names:
                private = alias.name.startswith("_") and not alias.name.startswith("__")
                targets = _import_targets(ast.ImportFrom(node.module, [alias], node.level), package)
                if private and targets and targets[0] != module:
                    found.append(f"{module} imports {alias.name} from {targets[0]} (line {node.lineno})")
    return found


def test_no_module_imports_another_modules_private_name() -> None:
    found = _private_imports()
    assert not found, "private names imported across modules (make them public, or merge the files):\n  " + (
        "\n  ".join(found)
    )


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


def test_the_lazy_faces_are_read_from_their_stubs() -> None:
    """Guards the reader: the report package's stub names its modules as (lazy) arrows."""
    lazy = {(a.source, a.target) for a in ARROWS if a.kind == "lazy"}
    assert ("merkit.report", "merkit.report.index") in lazy
