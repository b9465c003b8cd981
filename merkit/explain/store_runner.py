"""Explanations over a clip store: every method (and random maps) scored against where the motion is.

:func:`explain_store` runs :func:`score_methods` over store rows for any model: the model's input adapter
(``merkit.data.inputs``) gives the inputs exactly as in training (clips, or a flow model's own flow images) and
the region each is scored against (SynthME's true motion masks, on a flow image's grid for a flow model; for a
flow model without masks the pixels that move most). :func:`summarise_scores` gives per-class means.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from merkit.data.inputs import FlowInput, input_adapter
from merkit.explain.localisation import interval_table
from merkit.explain.maps import Attribution, ExplainError, eval_mode
from merkit.explain.methods import attribute, learned_attention
from merkit.explain.scores import agreement, event_positions, module_scores, random_baseline, region_scores
from merkit.progress import pause_point

__all__ = [
    "attention_module_scores",
    "explain_flow_store",
    "explain_store",
    "flow_regions",
    "model_inputs",
    "score_methods",
    "store_events",
    "summarise_modules",
    "summarise_scores",
]

DatasetFactory = Callable[[Any, np.ndarray], Sequence[tuple[Tensor, int]]]


def score_methods(
    model: nn.Module,
    dataset: Sequence[tuple[Tensor, int]],
    masks: Tensor | np.ndarray,
    methods: Sequence[str] = ("ig", "gradcam", "attention"),
    *,
    target: str = "label",
    batch_size: int = 4,
    random_draws: int = 32,
    tolerance: int = 0,
    method_kwargs: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool = True,
    device: str | torch.device = "cpu",
) -> pd.DataFrame:
    """Score every method (and random maps) against the true motion masks, over a whole dataset.

    ``dataset[i]`` gives ``(x (c, t, h, w), label)`` (e.g. ``ClipDataset``); ``masks[i]`` is clip
    i's true region (h, w) in the same preprocessed space (e.g. ``store.masks[positions]``).
    ``target="label"`` explains the true class, ``"pred"`` the predicted one. ``"attention"`` is
    skipped for models without learned spatio-temporal attention (baselines, ablations).
    ``method_kwargs`` passes settings per method, e.g. ``{"ig": {"n_steps": 16}}``.

    Returns a long DataFrame, one row per clip x method (``"random"`` included): clip, label, pred,
    method, the columns of :func:`~merkit.explain.scores.region_scores` (auc, pointing_hit, mass_above_median,
    mass_in_region, region_fraction, pointing_tolerance), and ``spearman_attention`` (agreement
    with the learned attention, NaN when the model has none). Summarise with :func:`summarise_scores`.
    """
    if target not in ("label", "pred"):
        raise ExplainError(f"target must be 'label' or 'pred', got {target!r}")
    method_kwargs = dict(method_kwargs or {})
    masks_array = masks.detach().cpu().numpy() if isinstance(masks, Tensor) else np.asarray(masks)
    if len(masks_array) != len(dataset):
        raise ExplainError(f"{len(masks_array)} masks for {len(dataset)} clips: masks must align with the dataset")
    usable = list(methods)
    model = model.to(device)
    tables = []
    starts = range(0, len(dataset), batch_size)
    for start in tqdm(starts, desc="explain", disable=not progress):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        x = torch.stack([torch.as_tensor(item[0]) for item in items]).to(device)  # b x (c, t, h, w) -> (b, c, t, h, w)
        labels = torch.as_tensor([int(item[1]) for item in items])
        with eval_mode(model), torch.no_grad():
            preds = model(x).argmax(dim=1).cpu()
        explained = labels if target == "label" else preds
        batch_masks = masks_array[start : start + len(items)]
        maps: dict[str, Attribution] = {}
        for method in list(usable):
            try:
                maps[method] = attribute(model, x, method, target=explained, **method_kwargs.get(method, {}))
            except ValueError:
                if method != "attention":
                    raise
                usable.remove(method)  # no learned attention (baseline, or every module ablated)
        scored = {name: region_scores(attr, batch_masks, tolerance=tolerance) for name, attr in maps.items()}
        frames = x.shape[2] if x.dim() == 5 else 1  # a flow-image batch (b, c, h, w) has one "frame"
        scored["random"] = random_baseline(
            batch_masks, n_frames=frames, draws=random_draws, seed=start, tolerance=tolerance
        )
        for name, table in scored.items():
            table = table.copy()
            table.insert(0, "method", name)
            table.insert(0, "pred", preds.numpy())
            table.insert(0, "label", labels.numpy())
            table.insert(0, "clip", np.arange(start, start + len(items)))
            if "attention" in maps and name not in ("attention", "random"):
                table["spearman_attention"] = agreement(maps["attention"], maps[name])
            else:
                table["spearman_attention"] = np.nan
            table["pointing_hit"] = table["pointing_hit"].astype(float)
            tables.append(table)
    return pd.concat(tables, ignore_index=True)


def explain_store(
    model: nn.Module,
    store: Any,
    positions: Sequence[int] | np.ndarray | None = None,
    methods: Sequence[str] = ("ig", "gradcam", "attention"),
    *,
    dataset_factory: DatasetFactory | None = None,
    **kwargs: Any,
) -> pd.DataFrame:
    """:func:`score_methods` over rows of a clip store, each input scored against its motion region.

    ``store`` is a ``merkit.data.store.ClipStore``; ``positions`` selects rows (default all; e.g. a fold's
    held-out subject). The inputs are what the model reads in training, without augmentation
    (``input_adapter(model).dataset``), unless ``dataset_factory(store, positions)`` builds another dataset.
    The regions come from the adapter (``motion_regions``): a clip model needs the store's true motion masks
    (SynthME); a flow model is scored on its flow image's grid against the masks resized, or without masks
    against the pixels that move most. ``"attention"`` is skipped for models that cannot have it (flow
    models). Other keyword arguments go to :func:`score_methods`.

    The result carries the store's ``dataset``, ``subject``, ``sample`` and ``emotion`` columns next to each
    clip's scores, ``clip`` is the position in the store, and ``region_source`` says what the region was
    (``"motion mask"`` or ``"largest flow"``).
    """
    adapter = input_adapter(model)
    chosen = np.arange(len(store.index)) if positions is None else np.asarray(positions, dtype=np.int64)
    regions, source = adapter.motion_regions(store, chosen)
    if regions is None:
        raise ExplainError(
            f"{source}: cannot score against a true region; merkit.explain.explain_regions reads "
            "the maps against facial regions instead"
        )
    dataset = adapter.dataset(store, chosen) if dataset_factory is None else dataset_factory(store, chosen)
    usable = [m for m in methods if adapter.can_attend or m != "attention"]
    scores = score_methods(model, dataset, regions, usable, **kwargs)
    pause_point("explain.running")  # test hook (merkit.progress): a kill during 04_explain
    info_columns = [c for c in ("dataset", "subject", "sample", "emotion") if c in store.index.columns]
    info = store.index.iloc[chosen][info_columns].reset_index(drop=True)  # row k = dataset item k
    scores = scores.join(info, on="clip")
    scores["clip"] = chosen[scores["clip"].to_numpy()]
    scores["region_source"] = source
    return scores


def explain_flow_store(
    model: nn.Module,
    store: Any,
    positions: Sequence[int] | np.ndarray | None = None,
    methods: Sequence[str] = ("ig", "gradcam", "occlusion"),
    *,
    dataset_factory: DatasetFactory | None = None,
    **kwargs: Any,
) -> pd.DataFrame:
    """:func:`explain_store` with the methods that suit a flow model by default (it has no attention)."""
    return explain_store(model, store, positions, methods, dataset_factory=dataset_factory, **kwargs)


def flow_regions(store: Any, positions: np.ndarray, *, top_fraction: float = 0.1) -> tuple[np.ndarray, str]:
    """The region each flow image of ``store`` is scored against, bool (n, F, F), and where it came from
    (``merkit.data.inputs.FlowInput.motion_regions``: resized true masks, else the pixels that move most)."""
    regions, source = FlowInput().motion_regions(store, np.asarray(positions), top_fraction=top_fraction)
    return regions, source


def model_inputs(model: nn.Module, store: Any, positions: Sequence[int] | np.ndarray) -> Tensor:
    """The inputs ``model`` reads for store rows ``positions``, stacked: clips (n, c, t, h, w) for a clip
    model, flow images (n, c, h, w) for a flow model (its channels and encoding), without augmentation."""
    return input_adapter(model).inputs(store, positions)


def store_events(
    store: Any, positions: Sequence[int] | np.ndarray, n_frames: int, model: nn.Module | None = None
) -> list[dict[str, float]]:
    """Onset/apex/offset positions of each row among a clip's ``n_frames`` (:func:`event_positions`). For a
    flow model (or a flow-only store) the input is one onset→apex flow image, whose one frame stands for the
    apex: ``{"apex": 0.0}``."""
    rows = store.index.iloc[np.asarray(positions, dtype=np.int64)]
    framed = input_adapter(model).has_frames and getattr(store, "clips", None) is not None
    if not framed or "apex_used" not in rows:
        return [{"apex": 0.0} for _ in range(len(rows))]
    return [
        event_positions(int(r["onset"]), int(r["apex_used"]), int(r["offset"]), n_frames) for _, r in rows.iterrows()
    ]


def summarise_scores(scores: pd.DataFrame, by: Sequence[str] = ("method", "label")) -> pd.DataFrame:
    """Mean scores of :func:`score_methods` per method and class (or any grouping), with clip counts.

    Columns: ``auc`` (rank AUC, 0.5 = chance, fair to gates and signed maps alike), ``pointing_hit`` (hit rate),
    ``mass_above_median``, ``mass_in_region``, ``region_fraction``, ``spearman_attention``, ``clips``, and
    ``mass_over_chance``: mean mass in region divided by mean region fraction (1 = chance).
    """
    grouped = scores.groupby(list(by), dropna=False)
    columns = ["auc", "pointing_hit", "mass_above_median", "mass_in_region", "region_fraction", "spearman_attention"]
    summary = grouped[[c for c in columns if c in scores]].mean()
    summary["clips"] = grouped.size()
    summary["mass_over_chance"] = summary["mass_in_region"] / summary["region_fraction"]
    return summary.reset_index()


def attention_module_scores(
    model: nn.Module,
    store: Any,
    positions: Sequence[int] | np.ndarray | None = None,
    *,
    tolerance: int = 0,
    frames: Sequence[int] | slice | None = None,
    batch_size: int = 8,
) -> pd.DataFrame:
    """Every attention module's map (and their mean) scored against the store's true motion masks.

    Rows clip × module (:func:`~merkit.explain.scores.module_scores`), ``clip`` the store position, with the
    store's ``subject`` and ``sample``. A model without spatio-temporal attention is an :class:`ExplainError`
    naming it; a store without masks is one too. Summarise with :func:`summarise_modules`.
    """
    adapter = input_adapter(model)
    chosen = np.arange(len(store.index)) if positions is None else np.asarray(positions, dtype=np.int64)
    if getattr(store, "masks", None) is None or not adapter.has_frames:
        raise ExplainError("per-module attention scores need a clip model and a store with true motion masks (SynthME)")
    inputs = adapter.inputs(store, chosen)  # (n, c, t, h, w), without augmentation
    masks = np.asarray(store.masks[chosen]).astype(bool)  # (n, h, w)
    tables = []
    for start in range(0, len(chosen), batch_size):
        attention = learned_attention(model, inputs[start : start + batch_size])
        table = module_scores(attention, masks[start : start + batch_size], tolerance=tolerance, frames=frames)
        table["clip"] = chosen[start + table["clip"].to_numpy()]
        tables.append(table)
    scores = pd.concat(tables, ignore_index=True)
    info = store.index.iloc[chosen][[c for c in ("subject", "sample") if c in store.index.columns]]
    return scores.merge(info.assign(clip=chosen), on="clip", how="left")


def summarise_modules(scores: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per attention module (and ``mean``) of :func:`attention_module_scores`: module, grid, then
    ``auc``, ``pointing``, ``mass_above_median`` each with its 95 % bootstrap interval over clips (``_lo``,
    ``_hi``), and ``n_clips``. Extra grouping columns in ``scores`` (``network``, ``design``) are kept."""
    by = [c for c in ("network", "design") if c in scores] + ["module", "grid"]
    return interval_table(scores, by=by, n_boot=n_boot, seed=seed)
