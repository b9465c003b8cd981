"""Sweeps: the pipeline over the product of listed parameters, one run directory each, then a comparison.

A grid file (YAML)::

    grid:                      # name: list of values; the runs are the product of every list
      model: [meranet_small, stcnn]
      seed: [0, 1]
    params:                    # fixed parameters of every run (optional)
      epochs: 15
    params_files: [demo.yaml]  # parameter files read first (optional; relative to the grid file)
    notebooks: [03_loso]       # which notebooks to run (optional; default all four)
    out: runs/sweep            # where the run directories go (optional; default runs/<grid file stem>)
    executor: sequential       # sequential | processes (optional; the command line wins)
    workers: 2                 # runs at once with processes (optional)

Precedence: ``params_files`` < ``params`` < the grid value. Each run goes to ``out/<name=value_...>/`` and is a
plain pipeline run (it resumes). Contract:

- every parameter of every run is checked against the notebooks (names and declared types) BEFORE anything
  runs, and an unknown key in the grid file itself is refused: `merkit.pipeline.run.ParameterError`;
- a run that fails is recorded (``sweep.json``) and the others still run; the comparison covers the runs that
  wrote metrics (`merkit.report.compare_runs` into ``out/``: ``compare.csv``, ``compare.html``, ``compare.png``);
- ``executor`` ``sequential`` runs one pipeline after the other in this process; ``processes`` runs up to
  ``workers`` pipelines at once in worker processes (each pipeline's notebooks run in their own kernels anyway).
  The folds inside a run have their own executor: the 03_loso parameter ``executor`` (sequential, processes,
  ray), set in ``params``.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from merkit.pipeline.params import check_recipe
from merkit.pipeline.run import (
    DEFAULT_CELL_TIMEOUT,
    DEFAULT_ORDER,
    ParameterError,
    check_parameters,
    check_paths,
    load_params_file,
    resolve_notebooks,
    run_pipeline,
)
from merkit.report import CompareError, compare_runs
from merkit.training.runs import atomic_write_text

#: Keys a grid file may hold.
GRID_KEYS = frozenset({"grid", "params", "params_files", "notebooks", "out", "executor", "workers"})
#: How the runs of a sweep are executed.
SWEEP_EXECUTORS = ("sequential", "processes")


@dataclass
class SweepSpec:
    """A parsed grid file (paths resolved)."""

    grid: dict[str, list[Any]]
    params: dict[str, Any]
    notebooks: list[str]
    out: Path
    executor: str = "sequential"
    workers: int = 1
    source: Path | None = None


@dataclass
class SweepPoint:
    """One run of a sweep: its directory name, its full parameters (fixed + grid) and its grid values."""

    name: str
    params: dict[str, Any]
    values: dict[str, Any]
    run_dir: Path
    status: str = "pending"  # pending | done | failed
    seconds: float = 0.0
    error: str = ""


@dataclass
class SweepResult:
    """What `run_sweep` did; ``compare`` is None when no run wrote metrics."""

    out: Path
    points: list[SweepPoint]
    compare: Any = None
    skipped: list[str] = field(default_factory=list)

    @property
    def failed(self) -> list[SweepPoint]:
        return [p for p in self.points if p.status == "failed"]


def load_grid(path: str | os.PathLike) -> SweepSpec:
    """Read a grid file (format in the module docstring); raises `ParameterError` naming the file on a bad one."""
    path = Path(path)
    if not path.is_file():
        raise ParameterError(f"grid file {path} does not exist")
    import yaml

    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ParameterError(f"grid file {path} is not valid YAML: {err}") from None
    if not isinstance(loaded, dict):
        raise ParameterError(f"grid file {path} must hold a mapping with a `grid:` entry")
    unknown = sorted(set(loaded) - GRID_KEYS)
    if unknown:
        raise ParameterError(
            f"grid file {path}: unknown key {', '.join(unknown)} (valid: {', '.join(sorted(GRID_KEYS))}; "
            "notebook parameters go under `grid:` or `params:`)"
        )
    grid = loaded.get("grid")
    if not isinstance(grid, dict) or not grid:
        raise ParameterError(f"grid file {path}: `grid:` must map parameter names to lists of values")
    values: dict[str, list[Any]] = {}
    for name, options in grid.items():
        options = options if isinstance(options, list) else [options]
        if not options:
            raise ParameterError(f"grid file {path}: `{name}` lists no values")
        values[str(name)] = options
    params: dict[str, Any] = {}
    files = loaded.get("params_files") or []
    for item in files if isinstance(files, list) else [files]:
        candidate = Path(item)
        params.update(load_params_file(candidate if candidate.is_absolute() else path.parent / candidate))
    fixed = loaded.get("params") or {}
    if not isinstance(fixed, dict):
        raise ParameterError(f"grid file {path}: `params:` must be a mapping of name: value")
    params.update({str(k): v for k, v in fixed.items()})
    both = sorted(set(values) & set(fixed))
    if both:
        raise ParameterError(f"grid file {path}: {', '.join(both)} given both in `grid:` and in `params:`")
    if "run_dir" in values or "run_dir" in params:
        raise ParameterError(f"grid file {path}: run_dir is set per run by the sweep (use `out:` for the folder)")
    notebooks = loaded.get("notebooks") or list(DEFAULT_ORDER)
    out = Path(loaded.get("out") or Path("runs") / path.stem)
    spec = SweepSpec(
        values,
        params,
        [str(n) for n in (notebooks if isinstance(notebooks, list) else [notebooks])],
        out,
        str(loaded.get("executor") or "sequential"),
        int(loaded.get("workers") or 1),
        path,
    )
    return spec


def _slug(value: Any) -> str:
    text = str(value).strip() if not isinstance(value, float) else f"{value:g}"
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", text).strip("-") or "empty"


def expand_grid(spec: SweepSpec) -> list[SweepPoint]:
    """The runs of a sweep, in the grid's order (the last listed parameter varies fastest)."""
    names = list(spec.grid)
    points: list[SweepPoint] = []
    used: set[str] = set()
    for combination in itertools.product(*(spec.grid[n] for n in names)):
        values = dict(zip(names, combination))
        name = "_".join(f"{n}={_slug(v)}" for n, v in values.items())
        base, count = name, 2
        while name in used:  # two values with the same slug ("a:b" and "a-b")
            name, count = f"{base}_{count}", count + 1
        used.add(name)
        points.append(SweepPoint(name, {**spec.params, **values}, values, spec.out / name))
    return points


def check_sweep(spec: SweepSpec, points: Sequence[SweepPoint], notebook_dir: str | os.PathLike | None = None) -> None:
    """Check every run's parameters against the notebooks (names, declared types, data_root) before any runs."""
    if spec.executor not in SWEEP_EXECUTORS:
        raise ParameterError(
            f"sweep executor {spec.executor!r} is not one of {', '.join(SWEEP_EXECUTORS)} "
            "(the folds of each run take the 03_loso parameter `executor`, ray included)"
        )
    if spec.workers < 1:
        raise ParameterError(f"sweep workers must be at least 1, got {spec.workers}")
    sources = resolve_notebooks(spec.notebooks, notebook_dir)
    for point in points:
        params = {**point.params, "run_dir": str(point.run_dir)}
        params.setdefault("data_root", "")
        try:
            per_notebook = check_parameters(params, sources)
            check_paths(params)
            check_recipe({name: value for own in per_notebook.values() for name, value in own.items()})
        except ParameterError as err:
            raise ParameterError(f"sweep run {point.name}: {err}") from None


def _run_point(
    run_dir: str,
    params: dict[str, Any],
    notebooks: list[str],
    notebook_dir: str | None,
    cell_timeout: float | None,
    resume: bool,
) -> dict[str, Any]:
    """Run one pipeline; return a picklable status (a worker process cannot send every exception back)."""
    started = time.perf_counter()
    try:
        run_pipeline(
            run_dir,
            params,
            notebooks,
            notebook_dir=notebook_dir,
            cell_timeout=cell_timeout,
            resume=resume,
            progress=False,
        )
    except Exception as err:  # noqa: BLE001 - one failed run must not stop the sweep; it is reported
        return {"status": "failed", "seconds": time.perf_counter() - started, "error": f"{type(err).__name__}: {err}"}
    return {"status": "done", "seconds": time.perf_counter() - started, "error": ""}


def _write_state(spec: SweepSpec, points: Sequence[SweepPoint]) -> None:
    state = {
        "grid": spec.grid,
        "params": spec.params,
        "notebooks": spec.notebooks,
        "source": str(spec.source) if spec.source else None,
        "runs": [
            {
                "name": p.name,
                "run_dir": str(p.run_dir),
                "values": p.values,
                "status": p.status,
                "seconds": round(p.seconds, 3),
                "error": p.error,
            }
            for p in points
        ],
    }
    atomic_write_text(spec.out / "sweep.json", json.dumps(state, indent=1, sort_keys=True, default=str))


def run_sweep(
    spec: SweepSpec,
    *,
    notebook_dir: str | os.PathLike | None = None,
    cell_timeout: float | None = DEFAULT_CELL_TIMEOUT,
    resume: bool = True,
    progress: bool = True,
) -> SweepResult:
    """Check, then run every point of ``spec`` and compare the runs that wrote metrics (contract: module docstring)."""
    points = expand_grid(spec)
    check_sweep(spec, points, notebook_dir)
    spec.out.mkdir(parents=True, exist_ok=True)
    _write_state(spec, points)
    say = (lambda text: print(text, file=sys.stderr, flush=True)) if progress else (lambda text: None)
    say(
        f"merkit sweep: {len(points)} runs into {spec.out.resolve()} ({spec.executor}"
        f"{f', {spec.workers} at once' if spec.executor == 'processes' else ''})"
    )
    arguments = [
        (str(p.run_dir), p.params, spec.notebooks, str(notebook_dir) if notebook_dir else None, cell_timeout, resume)
        for p in points
    ]

    def record(point: SweepPoint, outcome: Mapping[str, Any], done: int) -> None:
        point.status, point.seconds, point.error = outcome["status"], outcome["seconds"], outcome["error"]
        _write_state(spec, points)
        say(
            f"  [{done}/{len(points)}] {point.name}: {point.status} in {point.seconds:.0f} s"
            + (f" ({point.error.splitlines()[0]})" if point.error else "")
        )

    if spec.executor == "processes" and spec.workers > 1 and len(points) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        # spawn: a fresh interpreter per worker (a forked torch/OpenMP state can hang)
        with ProcessPoolExecutor(max_workers=spec.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {pool.submit(_run_point, *args): point for point, args in zip(points, arguments)}
            for done, future in enumerate(as_completed(futures), start=1):
                record(futures[future], future.result(), done)
    else:
        for done, (point, args) in enumerate(zip(points, arguments), start=1):
            say(f"  running {point.name}")
            record(point, _run_point(*args), done)

    result = SweepResult(spec.out, points)
    try:
        result.compare = compare_runs([p.run_dir for p in points], spec.out)
        result.skipped = result.compare.skipped
    except CompareError as err:
        result.skipped = [str(err)]
    return result


def sweep_from_file(
    path: str | os.PathLike,
    *,
    out: str | os.PathLike | None = None,
    executor: str | None = None,
    workers: int | None = None,
    notebooks: Iterable[str] | None = None,
) -> SweepSpec:
    """`load_grid` with the command line's overrides applied (each None keeps the file's value)."""
    spec = load_grid(path)
    if out is not None:
        spec.out = Path(out)
    if executor is not None:
        spec.executor = executor
    if workers is not None:
        spec.workers = workers
    if notebooks:
        spec.notebooks = list(notebooks)
    return spec
