"""Figures of training and scores: training curves, the confusion matrix, bars per group, variants and runs compared."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure


def _require_columns(table: pd.DataFrame, columns: Iterable[str | None]) -> None:
    """Raise a ValueError naming the first of ``columns`` (None: not asked for) that ``table`` lacks."""
    for column in columns:
        if column is not None and column not in table.columns:
            raise ValueError(f"table has no {column!r} column; columns: {list(table.columns)}")


def plot_history(history: pd.DataFrame, x: str = "epoch", hue: str | None = None) -> Figure:
    """Training curves from ``train_fold``'s history (one row per epoch; several folds stacked with a
    ``fold`` column). Left panel: every column with "loss" in its name; right: accuracies / UF1 /
    other scores in [0, 1]. With ``hue`` (default "fold" when present and there are several folds)
    folds are averaged with a band of ± one standard deviation."""
    if x not in history.columns:
        raise ValueError(f"history has no {x!r} column; columns: {list(history.columns)}")
    if hue is None and "fold" in history.columns and history["fold"].nunique() > 1:
        hue = "fold"
    skip = {x, "fold", "lr", "seconds", "selected"}
    numeric = [
        c
        for c in history.columns
        if c not in skip and pd.api.types.is_numeric_dtype(history[c]) and not pd.api.types.is_bool_dtype(history[c])
    ]
    losses = [c for c in numeric if "loss" in c]
    scores = [c for c in numeric if c not in losses]
    figure = Figure(figsize=(10, 3.4), layout="constrained")
    axes = figure.subplots(1, 2)
    for ax, columns, label in ((axes[0], losses, "loss"), (axes[1], scores, "score")):
        if columns:
            long = history.melt(
                id_vars=[x] + ([hue] if hue else []), value_vars=columns, var_name="series", value_name="value"
            )
            sns.lineplot(
                data=long,
                x=x,
                y="value",
                hue="series",
                errorbar=("sd", 1) if hue else None,
                ax=ax,
                marker="o" if long[x].nunique() < 30 else None,
            )
            ax.set_ylabel("loss (cross-entropy)" if label == "loss" else "score (0–1)")
        ax.set_xlabel(x)
        ax.set_title(label + (" (mean ± sd over folds)" if hue and columns else ""))
    figure.suptitle("training curves")
    if "selected" in history.columns and history["selected"].any() and hue is None:
        for ax in axes:
            ax.axvline(history.loc[history["selected"], x].iloc[0], color="grey", linestyle=":", label="selected")
    return figure


def confusion_heatmap(
    confusion: np.ndarray | pd.DataFrame,
    classes: Sequence[str] | None = None,
    *,
    normalise: bool = True,
    title: str | None = None,
) -> Figure:
    """Confusion matrix (rows = true class, columns = predicted) as a seaborn heatmap.

    ``normalise`` shows each row as shares of the true class (the recall per class on the diagonal)
    with the raw counts in each cell; otherwise counts only.
    """
    counts = confusion.to_numpy() if isinstance(confusion, pd.DataFrame) else np.asarray(confusion)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"a confusion matrix is square; got shape {counts.shape}")
    if classes is None:
        classes = list(confusion.index) if isinstance(confusion, pd.DataFrame) else [str(i) for i in range(len(counts))]
    counts = counts.astype(float)
    rows = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    values = shares if normalise else counts
    labels = (
        np.array([[f"{s:.2f}\n({int(c)})" for s, c in zip(rs, rc)] for rs, rc in zip(shares, counts)])
        if normalise
        else counts.astype(int).astype(str)
    )
    size = 1.0 + 0.9 * len(classes)
    figure = Figure(figsize=(size + 1.2, size), layout="constrained")
    ax = figure.add_subplot()
    sns.heatmap(
        values,
        annot=labels,
        fmt="",
        cmap="Blues",
        vmin=0,
        vmax=1 if normalise else None,
        xticklabels=classes,
        yticklabels=classes,
        square=True,
        ax=ax,
        cbar=True,
    )
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.collections[0].colorbar.set_label("share of the true class" if normalise else "clips")
    ax.set_title(title or "confusion matrix")
    return figure


def per_group_bars(
    table: pd.DataFrame,
    group: str,
    value: str,
    *,
    hue: str | None = None,
    reference: float | None = None,
    reference_label: str = "reference",
    title: str | None = None,
) -> Figure:
    """Bars of ``value`` per ``group`` (per class, per subject, per dataset …), optionally split by ``hue``.

    Several rows per bar are averaged (seaborn's mean with a 95 % bootstrap interval); ``reference``
    draws a horizontal line (chance level, a baseline's score). The legend (``hue`` and the reference line)
    stands beside the axes, clear of the bars.
    """
    _require_columns(table, (group, value, hue))
    n_groups = table[group].nunique()
    figure = Figure(figsize=(max(4.0, 0.5 * n_groups + 2), 3.4), layout="constrained")
    ax = figure.add_subplot()
    data = table.assign(**{group: table[group].astype(str)})
    sns.barplot(
        data=data, x=group, y=value, hue=hue, ax=ax, errorbar=("ci", 95) if len(data) > n_groups else None, seed=0
    )
    if reference is not None:
        ax.axhline(reference, color="black", linestyle="--", linewidth=1, label=reference_label)
    if ax.get_legend() is not None:
        ax.get_legend().remove()
    handles, labels = ax.get_legend_handles_labels()
    if handles:  # beside the axes, not in them: tall bars leave no free corner for a legend inside
        figure.legend(handles, labels, loc="outside right upper", fontsize=8, title=hue, title_fontsize=8)
        longest_label = max(len(str(text)) for text in [*labels, hue or ""])
        figure.set_figwidth(figure.get_figwidth() + 0.7 + 0.065 * longest_label)  # the axes keep their width
    longest = max((len(str(v)) for v in data[group].unique()), default=0)
    if n_groups > 8 or longest * n_groups > 60:  # labels that would run into each other
        ax.tick_params(axis="x", rotation=90 if n_groups > 8 else 30)
        if n_groups <= 8:
            for text in ax.get_xticklabels():
                text.set_horizontalalignment("right")
    ax.set_xlabel(group)
    ax.set_ylabel(value)
    ax.set_title(title or f"{value} per {group}")
    return figure


# ----------------------------------------------------------------------------------------------
# comparisons of variants and runs


def _score_panels(n_rows: int, metrics: Sequence[str], labels: Sequence[str]) -> tuple[Figure, Any]:
    """One horizontal panel per metric sharing the y axis: long names sit on the y axis and never overlap."""
    longest = max((len(str(label)) for label in labels), default=8)
    figure = Figure(
        figsize=(min(4.0, 1.0 + 0.085 * longest) + 3.2 * len(metrics), 1.2 + 0.42 * n_rows), layout="constrained"
    )
    axes = figure.subplots(1, len(metrics), sharey=True, squeeze=False)[0]
    return figure, axes


def _finish_score_axis(ax: Any, metric: str, reference: float | None, reference_label: str, first: bool) -> None:
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"{metric.upper() if metric in ('uf1', 'uar') else metric} (pooled over folds, 0–1)")
    ax.set_title(metric.upper() if metric in ("uf1", "uar") else metric)
    ax.grid(axis="x", alpha=0.3)
    if reference is not None:
        ax.axvline(reference, color="black", linestyle="--", linewidth=1, label=reference_label)
    if first and ax.get_legend_handles_labels()[0]:
        ax.figure.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=3, fontsize=8)


def comparison_bars(
    table: pd.DataFrame,
    label: str,
    metrics: Sequence[str] = ("uf1", "uar"),
    *,
    reference: float | None = None,
    reference_label: str = "chance",
    title: str | None = None,
) -> Figure:
    """Horizontal bars of pooled scores, one row per ``label`` (variant, run), one panel per metric.

    Error bars span ``<metric>_low`` .. ``<metric>_high`` (a bootstrap interval) where the table has them;
    rows without an interval get a bare bar. ``reference`` draws a vertical line (chance level).
    """
    _require_columns(table, (label, *metrics))
    labels = [str(v) for v in table[label]]
    figure, axes = _score_panels(len(table), metrics, labels)
    positions = np.arange(len(table))
    for i, (ax, metric) in enumerate(zip(axes, metrics)):
        values = pd.to_numeric(table[metric], errors="coerce").to_numpy(float)
        ax.barh(positions, np.nan_to_num(values), color=sns.color_palette("deep")[0], alpha=0.8)
        low_col, high_col = f"{metric}_low", f"{metric}_high"
        if low_col in table.columns and high_col in table.columns:
            low = pd.to_numeric(table[low_col], errors="coerce").to_numpy(float)
            high = pd.to_numeric(table[high_col], errors="coerce").to_numpy(float)
            has = np.isfinite(low) & np.isfinite(high) & np.isfinite(values)
            if has.any():
                errors = np.vstack([values[has] - low[has], high[has] - values[has]]).clip(min=0)  # (2, n_with)
                ax.errorbar(
                    values[has],
                    positions[has],
                    xerr=errors,
                    fmt="none",
                    ecolor="black",
                    capsize=3,
                    label="95 % interval",
                )
        _finish_score_axis(ax, metric, reference, reference_label, i == 0)
    axes[0].set_yticks(positions, labels)
    axes[0].invert_yaxis()  # first row on top, as in the table
    axes[0].set_ylabel(label)
    figure.suptitle(title or f"{', '.join(m.upper() for m in metrics)} per {label}")
    return figure


def seed_spread_bars(
    table: pd.DataFrame,
    label: str,
    metrics: Sequence[str] = ("uf1", "uar"),
    *,
    reference: float | None = None,
    reference_label: str = "chance",
    title: str | None = None,
) -> Figure:
    """Runs grouped by ``label`` (a setting repeated over seeds): bar = mean, error bar = ± one sd, dots = runs."""
    _require_columns(table, (label, *metrics))
    groups = list(dict.fromkeys(str(v) for v in table[label]))
    figure, axes = _score_panels(len(groups), metrics, groups)
    keys = table[label].astype(str)
    for i, (ax, metric) in enumerate(zip(axes, metrics)):
        values = pd.to_numeric(table[metric], errors="coerce")
        means = np.array([values[keys == g].mean() for g in groups])
        sds = np.array([values[keys == g].std(ddof=1) if (keys == g).sum() > 1 else 0.0 for g in groups])
        positions = np.arange(len(groups))
        ax.barh(
            positions,
            np.nan_to_num(means),
            xerr=np.nan_to_num(sds),
            capsize=3,
            color=sns.color_palette("deep")[0],
            alpha=0.7,
            label="mean ± sd",
        )
        for position, group in zip(positions, groups):
            runs = values[keys == group].to_numpy(float)
            ax.scatter(runs, np.full(len(runs), position), color="black", s=14, zorder=3)
        _finish_score_axis(ax, metric, reference, reference_label, i == 0)
    axes[0].set_yticks(np.arange(len(groups)), groups)
    axes[0].invert_yaxis()
    axes[0].set_ylabel(label)
    figure.suptitle(title or f"{', '.join(m.upper() for m in metrics)}: mean ± sd over seeds")
    return figure
