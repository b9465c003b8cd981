"""The GPU path in one prepared script: CUDA tests, a MERANet LOSO via the pipeline, the fold and precision benchmarks.

    .venv/bin/python benchmarks/gpu_check.py                 # on a machine with a CUDA device: at most 8 minutes
    .venv/bin/python benchmarks/gpu_check.py --dry-run       # print the parts and their commands, run nothing

Parts, each a child process with its own time limit (the limits add up to ``--budget``, 480 s by default, and a
part gets no more than the budget has left):

1. ``cuda tests``: the tests marked ``cuda`` (``pytest -m cuda``): ``device: auto`` picks CUDA, ``precision:
   auto`` picks bf16 where the device supports it, a run trains on the GPU and records both.
2. ``meranet loso``: ``merkit pipeline`` runs notebooks/03_loso on the demo profile (notebooks/demo.yaml) with
   ``model meranet``, ``device auto``, ``precision auto``, ``executor auto`` and no comparison variants; then
   prints the pooled UF1, the device each fold's history names and the executor and precision records.
3. ``bench_folds``: benchmarks/bench_folds.py ``--quick --device cuda`` (fold-batched against sequential).
4. ``bench_precision``: benchmarks/bench_precision.py ``--device cuda`` for meranet_small and meranet, 3 seeds, on
   LOSO folds 01-04 (the folds of the CPU table in docs/performance.md), and the per-step speed.

Every figure the parts print goes to this script's output. Without a CUDA device (``torch.cuda.is_available()``
False) every part is skipped with a message saying so, and the script exits 0.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def parts(work: Path) -> list[tuple[str, int, list[str]]]:
    """(name, time limit in seconds, command) of each part, in order."""
    bench = ROOT / "benchmarks"
    return [
        ("cuda tests", 90, [PYTHON, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda", str(ROOT / "tests")]),
        (
            "meranet loso",
            150,
            [PYTHON, str(Path(__file__).resolve()), "--loso-only", "--work", str(work)],
        ),
        ("bench_folds", 80, [PYTHON, str(bench / "bench_folds.py"), "--quick", "--device", "cuda"]),
        (
            "bench_precision",
            160,
            [
                PYTHON,
                str(bench / "bench_precision.py"),
                "--device",
                "cuda",
                "--models",
                "meranet_small,meranet",
                "--seeds",
                "0,1,2",
                "--folds",
                "01,02,03,04",
                "--cache",
                str(work / "bench_precision"),
            ],
        ),
    ]


def meranet_loso(work: Path, overrides: list[str]) -> None:
    """Part 2: the pipeline's 03_loso with MERANet on the demo profile, then what the run recorded."""
    import yaml

    from merkit.config import run_parameter_names

    run_dir = work / "meranet_loso"
    profile = yaml.safe_load((ROOT / "notebooks" / "demo.yaml").read_text())
    params = {k: str(v) for k, v in profile.items() if k in run_parameter_names()}  # 03_loso's share of the profile
    params.update(model="meranet", device="auto", precision="auto", executor="auto", compare="")
    params.update(dict(extra.split("=", 1) for extra in overrides))
    command = [PYTHON, "-m", "merkit.cli", "pipeline", "--notebooks", "03_loso", "--run-dir", str(run_dir), "-q"]
    for name, value in params.items():
        command += ["-p", name, value]
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT)
    print(f"meranet loso: pipeline wall {time.perf_counter() - start:.1f} s")
    for path in sorted(run_dir.rglob("executor.json")):
        print(f"{path.relative_to(run_dir)}: {json.dumps(json.loads(path.read_text()))}")
    for path in sorted(run_dir.rglob("metrics.json")):
        pooled = json.loads(path.read_text()).get("pooled", {})
        if "uf1" in pooled:
            print(f"{path.relative_to(run_dir)}: pooled UF1 {pooled['uf1']:.3f}, UAR {pooled['uar']:.3f}")
    devices = set()
    for path in run_dir.rglob("history.csv"):
        header, first = path.read_text().splitlines()[:2]
        columns = dict(zip(header.split(","), first.split(",")))
        devices.add(columns.get("device", "?"))
    print(f"devices named by the folds' histories: {sorted(devices) or 'none found'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", type=int, default=480, help="seconds for all parts together (default: 480)")
    parser.add_argument("--dry-run", action="store_true", help="print the parts and their commands, run nothing")
    parser.add_argument("--work", default="", help="where the parts write (default: a temporary directory)")
    parser.add_argument("--loso-only", action="store_true", help=argparse.SUPPRESS)  # part 2, as a child process
    parser.add_argument("--loso-param", action="append", default=[], help=argparse.SUPPRESS)  # NAME=VALUE, a check
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(args.work or scratch)
        if args.loso_only:
            meranet_loso(work, args.loso_param)
            return
        cuda = torch.cuda.is_available()
        card = torch.cuda.get_device_name(0) if cuda else "none"
        print(f"torch {torch.__version__}, CUDA available: {cuda}, device: {card}")
        start, failed = time.perf_counter(), []
        for name, limit, command in parts(work):
            if args.dry_run:
                print(f"[{name}] limit {limit} s: {' '.join(command)}")
                continue
            if not cuda:
                print(f"[{name}] skipped: no CUDA device (torch.cuda.is_available() is False)")
                continue
            left = args.budget - (time.perf_counter() - start)
            if left < 10:
                print(f"[{name}] skipped: the {args.budget} s budget is spent")
                failed.append(name)
                continue
            print(f"\n[{name}] limit {min(limit, int(left))} s", flush=True)
            began = time.perf_counter()
            try:
                code = subprocess.run(command, cwd=ROOT, timeout=min(limit, left)).returncode
            except subprocess.TimeoutExpired:
                code = "timeout"
            print(f"[{name}] exit {code} after {time.perf_counter() - began:.1f} s", flush=True)
            if code != 0:
                failed.append(name)
        if not cuda and not args.dry_run:
            print("no CUDA device: the GPU figures stay unmeasured")
        print(f"gpu_check: {time.perf_counter() - start:.1f} s; " + (f"failed: {failed}" if failed else "all parts ok"))
        sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
