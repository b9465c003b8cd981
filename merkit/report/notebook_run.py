"""What the pipeline ran, as the report reads it: one :class:`NotebookRun` per notebook of a run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class NotebookRun:
    """One notebook of a pipeline run."""

    name: str  # e.g. "01_data"
    source: Path  # the notebook as committed
    output: Path  # executed copy in run_dir/notebooks/
    html: Path | None  # HTML export of the executed copy
    status: str  # "executed" | "skipped" (resumed) | "failed"
    seconds: float = 0.0
    parameters: dict[str, Any] = field(default_factory=dict)
    reason: str = ""  # why it ran (re-ran) rather than being skipped; "" when skipped
