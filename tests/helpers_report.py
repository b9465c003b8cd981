"""Run directories for the report and compare tests, written by the kit's own code (summarise, RunConfig, viz)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from merkit import viz
from merkit.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from merkit.evaluation.metrics import per_subject_table, summarise
from merkit.training.runs import atomic_write_csv, atomic_write_json, capture_env

CLASSES = ["negative", "positive", "surprise"]


def predictions(
    seed: int, dataset: str = "synthme", n_subjects: int = 4, per_subject: int = 6, skill: float = 0.6
) -> pd.DataFrame:
    """A predictions table in the runner's format: ``skill`` of the clips right, the rest random."""
    rng = np.random.default_rng(seed)
    n = n_subjects * per_subject
    gt = np.arange(n) % len(CLASSES)
    pred = np.where(rng.random(n) < skill, gt, rng.integers(0, len(CLASSES), n))
    subjects = [f"{i // per_subject + 1:02d}" for i in range(n)]
    return pd.DataFrame(
        {
            "dataset": dataset,
            "subject": subjects,
            "sample": [f"EP{i:02d}_01" for i in range(n)],
            "fold": subjects,
            "gt": gt,
            "pred": pred,
        }
    )


def make_run(
    run_dir: Path,
    *,
    model: str = "meranet_small",
    seed: int = 0,
    dataset: str = "synthme",
    variants: tuple[str, ...] = (),
    figures: bool = True,
    problems: bool = False,
) -> dict:
    """A run directory as 01-04 leave it (metrics.json, config.json, env.json, csvs, figures); returns the metrics."""
    run_dir.mkdir(parents=True, exist_ok=True)
    table = predictions(seed + 7 * len(model), dataset)
    metrics = {**summarise(table, CLASSES, n_boot=50, seed=seed), "model": model, "protocol": "loso"}
    atomic_write_csv(table, run_dir / "predictions.csv")
    atomic_write_json(run_dir / "metrics.json", metrics)
    config = RunConfig(data=DataConfig(dataset=dataset), model=ModelConfig(name=model), train=TrainConfig(seed=seed))
    atomic_write_json(run_dir / "config.json", config.to_dict())
    atomic_write_json(run_dir / "env.json", capture_env())
    atomic_write_json(run_dir / "timings.json", {"fold_seconds": {s: 1.0 + seed for s in sorted(set(table["fold"]))}})
    atomic_write_csv(per_subject_table(table, CLASSES), run_dir / "per_subject.csv")
    atomic_write_json(
        run_dir / "data_summary.json",
        {"dataset": dataset, "clips": len(table), "subjects": int(table["subject"].nunique()), "classes": CLASSES},
    )
    rows = [{"variant": f"{model} (this run)", **metrics["pooled"]}]
    for number, variant in enumerate(variants):
        variant_dir = run_dir / "compare" / variant.replace(":", "_")
        variant_dir.mkdir(parents=True, exist_ok=True)
        variant_metrics = summarise(predictions(100 + number, dataset), CLASSES, n_boot=50)
        atomic_write_json(variant_dir / "metrics.json", variant_metrics)
        rows.append({"variant": variant, **variant_metrics["pooled"]})
    if variants:
        atomic_write_csv(pd.DataFrame(rows), run_dir / "comparison.csv")  # without intervals, as older runs wrote it
    if problems:
        atomic_write_csv(
            pd.DataFrame(
                {
                    "dataset": [dataset] * 3,
                    "subject": ["01", "02", "02"],
                    "sample": ["EP01_01", "EP02_03", "EP02_04"],
                    "problem": ["apex outside onset-offset", "frame 46 missing", "unknown emotion 'others'"],
                    "action": ["fixed", "dropped", "dropped"],
                    "detail": ["apex set to the middle frame", "", ""],
                }
            ),
            run_dir / "data_problems.csv",
        )
    if figures:
        (run_dir / "figures").mkdir(exist_ok=True)
        per_class = pd.DataFrame({"emotion": CLASSES, "clips": [8, 8, 8]})
        viz.per_group_bars(per_class, "emotion", "clips").savefig(run_dir / "figures" / "01_class_counts.png", dpi=60)
        clip = np.random.default_rng(0).random((8, 16, 16, 1))
        viz.montage(clip, {"attention": clip[..., 0]}, title="montage").savefig(
            run_dir / "figures" / "04_montage.png", dpi=60
        )
        viz.plot_history(pd.DataFrame({"epoch": [1, 2], "loss": [1.0, 0.7]})).savefig(
            run_dir / "figures" / "02_loss.png", dpi=60
        )
        viz.per_group_bars(per_class, "emotion", "clips").savefig(run_dir / "figures" / "05_extra.png", dpi=60)
    return metrics
