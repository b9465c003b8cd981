"""What the run report and the comparison page share: tolerant readers of a run's files, and small HTML pieces.

Every reader returns None (or {}) for a missing or unreadable file, so that a missing artefact only makes its
section disappear. The names keep their leading underscore: they are the report package's own, not the kit's API.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import pandas as pd

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

#: The three pooled scores, in the order they are shown.
SCORES = ("uf1", "uar", "accuracy")
#: The style of both pages (the run report and the comparison).
_CSS = """
body { font-family: system-ui, sans-serif; max-width: 76em; margin: 1.5em auto; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
nav a { margin-right: 0.9em; } .muted { color: #666; } .note { background: #fff6d6; padding: 0.5em 0.8em; }
.error { background: #fdd; padding: 0.5em 0.8em; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 0.92em; }
td, th { border: 1px solid #ccc; padding: 0.25em 0.7em; text-align: left; vertical-align: top; }
table.kv th { background: #f4f4f4; font-weight: normal; } tr.failed td { background: #fdd; }
.cards { display: flex; gap: 1em; flex-wrap: wrap; margin: 1em 0; }
.card { border: 1px solid #ccc; border-radius: 6px; padding: 0.6em 1.1em; min-width: 12em; }
.card .value { font-size: 1.8em; font-weight: bold; } .card .ci { color: #555; }
figure { margin: 0.8em 0; display: inline-block; vertical-align: top; }
img { max-width: 100%; height: auto; border: 1px solid #eee; } figcaption { color: #555; font-size: 0.9em; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; font-size: 0.85em; }
details summary { cursor: pointer; color: #225; }
"""


# ----------------------------------------------------------------------------------------------------------
# small readers: every one returns None (or {}) for a missing or unreadable file
# ----------------------------------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _read_csv(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path)
    except (OSError, ValueError, pd.errors.EmptyDataError):
        return None


def _read_yaml(path: Path) -> dict[str, Any] | None:
    import yaml

    try:
        loaded = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None
    return loaded if isinstance(loaded, dict) else None


def _metrics(run_dir: Path) -> dict[str, Any]:
    loaded = _read_json(run_dir / "metrics.json")
    return loaded if isinstance(loaded, dict) else {}


# ----------------------------------------------------------------------------------------------------------
# HTML pieces
# ----------------------------------------------------------------------------------------------------------


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _number(value: Any, digits: int = 3) -> str:
    if isinstance(value, bool) or value is None:
        return "–" if value is None else str(value)
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def _interval(metrics: Mapping[str, Any], metric: str) -> tuple[float, float] | None:
    ci = metrics.get("ci")
    entry = ci.get(metric) if isinstance(ci, Mapping) else None
    if isinstance(entry, Mapping) and entry.get("low") is not None and entry.get("high") is not None:
        return float(entry["low"]), float(entry["high"])
    return None


def _table(frame: pd.DataFrame, digits: int = 3, index: bool = False) -> str:
    shown = frame.copy()
    for column in shown.columns:
        values = shown[column]
        is_count = str(column) == "n" or str(column).startswith(("n_", "clips"))
        if is_count and pd.api.types.is_float_dtype(values) and values.dropna().map(float.is_integer).all():
            shown[column] = values.astype("Int64")  # counts read back as floats (JSON, NaN in the column)
        elif pd.api.types.is_float_dtype(values):
            shown[column] = shown[column].map(lambda v: _number(v, digits))
    return shown.to_html(index=index, escape=True, border=0, classes="data", na_rep="–")


def _key_values(pairs: Iterable[tuple[str, Any]]) -> str:
    rows = "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(_number(v, 4))}</td></tr>" for k, v in pairs)
    return f"<table class='kv'>{rows}</table>"


def _png_data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _figure_png(figure: "Figure") -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def _img(data: bytes, alt: str, caption: str = "") -> str:
    caption_html = f"<figcaption>{_esc(caption)}</figcaption>" if caption else ""
    return f"<figure><img src='{_png_data_uri(data)}' alt='{_esc(alt)}'>{caption_html}</figure>"


def _file_img(path: Path, caption: str = "") -> str:
    return _img(path.read_bytes(), path.stem, caption or path.stem)


def _natural_key(path: Path) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _papermill_seconds(ipynb: Path) -> float | None:
    loaded = _read_json(ipynb)
    if not isinstance(loaded, dict):
        return None
    duration = loaded.get("metadata", {}).get("papermill", {}).get("duration")
    return float(duration) if isinstance(duration, (int, float)) else None
