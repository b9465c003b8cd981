"""Evaluation protocols: which clips train and which are held out in each fold, and the fold runner.

Split generators
----------------
Each takes an *index*: a DataFrame with one row per clip in store order (``ClipStore.index`` or a manifest)
holding at least ``subject`` and ``label`` (and ``dataset`` for the composite and leave-one-dataset-out).
Each returns a list of :class:`Fold` whose ``train`` / ``test`` arrays are row positions into that index.

- ``loso_splits``: leave one subject out. Subject ids are only unique within a dataset, so when the index
  holds several datasets the fold key is ``<dataset>/<subject>``.
- ``megc2019_splits``: LOSO over the MEGC2019 composite (CASME II + SAMM + SMIC-HS, 68 subjects, 3 classes),
  fold keys always ``<dataset>/<subject>`` (the key metrics.read_megc_log uses).
- ``lodo_splits``: leave one dataset out (cross-dataset generalisation).
- ``group_kfold_splits(k)``: k folds of whole subjects, for quick runs.

A fold whose training set lacks a class cannot learn that class; it is *reported*, never skipped silently:
the generator issues a :class:`MissingClassWarning` naming the fold and classes, ``Fold.missing_classes``
records it, and ``run_protocol`` writes it into ``metrics.json`` (``folds_missing_classes``).

The fold runner
---------------
``run_protocol(run_config, store, run_dir, executor=..., workers=..., folds=...)`` runs every fold: model
built under a seed derived from (seed, fold key) → ``train.train_fold`` on the training rows only (optionally
with an inner validation split of training subjects) → ``train.predict`` on the held-out rows → the fold's
predictions and history are written atomically and the fold is marked done. The model's ``input_spec.kind``
picks what a fold reads (``model_dataset``): clips for 3D models, the store's onset→apex flow images for the
flow baselines (``ststnet`` takes u, v, strain; ``offapexnet`` u, v), so a flow model needs a store built with
flow (``prepare_data(..., flow='tvl1')``); the pre-flight check says so before any fold runs. Re-running into
the same run directory resumes after the completed folds. Executors: ``"sequential"`` (default),
``"processes"`` (local spawn pool, torch threads = cores // workers) and ``"ray"`` (one fold per task, a GPU
per task when CUDA is present). Workers return their results to the driver, which alone writes the run directory. A ``ClipStore``
pickles as its path, so workers (processes, or Ray tasks on other nodes) must see the store's cache directory
at the same path (a shared file system on a cluster); no clip data is copied.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "Fold",
    "variant_config",
    "ProtocolError",
    "MissingClassWarning",
    "PROTOCOLS",
    "list_protocols",
    "loso_splits",
    "megc2019_splits",
    "lodo_splits",
    "group_kfold_splits",
    "make_splits",
    "check_protocol_name",
    "fold_seed",
    "FoldResult",
    "run_protocol",
    "run_fold",
    "model_dataset",
    "load_fold_model",
    "EXECUTORS",
]


class ProtocolError(ValueError):
    """A protocol cannot be applied (unknown name, missing column, too few subjects or datasets)."""


class MissingClassWarning(UserWarning):
    """A fold's training set has no sample of some class: that fold cannot learn to predict it."""


@dataclass(frozen=True)
class Fold:
    """One fold: ``key`` names the held-out group; ``train`` / ``test`` are row positions into the index."""

    key: str
    train: np.ndarray = field(repr=False)
    test: np.ndarray = field(repr=False)
    missing_classes: tuple[str, ...] = ()

    def __repr__(self) -> str:
        missing = f", missing_classes={list(self.missing_classes)}" if self.missing_classes else ""
        return f"Fold({self.key!r}, train={len(self.train)}, test={len(self.test)}{missing})"


# ------------------------------------------------------------------------------------------------ splits


def loso_splits(index: pd.DataFrame, classes: list[str] | None = None) -> list[Fold]:
    """Leave one subject out; keys are ``subject`` (one dataset) or ``dataset/subject`` (several)."""
    _require(index, ("subject", "label"), "loso")
    qualify = "dataset" in index.columns and index["dataset"].nunique() > 1
    return _folds_by(index, _subject_keys(index, qualify), classes, "loso")


def megc2019_splits(index: pd.DataFrame, classes: list[str] | None = None) -> list[Fold]:
    """LOSO over the composite's subjects, each qualified by its dataset (``casme2/01``, ``samm/006``, …).

    On the real composite (CASME II + SAMM + SMIC-HS, 3 classes) this gives 68 folds; a different count is
    not an error (a subset, or SynthME) but is easy to check with ``len(folds)``.
    """
    _require(index, ("dataset", "subject", "label"), "megc2019")
    return _folds_by(index, _subject_keys(index, qualify=True), classes, "megc2019")


def lodo_splits(index: pd.DataFrame, classes: list[str] | None = None) -> list[Fold]:
    """Leave one dataset out: one fold per dataset, keyed by the dataset name."""
    _require(index, ("dataset", "subject", "label"), "lodo")
    datasets = index["dataset"].astype(str)
    if datasets.nunique() < 2:
        raise ProtocolError(
            f"protocol 'lodo' needs at least 2 datasets in the index, found {sorted(datasets.unique())}"
        )
    return _folds_by(index, datasets.to_numpy(), classes, "lodo")


def group_kfold_splits(index: pd.DataFrame, k: int = 5, seed: int = 0, classes: list[str] | None = None) -> list[Fold]:
    """``k`` folds of whole subjects (keys ``k0`` … ``k{k-1}``), balanced by clip count, shuffled by ``seed``.

    Subjects are taken in a seeded random order, then each goes to the fold with the fewest clips so far.
    """
    _require(index, ("subject", "label"), "group_kfold")
    qualify = "dataset" in index.columns and index["dataset"].nunique() > 1
    keys = _subject_keys(index, qualify)
    subjects, counts = np.unique(keys, return_counts=True)
    if not 2 <= k <= len(subjects):
        raise ProtocolError(f"group_kfold needs 2 <= k <= number of subjects ({len(subjects)}), got k={k}")
    order = np.random.default_rng(seed).permutation(len(subjects))
    sizes = np.zeros(k, dtype=np.int64)
    fold_of: dict[str, str] = {}
    for i in order:
        target = int(np.argmin(sizes))  # ties go to the lowest fold number: deterministic
        sizes[target] += counts[i]
        fold_of[subjects[i]] = f"k{target}"
    return _folds_by(index, np.array([fold_of[s] for s in keys]), classes, "group_kfold")


PROTOCOLS: dict[str, Callable[..., list[Fold]]] = {
    "loso": loso_splits,
    "megc2019": megc2019_splits,
    "lodo": lodo_splits,
    "group_kfold": group_kfold_splits,
}


def list_protocols() -> list[str]:
    """Names accepted by ``make_splits`` and ``ProtocolConfig.name``."""
    return list(PROTOCOLS)


def variant_config(config: Any, variant: str) -> Any:
    """The run config of a comparison variant written ``name`` or ``name:attention`` (e.g. ``meranet_small:none``).

    The variant keeps everything of ``config`` but the model: when it reads the same kind of input as the base
    model (clips, or flow images), it takes the base model's input overrides (``frames``, ``size``,
    ``in_channels``) that its constructor accepts; plus ``attention`` when given. So a flow baseline (``ststnet``)
    keeps its own 28×28 input beside a clip model, and an attention variant of a model without attention is
    refused with the arguments the model does take.
    """
    from merkit.models import create_model, model_entry

    name, _, attention = variant.strip().partition(":")
    accepted = model_entry(name).accepted_arguments()
    carried = ("frames", "size", "in_channels")
    base_kind = create_model(config.model.name, **config.model.overrides).input_spec.kind
    same_kind = create_model(name).input_spec.kind == base_kind
    overrides = {k: v for k, v in config.model.overrides.items() if same_kind and k in carried and k in accepted}
    if attention:
        if "attention" not in accepted:
            raise ProtocolError(f"variant {variant!r}: model {name!r} has no attention parameter (it takes {accepted})")
        overrides["attention"] = attention
    return config.with_updates({"model.name": name, "model.overrides": overrides})


def make_splits(index: pd.DataFrame, name: str, *, k: int = 5, seed: int = 0, classes: list[str] | None = None) -> list[Fold]:
    """The folds of protocol ``name`` over ``index`` (``k`` and ``seed`` are used by ``group_kfold``)."""
    check_protocol_name(name)
    if name == "group_kfold":
        return group_kfold_splits(index, k=k, seed=seed, classes=classes)
    return PROTOCOLS[name](index, classes=classes)


def check_protocol_name(name: str) -> None:
    """Raise :class:`ProtocolError` naming the known protocols when ``name`` is not one of them."""
    if name not in PROTOCOLS:
        raise ProtocolError(f"unknown protocol {name!r}; known protocols: {', '.join(PROTOCOLS)}")


def fold_seed(seed: int, fold_key: str) -> int:
    """A 31-bit seed derived from the run seed and the fold key: stable across runs, resumes and fold subsets."""
    key_ints = [int(b) for b in str(fold_key).encode("utf-8")]
    return int(np.random.SeedSequence([int(seed), len(key_ints), *key_ints]).generate_state(1)[0] & 0x7FFFFFFF)


# ----------------------------------------------------------------------------------------------- helpers


def _require(index: pd.DataFrame, columns: tuple[str, ...], protocol: str) -> None:
    missing = [c for c in columns if c not in index.columns]
    if missing:
        raise ProtocolError(
            f"protocol {protocol!r} needs column(s) {missing} in the index; it has {list(index.columns)}"
        )
    if len(index) == 0:
        raise ProtocolError(f"protocol {protocol!r} got an empty index")
    label = index["label"]
    if label.isna().any():
        bad = index.loc[label.isna()]
        first = bad.iloc[0]
        where = f"{first.get('dataset', '?')}/{first['subject']}/{first.get('sample', '?')}"
        raise ProtocolError(
            f"protocol {protocol!r}: {len(bad)} row(s) have no label (first: {where}); "
            "build the manifest with a class protocol (e.g. build_manifest(..., 'synthme_3class'))"
        )


def _subject_keys(index: pd.DataFrame, qualify: bool) -> np.ndarray:
    subjects = index["subject"].astype(str)
    if qualify:
        return (index["dataset"].astype(str) + "/" + subjects).to_numpy()
    return subjects.to_numpy()


def _class_names(index: pd.DataFrame, classes: list[str] | None) -> list[str]:
    if classes is not None:
        return list(classes)
    attrs_classes = index.attrs.get("classes")
    if attrs_classes:
        return list(attrs_classes)
    return [str(c) for c in range(int(index["label"].max()) + 1)]


def _folds_by(index: pd.DataFrame, groups: np.ndarray, classes: list[str] | None, protocol: str) -> list[Fold]:
    """One fold per distinct group value (sorted), holding that group out; reports classes missing in training."""
    names = _class_names(index, classes)
    labels = index["label"].to_numpy(dtype=np.int64)
    if labels.min() < 0 or labels.max() >= len(names):
        raise ProtocolError(f"labels must be in 0..{len(names) - 1} for classes {names}, found {sorted(set(labels))}")
    folds = []
    for key in sorted(set(groups.tolist())):
        held_out = groups == key
        train, test = np.flatnonzero(~held_out), np.flatnonzero(held_out)
        present = set(labels[train].tolist())
        missing = tuple(names[c] for c in range(len(names)) if c not in present)
        if missing:
            warnings.warn(
                f"{protocol} fold {key!r}: training set has no sample of class(es) {list(missing)}; "
                "this fold cannot predict them (recorded in metrics.json as folds_missing_classes)",
                MissingClassWarning,
                stacklevel=3,
            )
        folds.append(Fold(str(key), train, test, missing))
    return folds


# ------------------------------------------------------------------------------------------- fold runner

EXECUTORS = ("sequential", "processes", "ray")


@dataclass
class FoldResult:
    """What one fold sends back to the driver (workers never write the run directory themselves)."""

    key: str
    predictions: pd.DataFrame  # merkit.metrics predictions contract, one row per held-out clip
    history: pd.DataFrame  # train.train_fold history, one row per epoch
    state_dict: dict | None  # final (or selected) weights on CPU, for the fold checkpoint
    seconds: float  # wall time of the fold (train + predict)
    device: str  # torch device the fold ran on


def run_fold(
    run_config: Any,
    store: Any,
    fold: Fold,
    classes: Sequence[str],
    *,
    progress: bool = False,
    keep_weights: bool = True,
) -> FoldResult:
    """Train on ``fold.train`` and predict ``fold.test``: the unit of work of every executor.

    The model is built under ``fold_seed(train.seed, fold.key)``, which also seeds shuffling and
    augmentation, so a fold's result does not depend on which other folds ran, in which order or where.
    With ``train.val_fraction > 0`` an inner validation split is drawn from the training subjects of this
    fold (whole subjects); it is checked to share no subject with the held-out rows. The held-out rows are
    only ever given to ``predict``, after training.
    """
    from merkit.models import create_model
    from merkit.train import inner_validation_split, predict, resolve_device, train_fold

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
        model, train_ds, train_cfg, val_ds=val_ds, progress=progress, seed=seed, num_classes=len(classes)
    )
    test_ds = model_dataset(spec, store, np.asarray(fold.test), augment=False, seed=seed)
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
    return FoldResult(fold.key, predictions, history, state, time.perf_counter() - start, device)


def run_protocol(
    run_config: Any,
    store: Any,
    run_dir: Any,
    *,
    executor: str | None = None,
    workers: int | None = None,
    ray_address: str | None = None,
    folds: Sequence[str] | None = None,
    progress: bool = True,
    save_checkpoints: bool = True,
) -> pd.DataFrame:
    """Run every fold of ``run_config.protocol`` over ``store`` into ``run_dir``; returns the predictions.

    Args:
        run_config: a ``merkit.config.RunConfig`` (or its dict form).
        store: a clip store (``ClipStore``) whose ``index`` has dataset, subject, sample and label columns;
            class names come from ``index.attrs["classes"]`` (or ``store.classes``).
        run_dir: a path or a ``merkit.runs.RunDir``. An existing run directory is resumed after its completed
            folds, and only under the same config and manifest (otherwise ``RunConfigMismatch`` says why).
        executor: ``"sequential"``, ``"processes"`` or ``"ray"``; default ``run_config.protocol.executor``.
        workers: parallel folds for ``"processes"`` / Ray CPU tasks; default ``protocol.workers``
            (0 = one per core, or one per GPU when there are several).
        ray_address: Ray cluster address; ``None``/``""`` starts a small local instance.
        folds: run only these fold keys (the rest stay for a later call; keys are listed by ``make_splits``).
        save_checkpoints: write each fold's weights to ``folds/fold_<key>/checkpoint.pt`` before its done
            marker (``load_fold_model`` reads them back).

    Everything that can be checked is checked before any fold runs: model and protocol names, index
    columns and labels, the model's input against the store's clips, the run directory's config.

    Returns the predictions of every completed fold (``merkit.metrics`` contract). When every fold of the
    protocol is complete, ``predictions.csv`` and ``metrics.json`` are written (``metrics.summarise`` plus
    ``protocol``, ``folds_missing_classes`` and per-fold seconds); a partial run writes neither.
    """
    from merkit.config import ConfigError, RunConfig
    from merkit.models import model_entry
    from merkit.runs import RunDir

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

    if not isinstance(run_dir, RunDir):
        run_dir = RunDir(run_dir, run_config, manifest_hash=_manifest_hash(store))
    done = {str(k) for k in run_dir.completed_folds()}
    todo = [f for f in selected if f.key not in done]

    bar = _tqdm(total=len(selected), initial=len(selected) - len(todo), desc=f"{protocol.name} folds",
                unit="fold", disable=not progress)
    seconds: dict[str, float] = {}

    def persist(result: FoldResult) -> None:
        # checkpoint first, done marker last: a crash in between leaves the fold incomplete, never half-done
        if save_checkpoints and result.state_dict is not None:
            run_dir.save_checkpoint(result.key, result.state_dict)
        history = result.history.assign(device=result.device)
        run_dir.mark_fold_done(result.key, result.predictions, history)
        seconds[result.key] = result.seconds
        bar.update(1)
        bar.set_postfix(fold=result.key)

    try:
        if executor == "sequential" or not todo:
            for fold in todo:
                persist(run_fold(run_config, store, fold, classes, progress=progress, keep_weights=save_checkpoints))
        elif executor == "processes":
            _run_processes(run_config, store, todo, classes, workers, save_checkpoints, persist)
        else:
            _run_ray(run_config, store, todo, classes, workers, ray_address, save_checkpoints, persist)
    finally:
        bar.close()

    predictions = run_dir.load_predictions()
    if {str(k) for k in run_dir.completed_folds()} >= set(by_key):
        _write_run_outputs(run_dir, predictions, classes, all_folds, protocol.name, seconds)
    return predictions


def load_fold_model(run_dir: Any, fold: str, *, run_config: Any = None) -> Any:
    """Rebuild fold ``fold``'s model from the run's config and load its checkpoint (eval mode, CPU).

    A missing or corrupt checkpoint raises ``merkit.runs.CheckpointError`` naming the file.
    """
    from merkit.config import load_config
    from merkit.models import create_model
    from merkit.runs import RunDir

    path = run_dir.path if hasattr(run_dir, "path") else Path(run_dir)
    cfg = run_config if run_config is not None else load_config(path)
    rd = run_dir if isinstance(run_dir, RunDir) else RunDir(path, cfg, capture=False)
    state = rd.load_checkpoint(fold)
    num_classes = int(state["head.weight"].shape[0]) if "head.weight" in state else 3
    model = create_model(cfg.model.name, num_classes=num_classes, **cfg.model.overrides)
    model.load_state_dict(state)
    return model.eval()


# ----------------------------------------------------------------------------------------------- executors


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


def _process_worker(run_config_dict: dict, store: Any, fold: Fold, classes: list[str], threads: int,
                    keep_weights: bool, gpu: int | None) -> FoldResult:
    """Entry point of a spawned worker process: set threads (and GPU), rebuild the config, run the fold."""
    import torch

    from merkit.config import RunConfig

    torch.set_num_threads(threads)
    run_config = RunConfig.from_dict(run_config_dict)
    if gpu is not None and run_config.train.device in ("auto", "cuda"):
        run_config = run_config.with_updates({"train.device": f"cuda:{gpu}"})
    return run_fold(run_config, store, fold, classes, progress=False, keep_weights=keep_weights)


def _run_processes(run_config: Any, store: Any, todo: list[Fold], classes: list[str], workers: int,
                   keep_weights: bool, persist: Callable[[FoldResult], None]) -> None:
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
            pool.submit(_process_worker, config_dict, store, fold, list(classes), threads, keep_weights,
                        (i % n_gpus) if n_gpus else None): fold
            for i, fold in enumerate(todo)
        }
        try:
            for future in as_completed(futures):
                persist(future.result())
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def _run_ray(run_config: Any, store: Any, todo: list[Fold], classes: list[str], workers: int,
             ray_address: str | None, keep_weights: bool, persist: Callable[[FoldResult], None]) -> None:
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
            task.remote(config_dict, store_ref, fold, list(classes), threads, keep_weights): fold for fold in todo
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


def _ray_worker(run_config_dict: dict, store: Any, fold: Fold, classes: list[str], threads: int,
                keep_weights: bool) -> FoldResult:
    """A Ray task: Ray sets CUDA_VISIBLE_DEVICES to the task's GPU, so device 'auto' finds it."""
    import torch

    from merkit.config import RunConfig

    torch.set_num_threads(threads)
    return run_fold(RunConfig.from_dict(run_config_dict), store, fold, classes, progress=False,
                    keep_weights=keep_weights)


# ------------------------------------------------------------------------------------- runner helpers


def _store_classes(store: Any) -> list[str]:
    classes = getattr(store, "classes", None) or store.index.attrs.get("classes")
    if not classes:
        raise ProtocolError(
            "the store's index has no class names (index.attrs['classes']); build the manifest with a class "
            "protocol, e.g. build_manifest('synthme', root, 'synthme_3class')"
        )
    return list(classes)


def _manifest_hash(store: Any) -> str | None:
    value = getattr(store, "manifest_hash", None)
    return value if isinstance(value, str) else None


def _check_preprocess(run_config: Any, store: Any) -> None:
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


def _check_model_input(run_config: Any, store: Any, classes: list[str]) -> None:
    """Fail before any fold if the store's clips (or flow images) do not fit the model's declared input."""
    from merkit.models import create_model

    name = run_config.model.name
    model = create_model(name, num_classes=len(classes), **run_config.model.overrides)
    spec = getattr(model, "input_spec", None)
    if spec is None:
        return
    expected = tuple(spec.shape(1)[1:])
    if spec.kind == "flow":
        if getattr(store, "flow", None) is None:
            where = getattr(store, "path", None)
            raise ProtocolError(
                f"model {name!r} reads onset→apex flow images, {spec.describe()}, but the store"
                f"{f' at {where}' if where else ''} has no flow (no flow.npy): build the store with "
                "flow=FlowConfig(...) (merkit.data.store.build_store), or prepare it with "
                "prepare_data(..., flow='tvl1') (any method of merkit.data.flow.FLOW_METHODS)"
            )
        x, _ = model_dataset(spec, store, np.array([0]), augment=False, seed=0)[0]
        if tuple(x.shape) != expected:
            raise ProtocolError(
                f"model {name!r} expects flow images {spec.layout} = {(1, *expected)}, but the store gives "
                f"{tuple(x.shape)} per clip; build the store's flow with FlowConfig(size={spec.size}) "
                f"(or override the model's size)"
            )
        return
    x, _ = model_dataset(spec, store, np.array([0]), augment=False, seed=0)[0]
    if tuple(x.shape) != expected:
        raise ProtocolError(
            f"model {run_config.model.name!r} expects clips {spec.layout} = {(1, *expected)}, but the store "
            f"gives {tuple(x.shape)} per clip; make the preprocessing frames/size/colour match the model "
            f"(or override the model's frames/size/in_channels)"
        )


def model_dataset(spec: Any, store: Any, positions: np.ndarray, *, augment: Any, seed: int) -> Any:
    """The torch Dataset a model with input ``spec`` (its ``input_spec``) reads from ``store``.

    ``augment`` is False, True (default augmentation) or an :class:`~merkit.data.torch_dataset.Augmentation`;
    a flow dataset takes only its ``flip`` probability (a flow image has no frames to shift).

    A ``clip`` model reads :class:`~merkit.data.torch_dataset.ClipDataset`; a ``flow`` model reads
    :class:`~merkit.data.torch_dataset.FlowDataset` over the store's onset→apex flow, given the first
    ``spec.channels`` of (u, v, strain): 3 = (u, v, strain) for STSTNet, 2 = (u, v) for Off-ApexNet. The
    channel choice is made here, from the model's declared input, so that the model gets exactly the
    channels it declares (rather than taking all three and silently ignoring strain).
    """
    from merkit.data.torch_dataset import FLOW_CHANNELS, Augmentation, ClipDataset, FlowDataset

    if spec is None or spec.kind == "clip":
        return ClipDataset(store, positions, augment=augment, seed=seed)
    if spec.channels not in (2, 3):
        raise ProtocolError(
            f"a flow model must take 2 channels (u, v) or 3 (u, v, strain), this one declares {spec.describe()}"
        )
    flip = augment.flip if isinstance(augment, Augmentation) else Augmentation().flip
    return FlowDataset(store, positions, augment=bool(augment), seed=seed, flip=flip,
                       channels=FLOW_CHANNELS[: spec.channels])


def _check_no_shared_subject(index: pd.DataFrame, val_positions: np.ndarray, test_positions: np.ndarray,
                             fold_key: str) -> None:
    def keys(pos: np.ndarray) -> set[str]:
        rows = index.iloc[pos]
        ds = rows["dataset"].astype(str) if "dataset" in rows else ""
        return set((ds + "/" + rows["subject"].astype(str)).tolist())

    shared = keys(val_positions) & keys(test_positions)
    if shared:  # cannot happen with the split generators above; guards against a future change
        raise ProtocolError(f"fold {fold_key!r}: inner validation shares held-out subject(s) {sorted(shared)}")


def _write_run_outputs(run_dir: Any, predictions: pd.DataFrame, classes: list[str], all_folds: list[Fold],
                       protocol: str, seconds: dict[str, float]) -> None:
    from merkit.metrics import summarise

    order = {f.key: i for i, f in enumerate(all_folds)}
    predictions = predictions.sort_values("fold", key=lambda s: s.map(order), kind="stable").reset_index(drop=True)
    run_dir.write_predictions(predictions)
    metrics = summarise(predictions, classes)
    metrics["protocol"] = protocol
    metrics["folds_missing_classes"] = {f.key: list(f.missing_classes) for f in all_folds if f.missing_classes}
    metrics["fold_seconds_this_call"] = seconds
    run_dir.write_metrics(metrics)


def _tqdm(**kwargs: Any) -> Any:
    from tqdm.auto import tqdm

    return tqdm(**kwargs)
