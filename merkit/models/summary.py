"""Parameters and FLOPs of a model at the input it declares, and a table over every registered model.

FLOPs are counted by torch's own ``torch.utils.flop_counter.FlopCounterMode`` for one forward pass in
eval mode: it counts matrix multiplications and convolutions (2 FLOPs per multiply-add) and ignores
element-wise work (BN, activations, attention products, pooling), so it is a lower bound on the work.
"""

from __future__ import annotations

import pandas as pd
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from merkit.models.registry import create_model, list_models, model_entry
from merkit.models.specs import InputSpec

__all__ = ["model_summary", "models_table", "models_markdown", "count_parameters"]


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters (all, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def model_summary(model: nn.Module, batch_size: int = 1) -> dict[str, int]:
    """``{"params": int, "flops": int}``: parameters, and forward FLOPs for a batch at ``model.input_spec``.

    The model's train/eval mode is restored afterwards; no gradients are recorded.
    """
    spec: InputSpec = model.input_spec
    x = spec.example(batch_size=batch_size, seed=0)
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(x)
    finally:
        model.train(was_training)
    return {"params": count_parameters(model), "flops": int(counter.get_total_flops())}


def models_table(names: list[str] | None = None, num_classes: int = 3) -> pd.DataFrame:
    """One row per registered model (or per name in ``names``): input, parameters, FLOPs per clip.

    Columns: model, kind, input (C×T×H×W or C×H×W), params, flops (per clip, forward), gflops,
    description.
    """
    rows = []
    for name in names if names is not None else list_models():
        model = create_model(name, num_classes=num_classes)
        summary = model_summary(model, batch_size=1)
        spec: InputSpec = model.input_spec
        rows.append(
            {
                "model": name,
                "kind": spec.kind,
                "input": spec.short(),
                "params": summary["params"],
                "flops": summary["flops"],
                "gflops": round(summary["flops"] / 1e9, 4),
                "description": model_entry(name).description,
            }
        )
    return pd.DataFrame(rows)


def models_markdown(table: pd.DataFrame | None = None) -> str:
    """``models_table()`` as the Markdown table in docs/models.md (regenerate it from this after changes)."""
    table = models_table() if table is None else table
    lines = [
        "| model | kind | input (C×T×H×W or C×H×W) | parameters | GFLOPs per clip (forward) | description |",
        "|---|---|---|---:|---:|---|",
    ]
    for row in table.itertuples(index=False):
        lines.append(
            f"| `{row.model}` | {row.kind} | {row.input} | {row.params:,} | {row.flops / 1e9:.3f} | {row.description} |"
        )
    return "\n".join(lines) + "\n"
