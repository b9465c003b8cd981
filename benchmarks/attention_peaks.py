"""Where does MERANet's learned attention peak? Diagnostics and per-module figures for a bench_attention run.

    nice -n 5 .venv/bin/python benchmarks/attention_peaks.py RUN_DIR --synthme-seed 1 --png docs/attention_modules.png

``RUN_DIR`` is one run directory that ``bench_attention.py`` wrote (design × ablation × training seed). For every
completed fold, the fold's trained model and an untrained one of the same design (seeded by the fold) are read on
the fold's held-out clips. Per module (and for the kit's mean map) it prints, over those clips: where the
time-summed map peaks (inside the motion region; within 2 px of the frame border, the convolutions' zero padding;
on the face outline, the 10 % of pixels with the strongest edges of the clip's mean frame), the share of the map's
spatial contrast in the frames that move least (the first and last quarter of the clip) against the middle half,
and the rank correlation of the map with the input's own motion energy (|clip − its temporal mean|, what
``remove_static`` passes on). With ``--png`` it draws one held-out clip's per-module maps at its middle frame.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr


def _diagnostics(maps: np.ndarray, clips: np.ndarray, masks: np.ndarray) -> dict:
    """maps (n, t, h, w) of one module, clips (n, t, h, w), masks (n, h, w) bool -> the shares described above."""
    n, t, h, w = maps.shape
    energy_map = maps.sum(axis=1).reshape(n, -1)  # (n, t, h, w) -> (n, h*w)
    peaks = energy_map.argmax(axis=1)
    ys, xs = np.divmod(peaks, w)
    border = (ys < 2) | (xs < 2) | (ys >= h - 2) | (xs >= w - 2)
    inside = masks.reshape(n, -1)[np.arange(n), peaks]
    outline = []
    for k in range(n):
        mean_frame = clips[k].mean(axis=0).astype(np.float32)
        edges = np.hypot(cv2.Sobel(mean_frame, cv2.CV_32F, 1, 0), cv2.Sobel(mean_frame, cv2.CV_32F, 0, 1))
        outline.append(edges.reshape(-1)[peaks[k]] >= np.quantile(edges, 0.9))
    contrast = maps.std(axis=(2, 3))  # (n, t, h, w) -> (n, t): spatial contrast per frame
    quarter = max(1, t // 4)
    still = np.concatenate([contrast[:, :quarter], contrast[:, -quarter:]], axis=1).mean(axis=1)
    moving = contrast[:, quarter : t - quarter].mean(axis=1)
    motion = np.abs(clips - clips.mean(axis=1, keepdims=True))  # (n, t, h, w): what remove_static keeps
    rho = [spearmanr(maps[k].ravel(), motion[k].ravel()).statistic for k in range(n)]
    return {
        "peak_in_region": float(inside.mean()),
        "peak_on_border": float(border.mean()),
        "peak_on_outline": float(np.mean(outline)),
        "contrast_still_over_moving": float(np.nanmean(still / np.where(moving > 0, moving, np.nan))),
        "spearman_with_motion_energy": float(np.nanmean(rho)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--synthme-seed", type=int, default=1)
    parser.add_argument("--cache", default="", help="bench_attention's --out (default: two levels above run_dir)")
    parser.add_argument("--png", default="", help="save one clip's per-module maps here")
    args = parser.parse_args()

    from merkit.config import DataConfig
    from merkit.config.schema import load_config
    from merkit.data.inputs import input_adapter
    from merkit.data.preprocess import PreprocessConfig
    from merkit.evaluation.splits import fold_seed
    from merkit.explain import learned_attention
    from merkit.models import create_model
    from merkit.prepare import prepare_data
    from merkit.training.runner import load_fold_model

    run_dir = Path(args.run_dir)
    config = load_config(run_dir)
    cache = Path(args.cache) if args.cache else run_dir.parent.parent / f"cache{args.synthme_seed}"
    preprocess = PreprocessConfig(**config.preprocess)
    store = prepare_data(DataConfig(synthme_seed=args.synthme_seed), preprocess, cache_dir=cache, progress=False).store
    index = store.index
    rows, shown = [], None
    for fold_dir in sorted((run_dir / "folds").glob("fold_*")):
        fold = fold_dir.name.removeprefix("fold_")
        if not (fold_dir / "checkpoint.pt").is_file():
            continue
        positions = np.flatnonzero(index["subject"].astype(str) == fold)
        masks = np.asarray(store.masks[positions]).astype(bool)
        trained = load_fold_model(run_dir, fold)
        x = input_adapter(trained).inputs(store, positions)  # (n, c, t, h, w), as in training, no augmentation
        torch.manual_seed(fold_seed(config.train.seed, fold))
        untrained = create_model(config.model.name, num_classes=trained.num_classes, **config.model.overrides).eval()
        grey = x[:, 0].numpy()  # (n, 1, t, h, w) -> (n, t, h, w)
        for network, model in (("trained", trained), ("untrained", untrained)):
            attention = learned_attention(model, x)
            per_module = attention.meta["per_module"].numpy()  # (n, m, t, h, w)
            labels = [*(f"{m} ({g})" for m, g in zip(attention.meta["modules"], attention.meta["grids"])), "mean"]
            for slot, label in enumerate(labels):
                volume = attention.map.numpy() if label == "mean" else per_module[:, slot]
                rows.append({"network": network, "module": label, "fold": fold, **_diagnostics(volume, grey, masks)})
            if shown is None and network == "trained":
                shown = (grey[0], masks[0], per_module[0], labels)
    table = pd.DataFrame(rows).groupby(["network", "module"], sort=False).mean(numeric_only=True)
    print(f"{run_dir.name}: {len(rows) // max(1, len(table))} folds")
    print(table.round(2).to_string())
    if args.png and shown is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        clip, mask, per_module, labels = shown
        middle = clip.shape[0] // 2
        figure, axes = plt.subplots(1, len(labels) + 1, figsize=(1.7 * (len(labels) + 1), 2.0))
        axes[0].imshow(np.abs(clip - clip.mean(axis=0))[middle], cmap="gray")
        axes[0].contour(mask, levels=[0.5], colors="red", linewidths=0.8)
        axes[0].set_title("motion + region", fontsize=7)
        for axis, slot, label in zip(axes[1:], range(len(labels)), labels):
            image = per_module[:, middle].mean(axis=0) if label == "mean" else per_module[slot, middle]
            axis.imshow(image, cmap="magma")
            axis.contour(mask, levels=[0.5], colors="cyan", linewidths=0.8)
            axis.set_title(f"module {label}", fontsize=7)
        for axis in axes:
            axis.set_axis_off()
        figure.tight_layout()
        figure.savefig(args.png, dpi=70)
        print(f"saved {args.png}")


if __name__ == "__main__":
    main()
