"""STSTNet recipes on a generated composite-shaped flow set: 68-fold LOSO UF1/UAR and wall time of each.

    .venv/bin/python benchmarks/bench_recipe.py                      # the published recipe + the fast candidates
    .venv/bin/python benchmarks/bench_recipe.py --recipes fast published
    .venv/bin/python benchmarks/bench_recipe.py --quick              # 4 folds, few epochs: the same lines in ~1 min

What it measures: the kit's fold-batched trainer (``merkit.training.batched.stack.train_folds``, the fused STSTNet step,
one group of all folds, exactly what ``executor: auto`` runs on CPU) under each recipe over a GENERATED flow set
with the real composite's shape (``bench_folds.generated_flow_set``: 442 clips, 68 subjects, 3 classes in the
composite's mix, 28×28×3), fed as the authors feed STSTNet (``encoding="bgr255"``: each channel min-max
scaled to 0..255 integers, B, G, R order). Every fold trains a fixed number of epochs and its last epoch is
scored: nothing is selected on a held-out subject. Per recipe it prints the wall time (compile included),
the pooled UF1 and UAR over all held-out clips (MEGC2019) with a 95 % bootstrap interval of the UF1, and a
last line ``recipe <name>: UF1 ... in ... s``.

The recipes (``RECIPES``): ``published`` is the STSTNet authors' recipe as their public code runs it (Adam lr 5e-5,
batch 256, 800 epochs, no schedule, no weight decay, plain cross-entropy); the other candidates keep all of it
but raise the learning rate and cut the epochs; ``fast`` (lr 2e-3, 40 epochs) is the one the kit recommends
(``merkit.config.TRAIN_RECIPES["fast"]``, chosen by this benchmark's numbers in docs/performance.md).
The generated set is not a real dataset: a recipe chosen on it is evidence about optimisation speed on data
of this shape, not about real-data UF1 (said in docs/performance.md).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch
from _machine import matmul_peak_gflops
from bench_folds import generated_flow_set

from merkit.config import TRAIN_RECIPES

CLASS_STRENGTH = 0.2  # chosen so that no recipe is perfect (at the bench's default 0.6 every recipe scores UF1 1.0)
RECIPES = {  # name: TrainConfig fields; "published" and "fast" are the kit's own (merkit.config.TRAIN_RECIPES)
    "published": TRAIN_RECIPES["published"],
    "fast_lr5e-4_100": {**TRAIN_RECIPES["published"], "lr": 5e-4, "epochs": 100},
    "fast_lr1e-3_60": {**TRAIN_RECIPES["published"], "lr": 1e-3, "epochs": 60},
    "fast": TRAIN_RECIPES["fast"],  # lr 2e-3, 40 epochs: the candidate chosen (measured as "fast_lr2e-3_40")
}


def run_recipe(
    name: str,
    images: np.ndarray,
    labels: np.ndarray,
    subjects: np.ndarray,
    n_folds: int,
    epochs_scale: float = 1.0,
    precision: str = "fp32",
    seed: int = 0,
) -> dict:
    """Train every LOSO fold of the first ``n_folds`` subjects under recipe ``name``; pooled scores + time and
    the predictions (``"predictions"``: dataset, subject, sample, fold, gt, pred). ``seed`` sets the folds'
    initial weights and the group's batch order (0: the figures in docs/performance.md)."""
    from merkit.config import TrainConfig
    from merkit.data.torch_dataset import FlowDataset
    from merkit.evaluation.metrics import bootstrap_ci, pooled_scores
    from merkit.models import create_model
    from merkit.training.batched.stack import train_folds
    from merkit.training.fold import predict

    fields = dict(RECIPES[name])
    fields["epochs"] = max(1, int(round(fields["epochs"] * epochs_scale)))
    cfg = TrainConfig(**fields, device="cpu", precision=precision, seed=0)
    lr, epochs, batch = cfg.lr, cfg.epochs, cfg.batch_size
    keys = np.unique(subjects)[:n_folds]
    members = np.stack([subjects != s for s in keys])
    models = []
    for i in range(len(keys)):
        torch.manual_seed(1000 * seed + i)
        models.append(create_model("ststnet", num_classes=3))
    start = time.perf_counter()
    trained = train_folds(
        models,
        cfg,
        seeds=[1000 * seed + i for i in range(len(keys))],
        num_classes=3,
        shared=FlowDataset((images, labels), encoding="bgr255"),
        members=members,
        group_seed=1 + seed,
    )
    seconds = time.perf_counter() - start
    rows = []
    for s, (model, history) in zip(keys, trained):
        held = np.flatnonzero(subjects == s)
        _probs, pred = predict(model, FlowDataset((images, labels), held, encoding="bgr255"), batch_size=256)
        rows += [
            {"dataset": "generated", "subject": str(s), "sample": f"{s}_{i}", "fold": str(s), "gt": int(labels[i])}
            | {"pred": int(p)}
            for i, p in zip(held, pred)
        ]
    predictions = pd.DataFrame(rows)
    scores = pooled_scores(predictions["gt"], predictions["pred"], 3)
    ci = bootstrap_ci(predictions, "uf1", n_boot=1000, num_classes=3)
    return {
        "name": name,
        "epochs": epochs,
        "lr": lr,
        "batch": batch,
        "seconds": seconds,
        "uf1": scores["uf1"],
        "uar": scores["uar"],
        "uf1_low": ci["low"],
        "uf1_high": ci["high"],
        "train_acc": float(np.mean([h["train_acc"].iloc[-1] for _, h in trained])),
        "predictions": predictions,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--quick", action="store_true", help="4 folds and 1/20 of the epochs")
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=["fp32", "bf16"],
        help="bf16: the fused step's GEMMs take bf16 operands (fp32 everywhere else)",
    )
    parser.add_argument(
        "--class-strength",
        type=float,
        default=CLASS_STRENGTH,
        help="the generated set's class field against subject field 0.8 and noise 1.0",
    )
    args = parser.parse_args()
    images, labels, subjects = generated_flow_set(class_strength=args.class_strength)
    n_folds, scale = (4, 0.05) if args.quick else (68, 1.0)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; fp32 matmul peak "
        f"{matmul_peak_gflops():.1f} GFLOP/s; generated flow set {len(labels)} clips / "
        f"{len(np.unique(subjects))} subjects, class strength {args.class_strength}, {n_folds} LOSO folds, "
        "fused fold-batched trainer, fixed epochs"
    )
    for name in args.recipes:
        r = run_recipe(name, images, labels, subjects, n_folds, scale, args.precision)
        print(
            f"recipe {name} ({args.precision}): Adam lr {r['lr']:g}, batch {r['batch']}, {r['epochs']} epochs; "
            f"UF1 {r['uf1']:.4f} "
            f"[{r['uf1_low']:.4f}, {r['uf1_high']:.4f}], UAR {r['uar']:.4f}, final train acc {r['train_acc']:.3f}, "
            f"{n_folds}-fold wall time {r['seconds']:.0f} s ({r['seconds'] / 60:.1f} min); "
            f"load {open('/proc/loadavg').read().split()[:3]}",
            flush=True,
        )


if __name__ == "__main__":
    main()
