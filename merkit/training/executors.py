"""Executors: where the folds of a protocol run. Each is an object whose ``run(job, todo)`` yields results.

- :class:`Sequential` (``"sequential"``): one fold after another in this process.
- :class:`Processes` (``"processes"``): a local spawn pool, torch threads = cores // workers.
- :class:`Ray` (``"ray"``): one Ray task per fold, a GPU per task when CUDA is present.
- :class:`Batched` (``"batched"``): groups of folds trained together as one stacked model in this process
  (:mod:`merkit.training.batched.stack`); a group is the unit of resume.
- ``"auto"`` (the default) is resolved to ``"batched"`` or ``"sequential"`` by :func:`choose_executor`, and the
  choice and its reason are written to ``executor.json``; :func:`executor_for` turns the plan into an executor.

An executor receives a :class:`merkit.training.job.FoldJob` (config, store, classes, how to build a fold's model)
and the folds left to do, and yields one :class:`~merkit.training.job.FoldResult` per fold as soon as it is done,
its history naming the executor. It never writes the run directory: the driver
(:func:`merkit.training.runner.run_protocol`) persists each result before asking for the next one, so a
generator that stops early (the driver failed) cancels the folds still pending.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass
from typing import Any, Iterator, Protocol, Sequence

import numpy as np

from merkit.data.inputs import input_adapter
from merkit.evaluation.splits import Fold, fold_seed
from merkit.progress import FoldProgress, pause_point
from merkit.training.batched import (
    stack as batched,
)  # as a module: its trainer is looked up at call time (tests swap it)
from merkit.training.fold import resolve_device
from merkit.training.job import FoldJob, FoldResult

__all__ = [
    "Executor",
    "Sequential",
    "Processes",
    "Ray",
    "Batched",
    "executor_for",
    "ExecutorPlan",
    "choose_executor",
    "default_memory_budget_bytes",
    "fold_groups",
    "group_seed",
]


class Executor(Protocol):
    """Runs the folds ``todo`` of ``job``; yields each fold's result when it is done (module docstring)."""

    name: str

    def run(self, job: FoldJob, todo: Sequence[Fold], tracker: FoldProgress | None = None) -> Iterator[FoldResult]:
        """``tracker``, when given, is told of progress inside a unit of work longer than a fold."""
        ...


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


@dataclass
class Sequential:
    """One fold after another in this process."""

    name = "sequential"

    def run(self, job: FoldJob, todo: Sequence[Fold], tracker: FoldProgress | None = None) -> Iterator[FoldResult]:
        for fold in todo:
            yield job.run(fold).named(self.name)
            # resumed once the driver has persisted the fold: a test hook (merkit.progress) for a kill between folds
            pause_point(f"{job.run_config.protocol.name}.fold.between")


def _process_worker(job: FoldJob, fold: Fold, threads: int, gpu: int | None) -> FoldResult:
    """Entry point of a spawned worker process: set threads (and GPU), run the fold."""
    import torch

    torch.set_num_threads(threads)
    if gpu is not None and job.run_config.train.device in ("auto", "cuda"):
        job = job.with_device(f"cuda:{gpu}")
    return job.run(fold)


@dataclass
class Processes:
    """Folds in a local spawn pool of ``workers`` processes (0: one per core, or one per GPU when there are
    several); torch threads = cores // workers."""

    workers: int = 0
    name = "processes"

    def run(self, job: FoldJob, todo: Sequence[Fold], tracker: FoldProgress | None = None) -> Iterator[FoldResult]:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        import torch

        if not todo:
            return
        workers = min(self.workers or _default_workers(), len(todo))
        threads = _worker_threads(workers)
        n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        worker_job = FoldJob(job.run_config, job.store, job.classes, keep_weights=job.keep_weights)  # no bars
        # spawn, not fork: a forked child inherits torch's thread pools and locks mid-state and can hang.
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [
                pool.submit(_process_worker, worker_job, fold, threads, (i % n_gpus) if n_gpus else None)
                for i, fold in enumerate(todo)
            ]
            try:
                for future in as_completed(futures):
                    yield future.result().named(self.name)
            except BaseException:  # a failed fold, an interrupt, or the driver closing this generator
                for f in futures:
                    f.cancel()
                raise


def _ray_worker(job: FoldJob, fold: Fold, threads: int) -> FoldResult:
    """A Ray task: Ray sets CUDA_VISIBLE_DEVICES to the task's GPU, so device 'auto' finds it."""
    import torch

    torch.set_num_threads(threads)
    return job.run(fold)


@dataclass
class Ray:
    """One Ray task per fold (with a GPU when CUDA is present) on the cluster at ``address`` (None or "": a
    small local instance, started and stopped here); ``workers`` as for :class:`Processes`."""

    workers: int = 0
    address: str | None = None
    name = "ray"

    def run(self, job: FoldJob, todo: Sequence[Fold], tracker: FoldProgress | None = None) -> Iterator[FoldResult]:
        try:
            import ray
        except ImportError as err:
            raise ImportError("executor='ray' needs the 'ray' package (pip install 'ray[default]')") from err
        import torch

        workers = self.workers or _default_workers()
        # Threads per fold task: this machine's cores shared by `workers` (on a cluster, the driver's core count
        # stands in for a node's).
        threads = _worker_threads(workers)
        started_here = False
        if not ray.is_initialized():
            if self.address:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
            else:
                # a small local instance: only the cores this process may use, no dashboard
                ray.init(num_cpus=workers * threads, include_dashboard=False, log_to_driver=False)
            started_here = True
        try:
            use_gpu = torch.cuda.is_available()
            task = ray.remote(num_cpus=threads, num_gpus=1 if use_gpu else 0)(_ray_worker)
            job_ref = ray.put(FoldJob(job.run_config, job.store, job.classes, keep_weights=job.keep_weights))
            pending = {task.remote(job_ref, fold, threads): fold for fold in todo}
            try:
                while pending:
                    ready, _ = ray.wait(list(pending), num_returns=1)
                    for ref in ready:
                        pending.pop(ref)
                        yield ray.get(ref).named(self.name)
            except BaseException:
                for ref in pending:
                    ray.cancel(ref)
                raise
        finally:
            if started_here:
                ray.shutdown()


# ------------------------------------------------------------------------------------------- batched


def fold_groups(folds: Sequence[Fold], fold_batch: int) -> list[list[Fold]]:
    """Consecutive groups of ``fold_batch`` folds, formed over ALL the run's folds (not only those left to
    do), so a resumed run regroups exactly as the first call did."""
    return [list(folds[i : i + fold_batch]) for i in range(0, len(folds), fold_batch)]


def group_seed(seed: int, group: Sequence[Fold]) -> int:
    """The shuffling/augmentation seed of a fold group: a function of the run seed and its fold keys."""
    return fold_seed(seed, "group:" + "|".join(f.key for f in group))


@dataclass
class Batched:
    """The folds in groups of ``fold_batch`` (groups over ``folds``, all the folds of the run) trained with the
    fold-batched trainer, in shared-batch sampling; a group's folds are yielded as soon as the group is done.

    A group with any fold left to do is trained whole (the shared batches depend on the whole group), and only
    its unfinished folds are yielded: a resumed run gives the same predictions as an uninterrupted one. The
    tracker hears when a group starts and after each of its epochs.
    """

    folds: Sequence[Fold]
    fold_batch: int
    name = "batched"

    def run(self, job: FoldJob, todo: Sequence[Fold], tracker: FoldProgress | None = None) -> Iterator[FoldResult]:
        train_cfg = job.run_config.train
        augment = train_cfg.clip_augmentation() or False  # training clips may be augmented, held-out ones never
        todo_keys = {f.key for f in todo}
        groups = fold_groups(self.folds, self.fold_batch)
        for number, group in enumerate(groups, start=1):
            left = [f for f in group if f.key in todo_keys]
            if not left:
                continue
            start = time.perf_counter()
            if tracker is not None:
                tracker.start_group(number, len(groups), folds=len(left), epochs=int(train_cfg.epochs))
            models = [job.model(f) for f in group]
            union = np.unique(np.concatenate([np.asarray(f.train) for f in group]))  # store rows any fold trains on
            members = np.stack([np.isin(union, np.asarray(f.train)) for f in group])  # (k, n): fold k trains on row
            seed = group_seed(train_cfg.seed, group)
            trained = batched.train_folds(
                models,
                train_cfg,
                seeds=[job.seed(f) for f in group],
                num_classes=len(job.classes),
                shared=job.dataset(models[0], union, augment=augment, seed=seed),
                members=members,
                group_seed=seed,
                progress=job.progress,
                on_epoch=tracker.epoch if tracker is not None else None,
            )
            seconds = (time.perf_counter() - start) / len(group)
            label = f"batched:{group[0].key}..{group[-1].key}" if len(group) > 1 else f"batched:{group[0].key}"
            for fold, (model, history) in zip(group, trained):
                if fold.key in todo_keys:
                    yield job.finish(fold, model, history, seconds=seconds).named(label)


def executor_for(
    plan: ExecutorPlan, folds: Sequence[Fold], *, workers: int = 0, ray_address: str | None = None
) -> Executor:
    """The executor a plan names: ``folds`` are all the folds of the run (the batched groups form over them)."""
    if plan.executor == "batched":
        return Batched(folds, plan.fold_batch)
    if plan.executor == "processes":
        return Processes(workers)
    if plan.executor == "ray":
        return Ray(workers, ray_address)
    return Sequential()


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

    CUDA: half the device's free memory. CPU: 128 MB, room for 36 STSTNet folds at batch 256 under the fused step
    (the composite's 68 folds: two groups of 34); larger groups were measured slower per fold on CPU
    (docs/performance.md).
    """
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * 0.5)
    return 128 * MB


def choose_executor(job: FoldJob, requested: str, *, n_folds: int, model: Any) -> ExecutorPlan:
    """Resolve ``requested`` (``protocol.executor``) to the executor this run uses, with the reason.

    ``model`` is one of the job's models (untrained; it is not changed: the trials below run on copies).

    ``"auto"`` picks ``"batched"`` on CUDA for every model, on CPU for the models the fused step trains (an STSTNet
    in fp32 or bf16: :func:`merkit.training.batched.stack.fused_trainable`), and ``"sequential"`` for every other
    model on CPU, where batching was not shown faster (the measurements behind each choice are in
    docs/performance.md). ``"batched"`` (asked or picked) falls back to
    ``"sequential"`` with the reason when the model cannot be stacked
    (:func:`merkit.training.batched.stack.check_stackable`) or there is one fold; when asked for explicitly, the
    fall-back also warns. A memory budget too small for one fold is an error.
    """
    if requested not in ("auto", "batched"):
        return ExecutorPlan(requested, requested, "as configured")
    run_config = job.run_config
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
    batch = input_adapter(model).example(job.store, 2)
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
