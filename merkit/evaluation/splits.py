"""Evaluation protocols: which clips train and which are held out in each fold, (pure pandas).

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
- ``group_kfold_splits(k)``: k folds of whole subjects, for quick runs; ``held_out_split(k)`` its first fold, the
  single split of a quick train (``k`` lowered to the number of subjects when there are fewer, with a warning).

A fold whose training set lacks a class cannot learn that class; it is *reported*, never skipped silently:
the generator issues a :class:`MissingClassWarning` naming the fold and classes, ``Fold.missing_classes``
records it, and ``run_protocol`` writes it into ``metrics.json`` (``folds_missing_classes``).

The fold runner (``run_fold``, ``run_protocol``, ``FoldResult``, ``load_fold_model``, ``model_dataset``, the
pre-flight checks) lives in :mod:`merkit.training.runner`, the executors in :mod:`merkit.training.executors`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from merkit.errors import MerkitValueError

__all__ = [
    "Fold",
    "ProtocolError",
    "MissingClassWarning",
    "PROTOCOLS",
    "list_protocols",
    "loso_splits",
    "megc2019_splits",
    "lodo_splits",
    "group_kfold_splits",
    "make_splits",
    "held_out_split",
    "FewerSubjectsWarning",
    "check_protocol_name",
    "fold_seed",
]


class ProtocolError(MerkitValueError):
    """A protocol cannot be applied (unknown name, missing column, too few subjects or datasets)."""


class MissingClassWarning(UserWarning):
    """A fold's training set has no sample of some class: that fold cannot learn to predict it."""


class FewerSubjectsWarning(UserWarning):
    """A split asked for more subject folds than there are subjects; it used one fold per subject instead."""


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


def make_splits(
    index: pd.DataFrame, name: str, *, k: int = 5, seed: int = 0, classes: list[str] | None = None
) -> list[Fold]:
    """The folds of protocol ``name`` over ``index`` (``k`` and ``seed`` are used by ``group_kfold``)."""
    check_protocol_name(name)
    if name == "group_kfold":
        return group_kfold_splits(index, k=k, seed=seed, classes=classes)
    return PROTOCOLS[name](index, classes=classes)


def held_out_split(index: pd.DataFrame, k: int, *, seed: int = 0, classes: list[str] | None = None) -> Fold:
    """The first of ``k`` folds of whole subjects (:func:`group_kfold_splits`): one held-out split, about
    ``1/k`` of the subjects, for a quick train (02_train, 04_explain).

    A dataset with fewer subjects than ``k`` (but at least 2) gets one fold per subject instead, and a
    :class:`FewerSubjectsWarning` saying so; fewer than 2 subjects is a :class:`ProtocolError`.
    """
    _require(index, ("subject", "label"), "group_kfold")
    qualify = "dataset" in index.columns and index["dataset"].nunique() > 1
    n_subjects = len(np.unique(_subject_keys(index, qualify)))
    if 2 <= n_subjects < k:
        warnings.warn(
            f"k={k} subject folds need {k} subjects, this dataset has {n_subjects}: using k={n_subjects} "
            "(one held-out subject)",
            FewerSubjectsWarning,
            stacklevel=2,
        )
        k = n_subjects
    return group_kfold_splits(index, k=k, seed=seed, classes=classes)[0]


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
            "build the manifest with a label map (e.g. build_manifest(..., 'synthme_3class'))"
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
