"""The fold runner: one fold (``run_fold``), a whole protocol (``run_protocol``), resume, pre-flight checks.

``run_protocol(run_config, store, run_dir, executor=..., workers=..., folds=...)`` runs every fold: model
built under a seed derived from (seed, fold key) → ``train.train_fold`` on the training rows only (optionally
with an inner validation split of training subjects) → ``train.predict`` on the held-out rows → the fold's
predictions and history are written atomically and the fold is marked done. The model's ``input_spec.kind``
picks what a fold reads (``merkit.data.inputs.input_adapter``, ``model_dataset``): clips for 3D models, the store's
onset→apex flow images for the flow baselines (``ststnet`` takes u, v, strain; ``offapexnet`` u, v), so a flow model
needs a store built with flow (``prepare_data(..., flow='tvl1')``); the pre-flight check says so before any fold runs.
Re-running into the same run directory resumes after the completed folds. Executors (:mod:`merkit.training.executors`):
``"sequential"``, ``"processes"`` (local spawn pool, torch threads = cores // workers), ``"ray"`` (one fold per task, a
GPU per task when CUDA is present), ``"batched"`` (groups of folds trained as one stacked model) and
``"auto"`` (the default: batched or sequential, chosen and recorded by ``executors.choose_executor``).
Workers return their results to the driver, which alone writes the run directory. A ``ClipStore`` pickles
as its path, so workers (processes, or Ray tasks on other nodes) must see the store's cache directory at the
same path (a shared file system on a cluster); no clip data is copied.
"""

from __future__ import annotations

import os
import warnings
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import pandas as pd
from tqdm.auto import tqdm

from merkit.config import EXECUTOR_NAMES, ConfigError, RunConfig, load_config
from merkit.data.inputs import InputKindError, input_adapter, model_dataset
from merkit.evaluation.metrics import summarise
from merkit.models import create_model, model_entry
from merkit.progress import FoldProgress, progress_path
from merkit.runlock import RunLock
from merkit.training import executors
from merkit.training.fold import resolve_device
from merkit.training.job import FoldJob, FoldResult
from merkit.training.precision import PrecisionChoice, choose_precision
from merkit.training.runs import RunDir, completed_folds

if TYPE_CHECKING:  # annotations only: the store module needs OpenCV, the runner imports without it
    from torch import nn

    from merkit.data.store import ClipStore
from merkit.evaluation.splits import (
    Fold,
    MissingClassWarning,
    ProtocolError,
    check_protocol_name,
    make_splits,
)

__all__ = ["FoldResult", "run_fold", "run_protocol", "load_fold_model", "model_dataset"]

# ------------------------------------------------------------------------------------------- fold runner


def run_fold(
    run_config: RunConfig,
    store: ClipStore,
    fold: Fold,
    classes: Sequence[str],
    *,
    progress: bool = False,
    keep_weights: bool = True,
    on_epoch_end: Callable[[int, nn.Module], None] | None = None,
) -> FoldResult:
    """Train on ``fold.train`` and predict ``fold.test``: one fold, as the per-fold executors run it.

    ``on_epoch_end(epoch, snapshot)`` is passed to ``train_fold`` (an observer of a copy of the model after
    each epoch; it cannot change what is trained or returned).

    The model is built under ``fold_seed(train.seed, fold.key)``, which also seeds shuffling and
    augmentation, so a fold's result does not depend on which other folds ran, in which order or where.
    With ``train.val_fraction > 0`` an inner validation split is drawn from the training subjects of this
    fold (whole subjects); it is checked to share no subject with the held-out rows. The held-out rows are
    only ever given to ``predict``, after training (:class:`merkit.training.job.FoldJob`).
    """
    job = FoldJob(run_config, store, tuple(classes), keep_weights=keep_weights, progress=progress)
    return job.run(fold, on_epoch_end=on_epoch_end)


@dataclass
class _Schedule:
    """Which folds one ``run_protocol`` call trains, and where (settled before the run directory is opened)."""

    all_folds: list[Fold]  # every fold of the protocol (metrics are written once all are complete)
    selected: list[Fold]  # the folds this call may train (``folds=``), in protocol order
    plan: executors.ExecutorPlan  # the executor chosen, and why (executor.json)
    executor: executors.Executor
    n_boot: int  # bootstrap resamples of metrics.json's intervals
    precision: PrecisionChoice  # the arithmetic the folds train in, and why (executor.json)


def run_protocol(
    run_config: RunConfig | dict,
    store: ClipStore,
    run_dir: str | os.PathLike | RunDir,
    *,
    executor: str | None = None,
    workers: int | None = None,
    ray_address: str | None = None,
    folds: Sequence[str] | None = None,
    progress: bool = True,
    save_checkpoints: bool = True,
    n_boot: int = 1000,
) -> pd.DataFrame:
    """Run every fold of ``run_config.protocol`` over ``store`` into ``run_dir``; returns the predictions.

    Args:
        run_config: a ``merkit.config.RunConfig`` (or its dict form).
        store: a clip store (``ClipStore``) whose ``index`` has dataset, subject, sample and label columns;
            class names come from ``index.attrs["classes"]`` (or ``store.classes``).
        run_dir: a path or a ``merkit.training.runs.RunDir``. An existing run directory is resumed after its completed
            folds, and only under the same config and manifest (otherwise ``RunConfigMismatch`` says why).
        executor: ``"auto"``, ``"sequential"``, ``"batched"``, ``"processes"`` or ``"ray"``; default
            ``run_config.protocol.executor``. ``"auto"`` and ``"batched"`` are resolved by
            :func:`merkit.training.executors.choose_executor`; the choice, its reason and the fold group size are
            printed and written to ``executor.json``, and every fold's ``history.csv`` names the executor that
            trained it. The precision the folds train in and why (:func:`merkit.training.precision.choose_precision`)
            go into ``executor.json`` too, under ``"precision"``.
        workers: parallel folds for ``"processes"`` / Ray CPU tasks; default ``protocol.workers``
            (0 = one per core, or one per GPU when there are several).
        ray_address: Ray cluster address; ``None``/``""`` starts a small local instance.
        folds: run only these fold keys (the rest stay for a later call; keys are listed by ``make_splits``).
        save_checkpoints: write each fold's weights to ``folds/fold_<key>/checkpoint.pt`` before its done
            marker (``load_fold_model`` reads them back).
        n_boot: bootstrap resamples of the confidence intervals in ``metrics.json`` (``metrics.summarise``,
            resampling seed 0; at least 1). Not part of the config: a resumed run rewrites the intervals.

    Everything that can be checked is checked before the run directory is opened: model and protocol names,
    the device (:class:`merkit.training.fold.DeviceError` names the devices this machine has), index columns
    and labels, the model's input against the store's clips, the executor's plan. The model built for these
    checks is the first fold's own (under its fold seed): each fold's model is built once.

    Returns the predictions of every completed fold (``merkit.evaluation.metrics`` contract). When every fold of the
    protocol is complete, ``predictions.csv`` and ``metrics.json`` are written, once (``metrics.summarise`` plus
    ``model``, ``protocol`` and ``folds_missing_classes``; per-fold seconds go to ``timings.json``); a partial
    run writes neither.
    """

    if isinstance(run_config, dict):
        run_config = RunConfig.from_dict(run_config)
    protocol = run_config.protocol
    requested = executor or protocol.executor
    workers = protocol.workers if workers is None else workers
    ray_address = ray_address if ray_address is not None else (protocol.ray_address or None)
    if requested not in EXECUTOR_NAMES:
        raise ValueError(f"unknown executor {requested!r}; use one of {', '.join(EXECUTOR_NAMES)}")
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1 (bootstrap resamples of metrics.json's intervals), got {n_boot}")
    try:
        model_entry(run_config.model.name)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    check_protocol_name(protocol.name)
    resolve_device(run_config.train.device)  # a device this machine does not have: refused before any write

    index = store.index
    classes = _store_classes(store)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MissingClassWarning)
        all_folds = make_splits(index, protocol.name, k=protocol.k, seed=run_config.train.seed, classes=classes)
    for w in caught:  # re-issue here so the warning points at the caller of run_protocol
        warnings.warn(w.message, w.category, stacklevel=2)
    by_key = {f.key: f for f in all_folds}
    if folds is not None:
        unknown = [str(k) for k in folds if str(k) not in by_key]
        if unknown:
            raise ProtocolError(f"unknown fold key(s) {unknown}; this {protocol.name} run has {list(by_key)}")
        selected = [by_key[str(k)] for k in folds]
    else:
        selected = all_folds
    _check_preprocess(run_config, store)

    job = FoldJob(run_config, store, tuple(classes), keep_weights=save_checkpoints, progress=progress)
    path = run_dir.path if isinstance(run_dir, RunDir) else Path(run_dir)
    finished = {str(k) for k in completed_folds(path)}  # read only: which fold is trained first
    waiting = [f for f in selected if f.key not in finished]
    first = (waiting or selected or all_folds)[0]
    model = job.build_model(first)
    _check_model_input(run_config.model.name, store, model)
    if waiting:
        plan = executors.choose_executor(job, requested, n_folds=len(selected), model=model)
        job.adopt(first, model)  # the executor trains this very model (untouched by the checks)
    else:  # every selected fold is done: nothing to plan (executor.json keeps the plan that trained them)
        plan = executors.ExecutorPlan(requested, "sequential", "no fold left to run")
    schedule = _Schedule(
        all_folds,
        selected,
        plan,
        executors.executor_for(plan, selected, workers=workers, ray_address=ray_address),
        n_boot,
        choose_precision(run_config.train.precision, resolve_device(run_config.train.device), model),
    )

    # One writer per run directory; a pipeline holding it lets its kernels in (see merkit.runlock).
    with RunLock(path) as lock:
        if lock.stale:
            warnings.warn(
                f"took over the lock of {lock.run_dir} left by pid {lock.stale.get('pid')} on "
                f"{lock.stale.get('host')} (started {lock.stale.get('started')}), no longer running",
                RuntimeWarning,
                stacklevel=2,
            )
        if not isinstance(run_dir, RunDir):
            run_dir = RunDir(run_dir, run_config, manifest_hash=_manifest_hash(store))
        return _run_folds(run_dir, job, schedule)


def _run_folds(run_dir: RunDir, job: FoldJob, schedule: _Schedule) -> pd.DataFrame:
    """Train the scheduled folds not yet done in ``run_dir``, persisting each as its executor yields it."""
    protocol = job.run_config.protocol
    selected = schedule.selected
    done = {str(k) for k in run_dir.completed_folds()}
    todo = [f for f in selected if f.key not in done]

    bar = tqdm(
        total=len(selected),
        initial=len(selected) - len(todo),
        desc=f"{protocol.name} folds",
        unit="fold",
        disable=not job.progress,
    )
    # The progress file reaches the pipeline's terminal (a kernel's bars stay inside its notebook).
    target = progress_path(run_dir.path)
    where = os.path.relpath(run_dir.path, target.parent)
    stage = f"{protocol.name} folds" + ("" if where == "." else f" ({where})")
    tracker = FoldProgress(run_dir.path, stage, total=len(selected), done=len(selected) - len(todo))

    def persist(result: FoldResult) -> None:
        # checkpoint first, done marker last: a crash in between leaves the fold incomplete, never half-done
        if result.state_dict is not None:
            run_dir.save_checkpoint(result.key, result.state_dict)
        history = result.history.assign(device=result.device)
        run_dir.mark_fold_done(result.key, result.predictions, history, seconds=result.seconds)
        bar.update(1)
        bar.set_postfix(fold=result.key)
        tracker.update(1)

    if todo:
        plan = schedule.plan
        arithmetic = schedule.precision
        print(f"executor: {plan.executor} ({plan.reason}); precision: {arithmetic.precision} ({arithmetic.reason})")
        run_dir.write_json("executor.json", {**plan.record(), "precision": arithmetic.record()})
    try:
        with closing(schedule.executor.run(job, todo, tracker)) as results:
            for result in results:
                persist(result)
    finally:
        bar.close()

    predictions = run_dir.load_predictions()
    if {str(k) for k in run_dir.completed_folds()} >= {f.key for f in schedule.all_folds}:
        _write_run_outputs(run_dir, predictions, list(job.classes), schedule.all_folds, job.run_config, schedule.n_boot)
    return predictions


def load_fold_model(run_dir: str | os.PathLike | RunDir, fold: str, *, run_config: RunConfig | None = None) -> Any:
    """Rebuild fold ``fold``'s model from the run's config and load its checkpoint (eval mode, CPU).

    A missing or corrupt checkpoint raises ``merkit.training.runs.CheckpointError`` naming the file.
    """

    path = run_dir.path if hasattr(run_dir, "path") else Path(run_dir)
    cfg = run_config if run_config is not None else load_config(path)
    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(path, cfg, capture=False)
    state = rd.load_checkpoint(fold)
    num_classes = int(state["head.weight"].shape[0]) if "head.weight" in state else 3
    model = create_model(cfg.model.name, num_classes=num_classes, **cfg.model.overrides)
    model.load_state_dict(state)
    return model.eval()


# ------------------------------------------------------------------------------------- runner helpers


def _store_classes(store: ClipStore) -> list[str]:
    classes = getattr(store, "classes", None) or store.index.attrs.get("classes")
    if not classes:
        raise ProtocolError(
            "the store's index has no class names (index.attrs['classes']); build the manifest with a label "
            "map, e.g. build_manifest('synthme', root, 'synthme_3class')"
        )
    return list(classes)


def _manifest_hash(store: ClipStore) -> str | None:
    value = getattr(store, "manifest_hash", None)
    return value if isinstance(value, str) else None


def _check_preprocess(run_config: RunConfig, store: ClipStore) -> None:
    """The config's ``preprocess`` entries (when given) must describe the store's clips, or results lie."""
    stored = getattr(store, "config", None)
    if stored is None or not run_config.preprocess:
        return
    stored = stored.to_dict() if hasattr(stored, "to_dict") else dict(vars(stored))
    differ = [
        f"{k}: config {v!r}, store {stored.get(k, '<absent>')!r}"
        for k, v in run_config.preprocess.items()
        if stored.get(k, "<absent>") != v
    ]
    if differ:
        raise ProtocolError(
            "run_config.preprocess does not match the store's preprocessing (rebuild the store with the "
            "config's parameters, or fix the config): " + "; ".join(differ)
        )


def _check_model_input(name: str, store: ClipStore, model: nn.Module) -> None:
    """Fail before any fold if the store's clips (or flow images) do not fit the model's declared input."""
    try:
        problem = input_adapter(model).store_problem(store, name)
    except InputKindError as error:
        raise ProtocolError(str(error)) from error
    if problem is not None:
        raise ProtocolError(problem)


def _write_run_outputs(
    run_dir: RunDir,
    predictions: pd.DataFrame,
    classes: list[str],
    all_folds: list[Fold],
    run_config: RunConfig,
    n_boot: int,
) -> None:
    order = {f.key: i for i, f in enumerate(all_folds)}
    predictions = predictions.sort_values("fold", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)
    run_dir.write_predictions(predictions)
    metrics = summarise(predictions, classes, n_boot=n_boot)
    metrics["model"] = run_config.model.name
    metrics["protocol"] = run_config.protocol.name
    metrics["folds_missing_classes"] = {f.key: list(f.missing_classes) for f in all_folds if f.missing_classes}
    run_dir.write_metrics(metrics)  # results only: a resumed run writes the same bytes as an uninterrupted one
    # Wall time per fold (from each fold's done marker, so a resumed run keeps the earlier folds' times).
    run_dir.write_json("timings.json", {"fold_seconds": run_dir.fold_seconds()})
