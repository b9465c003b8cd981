"""What the run report and the comparison page share: tolerant readers of a run's files, the values the page
templates show (tables, embedded images), and the jinja2 environment that renders them.

Every reader returns None (or {}) for a missing or unreadable file, so that a missing artefact only makes its
section disappear. The templates live in ``merkit/report/templates/`` (package data) and are rendered with
autoescaping on: a value from a run directory (a sample name, an error message) can never become markup.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import jinja2
import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

#: The three pooled scores, in the order they are shown.
SCORES = ("uf1", "uar", "accuracy")
#: Written into the head of every page the report writes: how `merkit report` knows an ``index.html`` is its own.
GENERATOR = "merkit report"


# ----------------------------------------------------------------------------------------------------------
# small readers: every one returns None (or {}) for a missing or unreadable file
# ----------------------------------------------------------------------------------------------------------


def read_json(path: Path) -> Any:
    """The parsed file, or None when it is missing or not JSON."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_csv(path: Path) -> pd.DataFrame | None:
    """The table, or None when it is missing, empty or unreadable."""
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path)
    except (OSError, ValueError, pd.errors.EmptyDataError):
        return None


def read_yaml(path: Path) -> dict[str, Any] | None:
    """The mapping, or None when the file is missing, not YAML or not a mapping."""
    import yaml

    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    return loaded if isinstance(loaded, dict) else None


def natural_key(path: Path) -> list[Any]:
    """Sort key that puts ``fold_2`` before ``fold_10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def papermill_seconds(ipynb: Path) -> float | None:
    """The run time papermill recorded in an executed notebook, or None."""
    loaded = read_json(ipynb)
    if not isinstance(loaded, dict):
        return None
    duration = loaded.get("metadata", {}).get("papermill", {}).get("duration")
    return float(duration) if isinstance(duration, (int, float)) else None


# ----------------------------------------------------------------------------------------------------------
# values as the pages show them
# ----------------------------------------------------------------------------------------------------------


def format_number(value: Any, digits: int = 3) -> str:
    """A float with ``digits`` decimals, "–" for None or NaN, anything else as text."""
    if isinstance(value, bool) or value is None:
        return "–" if value is None else str(value)
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def interval(metrics: Mapping[str, Any], metric: str) -> tuple[float, float] | None:
    """``metrics.json``'s bootstrap interval of one score as (low, high), or None."""
    ci = metrics.get("ci")
    entry = ci.get(metric) if isinstance(ci, Mapping) else None
    if isinstance(entry, Mapping) and entry.get("low") is not None and entry.get("high") is not None:
        return float(entry["low"]), float(entry["high"])
    return None


@dataclass
class Table:
    """A table as text, ready for the ``table`` macro: column names and rows of cell texts."""

    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rows)


def _cell_text(value: Any) -> str:
    if value is None or (pd.api.types.is_scalar(value) and pd.isna(value)):
        return "–"
    return str(value)


def table_of(frame: pd.DataFrame, digits: int = 3) -> Table:
    """The frame's cells as text: floats with ``digits`` decimals, counts (``n``, ``n_*``, ``clips*``) as whole
    numbers, missing values as "–"."""
    shown = frame.copy()
    for column in shown.columns:
        values = shown[column]
        is_count = str(column) == "n" or str(column).startswith(("n_", "clips"))
        if is_count and pd.api.types.is_float_dtype(values) and values.dropna().map(float.is_integer).all():
            shown[column] = values.astype("Int64")  # counts read back as floats (JSON, NaN in the column)
        elif pd.api.types.is_float_dtype(values):
            shown[column] = values.map(lambda v: format_number(v, digits))
    rows = [[_cell_text(value) for value in row] for row in shown.itertuples(index=False, name=None)]
    return Table([str(column) for column in shown.columns], rows)


def key_value_rows(pairs: Any, digits: int = 4) -> list[tuple[str, str]]:
    """``(key, value)`` pairs as text for the ``key_values`` macro (lists joined by commas)."""
    return [
        (str(key), ", ".join(map(str, value)) if isinstance(value, list) else format_number(value, digits))
        for key, value in pairs
    ]


@dataclass(frozen=True)
class Image:
    """A PNG embedded in the page as a data URI (the page opens from disk or a mail, without a server)."""

    uri: str
    alt: str
    caption: str = ""


def png_data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def figure_png(figure: "Figure") -> bytes:
    """A matplotlib figure as PNG bytes (100 dpi, the size the notebooks save)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def image_of_figure(figure: "Figure", alt: str, caption: str = "") -> Image:
    return Image(png_data_uri(figure_png(figure)), alt, caption)


def image_of_file(path: Path, caption: str = "") -> Image:
    return Image(png_data_uri(path.read_bytes()), path.stem, caption or path.stem)


# ----------------------------------------------------------------------------------------------------------
# rendering
# ----------------------------------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    """The templates of ``merkit/report/templates/``, autoescaped, failing on an undefined name."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("merkit.report", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["number"] = format_number
    env.globals["generator"] = GENERATOR
    return env


def render(template: str, **context: Any) -> str:
    """One template of ``merkit/report/templates/`` rendered with ``context``."""
    return environment().get_template(template).render(**context)
