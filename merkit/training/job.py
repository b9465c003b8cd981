"""A fold job: what every executor needs to train and predict folds of one protocol run, and nothing more.

``FoldJob(run_config, store, classes)`` holds the config, the clip store and the class names, and knows how to
build a fold's model (under its fold seed), read a fold's datasets, train one fold (:meth:`FoldJob.run`) and
turn a trained model into the fold's result (:meth:`FoldJob.finish`: predictions on the held-out rows, history,
weights). Executors (:mod:`merkit.training.executors`) receive a job and send :class:`FoldResult` objects back;
the driver (:func:`merkit.training.runner.run_protocol`) alone writes the run directory. A job pickles without
clip data (a ``ClipStore`` pickles as its path), so it travels to spawned workers and Ray tasks as it is.

The model of one fold is built once: the runner builds the first fold's model for its pre-flight checks and
hands it to the job (:meth:`FoldJob.adopt`); the executor that trains that fold in this process takes it
instead of building another (a worker process builds its own, as it must).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pandas as pd

from merkit.config import RunConfig
from merkit.data.inputs import model_dataset
from merkit.evaluation.splits import Fold, ProtocolError, fold_seed
from merkit.models import create_model
from merkit.progress import pause_point
from merkit.training.batched.stack import fused_trainable, train_folds
from merkit.training.fold import inner_validation_split, predict, resolve_device, train_fold

if TYPE_CHECKING:  # annotations only: the store module needs OpenCV
    from torch import nn

    from merkit.data.store import ClipStore

__all__ = ["FoldJob", "FoldResult"]


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

    def named(self, executor: str) -> FoldResult:
        """This result with its history naming the executor that trained it (a ``history.csv`` column)."""
        return replace(self, history=self.history.assign(executor=executor))


@dataclass
class FoldJob:
    """One protocol run's folds as work: config, store, class names and what to keep (module docstring).

    ``keep_weights``: results carry the fold's weights (for its checkpoint). ``progress``: show tqdm bars of
    the epochs (inside this process).
    """

    run_config: RunConfig
    store: ClipStore
    classes: tuple[str, ...]
    keep_weights: bool = True
    progress: bool = False
    _ready: dict[str, nn.Module] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.classes = tuple(self.classes)

    def __getstate__(self) -> dict[str, Any]:
        # A model adopted for a fold stays in the process that built it: a worker builds its own.
        return {**self.__dict__, "_ready": {}}

    def seed(self, fold: Fold) -> int:
        """The fold's seed: its model's initial weights, shuffling and augmentation depend on nothing else."""
        return fold_seed(self.run_config.train.seed, fold.key)

    def build_model(self, fold: Fold) -> nn.Module:
        """A new model for ``fold``, initialised under its fold seed (what :meth:`model` builds when none waits)."""
        import torch

        torch.manual_seed(self.seed(fold))
        return create_model(
            self.run_config.model.name, num_classes=len(self.classes), **self.run_config.model.overrides
        )

    def adopt(self, fold: Fold, model: nn.Module) -> None:
        """Keep ``model`` (built by :meth:`build_model` for ``fold``, untrained) for the executor training ``fold``."""
        self._ready[fold.key] = model

    def model(self, fold: Fold) -> nn.Module:
        """The fold's untrained model: the adopted one when there is one (taken once), else a new one."""
        ready = self._ready.pop(fold.key, None)
        return ready if ready is not None else self.build_model(fold)

    def dataset(self, model: nn.Module, positions: np.ndarray, *, augment: Any, seed: int) -> Any:
        """The dataset of store rows ``positions`` as ``model`` reads them (clips or flow images)."""
        return model_dataset(getattr(model, "input_spec", None), self.store, positions, augment=augment, seed=seed)

    def with_device(self, device: str) -> FoldJob:
        """The same job trained on ``device`` (a worker pinned to one GPU)."""
        return replace(self, run_config=self.run_config.with_updates({"train.device": device}))

    def run(self, fold: Fold, *, on_epoch_end: Callable[[int, nn.Module], None] | None = None) -> FoldResult:
        """Train on ``fold.train`` and predict ``fold.test``: the unit of work of the per-fold executors.

        A model the fused step trains (an STSTNet on CPU: :func:`merkit.training.batched.stack.fused_trainable`)
        is trained by it as a group of one fold, unless an inner validation split or ``on_epoch_end`` asks for
        the per-epoch loop of ``train_fold``. Either way the fold's weights, shuffling and dropout follow its seed.

        ``on_epoch_end(epoch, snapshot)`` is passed to ``train_fold`` (an observer of a copy of the model after
        each epoch; it cannot change what is trained or returned). With ``train.val_fraction > 0`` an inner
        validation split is drawn from the training subjects of this fold (whole subjects); it is checked to
        share no subject with the held-out rows. The held-out rows are only ever given to ``predict``.
        """
        start = time.perf_counter()
        train_cfg = self.run_config.train
        seed = self.seed(fold)
        index = self.store.index
        augment = train_cfg.clip_augmentation() or False  # training clips may be augmented, held-out ones never
        model = self.model(fold)

        train_positions, val_ds = np.asarray(fold.train), None
        if train_cfg.val_fraction > 0:
            inner_train, inner_val = inner_validation_split(index.iloc[train_positions], train_cfg.val_fraction, seed)
            val_positions = train_positions[inner_val]
            train_positions = train_positions[inner_train]
            _check_no_shared_subject(index, val_positions, np.asarray(fold.test), fold.key)
            val_ds = self.dataset(model, val_positions, augment=False, seed=seed)
        train_ds = self.dataset(model, train_positions, augment=augment, seed=seed)

        fused = fused_trainable(model, train_cfg, resolve_device(train_cfg.device))
        if fused and val_ds is None and on_epoch_end is None:
            # An STSTNet on CPU: the fused step, as a group of one fold, is faster than the eager loop on long
            # runs (docs/performance.md) and is the arithmetic precision: auto's evidence was measured with.
            ((model, history),) = train_folds(
                [model],
                train_cfg,
                seeds=[seed],
                num_classes=len(self.classes),
                shared=train_ds,
                members=np.ones((1, len(train_ds)), dtype=bool),
                group_seed=seed,
                progress=self.progress,
            )
        else:
            model, history = train_fold(
                model,
                train_ds,
                train_cfg,
                val_ds=val_ds,
                progress=self.progress,
                seed=seed,
                num_classes=len(self.classes),
                on_epoch_end=on_epoch_end,
            )
        return self.finish(fold, model, history, seconds=time.perf_counter() - start)

    def finish(self, fold: Fold, model: nn.Module, history: pd.DataFrame, *, seconds: float) -> FoldResult:
        """Predict ``fold.test`` with the fold's trained ``model`` and package what the driver persists.

        Shared by the per-fold path (:meth:`run`) and the fold-batched executor, so both write the same
        predictions, history and checkpoint. ``seconds`` is the fold's training time; prediction is added.
        """
        start = time.perf_counter()
        train_cfg = self.run_config.train
        test_ds = self.dataset(model, np.asarray(fold.test), augment=False, seed=self.seed(fold))
        pause_point(f"{self.run_config.protocol.name}.fold.inside")  # test hook (merkit.progress): a kill in a fold
        probs, preds = predict(model, test_ds, batch_size=train_cfg.batch_size, precision=train_cfg.precision)

        rows = self.store.index.iloc[np.asarray(fold.test)]
        n = len(rows)
        dataset = rows["dataset"].astype(str).to_numpy() if "dataset" in rows else [self.run_config.data.dataset] * n
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
        for c, name in enumerate(self.classes):
            predictions[f"prob_{name}"] = probs[:, c]
        state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()} if self.keep_weights else None
        return FoldResult(
            fold.key,
            predictions,
            history,
            state,
            seconds + time.perf_counter() - start,
            str(resolve_device(train_cfg.device)),
            model_name=self.run_config.model.name,
            model_overrides=dict(self.run_config.model.overrides),
            num_classes=len(self.classes),
        )


def _check_no_shared_subject(
    index: pd.DataFrame, val_positions: np.ndarray, test_positions: np.ndarray, fold_key: str
) -> None:
    def keys(pos: np.ndarray) -> set[str]:
        rows = index.iloc[pos]
        ds = rows["dataset"].astype(str) if "dataset" in rows else ""
        return set((ds + "/" + rows["subject"].astype(str)).tolist())

    shared = keys(val_positions) & keys(test_positions)
    if shared:  # cannot happen with the split generators; guards against a future change
        raise ProtocolError(f"fold {fold_key!r}: inner validation shares held-out subject(s) {sorted(shared)}")
