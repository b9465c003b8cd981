"""Clip store: build speed on the default SynthME, cache-hit rebuild, and epoch loading vs the training step.

    .venv/bin/python benchmarks/bench_store.py                  # default SynthME, MERANet's default input
    .venv/bin/python benchmarks/bench_store.py --workers 1 2 --batch-size 8 --steps 5

Prints:

- store build in samples/s for each ``--workers`` value (fresh cache each time), default PreprocessConfig
  matched to ``create_model("meranet").input_spec`` (frames, size, colour);
- the rebuild with unchanged parameters (must be a cache hit: same directory, milliseconds);
- one training epoch's loading time from the store (ClipDataset with augmentation, DataLoader with
  ``num_workers=0``, shuffled, batches as training sees them) vs the time of the training steps it feeds
  (MERANet fp32 forward + backward + AdamW step on CPU, median step time × number of batches), and their
  ratio. Target: loading ≤ 5 % of training. Single runs jitter 2-4x on a shared CPU: medians are quoted.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from merkit.data.datasets import build_manifest
from merkit.data.preprocess import PreprocessConfig
from merkit.data.store import MotionMaskLoader, build_store
from merkit.data.synthetic import SynthMEConfig, generate_synthme

# torch and the models are imported inside the functions: the store's spawned workers re-import this
# script as their __main__, and a notebook's workers would not pay for torch either.


def epoch_loading_seconds(dataset: Any, batch_size: int, repeats: int) -> list[float]:
    import torch
    from torch.utils.data import DataLoader

    times = []
    for epoch in range(repeats):
        dataset.set_epoch(epoch)
        loader = DataLoader(
            dataset, batch_size=batch_size, shuffle=True, num_workers=0, generator=torch.Generator().manual_seed(epoch)
        )
        start = time.perf_counter()
        for x, y in loader:
            pass
        times.append(time.perf_counter() - start)
    return times


def training_step_seconds(model: Any, shape: tuple[int, ...], classes: int, steps: int) -> list[float]:
    import torch

    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.randn(shape)
    y = torch.randint(0, classes, (shape[0],))
    model.train()
    times = []
    for step in range(steps + 1):  # the first step warms up allocators and is dropped
        start = time.perf_counter()
        optimiser.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        optimiser.step()
        if step:
            times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="store build worker counts to time")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5, help="timed training steps (median taken)")
    parser.add_argument("--epochs", type=int, default=3, help="timed loading epochs (median taken)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the training step")
    args = parser.parse_args()
    import torch

    from merkit.data.torch_dataset import ClipDataset
    from merkit.models import create_model

    torch.set_num_threads(args.threads)

    model = create_model("meranet", num_classes=3)
    spec = model.input_spec
    config = PreprocessConfig(frames=spec.frames, size=spec.size, color="grey" if spec.channels == 1 else "rgb")
    print(f"model meranet input {spec}; {config}")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        root = generate_synthme(tmp / "synthme", SynthMEConfig(), progress=False)
        manifest = build_manifest("synthme", root, "synthme_3class")
        print(f"default SynthME: {len(manifest)} clips, generated in {time.perf_counter() - start:.1f} s")

        store = None
        for workers in args.workers:
            cache = tmp / f"cache_w{workers}"
            start = time.perf_counter()
            store = build_store(
                manifest, root, config, cache, workers=workers, mask_loader=MotionMaskLoader(str(root)), progress=False
            )
            seconds = time.perf_counter() - start
            print(
                f"build   workers={workers}: {seconds:6.2f} s  {len(manifest) / seconds:7.1f} samples/s "
                f"(clips {tuple(store.clips.shape)} + masks)"
            )
            start = time.perf_counter()
            again = build_store(
                manifest, root, config, cache, workers=workers, mask_loader=MotionMaskLoader(str(root)), progress=False
            )
            seconds = time.perf_counter() - start
            hit = again.path == store.path
            print(f"rebuild workers={workers}: {seconds * 1000:6.1f} ms  cache hit: {hit}")

        dataset = ClipDataset(store, augment=True, seed=0)
        batches = -(-len(dataset) // args.batch_size)
        load = statistics.median(epoch_loading_seconds(dataset, args.batch_size, args.epochs))
        step = statistics.median(training_step_seconds(model, spec.shape(args.batch_size), 3, args.steps))
        train = step * batches
        ratio = load / train
        print(f"epoch of {len(dataset)} clips in {batches} batches of {args.batch_size}:")
        print(
            f"  loading from the store (augmented): {load * 1000:8.1f} ms  ({load / len(dataset) * 1000:.2f} ms/clip)"
        )
        print(f"  training steps (fp32, {args.threads} threads):  {train * 1000:8.1f} ms  ({step * 1000:.0f} ms/step)")
        print(f"  loading / training = {ratio * 100:.2f} %  (target <= 5 %: {'met' if ratio <= 0.05 else 'NOT met'})")


if __name__ == "__main__":
    main()
