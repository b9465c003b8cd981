"""What the benchmarks measure about the machine itself, so each can print its numbers as ratios to it.

Imported by the benchmark scripts (run as ``python benchmarks/NAME.py``, so this folder is on ``sys.path``).
"""

from __future__ import annotations

import os
import statistics
import time

import torch


def matmul_peak_gflops(n: int = 1024, repeats: int = 7) -> float:
    """The fp32 matmul rate of this machine now (GFLOP/s, median of ``repeats`` n³ products, after a warm-up)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up: thread pool and caches
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        rates.append(2 * n**3 / (time.perf_counter() - start) / 1e9)
    return statistics.median(rates)


def load_average() -> str:
    """The machine's load averages (1, 5, 15 min) as one string, or "unknown" where the system has none."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"
