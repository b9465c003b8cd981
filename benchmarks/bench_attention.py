"""Does MERANet's attention look where the face moves, and does it help? Attention designs × ablations under LOSO.

    nice -n 5 .venv/bin/python benchmarks/bench_attention.py --synthme-seed 1 --designs cbam,residual --seeds 0
    nice -n 5 .venv/bin/python benchmarks/bench_attention.py --synthme-seed 2 --designs cbam --seeds 0,1,2

Two SynthME generations play two roles. The DEVELOPMENT set (``--synthme-seed 1``) is where designs are compared
and the default is chosen. The REPORT set (``--synthme-seed 2``) is run only for the design chosen, to report its
figures; nothing is chosen on it. (Generation seed 0 is the demo's; it was looked at before this benchmark existed.)

For every design (a set of MERANet constructor arguments, :data:`DESIGNS`) and every ablation (``both``, ``none``,
``channel``, ``spatiotemporal``) and every training seed: meranet_small (grey 16×32×32, 15 fixed epochs, lr 3e-3,
batch 8, augmentation on: the settings docs/models.md reports) under leave-one-subject-out with ``run_protocol``,
then every fold's model scores its held-out clips' learned attention against SynthME's true motion masks, module by
module and for the kit's mean map (:func:`merkit.explain.attention_module_scores`; all frames, pointing tolerance 0
px), and so does an untrained network of the same design (one per fold, seeded by the fold). Runs are kept under
``--out`` and resume, so stages add to each other.

Printed, one table per design × ablation: pooled UF1 with its 95 % clip-bootstrap interval for each training seed;
the mean ± sd of UF1 over training seeds; the attention's AUC and pointing rate (mean map and each module; clips
pooled over seeds, 95 % bootstrap interval over clips), and the untrained network's. ``--csv`` writes the long table.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch

#: The attention designs compared: MERANet constructor arguments (every one an ASSUMPTION, docs/models.md).
DESIGNS: dict[str, dict] = {
    "cbam": {},  # features × sigmoid gate, map from the module's output (the kit's original design)
    "residual": {"attention_scale": "residual"},  # features × (1 + M)
    "input": {"st_source": "input"},  # the map at the module's input resolution, before its stride
    "softmax": {"st_normalise": "softmax"},  # the map normalised over space per frame (mean 1)
    "residual_input": {"attention_scale": "residual", "st_source": "input"},
    "softmax_input": {"st_normalise": "softmax", "st_source": "input"},
    "residual_softmax_input": {"attention_scale": "residual", "st_normalise": "softmax", "st_source": "input"},
    "cbam_raw": {"remove_static": False},  # the original design on the raw clip (the still face kept)
}
ABLATIONS = ("both", "none", "channel", "spatiotemporal")


def _run(args, prepared, preprocess, design: str, ablation: str, seed: int) -> tuple[dict, pd.DataFrame]:
    """One LOSO run (resumed when present) and its attention scores: (row, per-clip module scores)."""
    from merkit.config import DataConfig, ModelConfig, ProtocolConfig, RunConfig, TrainConfig
    from merkit.evaluation.splits import fold_seed
    from merkit.explain import attention_module_scores
    from merkit.models import create_model
    from merkit.training.runner import load_fold_model, run_protocol

    overrides = {"frames": args.frames, "size": args.size, "attention": ablation, **DESIGNS[design]}
    config = RunConfig(
        data=DataConfig(synthme_seed=args.synthme_seed),
        model=ModelConfig(name="meranet_small", overrides=overrides),
        train=TrainConfig(
            epochs=args.epochs,
            lr=args.lr,
            batch_size=8,
            seed=seed,
            device="cpu",
            augment=True,
            precision=args.precision,
        ),
        protocol=ProtocolConfig(),
        preprocess=asdict(preprocess),
    )
    run_dir = Path(args.out) / f"synthme{args.synthme_seed}" / f"{design}_{ablation}_seed{seed}_{args.precision}"
    start = time.perf_counter()
    folds = [f.strip() for f in args.folds.split(",") if f.strip()] or None
    predictions = run_protocol(config, prepared.store, run_dir, progress=False, n_boot=1000, folds=folds)
    seconds = time.perf_counter() - start
    if folds is None:
        metrics = json.loads((run_dir / "metrics.json").read_text())
    else:  # a screening subset of the LOSO folds: pooled over those folds only
        from merkit.evaluation.metrics import summarise

        predictions = predictions[predictions["fold"].astype(str).isin(folds)]
        metrics = summarise(predictions, prepared.classes, n_boot=1000)
    row = {
        "design": design,
        "ablation": ablation,
        "seed": seed,
        "uf1": metrics["pooled"]["uf1"],
        "uf1_lo": metrics["ci"]["uf1"]["low"],
        "uf1_hi": metrics["ci"]["uf1"]["high"],
        "seconds": round(seconds, 1),
    }
    scores = []
    if ablation in ("both", "spatiotemporal"):
        index = prepared.store.index
        for fold, part in predictions.groupby("fold"):
            positions = np.flatnonzero(index["subject"].astype(str).isin(part["subject"].astype(str).unique()))
            trained = load_fold_model(run_dir, str(fold))
            torch.manual_seed(fold_seed(seed, str(fold)))
            untrained = create_model("meranet_small", num_classes=trained.num_classes, **overrides).eval()
            for network, model in (("trained", trained), ("untrained", untrained)):
                table = attention_module_scores(model, prepared.store, positions)
                scores.append(table.assign(network=network, seed=seed, fold=str(fold)))
    table = pd.concat(scores, ignore_index=True) if scores else pd.DataFrame()
    return row, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--designs", default="cbam", help=f"comma list of {', '.join(DESIGNS)}")
    parser.add_argument("--ablations", default=",".join(ABLATIONS), help="comma list of both, none, channel, ...")
    parser.add_argument("--seeds", default="0,1,2", help="training seeds (comma list)")
    parser.add_argument("--synthme-seed", type=int, default=1, help="1 = development set, 2 = report set")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "merkit_bench_attention"))
    parser.add_argument(
        "--folds", default="", help="screening only: run just these LOSO fold keys (e.g. 01,02,03); empty: all"
    )
    parser.add_argument("--csv", default="", help="write the per-clip attention scores here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from merkit.config import DataConfig
    from merkit.data.preprocess import PreprocessConfig
    from merkit.explain import interval_table
    from merkit.prepare import prepare_data

    role = {1: "DEVELOPMENT (choose here)", 2: "REPORT (never chosen on)"}.get(args.synthme_seed, "other")
    data = DataConfig(synthme_seed=args.synthme_seed)
    preprocess = PreprocessConfig(frames=args.frames, size=args.size, color="grey")
    prepared = prepare_data(data, preprocess, cache_dir=Path(args.out) / f"cache{args.synthme_seed}", progress=False)
    print(f"SynthME generation seed {args.synthme_seed}: {role}; store {tuple(prepared.store.clips.shape)}")
    print(f"epochs {args.epochs}, lr {args.lr:g}, precision {args.precision}, torch threads {torch.get_num_threads()}")
    if args.folds:
        print(f"SCREENING: only LOSO folds {args.folds} (UF1 pooled over their held-out clips)")

    rows, tables = [], []
    for design in [d.strip() for d in args.designs.split(",") if d.strip()]:
        for ablation in [a.strip() for a in args.ablations.split(",") if a.strip()]:
            for seed in [int(s) for s in args.seeds.split(",") if s.strip()]:
                row, table = _run(args, prepared, preprocess, design, ablation, seed)
                rows.append(row)
                print(
                    f"  {design:>24} {ablation:>14} seed {seed}: UF1 {row['uf1']:.3f} "
                    f"[{row['uf1_lo']:.3f}, {row['uf1_hi']:.3f}] ({row['seconds']} s)",
                    flush=True,
                )
                if not table.empty:
                    tables.append(table.assign(design=design, ablation=ablation))
    runs = pd.DataFrame(rows)
    scores = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    if args.csv and not scores.empty:
        scores.to_csv(args.csv, index=False)
    print()
    for (design, ablation), part in runs.groupby(["design", "ablation"], sort=False):
        seeds = ", ".join(
            f"{r.seed}: {r.uf1:.3f} [{r.uf1_lo:.3f}, {r.uf1_hi:.3f}]" for r in part.itertuples(index=False)
        )
        spread = part["uf1"].std(ddof=1) if len(part) > 1 else float("nan")
        print(f"== {design} × {ablation}: UF1 mean {part['uf1'].mean():.3f} ± {spread:.3f} (seeds {seeds})")
        if scores.empty:
            continue
        mine = scores[(scores["design"] == design) & (scores["ablation"] == ablation)]
        if mine.empty:
            continue
        # One value per clip and module: the mean over training seeds, then intervals over clips.
        per_clip = mine.groupby(["network", "module", "grid", "clip"], as_index=False)[
            ["auc", "pointing_hit", "mass_above_median"]
        ].mean()
        summary = interval_table(per_clip, by=("network", "module", "grid"))
        for r in summary.itertuples(index=False):
            print(
                f"   {r.network:>9} module {r.module:>4} ({r.grid:>8}): AUC {r.auc:.2f} [{r.auc_lo:.2f}, "
                f"{r.auc_hi:.2f}]  pointing {r.pointing:.2f} [{r.pointing_lo:.2f}, {r.pointing_hi:.2f}]  "
                f"mass above median {r.mass_above_median:.2f}  ({r.n_clips} clips)"
            )


if __name__ == "__main__":
    main()
