"""A run's headline numbers: ``metrics.json`` read back, flattened to the keys worth showing first, formatted
with their bootstrap intervals (the index page and ``merkit pipeline``'s summary)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping

__all__ = ["read_metrics", "headline_metrics", "format_metric"]

# Keys shown first in the index page's metrics table, in this order, when metrics.json has them.
_HEADLINE_KEYS = ("uf1", "uar", "accuracy", "acc", "n_samples", "n_subjects", "n_folds", "model", "protocol")


def read_metrics(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The run's ``metrics.json`` as a dict ({} when absent or unreadable)."""
    path = Path(run_dir) / "metrics.json"
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return loaded if isinstance(loaded, dict) else {}


def headline_metrics(metrics: Mapping[str, Any], limit: int = 16) -> list[tuple[str, Any]]:
    """Flatten metrics to ``(dotted.key, scalar)`` pairs, headline keys (UF1, UAR, accuracy, …) first."""
    flat: list[tuple[str, Any]] = []

    def walk(prefix: str, value: Any, depth: int) -> None:
        if isinstance(value, Mapping) and depth < 2:
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner, depth + 1)
        elif isinstance(value, (int, float, str, bool)) or value is None:
            flat.append((prefix, value))

    walk("", metrics, 0)
    flat = [(key, value) for key, value in flat if "seconds" not in key]  # timings are not results

    def rank(item: tuple[str, Any]) -> tuple[int, int]:
        leaf = item[0].rsplit(".", 1)[-1].lower()
        depth = item[0].count(".")
        return (_HEADLINE_KEYS.index(leaf) if leaf in _HEADLINE_KEYS else len(_HEADLINE_KEYS), depth)

    return sorted(flat, key=rank)[:limit]


def format_metric(metrics: Mapping[str, Any], key: str, value: Any) -> str:
    """``0.8123 [0.7410, 0.8790]`` when metrics.json holds a bootstrap interval for the metric, else the value."""
    text = f"{value:.4f}" if isinstance(value, float) else str(value)
    leaf = key.rsplit(".", 1)[-1]
    interval = metrics.get("ci", {}).get(leaf) if isinstance(metrics.get("ci"), Mapping) else None
    if key.startswith("pooled.") and isinstance(interval, Mapping) and "low" in interval and "high" in interval:
        text += f" [{interval['low']:.4f}, {interval['high']:.4f}]"
    return text
