"""Teaching material from the kit's notebooks: student and instructor copies, and the helpers the solutions use.

Every notebook ends its parts with exercises. The cells follow one convention (checked by `check_exercises`):

- a markdown cell tagged ``exercise`` (the task),
- right after it, a code cell tagged ``student`` (empty: the student's answer goes there),
- then one or more code cells tagged ``solution``; the last one ends with an ``assert`` that checks the answer,
  so a broken solution fails the tests.

``merkit teach build OUT`` (`build`) writes

    OUT/student/NN_name.ipynb      exercises and empty answer cells, no solution, no output (hand these out)
    OUT/instructor/NN_name.ipynb   the same with the solutions, executed with papermill (and .html)
    OUT/instructor/run/            the run directory the instructor copies wrote into (figures, metrics, ...)

The instructor copies go through `merkit.pipeline.run.run_pipeline` (parameter checks, kernel name, per-cell
timeout, atomic writes) with ``solutions=True``; a plain pipeline run (``make demo``) leaves solutions out.

The helpers below are what the solutions call, so a solution cell stays a few lines. None of them selects
anything on held-out data: the leakage lab (05_leakage) writes its cheating loop itself, in the notebook.
"""

from __future__ import annotations

import ast
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from merkit.errors import MerkitValueError
from merkit.evaluation.metrics import pooled_scores
from merkit.pipeline.run import (
    DEFAULT_CELL_TIMEOUT,
    DEFAULT_ORDER,
    SOLUTION_TAG,
    ParameterError,
    PipelineResult,
    check_parameters,
    resolve_notebooks,
    run_pipeline,
    without_solutions,
)
from merkit.training.runs import atomic_write_text

EXERCISE_TAG = "exercise"
STUDENT_TAG = "student"
#: The notebooks of a lab, in order: the pipeline's notebooks plus the leakage lab.
TEACH_ORDER: tuple[str, ...] = tuple(DEFAULT_ORDER) + tuple(n for n in ("05_leakage",) if n not in DEFAULT_ORDER)


class TeachError(MerkitValueError):
    """A notebook breaks the exercise convention (names the notebook and the cell)."""


# ------------------------------------------------------------------------------------------ notebook cells


def _tags(cell: Any) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _ends_with_assert(source: str) -> bool:
    """Whether the cell's last statement is an ``assert`` (however many lines the formatter wraps it over)."""
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return False
    return bool(body) and isinstance(body[-1], ast.Assert)


def check_exercises(node: Any, name: str = "notebook") -> list[str]:
    """Problems with the exercise convention of notebook ``node`` (empty list when it is followed).

    Each ``exercise`` markdown cell must be followed by an empty ``student`` code cell; each solution group
    must follow a student cell and its last cell must end with an ``assert``.
    """
    problems = []
    cells = node.cells
    for i, cell in enumerate(cells):
        tags = _tags(cell)
        where = f"{name} cell {i + 1}"
        if EXERCISE_TAG in tags:
            if cell.cell_type != "markdown":
                problems.append(f"{where}: an exercise cell must be markdown")
            following = cells[i + 1] if i + 1 < len(cells) else None
            if following is None or STUDENT_TAG not in _tags(following) or following.cell_type != "code":
                problems.append(f"{where}: exercise not followed by a code cell tagged {STUDENT_TAG!r}")
            elif following.source.strip() and not all(
                line.strip().startswith("#") for line in following.source.splitlines() if line.strip()
            ):
                problems.append(f"{where}: the student cell after the exercise must be empty (comments only)")
        if SOLUTION_TAG in tags:
            if cell.cell_type != "code":
                problems.append(f"{where}: a solution cell must be code")
            previous = cells[i - 1] if i > 0 else None
            if previous is None or not ({STUDENT_TAG, SOLUTION_TAG} & set(_tags(previous))):
                problems.append(f"{where}: a solution must follow the student cell of its exercise")
            is_last = i + 1 == len(cells) or SOLUTION_TAG not in _tags(cells[i + 1])
            if is_last and not _ends_with_assert(cell.source):
                problems.append(f"{where}: the last solution cell of an exercise must end with an assert")
    return problems


def _clean(node: Any) -> Any:
    """Outputs, execution counts and papermill metadata removed (in place; returns ``node``)."""
    node.metadata.pop("papermill", None)
    for cell in node.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return node


def student_copy(node: Any) -> Any:
    """The student's notebook: ``solution`` cells removed, no outputs (a new notebook; ``node`` is unchanged)."""
    stripped, _ = without_solutions(node)
    return _clean(stripped)


def exercises(node: Any) -> list[str]:
    """The first line of every exercise of ``node``, in order."""
    return [
        next((line for line in c.source.splitlines() if line.strip()), "")
        for c in node.cells
        if EXERCISE_TAG in _tags(c)
    ]


def solution_times(node: Any, name: str = "notebook") -> pd.DataFrame:
    """Run time of each exercise's solution in an EXECUTED notebook ``node``: one row per exercise.

    Columns: notebook, exercise (1, 2, ...), cells (its solution cells), seconds (the sum of the durations
    papermill stored in those cells' metadata; NaN when a solution cell carries none, i.e. it did not run).
    """
    rows: list[dict[str, Any]] = []
    for cell in node.cells:
        tags = _tags(cell)
        if EXERCISE_TAG in tags:
            rows.append({"notebook": name, "exercise": len(rows) + 1, "cells": 0, "seconds": 0.0})
        elif SOLUTION_TAG in tags and rows:
            duration = cell.get("metadata", {}).get("papermill", {}).get("duration")
            rows[-1]["cells"] += 1
            rows[-1]["seconds"] += float("nan") if duration is None else float(duration)
    return pd.DataFrame(rows, columns=["notebook", "exercise", "cells", "seconds"])


# -------------------------------------------------------------------------------------------------- build


@dataclass
class TeachBuild:
    """What `build` wrote: the student and instructor notebooks, and the pipeline result (None unexecuted)."""

    out: Path
    student: list[Path]
    instructor: list[Path]
    pipeline: PipelineResult | None


def build(
    out: str | os.PathLike,
    params: Mapping[str, Any] | None = None,
    notebooks: Iterable[str | os.PathLike] = TEACH_ORDER,
    *,
    notebook_dir: str | os.PathLike | None = None,
    execute: bool = True,
    kernel: str = "python3",
    cell_timeout: float | None = DEFAULT_CELL_TIMEOUT,
    resume: bool = True,
    progress: bool = True,
    raw_names: Iterable[str] = (),
) -> TeachBuild:
    """Write ``out/student/*.ipynb`` and (with ``execute``) the executed ``out/instructor/*.ipynb``.

    ``params`` are notebook parameters as for `merkit.pipeline.run.run_pipeline` (checked against the notebooks
    before anything runs; ``run_dir`` is ``out/instructor/run`` and may not be given). Raises `TeachError` when
    a notebook breaks the exercise convention, `ParameterError` / `PipelineError` as the pipeline does.
    """
    import nbformat

    out = Path(out).resolve()
    params = dict(params or {})
    raw_names = set(raw_names)
    if "run_dir" in params:
        raise ParameterError("teach build chooses the run directory itself (OUT/instructor/run): do not pass run_dir")
    sources = resolve_notebooks(notebooks, notebook_dir)
    nodes = {source: nbformat.read(str(source), as_version=4) for source in sources}
    problems = [p for source, node in nodes.items() for p in check_exercises(node, source.name)]
    if problems:
        raise TeachError("the notebooks break the exercise convention:\n  " + "\n  ".join(problems))
    if execute:
        check_parameters(params, sources, raw_names)  # refuse a bad name before anything is written

    student = []
    for source, node in nodes.items():
        path = out / "student" / source.name
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, nbformat.writes(student_copy(node)))
        student.append(path)

    instructor: list[Path] = []
    result = None
    if execute:
        result = run_pipeline(
            out / "instructor" / "run",
            params,
            sources,
            notebook_dir=notebook_dir,
            kernel=kernel,
            cell_timeout=cell_timeout,
            resume=resume,
            progress=progress,
            raw_names=raw_names,
            solutions=True,
        )
        for run in result.notebooks:
            target = out / "instructor" / f"{run.name}.ipynb"
            shutil.copyfile(run.output, target)
            if run.html is not None and run.html.is_file():
                shutil.copyfile(run.html, target.with_suffix(".html"))
            instructor.append(target)
    return TeachBuild(out, student, instructor, result)


# ------------------------------------------------------------------------------ helpers of the solutions: 01


def frame_differences(frames: np.ndarray) -> np.ndarray:
    """Mean absolute difference of every frame from the first (onset) one, float64 (T,).

    ``frames`` is (T, H, W) or (T, H, W, C) in any numeric type.
    """
    frames = np.asarray(frames, dtype=np.float64)
    if frames.ndim < 3:
        raise ValueError(f"frames must be (T, H, W) or (T, H, W, C), got shape {frames.shape}")
    change = np.abs(frames - frames[:1])  # (t, h, w[, c]) - (1, h, w[, c])
    return change.reshape(len(frames), -1).mean(axis=1)  # (t, h, w[, c]) -> (t, h*w*c) -> (t,)


def apex_by_frame_difference(frames: np.ndarray, numbers: Sequence[int]) -> int:
    """The frame NUMBER (as in the sheet) whose frame differs most from the onset frame (the first one)."""
    numbers = list(numbers)
    if len(numbers) != len(frames):
        raise ValueError(f"{len(frames)} frames but {len(numbers)} frame numbers")
    return int(numbers[int(np.argmax(frame_differences(frames)))])


# ------------------------------------------------------------------------------ helpers of the solutions: 02


def shared_subjects(index: pd.DataFrame, train: Sequence[int], test: Sequence[int]) -> set[str]:
    """Subjects with clips on both sides of a split (positions into ``index``); empty for a subject split."""
    subjects = index["subject"].astype(str).to_numpy()
    return set(subjects[np.asarray(train, dtype=np.int64)]) & set(subjects[np.asarray(test, dtype=np.int64)])


def random_clip_split(n: int, test_fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) positions of a random split of CLIPS (the split LOSO exists to avoid), sorted."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    n_test = max(1, int(round(test_fraction * n)))
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def still_image_like(x: Any, seed: int = 0, scale: float = 0.5) -> Any:
    """A random image, the same in every frame, shaped to add to clip batch ``x`` (b, c, t, h, w).

    Adding it changes what every frame looks like (a different "face") and nothing about what moves.
    """
    import torch

    generator = torch.Generator().manual_seed(seed)
    b, c, _, h, w = x.shape
    return scale * torch.randn((b, c, 1, h, w), generator=generator, dtype=x.dtype)  # broadcasts over t


# ------------------------------------------------------------------------------ helpers of the solutions: 03


def subject_bootstrap(
    predictions: pd.DataFrame, num_classes: int, n_boot: int = 1000, seed: int = 0, metric: str = "uf1"
) -> dict[str, float]:
    """Percentile 95 % interval of the pooled ``metric`` resampling whole SUBJECTS (not clips) with replacement.

    Clips of one person are not independent; drawing people keeps each person's clips together, so the
    interval reflects how the score varies from one group of people to another. Returns low, high, n_boot.
    """
    groups = [part for _, part in predictions.groupby("subject", sort=True)]
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n_boot):
        drawn = pd.concat([groups[i] for i in rng.integers(0, len(groups), len(groups))])
        values.append(pooled_scores(drawn["gt"], drawn["pred"], num_classes, warn_absent=False)[metric])
    low, high = np.percentile(values, [2.5, 97.5])
    return {"low": float(low), "high": float(high), "n_boot": int(n_boot)}


# ------------------------------------------------------------------------------ helpers of the solutions: 05


def seed_interval(values: Sequence[float], level: float = 0.95) -> dict[str, float]:
    """Mean and Student-t interval of ``values`` (one per seed); with one value the interval is that value.

    Seeds are few (3-5), so the t quantile, not 1.96, sets the width.
    """
    from scipy.stats import t as student_t

    values = np.asarray(list(values), dtype=np.float64)
    if values.size == 0:
        raise ValueError("seed_interval needs at least one value")
    mean = float(values.mean())
    if values.size == 1:
        return {"mean": mean, "low": mean, "high": mean, "n": 1}
    half = float(student_t.ppf(0.5 + level / 2, values.size - 1) * values.std(ddof=1) / math.sqrt(values.size))
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": int(values.size)}


def best_of_random_guessing(
    fold_sizes: Sequence[int], n_epochs: int, num_classes: int, runs: int = 200, seed: int = 0
) -> np.ndarray:
    """Pooled accuracy of a model that GUESSES, when each fold keeps its best of ``n_epochs`` guesses.

    Every "epoch" answers each held-out clip with a uniform random class; per fold the epoch with the most
    correct answers is kept (as in selecting on the held-out subject). Returns ``runs`` pooled accuracies:
    their mean is far above ``1 / num_classes`` although nothing was learned.
    """
    rng = np.random.default_rng(seed)
    sizes = np.asarray(list(fold_sizes), dtype=np.int64)
    # correct answers per (run, fold, epoch): each clip is right with probability 1/k
    correct = rng.binomial(sizes[None, :, None], 1.0 / num_classes, size=(runs, len(sizes), n_epochs))
    return correct.max(axis=2).sum(axis=1) / sizes.sum()  # (runs, folds, epochs) -> (runs,)
