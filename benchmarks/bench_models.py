"""Training throughput of the registered models: clips/s in fp32 vs bf16 autocast + channels_last_3d.

    .venv/bin/python benchmarks/bench_models.py                       # meranet at its default input
    .venv/bin/python benchmarks/bench_models.py --models meranet meranet_small --steps 8

For each model: a few warm-up steps, then ``--steps`` timed training steps (forward, cross-entropy,
backward, SGD step) on a random batch at the model's ``input_spec``. Single steps jitter 2–4× on a shared
CPU, so the median step time is reported, with the bf16 / fp32 speed ratio. Also prints the forward
GFLOPs per clip (torch's FLOP counter) and the achieved training GFLOP/s (≈ 3 × forward FLOPs per clip).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from merkit.models import create_model, model_summary


def time_training_steps(model: nn.Module, batch_size: int, steps: int, warmup: int, bf16: bool) -> list[float]:
    """Wall-clock seconds of each timed training step (after ``warmup`` untimed steps)."""
    spec = model.input_spec
    x = spec.example(batch_size=batch_size, seed=0)
    y = torch.arange(batch_size) % model.head.out_features
    if bf16 and spec.kind == "clip":
        # channels_last_3d pays off with bf16 on CPU (oneDNN picks blocked kernels).
        model = model.to(memory_format=torch.channels_last_3d)
        x = x.contiguous(memory_format=torch.channels_last_3d)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    model.train()
    times = []
    for step in range(warmup + steps):
        start = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        loss = nn.functional.cross_entropy(logits.float(), y)
        loss.backward()
        optimizer.step()
        if step >= warmup:
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["meranet"], help="registered model names")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per setting")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--size", type=int, default=None, help="override the models' input size")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, "
        f"median of {args.steps} steps after {args.warmup} warm-up"
    )
    header = (
        f"{'model':<22}{'input':>14}{'GFLOP/clip':>12}{'fp32 clip/s':>13}{'bf16+cl clip/s':>16}"
        f"{'ratio':>8}{'fp32 GFLOP/s':>14}"
    )
    print(header)
    for name in args.models:
        overrides = {"size": args.size} if args.size else {}
        torch.manual_seed(0)
        fp32_model = create_model(name, **overrides)
        torch.manual_seed(0)
        bf16_model = create_model(name, **overrides)
        gflops = model_summary(fp32_model)["flops"] / 1e9
        fp32 = statistics.median(time_training_steps(fp32_model, args.batch_size, args.steps, args.warmup, False))
        bf16 = statistics.median(time_training_steps(bf16_model, args.batch_size, args.steps, args.warmup, True))
        fp32_rate, bf16_rate = args.batch_size / fp32, args.batch_size / bf16
        print(
            f"{name:<22}{fp32_model.input_spec.short():>14}{gflops:>12.3f}{fp32_rate:>13.1f}{bf16_rate:>16.1f}"
            f"{bf16_rate / fp32_rate:>7.2f}×{3 * gflops * fp32_rate:>14.1f}"
        )


if __name__ == "__main__":
    main()
