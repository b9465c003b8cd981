"""Cost of each attribution method on MERANet, and how well a trained MERANet's maps find SynthME's motion.

    .venv/bin/python benchmarks/bench_explain.py            # everything (a few minutes on 2 cores)
    .venv/bin/python benchmarks/bench_explain.py --part cost
    .venv/bin/python benchmarks/bench_explain.py --part scores

Part "cost": wall time (median of repeats) and peak resident memory of each IG ``internal_batch_size``
setting (every setting runs in its own subprocess, so peaks do not mask each other), Grad-CAM,
occlusion by window count, and region x time feature ablation, on ``meranet`` (1 x 16 x 64 x 64).

Part "scores": trains ``meranet_small`` on a small in-memory SynthME (frames resampled onset..offset,
grey, 32 px) and prints, for the trained and for the untrained net, the mass share inside the true
motion region and the pointing-game hit rate of every method against random maps.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from merkit import explain
from merkit.models import create_model


def _median_seconds(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _one_ig_run(internal_batch_size: int | None, batch: int, steps: int) -> dict:
    """Runs in a child process: one IG setting, its time and the process's peak memory."""
    torch.manual_seed(0)
    model = create_model("meranet", num_classes=3).eval()
    x = torch.rand(model.input_spec.shape(batch))
    base_rss = _peak_rss_mb()
    seconds = _median_seconds(
        lambda: explain.attribute(model, x, "ig", target=0, n_steps=steps, internal_batch_size=internal_batch_size), 2
    )
    return {
        "internal_batch_size": internal_batch_size,
        "seconds": seconds,
        "peak_rss_mb": _peak_rss_mb(),
        "rss_before_mb": base_rss,
    }


def cost(threads: int) -> None:
    torch.set_num_threads(threads)
    batch, steps = 2, 32
    print(f"== cost on meranet, batch {batch} x 1 x 16 x 64 x 64, {threads} thread(s)")
    print(f"IG, n_steps={steps} (each setting in its own process):")
    results = []
    for setting in (None, 2, 4, 8, 16):
        child = subprocess.run(
            [sys.executable, __file__, "--child-ig", json.dumps(setting), "--threads", str(threads)],
            capture_output=True,
            text=True,
            check=True,
        )
        results.append(json.loads(child.stdout.strip().splitlines()[-1]))
    unset = results[0]
    for row in results:
        print(
            f"  internal_batch_size={row['internal_batch_size']!s:>4}: {row['seconds']:6.2f} s "
            f"(x{row['seconds'] / unset['seconds']:.2f} of unset), peak RSS {row['peak_rss_mb']:7.0f} MB "
            f"(x{row['peak_rss_mb'] / unset['peak_rss_mb']:.2f})"
        )

    torch.manual_seed(0)
    model = create_model("meranet", num_classes=3).eval()
    x = torch.rand(model.input_spec.shape(batch))
    t, h, w = x.shape[2:]
    print(f"Grad-CAM (cam_layer): {_median_seconds(lambda: explain.attribute(model, x, 'gradcam', target=0), 5):.3f} s")
    print("Occlusion (onset baseline, stride = window, perturbations_per_eval=8):")
    for window in ((t, h // 4, w // 4), (t // 2, h // 8, w // 8), (t // 4, h // 8, w // 8)):
        count = (t // window[0]) * (h // window[1]) * (w // window[2])
        seconds = _median_seconds(lambda: explain.attribute(model, x, "occlusion", target=0, window=window), 1)
        print(f"  window {window}: {count:4d} windows, {seconds:6.2f} s, {1000 * seconds / count:.1f} ms/window")
    for segments in (2, 4, 8):
        seconds = _median_seconds(lambda: explain.attribute(model, x, "ablation", target=0, segments=segments), 1)
        print(f"Feature ablation, 5 regions x {segments} segments = {5 * segments} groups: {seconds:.2f} s")
    print(f"Learned attention: {_median_seconds(lambda: explain.attribute(model, x, 'attention'), 5):.3f} s")


def _synthme_in_memory(n_subjects: int = 6, frames: int = 8, size: int = 32, amplitude: float = 4.0):
    import cv2

    from merkit.data.synthetic import EMOTIONS, SynthMEConfig, list_clips, render_clip

    config = SynthMEConfig(n_subjects=n_subjects, n_frames=24, size=64, motion_amplitude=amplitude, video_subjects=())
    clips, labels, masks = [], [], []
    for spec in list_clips(config):
        rendered = render_clip(config, spec.subject, spec.sample)
        span = rendered.frames[spec.onset_index : spec.offset_index + 1]
        picks = np.linspace(0, len(span) - 1, frames).round().astype(int)
        clips.append(
            np.stack(
                [
                    cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), (size, size), interpolation=cv2.INTER_AREA)
                    for f in span[picks]
                ]
            )
        )
        labels.append(EMOTIONS.index(spec.emotion))
        masks.append(
            cv2.resize(rendered.mask.astype(np.uint8), (size, size), interpolation=cv2.INTER_NEAREST).astype(bool)
        )
    x = torch.tensor(np.stack(clips), dtype=torch.float32)[:, None]  # (n, t, s, s) -> (n, 1, t, s, s)
    return (x - x.mean()) / x.std(), torch.tensor(labels), np.stack(masks)


def scores(threads: int, seeds: int) -> None:
    torch.set_num_threads(threads)
    x, y, masks = _synthme_in_memory()
    dataset = list(zip(x, y.tolist()))
    print(
        f"== scores on in-memory SynthME: {len(x)} clips 1 x 8 x 32 x 32, motion region {masks.mean():.3f} of the frame"
    )
    methods = ("ig", "gradcam", "occlusion", "ablation", "attention")
    variants = {
        "ig": {"n_steps": 16, "baseline": "zeros"},
        "gradcam": {"layer": "stages.1.0"},
        "occlusion": {"window": (8, 4, 4), "baseline": "zeros"},
        "ablation": {"baseline": "zeros"},
    }
    onset_variants = {"ig": {"n_steps": 16, "baseline": "onset"}}
    for seed in range(seeds):
        torch.manual_seed(seed)
        untrained = create_model("meranet_small", num_classes=3, frames=8, size=32, dropout=0.0).eval()
        torch.manual_seed(seed)
        model = create_model("meranet_small", num_classes=3, frames=8, size=32, dropout=0.0)
        optimiser = torch.optim.AdamW(model.parameters(), 1e-3)
        start = time.perf_counter()
        for _ in range(30):
            model.train()
            order = torch.randperm(len(x))
            for first in range(0, len(x), 8):
                batch = order[first : first + 8]
                loss = F.cross_entropy(model(x[batch]), y[batch])
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
        model.eval()
        with torch.no_grad():
            accuracy = float((model(x).argmax(1) == y).float().mean())
        print(
            f"-- seed {seed}: trained 30 epochs in {time.perf_counter() - start:.1f} s, "
            f"training accuracy {accuracy:.2f}"
        )
        for name, net in (("trained", model), ("untrained", untrained)):
            start = time.perf_counter()
            table = explain.score_methods(net, dataset, masks, methods, method_kwargs=variants, progress=False)
            onset = explain.score_methods(net, dataset, masks, ("ig",), method_kwargs=onset_variants, progress=False)
            onset = onset[onset.method == "ig"].assign(method="ig_onset_baseline")
            summary = explain.summarise_scores(pd_concat(table, onset), by=("method",))
            print(f"   {name} ({time.perf_counter() - start:.1f} s):")
            print(
                summary[["method", "mass_in_region", "mass_over_chance", "pointing_hit", "spearman_attention"]]
                .round(3)
                .to_string(index=False)
            )


def pd_concat(*tables):
    import pandas as pd

    return pd.concat(tables, ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("cost", "scores", "all"), default="all")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--child-ig", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_ig is not None:
        torch.set_num_threads(args.threads)
        print(json.dumps(_one_ig_run(json.loads(args.child_ig), batch=2, steps=32)))
        return
    if args.part in ("cost", "all"):
        cost(args.threads)
    if args.part in ("scores", "all"):
        scores(args.threads, args.seeds)


if __name__ == "__main__":
    main()
