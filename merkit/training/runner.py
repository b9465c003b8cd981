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
import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from merkit.config import ConfigError, RunConfig, load_config, upgrade_config_dict
from merkit.data.inputs import InputKindError, input_adapter, model_dataset
from merkit.evaluation.metrics import summarise
from merkit.models import create_model, model_entry
from merkit.progress import FoldProgress, pause_point, progress_path
from merkit.runlock import RunLock
from merkit.training import executors
from merkit.training.executors import EXECUTORS
from merkit.training.fold import inner_validation_split, predict, resolve_device, train_fold
from merkit.training.precision import choose_precision
from merkit.training.runs import RunDir

if TYPE_CHECKING:  # annotations only: the store module needs OpenCV, the runner imports without it
    from merkit.data.store import ClipStore
from merkit.evaluation.splits import (
    Fold,
    MissingClassWarning,
    ProtocolError,
    check_protocol_name,
    fold_seed,
    make_splits,
)

__all__ = ["FoldResult", "run_fold", "fold_result", "run_protocol", "load_fold_model", "model_dataset", "EXECUTORS"]

# ------------------------------------------------------------------------------------------- fold runner


@dataclass
class FoldResult:
    """What one fold sends back to the driver (workers never write the run directory themselves)."""

    key: str
    predictions: pd.DataFrame  # merkit.evaluation.metrics predictions contract, one row per held-out clip
    history: pd.DataFrame  # train.train_fold history, one row per epoch
    state_dict: dict | None  # final (or selected) weights on CPU, for the fold checkpoint
    seconds: float  # wall time of the fold (train + predict)
    device: str  # torch device the fold ran on
    model_name: str = ""  # registry name the fold's model was built under (model() rebuilds it)
    model_overrides: dict = field(default_factory=dict)  # its constructor overrides
    num_classes: int = 0  # its number of classes

    def model(self) -> Any:
        """The fold's trained model, rebuilt from the registry and loaded with ``state_dict`` (eval mode, CPU).

        Raises ``ValueError`` when the fold kept no weights (``run_fold(..., keep_weights=False)``).
        """

        if self.state_dict is None or not self.model_name:
            raise ValueError(
                f"fold {self.key!r} kept no weights (run_fold(..., keep_weights=False)): "
                "nothing to rebuild the model from"
            )
        net = create_model(self.model_name, num_classes=self.num_classes, **self.model_overrides)
        net.load_state_dict(self.state_dict)
        return net.eval()


def run_fold(
    run_config: RunConfig,
    store: ClipStore,
    fold: Fold,
    classes: Sequence[str],
    *,
    progress: bool = False,
    keep_weights: bool = True,
    on_epoch_end: Any = None,
) -> FoldResult:
    """Train on ``fold.train`` and predict ``fold.test``: the unit of work of every executor.

    ``on_epoch_end(epoch, snapshot)`` is passed to ``train_fold`` (an observer of a copy of the model after
    each epoch; it cannot change what is trained or returned).

    The model is built under ``fold_seed(train.seed, fold.key)``, which also seeds shuffling and
    augmentation, so a fold's result does not depend on which other folds ran, in which order or where.
    With ``train.val_fraction > 0`` an inner validation split is drawn from the training subjects of this
    fold (whole subjects); it is checked to share no subject with the held-out rows. The held-out rows are
    only ever given to ``predict``, after training.
    """

    import torch

    start = time.perf_counter()
    train_cfg = run_config.train
    seed = fold_seed(train_cfg.seed, fold.key)
    index = store.index
    augment = train_cfg.clip_augmentation() or False  # training clips may be augmented, held-out ones never

    torch.manual_seed(seed)
    model = create_model(run_config.model.name, num_classes=len(classes), **run_config.model.overrides)
    spec = getattr(model, "input_spec", None)  # clip or flow: which dataset the fold reads

    train_positions, val_ds = np.asarray(fold.train), None
    if train_cfg.val_fraction > 0:
        inner_train, inner_val = inner_validation_split(index.iloc[train_positions], train_cfg.val_fraction, seed)
        val_positions = train_positions[inner_val]
        train_positions = train_positions[inner_train]
        _check_no_shared_subject(index, val_positions, np.asarray(fold.test), fold.key)
        val_ds = model_dataset(spec, store, val_positions, augment=False, seed=seed)
    train_ds = model_dataset(spec, store, train_positions, augment=augment, seed=seed)

    model, history = train_fold(
        model,
        train_ds,
        train_cfg,
        val_ds=val_ds,
        progress=progress,
        seed=seed,
        num_classes=len(classes),
        on_epoch_end=on_epoch_end,
    )
    return fold_result(
        run_config, store, fold, classes, model, history, seconds=time.perf_counter() - start, keep_weights=keep_weights
    )


def fold_result(
    run_config: RunConfig,
    store: ClipStore,
    fold: Fold,
    classes: Sequence[str],
    model: Any,
    history: pd.DataFrame,
    *,
    seconds: float,
    keep_weights: bool = True,
) -> FoldResult:
    """Predict ``fold.test`` with a fold's trained ``model`` and package what the driver persists.

    Shared by the sequential trainer (``run_fold``) and the fold-batched executor, so both write the same
    predictions, history and checkpoint. ``seconds`` is the fold's training time so far; prediction is added.
    """

    start = time.perf_counter()
    train_cfg = run_config.train
    seed = fold_seed(train_cfg.seed, fold.key)
    index = store.index
    spec = getattr(model, "input_spec", None)
    test_ds = model_dataset(spec, store, np.asarray(fold.test), augment=False, seed=seed)
    pause_point(f"{run_config.protocol.name}.fold.inside")  # test hook (merkit.progress): a kill inside a fold
    probs, preds = predict(model, test_ds, batch_size=train_cfg.batch_size, precision=train_cfg.precision)

    rows = index.iloc[np.asarray(fold.test)]
    dataset = rows["dataset"].astype(str).to_numpy() if "dataset" in rows else [run_config.data.dataset] * len(rows)
    predictions = pd.DataFrame(
        {
            "dataset": dataset,
            "subject": rows["subject"].astype(str).to_numpy(),
            "sample": rows["sample"].astype(str).to_numpy() if "sample" in rows else rows.index.astype(str),
            "fold": fold.key,
            "gt": rows["label"].to_numpy(dtype=np.int64),
            "pred": preds,
        }
    )
    for c, name in enumerate(classes):
        predictions[f"prob_{name}"] = probs[:, c]
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()} if keep_weights else None
    device = str(resolve_device(train_cfg.device))
    return FoldResult(
        fold.key,
        predictions,
        history,
        state,
        seconds + time.perf_counter() - start,
        device,
        model_name=run_config.model.name,
        model_overrides=dict(run_config.model.overrides),
        num_classes=len(classes),
    )


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

    Everything that can be checked is checked before any fold runs: model and protocol names, index
    columns and labels, the model's input against the store's clips, the run directory's config.

    Returns the predictions of every completed fold (``merkit.evaluation.metrics`` contract). When every fold of the
    protocol is complete, ``predictions.csv`` and ``metrics.json`` are written, once (``metrics.summarise`` plus
    ``model``, ``protocol`` and ``folds_missing_classes``; per-fold seconds go to ``timings.json``); a partial
    run writes neither.
    """

    if isinstance(run_config, dict):
        run_config = RunConfig.from_dict(run_config)
    protocol = run_config.protocol
    executor = executor or protocol.executor
    workers = protocol.workers if workers is None else workers
    ray_address = ray_address if ray_address is not None else (protocol.ray_address or None)
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; use one of {', '.join(EXECUTORS)}")
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1 (bootstrap resamples of metrics.json's intervals), got {n_boot}")
    try:
        model_entry(run_config.model.name)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    check_protocol_name(protocol.name)

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
    _check_model_input(run_config, store, classes)

    # One writer per run directory; a pipeline holding it lets its kernels in (see merkit.runlock).
    with RunLock(run_dir.path if isinstance(run_dir, RunDir) else run_dir) as lock:
        if lock.stale:
            warnings.warn(
                f"took over the lock of {lock.run_dir} left by pid {lock.stale.get('pid')} on "
                f"{lock.stale.get('host')} (started {lock.stale.get('started')}), no longer running",
                RuntimeWarning,
                stacklevel=2,
            )
        if not isinstance(run_dir, RunDir):
            run_dir = RunDir(run_dir, run_config, manifest_hash=_manifest_hash(store), upgrade=upgrade_config_dict)
        return _run_folds(
            run_dir,
            run_config,
            store,
            classes,
            all_folds,
            by_key,
            selected,
            executor,
            workers,
            ray_address,
            progress,
            save_checkpoints,
            n_boot,
        )


def _run_folds(
    run_dir: RunDir,
    run_config: RunConfig,
    store: ClipStore,
    classes: list[str],
    all_folds: list[Fold],
    by_key: dict[str, Fold],
    selected: list[Fold],
    executor: str,
    workers: int,
    ray_address: str | None,
    progress: bool,
    save_checkpoints: bool,
    n_boot: int,
) -> pd.DataFrame:
    protocol = run_config.protocol
    done = {str(k) for k in run_dir.completed_folds()}
    todo = [f for f in selected if f.key not in done]

    bar = tqdm(
        total=len(selected),
        initial=len(selected) - len(todo),
        desc=f"{protocol.name} folds",
        unit="fold",
        disable=not progress,
    )
    # The progress file reaches the pipeline's terminal (a kernel's bars stay inside its notebook).
    target = progress_path(run_dir.path)
    where = os.path.relpath(run_dir.path, target.parent)
    stage = f"{protocol.name} folds" + ("" if where == "." else f" ({where})")
    tracker = FoldProgress(run_dir.path, stage, total=len(selected), done=len(selected) - len(todo))

    def persist(result: FoldResult) -> None:
        # checkpoint first, done marker last: a crash in between leaves the fold incomplete, never half-done
        if save_checkpoints and result.state_dict is not None:
            run_dir.save_checkpoint(result.key, result.state_dict)
        history = result.history.assign(device=result.device)
        run_dir.mark_fold_done(result.key, result.predictions, history, seconds=result.seconds)
        bar.update(1)
        bar.set_postfix(fold=result.key)
        tracker.update(1)

    plan = None
    if todo:
        probe = _fold_model(run_config, Fold("probe", np.array([0]), np.array([0])), classes)
        plan = executors.choose_executor(
            run_config,
            executor,
            n_folds=len(selected),
            model=probe,
            example=lambda: input_adapter(probe).example(store, 2),
        )
    if plan is not None:
        executor = plan.executor
        arithmetic = choose_precision(run_config.train.precision, resolve_device(run_config.train.device), probe)
        print(f"executor: {plan.executor} ({plan.reason}); precision: {arithmetic.precision} ({arithmetic.reason})")
        run_dir.write_json("executor.json", {**plan.record(), "precision": arithmetic.record()})

    def persist_named(result: FoldResult) -> None:  # the fold's history says which executor trained it
        persist(replace(result, history=result.history.assign(executor=executor)))

    try:
        if executor == "batched":
            assert plan is not None
            executors.run_batched(
                run_config,
                store,
                selected,
                todo,
                classes,
                plan.fold_batch,
                make_model=lambda fold: _fold_model(run_config, fold, classes),
                make_dataset=lambda spec, positions, augment, seed: model_dataset(
                    spec, store, positions, augment=augment, seed=seed
                ),
                finish=lambda fold, model, history, secs: fold_result(
                    run_config, store, fold, classes, model, history, seconds=secs, keep_weights=save_checkpoints
                ),
                persist=persist,
                progress=progress,
            )
        elif executor == "sequential" or not todo:
            for fold in todo:
                persist_named(
                    run_fold(run_config, store, fold, classes, progress=progress, keep_weights=save_checkpoints)
                )
                pause_point(f"{protocol.name}.fold.between")  # test hook (merkit.progress): a kill between folds
        elif executor == "processes":
            executors.run_processes(
                run_fold, run_config, store, todo, classes, workers, save_checkpoints, persist_named
            )
        else:
            executors.run_ray(
                run_fold, run_config, store, todo, classes, workers, ray_address, save_checkpoints, persist_named
            )
    finally:
        bar.close()

    predictions = run_dir.load_predictions()
    if {str(k) for k in run_dir.completed_folds()} >= set(by_key):
        _write_run_outputs(run_dir, predictions, classes, all_folds, run_config, n_boot)
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


def _check_model_input(run_config: RunConfig, store: ClipStore, classes: list[str]) -> None:
    """Fail before any fold if the store's clips (or flow images) do not fit the model's declared input."""

    name = run_config.model.name
    model = create_model(name, num_classes=len(classes), **run_config.model.overrides)
    try:
        problem = input_adapter(model).store_problem(store, name)
    except InputKindError as error:
        raise ProtocolError(str(error)) from error
    if problem is not None:
        raise ProtocolError(problem)


def _check_no_shared_subject(
    index: pd.DataFrame, val_positions: np.ndarray, test_positions: np.ndarray, fold_key: str
) -> None:
    def keys(pos: np.ndarray) -> set[str]:
        rows = index.iloc[pos]
        ds = rows["dataset"].astype(str) if "dataset" in rows else ""
        return set((ds + "/" + rows["subject"].astype(str)).tolist())

    shared = keys(val_positions) & keys(test_positions)
    if shared:  # cannot happen with the split generators above; guards against a future change
        raise ProtocolError(f"fold {fold_key!r}: inner validation shares held-out subject(s) {sorted(shared)}")


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


def _fold_model(run_config: RunConfig, fold: Fold, classes: Sequence[str]) -> Any:
    """The fold's model, initialised under its fold seed (the same weights the sequential trainer starts from)."""
    import torch

    torch.manual_seed(fold_seed(run_config.train.seed, fold.key))
    return create_model(run_config.model.name, num_classes=len(classes), **run_config.model.overrides)
