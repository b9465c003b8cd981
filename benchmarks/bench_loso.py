"""LOSO wall time, clips/s and training GFLOP/s on the default SynthME, against the machine's fp32 matmul peak.

    .venv/bin/python benchmarks/bench_loso.py                         # meranet_small, 3 epochs, fp32
    .venv/bin/python benchmarks/bench_loso.py --epochs 5 --precision bf16 --model meranet

What it does:
1. Measures the fp32 matmul peak of this machine (median of several 1024³ products at the current torch
   thread count): the ceiling a dense-math workload could reach.
2. Generates the default SynthME (12 subjects × 9 clips) into a cache directory and builds the clip store
   at the model's input (grey, ``frames`` × ``size``²); both are reused on later runs and not timed.
3. Runs a full LOSO (12 folds, sequential) into a fresh run directory and reports wall time, training
   clips/s (clips seen by training steps per second of fold time) and pooled UF1/UAR.
4. Training GFLOP/s ≈ 3 × forward FLOPs per clip (``model_summary``: forward + backward ≈ 3 forwards) ×
   training clips / fold seconds, and its ratio to the matmul peak. 3-D convolutions with small channel
   counts reach a small fraction of the matmul peak; the ratio shows how much headroom is left.

Single runs jitter 2–4× on a shared machine: compare medians of repeated runs, and ratios, not one number.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from _machine import matmul_peak_gflops


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="meranet_small", help="registered model name (default: the demo model)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"])
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument(
        "--cache",
        default=str(Path(tempfile.gettempdir()) / "merkit_bench_loso"),
        help="where SynthME and the clip store are cached between runs",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from merkit.config import ModelConfig, ProtocolConfig, RunConfig, TrainConfig
    from merkit.data.datasets import build_manifest
    from merkit.data.preprocess import PreprocessConfig
    from merkit.data.store import build_store
    from merkit.data.synthetic import SynthMEConfig, generate_synthme
    from merkit.models import create_model, model_summary
    from merkit.training.runner import run_protocol

    peak = matmul_peak_gflops()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"fp32 matmul peak (median of 7, 1024^3): {peak:.1f} GFLOP/s")

    cache = Path(args.cache)
    root = generate_synthme(cache / "synthme", SynthMEConfig(), progress=False)
    manifest = build_manifest("synthme", root, "synthme_3class")
    classes = list(manifest.attrs["classes"])
    model = create_model(args.model, num_classes=len(classes))
    spec = model.input_spec
    if spec.kind != "clip":
        raise SystemExit(f"{args.model} takes {spec.kind} input; this benchmark runs clip models")
    preprocess = PreprocessConfig(frames=spec.frames, size=spec.size, color="grey" if spec.channels == 1 else "rgb")
    store = build_store(manifest, root, preprocess, cache / "store", progress=False)
    flops = model_summary(model)["flops"]
    print(
        f"data: SynthME default, {len(manifest)} clips, {manifest['subject'].nunique()} subjects; "
        f"model {args.model} {spec.short()}, {flops / 1e9:.3f} forward GFLOPs/clip"
    )

    config = RunConfig(
        model=ModelConfig(name=args.model),
        train=TrainConfig(epochs=args.epochs, batch_size=args.batch_size, precision=args.precision, device="cpu"),
        protocol=ProtocolConfig(name="loso"),
        preprocess=preprocess.to_dict(),
    )
    with tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        predictions = run_protocol(config, store, Path(run_dir) / "run", progress=False, save_checkpoints=False)
        wall = time.perf_counter() - start
        metrics = json.loads((Path(run_dir) / "run" / "metrics.json").read_text())
        histories = [pd.read_csv(p) for p in sorted((Path(run_dir) / "run" / "folds").glob("*/history.csv"))]
    n_folds = len(histories)
    fold_train_seconds = sum(float(h["seconds"].sum()) for h in histories)
    # every fold trains on all clips but its held-out subject's, once per epoch
    train_clips = sum(len(manifest) - n_test for n_test in predictions.groupby("fold").size()) * args.epochs
    clips_per_s = train_clips / fold_train_seconds
    gflops_per_s = 3 * flops * clips_per_s / 1e9
    print(
        f"LOSO: {n_folds} folds × {args.epochs} epochs, {args.precision}: wall {wall:.1f} s "
        f"({wall / n_folds:.2f} s/fold), {len(predictions)} predictions"
    )
    print(f"training: {clips_per_s:.1f} clips/s over {fold_train_seconds:.1f} s of epochs")
    print(
        f"training GFLOP/s ≈ 3 × forward FLOPs × clips/s = {gflops_per_s:.2f}; "
        f"ratio to the fp32 matmul peak: {gflops_per_s / peak:.3f}"
    )
    print(
        f"pooled UF1 {metrics['pooled']['uf1']:.3f}, UAR {metrics['pooled']['uar']:.3f} "
        f"(a timing run: few epochs, not a result)"
    )


if __name__ == "__main__":
    main()
