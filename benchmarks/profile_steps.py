"""Where one STSTNet training step's time goes, its roofline, and each speed mechanism against sequential.

    .venv/bin/python benchmarks/profile_steps.py                 # 2 threads, K = 4 and 8, 5 repeats
    .venv/bin/python benchmarks/profile_steps.py --compile       # adds torch.compile (minutes of compiling)
    .venv/bin/python benchmarks/profile_steps.py --threads 1 --k 4

Prints, in one process (so ratios hold on a shared machine even when absolute times do not):

1. load average, threads, the fp32 matmul peak (1024³) and the copy bandwidth (64 MB) measured now;
2. a torch.profiler breakdown of one sequential step (STSTNet as its authors build it, batch 256 of
   3×28×28, Adam) and of one wide fold-batched step, grouped into conv, BatchNorm, max-pool, ReLU, dropout,
   head + loss, optimiser and the rest;
3. the roofline figures: FLOPs and (estimated) bytes per step and what bounds the measured time;
4. interleaved medians (ms per fold and step) of: sequential eager, sequential with channels_last, with bf16
   autocast, (with torch.compile), and the fold-batched step with vmap and with the wide network at each K,
   each with its ratio to sequential (``seq/this`` > 1 is faster than sequential).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from typing import Callable

import numpy as np
import torch
from _machine import matmul_peak_gflops
from torch import nn

GROUPS = {  # profiler op name fragments -> group (first match wins)
    "conv": ("convolution",),
    "batchnorm": ("batch_norm",),
    "max-pool": ("max_pool",),
    "relu": ("threshold", "relu", "clamp_min"),
    "dropout": ("bernoulli", "dropout", "uniform", "aten::ge", "aten::div"),
    "head + loss": ("addmm", "aten::mm", "softmax", "nll", "einsum", "bmm", "avg_pool"),
    "optimiser": ("Optimizer", "adam", "_foreach", "lerp", "sqrt", "addcdiv"),
}


def copy_bandwidth_gbs(mb: int = 64, repeats: int = 5) -> float:
    x = torch.randn(mb * 1024 * 1024 // 4)
    y = torch.empty_like(x)
    y.copy_(x)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        y.copy_(x)
        rates.append(2 * x.numel() * 4 / (time.perf_counter() - start) / 1e9)  # read + write
    return statistics.median(rates)


def sequential_step(
    batch: int, *, memory_format: torch.memory_format | None = None, bf16: bool = False, compiled: bool = False
) -> Callable[[], None]:
    from merkit.models.baselines import STSTNet

    torch.manual_seed(0)
    model = STSTNet()
    x, y = torch.rand(batch, 3, 28, 28) * 255, torch.randint(0, 3, (batch,))
    if memory_format is not None:
        model, x = model.to(memory_format=memory_format), x.contiguous(memory_format=memory_format)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-5)
    criterion = nn.CrossEntropyLoss()
    forward = torch.compile(model) if compiled else model

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = forward(x)
        criterion(logits.float(), y).backward()
        optimizer.step()

    return step


def stacked_step(batch: int, k: int, mechanism: str, compiled: bool = False) -> Callable[[], None]:
    from merkit.config import TrainConfig
    from merkit.models.baselines import STSTNet
    from merkit.training.batched.stack import _FoldStack

    torch.manual_seed(0)
    cfg = TrainConfig(
        epochs=800,
        batch_size=batch,
        lr=5e-5,
        optimizer="adamw",
        weight_decay=0.0,
        schedule="none",
        device="cpu",
        precision="fp32",
    )
    stack = _FoldStack(
        [STSTNet() for _ in range(k)],
        cfg,
        [np.array([0, 1, 2])] * k,
        3,
        torch.device("cpu"),
        mechanism=mechanism,
    )
    if compiled:
        stack._step = torch.compile(stack._step)
    x, y = torch.rand(batch, 3, 28, 28) * 255, torch.randint(0, 3, (batch,))
    mask = torch.rand(k, batch) > 1 / 68  # each fold holds out about one subject's share of the batch
    return lambda: stack.train_step(x, y, mask)


def breakdown(step: Callable[[], None], steps: int = 3) -> dict[str, float]:
    """ms per step by group (self CPU time of the profiler's ops)."""
    from torch.profiler import ProfilerActivity, profile

    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    out: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        name = event.key
        group = next((g for g, keys in GROUPS.items() if any(k.lower() in name.lower() for k in keys)), "other")
        out[group] += event.self_cpu_time_total / 1e3 / steps
    return dict(out)


def roofline(batch: int, peak: float, bandwidth: float, step_ms: float) -> None:
    conv_flops = 2 * batch * 30 * 30 * 27 * 16  # forward 3×3×3 conv to 16 channels at 30×30 (padding 2)
    train_flops = 2 * conv_flops  # + the weight gradient; no input gradient is needed at the first layer
    activation = batch * 16 * 30 * 30 * 4  # one full-resolution fp32 activation, bytes
    # full-resolution passes of the eager step (each read or write of a 16×30×30 map counts once):
    # forward conv write, ReLU r+w, BN stats 2 reads, BN apply r+w, max-pool read; backward max-pool
    # zero-fill + scatter, BN backward ~4, ReLU backward 3, conv weight-gradient read
    passes = 1 + 2 + 2 + 2 + 1 + 2 + 4 + 3 + 1
    gflops = train_flops / step_ms / 1e6
    print(
        f"roofline, batch {batch}: {train_flops / 1e9:.2f} GFLOP per step -> {1e3 * train_flops / peak:.1f} ms at "
        f"the matmul peak; ~{passes} full-resolution passes × {activation / 2**20:.1f} MB = "
        f"{passes * activation / 2**20:.0f} MB -> {1e3 * passes * activation / bandwidth:.1f} ms at the copy "
        f"bandwidth; measured {step_ms:.1f} ms = {gflops:.2f} GFLOP/s ({gflops / (peak / 1e9):.3f} of the peak)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--k", type=int, nargs="+", default=[4, 8], help="fold-group sizes to time")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile (compiles for minutes)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    peak, bandwidth = matmul_peak_gflops(), copy_bandwidth_gbs()
    print(
        f"load {open('/proc/loadavg').read().split()[:3]}, torch {torch.__version__}, {args.threads} threads; "
        f"fp32 matmul peak {peak:.1f} GFLOP/s, copy bandwidth {bandwidth:.1f} GB/s"
    )

    for name, step, k in [
        ("sequential", sequential_step(args.batch), 1),
        (f"wide K={args.k[0]}", stacked_step(args.batch, args.k[0], "wide"), args.k[0]),
    ]:
        parts = breakdown(step)
        total = sum(parts.values())
        shares = ", ".join(
            f"{g} {v / k:.1f} ({v / total:.0%})" for g, v in sorted(parts.items(), key=lambda kv: -kv[1])
        )
        print(f"profile {name}: {total / k:.1f} ms per fold and step: {shares}")

    steps: dict[str, tuple[Callable[[], None], int]] = {
        "sequential": (sequential_step(args.batch), 1),
        "sequential channels_last": (sequential_step(args.batch, memory_format=torch.channels_last), 1),
        "sequential bf16 autocast": (sequential_step(args.batch, bf16=True), 1),
    }
    if args.compile:
        start = time.perf_counter()
        compiled = sequential_step(args.batch, compiled=True)
        compiled()
        print(f"torch.compile of the sequential model: {time.perf_counter() - start:.0f} s to compile")
        steps["sequential compiled"] = (compiled, 1)
    for k in args.k:
        steps[f"vmap K={k}"] = (stacked_step(args.batch, k, "vmap"), k)
        steps[f"wide K={k}"] = (stacked_step(args.batch, k, "wide"), k)
        if args.compile:
            start = time.perf_counter()
            compiled = stacked_step(args.batch, k, "wide", compiled=True)
            compiled()
            print(f"torch.compile of the wide step, K={k}: {time.perf_counter() - start:.0f} s to compile")
            steps[f"wide K={k} compiled"] = (compiled, k)
    for step, _ in steps.values():
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(args.repeats):  # interleaved: every variant once per round
        for name, (step, k) in steps.items():
            start = time.perf_counter()
            step()
            step()
            times[name].append((time.perf_counter() - start) / 2 / k)
    base = statistics.median(times["sequential"])
    for name, values in times.items():
        median = statistics.median(values)
        print(
            f"{name}: {1e3 * median:.1f} ms per fold and step (range {1e3 * min(values):.0f}-{1e3 * max(values):.0f}),"
            f" seq/this {base / median:.2f}"
        )
    roofline(args.batch, peak * 1e9, bandwidth * 1e9, 1e3 * base)
    print(f"load after: {open('/proc/loadavg').read().split()[:3]}")


if __name__ == "__main__":
    main()
