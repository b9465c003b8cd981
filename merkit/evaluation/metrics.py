"""Scores for micro-expression recognition, computed the way MEGC2019 defines them.

The headline numbers are **pooled**: TP, FP and FN are counted per class over every sample of every fold,
then per class

    F1_c     = 2 TP_c / (2 TP_c + FP_c + FN_c)
    recall_c = TP_c / n_c                     (n_c = number of samples whose true class is c)

and UF1 / UAR are the unweighted means of F1_c / recall_c over classes. Averaging per-fold scores instead
gives different and unstable numbers (a LOSO fold often holds one class or a single sample), so that is
only available through :func:`fold_mean_scores`, whose keys say so.

**A class with no true samples** in the evaluated set (n_c = 0) has no recall, and its F1 would only
measure false alarms. Such a class is *excluded from both means* and an :class:`AbsentClassWarning` is
issued; its row stays in ``per_class`` (with ``scored=False``) so its false positives remain visible.
This matches the MEGC2019 reference evaluation, which skips a class whose scores cannot be computed.

Predictions contract (one row per evaluated sample), see :data:`PREDICTION_COLUMNS`:

=========  ======  ===========================================================
dataset    str     dataset key (``casme2``, ``samm``, ``smic_hs``, ``synthme``…)
subject    str     subject id as in the manifest
sample     str     clip id as in the manifest
fold       any     fold key (held-out subject for LOSO, an int for k-fold…)
gt         int     true class index (label order of the protocol's ``classes``)
pred       int     predicted class index
prob_<c>   float   predicted probability of class ``c``, one column per class
=========  ======  ===========================================================
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from merkit._io import atomic_write_text, to_jsonable
from merkit.errors import MerkitValueError

__all__ = [
    "PREDICTION_COLUMNS",
    "AbsentClassWarning",
    "PredictionsError",
    "MegcLogError",
    "validate_predictions",
    "classes_from_predictions",
    "pooled_scores",
    "fold_mean_scores",
    "scores_by",
    "per_subject_table",
    "confusion_matrix",
    "bootstrap_ci",
    "summarise",
    "read_megc_log",
    "write_megc_log",
]

PREDICTION_COLUMNS: tuple[str, ...] = ("dataset", "subject", "sample", "fold", "gt", "pred")
"""Columns every predictions table has, besides one ``prob_<class>`` column per class."""

PROB_PREFIX = "prob_"
METRICS = ("uf1", "uar", "accuracy")


class AbsentClassWarning(UserWarning):
    """A class has no true samples in the evaluated set; it is left out of UF1 and UAR."""


class PredictionsError(MerkitValueError):
    """A predictions table breaks the contract (missing column, label out of range…)."""


class MegcLogError(MerkitValueError):
    """A MEGC submission log cannot be parsed; the message names the file and line."""


# --------------------------------------------------------------------------------------------------
# Contract helpers
# --------------------------------------------------------------------------------------------------


def classes_from_predictions(predictions: pd.DataFrame) -> list[str]:
    """Class names in label order, read from the ``prob_<class>`` columns (empty list if there are none)."""
    return [c[len(PROB_PREFIX) :] for c in predictions.columns if str(c).startswith(PROB_PREFIX)]


def validate_predictions(
    predictions: pd.DataFrame, num_classes: int | None = None, required: Sequence[str] = PREDICTION_COLUMNS
) -> int:
    """Check ``predictions`` against the contract and return the number of classes.

    ``num_classes`` defaults to the number of ``prob_<class>`` columns, or to ``max(gt, pred) + 1`` when
    there are none. Raises :class:`PredictionsError` naming missing columns or the first offending samples.
    """
    missing = [c for c in required if c not in predictions.columns]
    if missing:
        raise PredictionsError(f"predictions table lacks column(s) {missing}; it has {list(predictions.columns)}")
    if len(predictions) == 0:
        raise PredictionsError("predictions table is empty: nothing to score")
    for col in ("gt", "pred"):
        values = predictions[col]
        if pd.api.types.is_integer_dtype(values.dtype) and not values.isna().any():
            continue
        bad = ~values.map(_is_int_like).astype(bool)
        if bad.any():
            who = predictions.loc[bad, "sample"] if "sample" in predictions.columns else values[bad]
            raise PredictionsError(
                f"column {col!r} must hold integer class indices; offending sample(s): {list(who.astype(str)[:5])}"
            )
    if num_classes is None:
        num_classes = (
            len(classes_from_predictions(predictions))
            or int(max(predictions["gt"].max(), predictions["pred"].max())) + 1
        )
    for col in ("gt", "pred"):
        values = predictions[col].astype(np.int64)
        out = (values < 0) | (values >= num_classes)
        if out.any():
            who = predictions.loc[out, "sample"] if "sample" in predictions.columns else values[out]
            raise PredictionsError(
                f"column {col!r} has class indices outside 0..{num_classes - 1} for sample(s) "
                f"{list(who.astype(str)[:5])}"
            )
    return int(num_classes)


def _is_int_like(x: object) -> bool:
    try:
        return float(x) == int(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


def _labels(values: Sequence[int] | np.ndarray | pd.Series, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=object)
    if arr.ndim != 1:
        raise PredictionsError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if pd.isna(arr).any():
        raise PredictionsError(f"{name} holds missing values (NaN/NA): every sample needs a class index")
    arr = np.asarray(values)
    if arr.size and not np.all(np.equal(np.mod(arr.astype(float), 1), 0)):
        raise PredictionsError(f"{name} must hold integer class indices")
    return arr.astype(np.int64)


def _class_names(num_classes: int, class_names: Sequence[str] | None) -> list:
    if class_names is None:
        return list(range(num_classes))
    if len(class_names) != num_classes:
        raise MerkitValueError(f"{len(class_names)} class names given for {num_classes} classes")
    return list(class_names)


# --------------------------------------------------------------------------------------------------
# Pooled scores
# --------------------------------------------------------------------------------------------------


def _counts(
    y_true: np.ndarray, y_pred: np.ndarray, num_classes: int, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-class (tp, fp, fn, support); ``weights`` counts each sample that many times (bootstrap)."""
    w = np.ones(len(y_true)) if weights is None else weights
    hit = y_true == y_pred
    tp = np.bincount(y_true[hit], weights=w[hit], minlength=num_classes)
    support = np.bincount(y_true, weights=w, minlength=num_classes)
    predicted = np.bincount(y_pred, weights=w, minlength=num_classes)
    return tp, predicted - tp, support - tp, support


def pooled_scores(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    num_classes: int,
    *,
    class_names: Sequence[str] | None = None,
    warn_absent: bool = True,
) -> dict:
    """UF1, UAR and accuracy over all samples at once (MEGC2019), plus a per-class table.

    Args:
        y_true, y_pred: class indices in ``0 .. num_classes - 1``, one per sample (all folds together).
        num_classes: number of classes of the protocol (a class may be absent from ``y_true``).
        class_names: labels for the ``per_class`` index; defaults to the class indices.
        warn_absent: issue :class:`AbsentClassWarning` for classes without true samples.

    Returns:
        ``dict(uf1, uar, accuracy, n, n_scored_classes, per_class)`` where ``per_class`` is a DataFrame
        indexed by class with columns ``support tp fp fn precision recall f1 scored``. Classes with no
        true samples have ``scored=False``, NaN recall/F1, and are left out of UF1/UAR (see module doc).
        If no class has a true sample (empty input) a :class:`PredictionsError` is raised.
    """
    yt = _labels(y_true, "y_true")
    yp = _labels(y_pred, "y_pred")
    if len(yt) != len(yp):
        raise PredictionsError(f"y_true has {len(yt)} samples but y_pred has {len(yp)}")
    if len(yt) == 0:
        raise PredictionsError("no samples to score")
    for arr, name in ((yt, "y_true"), (yp, "y_pred")):
        if arr.min() < 0 or arr.max() >= num_classes:
            raise PredictionsError(
                f"{name} holds class indices outside 0..{num_classes - 1}: "
                f"{sorted(set(arr[(arr < 0) | (arr >= num_classes)].tolist()))}"
            )
    names = _class_names(num_classes, class_names)
    tp, fp, fn, support = _counts(yt, yp, num_classes)
    scored = support > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(scored, 2 * tp / (2 * tp + fp + fn), np.nan)
        recall = np.where(scored, tp / support, np.nan)
        precision = np.where(tp + fp > 0, tp / (tp + fp), np.nan)
    if warn_absent and not scored.all():
        absent = [names[i] for i in np.flatnonzero(~scored)]
        warnings.warn(
            f"class(es) {absent} have no true samples among the {len(yt)} scored; they are left out of UF1 and UAR",
            AbsentClassWarning,
            stacklevel=2,
        )
    per_class = pd.DataFrame(
        {
            "support": support.astype(np.int64),
            "tp": tp.astype(np.int64),
            "fp": fp.astype(np.int64),
            "fn": fn.astype(np.int64),
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "scored": scored,
        },
        index=pd.Index(names, name="class"),
    )
    return {
        "uf1": float(np.mean(f1[scored])),
        "uar": float(np.mean(recall[scored])),
        "accuracy": float(tp.sum() / len(yt)),
        "n": int(len(yt)),
        "n_scored_classes": int(scored.sum()),
        "per_class": per_class,
    }


def _scores_of(predictions: pd.DataFrame, num_classes: int, warn_absent: bool) -> dict:
    return pooled_scores(
        predictions["gt"].to_numpy(), predictions["pred"].to_numpy(), num_classes, warn_absent=warn_absent
    )


def fold_mean_scores(predictions: pd.DataFrame, fold_col: str = "fold", num_classes: int | None = None) -> dict:
    """Per-fold average of UF1/UAR/accuracy: *not* the MEGC2019 score, only for comparison.

    Each fold is scored on its own (classes absent from that fold's ground truth are left out of that
    fold's means, silently; see :func:`pooled_scores`), then the fold scores are averaged with equal
    weight. The result keys carry a ``_fold_mean`` suffix so they cannot be mistaken for pooled scores.

    Returns:
        ``dict(uf1_fold_mean, uar_fold_mean, accuracy_fold_mean, n_folds, per_fold, note)`` with
        ``per_fold`` a DataFrame indexed by fold (columns ``n uf1 uar accuracy n_scored_classes``).
    """
    k = validate_predictions(predictions, num_classes, required=("gt", "pred", fold_col))
    rows = []
    for fold, part in predictions.groupby(fold_col, sort=True, dropna=False):
        s = _scores_of(part, k, warn_absent=False)
        rows.append(
            {
                fold_col: fold,
                "n": s["n"],
                "uf1": s["uf1"],
                "uar": s["uar"],
                "accuracy": s["accuracy"],
                "n_scored_classes": s["n_scored_classes"],
            }
        )
    per_fold = pd.DataFrame(rows).set_index(fold_col)
    return {
        "uf1_fold_mean": float(per_fold["uf1"].mean()),
        "uar_fold_mean": float(per_fold["uar"].mean()),
        "accuracy_fold_mean": float(per_fold["accuracy"].mean()),
        "n_folds": int(len(per_fold)),
        "per_fold": per_fold,
        "note": "mean of per-fold scores; NOT the MEGC2019 pooled UF1/UAR",
    }


def scores_by(
    predictions: pd.DataFrame, by: str | Sequence[str] = "dataset", num_classes: int | None = None
) -> pd.DataFrame:
    """Pooled UF1/UAR/accuracy within each group (default: per dataset of a composite run).

    Returns a DataFrame indexed by the group key(s) with columns ``n uf1 uar accuracy n_scored_classes``.
    A class with no true sample in a group is left out of that group's means (with a warning).
    """
    keys = [by] if isinstance(by, str) else list(by)
    k = validate_predictions(predictions, num_classes, required=("gt", "pred", *keys))
    rows = []
    for key, part in predictions.groupby(keys, sort=True):
        key = key if len(keys) > 1 else key[0]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", AbsentClassWarning)
            s = _scores_of(part, k, warn_absent=True)
        for w in caught:
            warnings.warn(f"{by}={key}: {w.message}", AbsentClassWarning, stacklevel=2)
        rows.append(
            {
                **dict(zip(keys, key if len(keys) > 1 else [key])),
                "n": s["n"],
                "uf1": s["uf1"],
                "uar": s["uar"],
                "accuracy": s["accuracy"],
                "n_scored_classes": s["n_scored_classes"],
            }
        )
    return pd.DataFrame(rows).set_index(keys)


def per_subject_table(predictions: pd.DataFrame, classes: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per (dataset, subject): sample count, correct count, accuracy and true-class counts.

    Per-subject UF1 is deliberately not given: most subjects hold one or two classes, so it says little.
    Columns: ``dataset subject fold n n_correct accuracy`` then ``n_<class>`` (true samples per class).
    """
    k = validate_predictions(predictions, None if classes is None else len(classes))
    names = _class_names(k, classes if classes is not None else (classes_from_predictions(predictions) or None))
    rows = []
    for (dataset, subject), part in predictions.groupby(["dataset", "subject"], sort=True):
        correct = int((part["gt"] == part["pred"]).sum())
        counts = np.bincount(part["gt"].to_numpy(np.int64), minlength=k)
        folds = sorted(set(part["fold"].astype(str)))
        row = {
            "dataset": dataset,
            "subject": subject,
            "fold": folds[0] if len(folds) == 1 else folds,
            "n": len(part),
            "n_correct": correct,
            "accuracy": correct / len(part),
        }
        row.update({f"n_{name}": int(c) for name, c in zip(names, counts)})
        rows.append(row)
    return pd.DataFrame(rows)


def confusion_matrix(predictions: pd.DataFrame, classes: Sequence[str]) -> pd.DataFrame:
    """Counts with rows = true class and columns = predicted class, both in label order of ``classes``."""
    k = validate_predictions(predictions, len(classes), required=("gt", "pred"))
    gt = predictions["gt"].to_numpy(np.int64)
    pred = predictions["pred"].to_numpy(np.int64)
    counts = np.bincount(gt * k + pred, minlength=k * k).reshape(k, k)  # (k*k,) -> (true, pred)
    return pd.DataFrame(
        counts, index=pd.Index(list(classes), name="true"), columns=pd.Index(list(classes), name="pred")
    )


def bootstrap_ci(
    predictions: pd.DataFrame,
    metric: str = "uf1",
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
    num_classes: int | None = None,
) -> dict:
    """Percentile bootstrap confidence interval of a pooled metric, resampling samples with replacement.

    Each replicate draws ``len(predictions)`` samples with replacement (a multinomial count per sample)
    and recomputes the pooled score; classes absent from a replicate are left out of its means, like
    :func:`pooled_scores`. Samples of one subject are not independent, so this interval is optimistic;
    it shows the resampling noise of a score, not the spread across populations of subjects.

    Returns ``dict(metric, estimate, low, high, alpha, n_boot, seed, method)``.
    """
    if metric not in METRICS:
        raise MerkitValueError(f"unknown metric {metric!r}; choose one of {METRICS}")
    if not 0 < alpha < 1:
        raise MerkitValueError(f"alpha must be in (0, 1), got {alpha}")
    if n_boot < 1:
        raise MerkitValueError(f"n_boot must be positive, got {n_boot}")
    k = validate_predictions(predictions, num_classes, required=("gt", "pred"))
    gt = predictions["gt"].to_numpy(np.int64)
    pred = predictions["pred"].to_numpy(np.int64)
    n = len(gt)
    estimate = pooled_scores(gt, pred, k, warn_absent=False)[metric]
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)  # (n_boot, n)
    true_onehot = np.eye(k)[gt]  # (n,) -> (n, k)
    pred_onehot = np.eye(k)[pred]  # (n,) -> (n, k)
    hit = (gt == pred)[:, None] * true_onehot  # (n, k): 1 where the sample is a TP of its class
    tp = weights @ hit  # (n_boot, n) @ (n, k) -> (n_boot, k)
    support = weights @ true_onehot  # (n_boot, k)
    predicted = weights @ pred_onehot  # (n_boot, k)
    fp, fn = predicted - tp, support - tp
    scored = support > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        if metric == "uf1":
            per_class = np.where(scored, 2 * tp / (2 * tp + fp + fn), np.nan)
        elif metric == "uar":
            per_class = np.where(scored, tp / support, np.nan)
        else:
            per_class = None
    values = tp.sum(axis=1) / n if per_class is None else np.nanmean(per_class, axis=1)
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return {
        "metric": metric,
        "estimate": float(estimate),
        "low": float(low),
        "high": float(high),
        "alpha": float(alpha),
        "n_boot": int(n_boot),
        "seed": int(seed),
        "method": "percentile",
    }


def summarise(
    predictions: pd.DataFrame, classes: Sequence[str], *, n_boot: int = 1000, seed: int = 0, alpha: float = 0.05
) -> dict:
    """Everything ``metrics.json`` holds, as plain JSON-ready Python values.

    Keys: ``n_samples n_subjects n_folds classes pooled`` (uf1/uar/accuracy, MEGC2019),
    ``per_class`` (list of records), ``per_dataset`` ({dataset: {n, uf1, uar, accuracy}}),
    ``ci`` ({metric: bootstrap_ci result}), ``confusion`` (rows = true, in class order).
    Undefined values (e.g. F1 of an absent class) are ``None``.
    """
    k = validate_predictions(predictions, len(classes))
    pooled = _scores_of(predictions, k, warn_absent=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AbsentClassWarning)  # already reported once for the pooled set
        per_dataset = scores_by(predictions, "dataset", k) if "dataset" in predictions else None
    per_class = pooled["per_class"].copy()
    per_class.index = list(classes)
    return {
        "n_samples": int(len(predictions)),
        "n_subjects": int(predictions.groupby(["dataset", "subject"]).ngroups),
        "n_folds": int(predictions["fold"].nunique()),
        "classes": list(classes),
        "pooled": {m: to_jsonable(pooled[m]) for m in METRICS},
        "scoring": "MEGC2019 pooled: TP/FP/FN per class summed over all folds, then averaged over classes",
        "per_class": [
            {"class": name, **{c: to_jsonable(v) for c, v in row.items()}} for name, row in per_class.iterrows()
        ],
        "per_dataset": {}
        if per_dataset is None
        else {str(ds): {c: to_jsonable(v) for c, v in row.items()} for ds, row in per_dataset.iterrows()},
        "ci": {m: bootstrap_ci(predictions, m, n_boot=n_boot, seed=seed, alpha=alpha, num_classes=k) for m in METRICS},
        "confusion": confusion_matrix(predictions, classes).to_numpy().tolist(),
    }


# --------------------------------------------------------------------------------------------------
# MEGC submission log
# --------------------------------------------------------------------------------------------------
# Format implemented (plain text, UTF-8, one record per line, fields separated by runs of whitespace):
#
#   # comment lines start with '#'; blank lines are ignored
#   <dataset> <subject>          a block header: two fields
#   <clip> <gt> <pred>           one sample of the current block: three fields, gt/pred class indices
#
# e.g.
#   casme2 01
#   EP02_01f 1 1
#   EP03_02 0 2
#   samm 006
#   006_1_2 2 2
#
# ids must not contain whitespace (writing one raises). The log records no folds: on reading, each
# (dataset, subject) block becomes one LOSO fold keyed "<dataset>/<subject>". When ``classes`` is given,
# gt/pred may also be written as class names (read) and are mapped to indices.


def write_megc_log(predictions: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write ``predictions`` as a MEGC submission log (format above), atomically; returns the path.

    Blocks appear in order of first appearance of each (dataset, subject); samples keep their row order.
    """
    validate_predictions(predictions, required=("dataset", "subject", "sample", "gt", "pred"))
    lines = []
    for (dataset, subject), part in predictions.groupby(["dataset", "subject"], sort=False):
        for value, what in ((dataset, "dataset"), (subject, "subject")):
            _check_token(value, what)
        lines.append(f"{dataset} {subject}")
        for sample, gt, pred in zip(part["sample"], part["gt"], part["pred"]):
            _check_token(sample, f"sample of subject {dataset}/{subject}")
            lines.append(f"{sample} {int(gt)} {int(pred)}")
    path = Path(path)
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def _check_token(value: object, what: str) -> None:
    text = str(value)
    if not text or any(ch.isspace() for ch in text) or text.startswith("#"):
        raise MegcLogError(
            f"{what} id {text!r} cannot be written to a MEGC log (empty, contains whitespace or starts with '#')"
        )


def read_megc_log(path: str | os.PathLike, classes: Sequence[str] | None = None) -> pd.DataFrame:
    """Read a MEGC submission log into a predictions table (columns ``dataset subject sample fold gt pred``).

    ``fold`` is ``"<dataset>/<subject>"`` (one LOSO fold per block). Raises :class:`MegcLogError` naming
    the file and line for a sample before any header, a line with the wrong number of fields, or a label
    that is neither an integer nor (with ``classes``) a class name.
    """
    path = Path(path)
    lookup = {} if classes is None else {str(c).lower(): i for i, c in enumerate(classes)}
    rows: list[dict] = []
    dataset = subject = None
    with open(path, encoding="utf-8") as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            fields = line.split()
            if len(fields) == 2:
                dataset, subject = fields
            elif len(fields) == 3:
                if dataset is None:
                    raise MegcLogError(f"{path}:{number}: sample line {line!r} before any 'dataset subject' header")
                sample, gt, pred = fields
                rows.append(
                    {
                        "dataset": dataset,
                        "subject": subject,
                        "sample": sample,
                        "fold": f"{dataset}/{subject}",
                        "gt": _parse_label(gt, lookup, path, number),
                        "pred": _parse_label(pred, lookup, path, number),
                    }
                )
            else:
                raise MegcLogError(
                    f"{path}:{number}: expected 'dataset subject' or 'clip gt pred', got {len(fields)} fields: {line!r}"
                )
    columns = ["dataset", "subject", "sample", "fold", "gt", "pred"]
    table = pd.DataFrame(rows, columns=columns)
    return table.astype({"dataset": str, "subject": str, "sample": str, "fold": str, "gt": np.int64, "pred": np.int64})


def _parse_label(token: str, lookup: dict[str, int], path: Path, number: int) -> int:
    try:
        value = int(token)
    except ValueError:
        if token.lower() in lookup:
            return lookup[token.lower()]
        known = f"; known classes {list(lookup)}" if lookup else " (pass classes= to read names)"
        raise MegcLogError(f"{path}:{number}: label {token!r} is not a class index{known}") from None
    if value < 0 or (lookup and value >= len(lookup)):
        raise MegcLogError(f"{path}:{number}: class index {value} out of range")
    return value
