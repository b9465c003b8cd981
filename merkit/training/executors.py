"""Executors: where the folds of a protocol run (the driver, :func:`merkit.training.runner.run_protocol`, persists).

- ``"sequential"``: one fold after another in this process (the runner's own loop).
- ``"processes"``: a local spawn pool, torch threads = cores // workers.
- ``"ray"``: one Ray task per fold, a GPU per task when CUDA is present.
- ``"batched"``: groups of folds trained together as one stacked model in this process
  (:mod:`merkit.training.batched.stack`); a group is the unit of resume.
- ``"auto"`` (the default) is resolved by the runner to ``"batched"`` or ``"sequential"``
  (:func:`merkit.training.runner.choose_executor`), and the choice and its reason are written to ``executor.json``.

Each executor is handed the fold function (``merkit.training.runner.run_fold``) rather than importing the runner: the
runner imports this module, and the fold function pickles by reference into spawned workers and Ray tasks.
Workers return a ``FoldResult`` to the driver, which alone writes the run directory.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from merkit.config import EXECUTOR_NAMES, RunConfig
from merkit.evaluation.splits import Fold, fold_seed
from merkit.training.batched import (
    stack as batched,
)  # as a module: its trainer is looked up at call time (tests swap it)
from merkit.training.fold import resolve_device

__all__ = [
    "EXECUTORS",
    "ExecutorPlan",
    "choose_executor",
    "default_memory_budget_bytes",
    "run_processes",
    "run_ray",
    "run_batched",
    "fold_groups",
    "group_seed",
]

EXECUTORS = EXECUTOR_NAMES  # stated once, in merkit.config (a config names one without importing torch)

FoldFn = Callable[
    ..., Any
]  # merkit.training.runner.run_fold: (run_config, store, fold, classes, *, progress, keep_weights)


def _worker_threads(workers: int) -> int:
    """Torch threads per worker: the cores this process may use, shared evenly."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, workers))


def _default_workers() -> int:
    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() > 1:
        return torch.cuda.device_count()
    return _worker_threads(1)


def _process_worker(
    fold_fn: FoldFn,
    run_config_dict: dict,
    store: Any,
    fold: Fold,
    classes: list[str],
    threads: int,
    keep_weights: bool,
    gpu: int | None,
) -> Any:
    """Entry point of a spawned worker process: set threads (and GPU), rebuild the config, run the fold."""
    import torch

    torch.set_num_threads(threads)
    run_config = RunConfig.from_dict(run_config_dict)
    if gpu is not None and run_config.train.device in ("auto", "cuda"):
        run_config = run_config.with_updates({"train.device": f"cuda:{gpu}"})
    return fold_fn(run_config, store, fold, classes, progress=False, keep_weights=keep_weights)


def run_processes(
    fold_fn: FoldFn,
    run_config: Any,
    store: Any,
    todo: list[Fold],
    classes: list[str],
    workers: int,
    keep_weights: bool,
    persist: Callable[[Any], None],
) -> None:
    """Folds in a local spawn pool; results are persisted by the driver as each fold finishes."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    import torch

    workers = workers or _default_workers()
    workers = min(workers, len(todo))
    threads = _worker_threads(workers)
    n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    config_dict = run_config.to_dict()
    # spawn, not fork: a forked child inherits torch's thread pools and locks mid-state and can hang.
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = {
            pool.submit(
                _process_worker,
                fold_fn,
                config_dict,
                store,
                fold,
                list(classes),
                threads,
                keep_weights,
                (i % n_gpus) if n_gpus else None,
            ): fold
            for i, fold in enumerate(todo)
        }
        try:
            for future in as_completed(futures):
                persist(future.result())
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def run_ray(
    fold_fn: FoldFn,
    run_config: Any,
    store: Any,
    todo: list[Fold],
    classes: list[str],
    workers: int,
    ray_address: str | None,
    keep_weights: bool,
    persist: Callable[[Any], None],
) -> None:
    """One Ray task per fold (with a GPU when CUDA is present); results come back to the driver."""
    try:
        import ray
    except ImportError as err:
        raise ImportError("executor='ray' needs the 'ray' package (pip install 'ray[default]')") from err
    import torch

    workers = workers or _default_workers()
    # Threads per fold task: this machine's cores shared by `workers` (on a cluster, the driver's core count
    # stands in for a node's).
    threads = _worker_threads(workers)
    started_here = False
    if not ray.is_initialized():
        if ray_address:
            ray.init(address=ray_address, include_dashboard=False, log_to_driver=False)
        else:
            # a small local instance: only the cores this process may use, no dashboard
            ray.init(num_cpus=workers * threads, include_dashboard=False, log_to_driver=False)
        started_here = True
    try:
        use_gpu = torch.cuda.is_available()
        task = ray.remote(num_cpus=threads, num_gpus=1 if use_gpu else 0)(_ray_worker)
        store_ref = ray.put(store)
        config_dict = run_config.to_dict()
        pending = {
            task.remote(fold_fn, config_dict, store_ref, fold, list(classes), threads, keep_weights): fold
            for fold in todo
        }
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    pending.pop(ref)
                    persist(ray.get(ref))
        except BaseException:
            for ref in pending:
                ray.cancel(ref)
            raise
    finally:
        if started_here:
            ray.shutdown()


def _ray_worker(
    fold_fn: FoldFn, run_config_dict: dict, store: Any, fold: Fold, classes: list[str], threads: int, keep_weights: bool
) -> Any:
    """A Ray task: Ray sets CUDA_VISIBLE_DEVICES to the task's GPU, so device 'auto' finds it."""
    import torch

    torch.set_num_threads(threads)
    return fold_fn(
        RunConfig.from_dict(run_config_dict), store, fold, classes, progress=False, keep_weights=keep_weights
    )


# ------------------------------------------------------------------------------------------- batched


def fold_groups(folds: Sequence[Fold], fold_batch: int) -> list[list[Fold]]:
    """Consecutive groups of ``fold_batch`` folds, formed over ALL the run's folds (not only those left to
    do), so a resumed run regroups exactly as the first call did."""
    return [list(folds[i : i + fold_batch]) for i in range(0, len(folds), fold_batch)]


def group_seed(seed: int, group: Sequence[Fold]) -> int:
    """The shuffling/augmentation seed of a fold group: a function of the run seed and its fold keys."""
    return fold_seed(seed, "group:" + "|".join(f.key for f in group))


def run_batched(
    run_config: Any,
    store: Any,
    folds: Sequence[Fold],
    todo: Sequence[Fold],
    classes: list[str],
    fold_batch: int,
    *,
    make_model: Callable[[Fold], Any],
    make_dataset: Callable[..., Any],
    finish: Callable[..., Any],
    persist: Callable[[Any], None],
    progress: bool = False,
) -> None:
    """Train the folds of ``todo`` in groups of ``fold_batch`` (groups over ``folds``) with the fold-batched
    trainer, in shared-batch sampling; each fold's result goes to ``persist`` as soon as its group is done.

    A group with any fold left to do is trained whole (the shared batches depend on the whole group), and
    only its unfinished folds are persisted: a resumed run gives the same predictions as an uninterrupted one.
    ``make_model(fold)`` builds the fold's model under its fold seed; ``make_dataset(spec, positions, augment,
    seed)`` is the runner's ``model_dataset`` over the store; ``finish(fold, model, history, seconds)``
    predicts the held-out rows and returns the ``FoldResult``.
    """
    train_cfg = run_config.train
    augment = train_cfg.clip_augmentation() or False  # training clips may be augmented, held-out ones never
    todo_keys = {f.key for f in todo}
    for group in fold_groups(folds, fold_batch):
        left = [f for f in group if f.key in todo_keys]
        if not left:
            continue
        start = time.perf_counter()
        models = [make_model(f) for f in group]
        spec = getattr(models[0], "input_spec", None)
        union = np.unique(np.concatenate([np.asarray(f.train) for f in group]))  # store rows any fold trains on
        members = np.stack([np.isin(union, np.asarray(f.train)) for f in group])  # (k, n): fold k trains on row
        seed = group_seed(train_cfg.seed, group)
        shared = make_dataset(spec, union, augment, seed)
        trained = batched.train_folds(
            models,
            train_cfg,
            seeds=[fold_seed(train_cfg.seed, f.key) for f in group],
            num_classes=len(classes),
            shared=shared,
            members=members,
            group_seed=seed,
            sampling="shared",
            progress=progress,
        )
        seconds = (time.perf_counter() - start) / len(group)
        label = f"batched:{group[0].key}..{group[-1].key}" if len(group) > 1 else f"batched:{group[0].key}"
        for fold, (model, history) in zip(group, trained):
            if fold.key in todo_keys:
                persist(finish(fold, model, history.assign(executor=label), seconds))


# ------------------------------------------------------------------------------------ executor choice

MB = 1024 * 1024


@dataclass
class ExecutorPlan:
    """Which executor a run uses and why (written to the run directory's ``executor.json``)."""

    requested: str
    executor: str
    reason: str
    fold_batch: int = 1
    memory_budget_mb: float = 0.0
    fold_memory_mb: float = 0.0

    def record(self) -> dict:
        return {
            "requested": self.requested,
            "executor": self.executor,
            "reason": self.reason,
            "fold_batch": self.fold_batch,
            "memory_budget_mb": round(self.memory_budget_mb, 1),
            "fold_memory_mb": round(self.fold_memory_mb, 1),
        }


def default_memory_budget_bytes(device: Any) -> int:
    """The fold-batched trainer's memory budget when ``protocol.memory_budget_mb`` is 0.

    CUDA: half the device's free memory. CPU: 384 MB, about 6 STSTNet folds at batch 256. Measured with
    benchmarks/bench_folds.py on a 2-core machine: groups of 4–6 STSTNet folds were fastest per fold; 8 and 17
    were slower (the group's activations leave the caches; memory traffic bounds these small nets).
    """
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * 0.5)
    return 384 * MB


def choose_executor(
    run_config: Any, requested: str, *, n_folds: int, model: Any, example: Callable[[], Any]
) -> ExecutorPlan:
    """Resolve ``requested`` (``protocol.executor``) to the executor this run uses, with the reason.

    ``"auto"`` picks ``"batched"`` on CUDA for every model (never measured here: no GPU was available), on
    CPU for the models the fused step trains (an STSTNet in fp32 or bf16:
    :func:`merkit.training.batched.stack.fused_trainable`; benchmarks/bench_folds.py measured it several times faster
    than sequential on the idle 2-core machine, docs/performance.md), and ``"sequential"`` for every other model on CPU
    (batched vmap STSTNet measured 0.6× of sequential, the wide step 0.7–0.9× on an idle machine; meranet_small 1.6–1.8×
    from one-epoch runs only: not a CPU win to default to). ``"batched"`` (asked or picked) falls back to
    ``"sequential"`` with the reason when the model cannot be stacked
    (:func:`merkit.training.batched.stack.check_stackable`) or there is one fold; when asked for explicitly, the
    fall-back also warns. A memory budget too small for one fold is an error.
    """
    if requested not in ("auto", "batched"):
        return ExecutorPlan(requested, requested, "as configured")
    device = resolve_device(run_config.train.device)
    spec = getattr(model, "input_spec", None)
    kind = getattr(spec, "kind", "clip")
    fused = batched.fused_trainable(model, run_config.train, device)
    if requested == "auto":
        if device.type == "cuda":
            why = "auto: CUDA, every stackable model is batched"
        elif fused:
            why = (
                f"auto: {type(model).__name__} on CPU trains with the fused fold-batched step "
                "(benchmarks/bench_folds.py: faster than sequential, docs/performance.md)"
            )
        else:
            return ExecutorPlan(
                requested,
                "sequential",
                f"auto: a {kind} model on {device.type} "
                "(batched was not measured faster there; ask for executor='batched' to use it)",
            )
    else:
        why = "as configured"
    if n_folds < 2:
        return _fallback(requested, "one fold to run: nothing to batch")
    batch = example()
    reason = batched.check_stackable(model, batch, run_config.train)
    if reason is not None:
        return _fallback(requested, reason)
    protocol = run_config.protocol
    budget = protocol.memory_budget_mb * MB if protocol.memory_budget_mb > 0 else default_memory_budget_bytes(device)
    per_fold = batched.fold_memory_bytes(model, batch, run_config.train.batch_size, fused=fused)
    k, sizing = batched.plan_fold_batch(n_folds, protocol.fold_batch, per_fold, budget)
    return ExecutorPlan(requested, "batched", f"{why}; {sizing}", k, budget / MB, per_fold / MB)


def _fallback(requested: str, reason: str) -> ExecutorPlan:
    if requested == "batched":
        warnings.warn(f"executor 'batched' falls back to 'sequential': {reason}", UserWarning, stacklevel=3)
    return ExecutorPlan(requested, "sequential", f"falls back to sequential: {reason}")
