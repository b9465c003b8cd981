"""Fold-batched vs sequential training: seconds per fold, projected LOSO wall time, ``speedup: N.Nx``.

    .venv/bin/python benchmarks/bench_folds.py            # published STSTNet recipe (800 epochs) + meranet_small
    .venv/bin/python benchmarks/bench_folds.py --quick    # the same lines from few epochs, under a minute

1. The fp32 matmul peak of this machine (median of 7 products of 1024², same thread count).
2. STSTNet on a GENERATED flow set with the real shape of the MEGC2019 composite: 442 clips, 68 subjects,
   3 classes, 28×28×(u, v, strain); each class a smooth random flow field, plus a per-subject field and noise
   (merkit-made, no real data). Published recipe: Adam lr 5e-5, batch 256, fixed epochs (800; fewer with
   --quick), no schedule. ``--rounds`` interleaved rounds, each timing ``merkit.training.fold.train_fold`` on one
   fold (the kit's per-fold loop, data loading included) and then one group of ``--group`` folds with
   ``merkit.training.batched.stack.train_folds`` (shared batches; ``--mechanism``, default auto = the fused step for an
   fp32 STSTNet on CPU, in one group of all 68 folds, its epilogues compiled as an 800-epoch run compiles them). The
   same per-epoch work; a fold's 800-epoch time is its one-off setup plus 800 × its median epoch, and the
   68-fold projection is that × 68.
3. meranet_small on the default SynthME LOSO (12 subjects): the same comparison (fp32, its demo recipe).

The last line of each section is ``speedup: N.Nx`` (batched over sequential, per fold). Single runs on a
shared machine jitter 2–4×: compare ratios from one run, not absolute seconds across runs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _machine import matmul_peak_gflops


def generated_flow_set(
    n_clips: int = 442, n_subjects: int = 68, seed: int = 0, class_strength: float = 0.6
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images (n, 28, 28, 3) float32, labels (n,), subjects (n,)): class field + subject field + noise.

    ``class_strength`` scales the class field against the subject field (0.8) and the pixel noise (1.0):
    the default makes a set any recipe learns (timing only); bench_recipe.py uses a weaker one."""
    rng = np.random.default_rng(seed)

    def smooth_field() -> np.ndarray:
        coarse = rng.normal(size=(7, 7, 3))
        return np.kron(coarse, np.ones((4, 4, 1)))  # (7, 7, 3) -> (28, 28, 3): blocky but spatially coherent

    classes = [smooth_field() for _ in range(3)]
    subjects = np.sort(np.arange(n_clips) % n_subjects)
    labels = rng.choice(3, size=n_clips, p=[0.57, 0.23, 0.20])  # the composite's negative/positive/surprise mix
    subject_fields = [smooth_field() for _ in range(n_subjects)]
    images = np.stack(
        [
            class_strength * classes[y] + 0.8 * subject_fields[s] + rng.normal(scale=1.0, size=(28, 28, 3))
            for y, s in zip(labels, subjects)
        ]
    ).astype(np.float32)
    return images, labels, subjects


def time_sequential(make_model, train_set, cfg, folds) -> tuple[float, float]:
    """(seconds per fold, median seconds per epoch) of ``merkit.training.fold.train_fold`` over ``folds``."""
    from merkit.training.fold import train_fold

    start, epochs = time.perf_counter(), []
    for i, positions in enumerate(folds):
        torch.manual_seed(i)
        _model, history = train_fold(make_model(), train_set(positions), cfg, seed=i, progress=False)
        epochs.extend(history["seconds"].tolist())
    return (time.perf_counter() - start) / len(folds), statistics.median(epochs)


def time_batched(
    make_model, shared, members, cfg, mechanism: str = "auto", compile_step: bool | None = None
) -> tuple[float, float]:
    """(seconds per fold, median seconds per epoch and fold) of one group with ``train_folds``."""
    from merkit.training.batched.stack import train_folds

    k = len(members)
    start = time.perf_counter()
    models = []
    for i in range(k):
        torch.manual_seed(i)
        models.append(make_model())
    trained = train_folds(
        models,
        cfg,
        seeds=list(range(k)),
        num_classes=3,
        shared=shared,
        members=members,
        group_seed=1,
        mechanism=mechanism,
        compile_step=compile_step,
    )
    return (time.perf_counter() - start) / k, statistics.median(trained[0][1]["seconds"].tolist())


def projected(total: float, per_epoch: float, epochs: int, target: int = 800) -> float:
    """Seconds per fold at ``target`` epochs: the run's one-off setup (total - epochs × per-epoch) plus
    ``target`` epochs at the measured per-epoch median (setup is not multiplied with the epochs)."""
    return max(0.0, total - epochs * per_epoch) + target * per_epoch


def report(name: str, seq: float, bat: float, n_folds: int, extra: str = "") -> None:
    print(f"{name}: sequential {seq:.2f} s/fold, batched {bat:.2f} s/fold {extra}")
    print(
        f"{name}: projected {n_folds}-fold wall time: sequential {seq * n_folds / 60:.1f} min, "
        f"batched {bat * n_folds / 60:.1f} min"
    )
    print(f"speedup: {seq / bat:.1f}x")


def bench_ststnet(args: argparse.Namespace) -> None:
    from merkit.config import TrainConfig
    from merkit.data.torch_dataset import FlowDataset
    from merkit.models import create_model

    images, labels, subjects = generated_flow_set()
    epochs = 4 if args.quick else args.epochs
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=256,
        optimizer="adamw",
        lr=5e-5,
        weight_decay=0.0,
        schedule="none",
        device=args.device,
        precision=args.precision,
        augment=False,
    )
    keys = np.unique(subjects)
    members = np.stack([subjects != s for s in keys[: args.group]])
    # the 800-epoch run compiles the fused step's epilogues (1600 group steps × 68 folds >= COMPILE_MIN_FOLD_STEPS): so
    # does a shorter timed run that is projected to it, its compile time counted in the one-off setup
    compile_step = {"auto": True, "on": True, "off": False}[args.compile]
    seq_runs, bat_runs = [], []
    for r in range(args.rounds):  # interleaved, so a change of the shared machine's load hits both alike
        fold = [np.flatnonzero(subjects != keys[r % len(keys)])]
        seq_runs.append(
            time_sequential(
                lambda: create_model("ststnet", num_classes=3),
                lambda pos: FlowDataset((images, labels), pos),
                cfg,
                fold,
            )
        )
        bat_runs.append(
            time_batched(
                lambda: create_model("ststnet", num_classes=3),
                FlowDataset((images, labels)),
                members,
                cfg,
                args.mechanism,
                compile_step,
            )
        )
    seq = statistics.median(projected(t, e, epochs) for t, e in seq_runs)
    bat = statistics.median(projected(t, e, epochs) for t, e in bat_runs)
    print(
        f"STSTNet, generated flow set 442 clips / 68 subjects / 3 classes / 28x28x3, published recipe "
        f"(Adam lr 5e-5, batch 256) at {epochs} epochs, {args.precision}; group of {args.group} folds, "
        f"mechanism {args.mechanism} (auto = fused for an fp32 STSTNet on CPU), compile {args.compile}, "
        f"{args.rounds} interleaved rounds; "
        f"load {open('/proc/loadavg').read().split()[:3]}"
    )
    print(
        f"ststnet: seconds per epoch and fold (medians): sequential "
        f"{statistics.median(e for _, e in seq_runs):.3f}, batched {statistics.median(e for _, e in bat_runs):.3f}"
    )
    report("ststnet", seq, bat, 68, "(projected to 800 epochs: one-off setup + 800 × the per-epoch median)")


def bench_meranet(args: argparse.Namespace) -> None:
    from merkit.config import TrainConfig
    from merkit.data.datasets import build_manifest
    from merkit.data.preprocess import PreprocessConfig
    from merkit.data.store import build_store
    from merkit.data.synthetic import SynthMEConfig, generate_synthme
    from merkit.data.torch_dataset import ClipDataset
    from merkit.evaluation.splits import loso_splits
    from merkit.models import create_model

    cache = Path(args.cache)
    root = generate_synthme(cache / "synthme", SynthMEConfig(), progress=False)
    manifest = build_manifest("synthme", root, "synthme_3class")
    spec = create_model("meranet_small").input_spec
    store = build_store(
        manifest,
        root,
        PreprocessConfig(frames=spec.frames, size=spec.size, color="grey"),
        cache / "store",
        progress=False,
    )
    folds = loso_splits(store.index)
    epochs = 1 if args.quick else 3
    cfg = TrainConfig(epochs=epochs, batch_size=8, device=args.device, precision=args.precision, augment=False)
    n_seq = 1 if args.quick else 2
    seq, _ = time_sequential(
        lambda: create_model("meranet_small", num_classes=3),
        lambda pos: ClipDataset(store, pos),
        cfg,
        [f.train for f in folds[:n_seq]],
    )
    k = 2 if args.quick else 4
    union = np.arange(len(store.index))
    members = np.stack([np.isin(union, f.train) for f in folds[:k]])
    bat, _ = time_batched(lambda: create_model("meranet_small", num_classes=3), ClipDataset(store, union), members, cfg)
    print(
        f"meranet_small, default SynthME LOSO ({len(folds)} folds), {epochs} epochs, batch 8, "
        f"{args.precision}; group of {k} folds"
    )
    report("meranet_small", seq, bat, len(folds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few epochs: the same lines in under a minute")
    parser.add_argument("--epochs", type=int, default=800, help="STSTNet epochs timed (projected to 800)")
    parser.add_argument(
        "--group",
        type=int,
        default=68,
        help="STSTNet folds per batched group (68: all, what the executor plans for the fused step)",
    )
    parser.add_argument(
        "--compile",
        default="auto",
        choices=["auto", "on", "off"],
        help="compile the fused step's epilogues (auto: as the projected 800-epoch run does)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=2,
        help="STSTNet rounds, each one sequential fold then one batched group (medians)",
    )
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu", help="torch device both trainers run on (default: %(default)s)")
    parser.add_argument(
        "--mechanism",
        default="auto",
        choices=["auto", "vmap", "wide", "fused"],
        help="how the batched step is computed (merkit.training.batched.stack)",
    )
    parser.add_argument("--skip-meranet", action="store_true")
    parser.add_argument("--skip-ststnet", action="store_true")
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "merkit_bench_loso"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"fp32 matmul peak {matmul_peak_gflops():.1f} GFLOP/s (median of 7, 1024^3)"
    )
    if not args.skip_meranet:
        bench_meranet(args)
    if not args.skip_ststnet:
        bench_ststnet(args)


if __name__ == "__main__":
    main()
