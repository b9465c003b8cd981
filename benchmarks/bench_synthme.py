"""SynthME generation: wall time of the default dataset (target: well under a minute), where the time goes,
disk size, codec error, and how learnable the default is.

    .venv/bin/python benchmarks/bench_synthme.py               # default config, 3 repeats
    .venv/bin/python benchmarks/bench_synthme.py --repeats 1 --size 128 --n-frames 60

Prints, for the config: median generation time and clips/s over ``--repeats`` fresh trees; the share of
one clip's time spent drawing vs encoding; the tree's size on disk; the mean absolute error of decoded
frames against the in-memory drawing (JPEG folders and mp4v videos separately); and the leave-one-subject-out
accuracy of a logistic regression on raw apex pixels vs on the apex - onset difference (chance = 1/3).
Single runs jitter 2-4x on a shared CPU, so medians are quoted.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from merkit.data.io import read_clip
from merkit.data.synthetic import (
    EMOTIONS,
    SynthMEConfig,
    generate_synthme,
    linear_probe_accuracies,
    list_clips,
    render_clip,
)


def generation_seconds(config: SynthMEConfig, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            generate_synthme(Path(tmp) / "synthme", config, progress=False)
            times.append(time.perf_counter() - start)
    return times


def tree_megabytes(root: Path) -> float:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 1e6


def codec_errors(config: SynthMEConfig, root: Path) -> dict[str, list[float]]:
    errors: dict[str, list[float]] = {"jpg/png folders": [], "mp4v videos": []}
    for spec in list_clips(config):
        drawn = render_clip(config, spec.subject, spec.sample).frames.astype(float)
        read = read_clip(root / spec.path).frames.astype(float)
        errors["mp4v videos" if spec.is_video else "jpg/png folders"].append(float(np.abs(read - drawn).mean()))
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="fresh generations to time (default: %(default)s)")
    for field in ("seed", "n_subjects", "clips_per_subject", "n_frames", "size"):
        parser.add_argument(f"--{field.replace('_', '-')}", type=int, default=None, help="override SynthMEConfig")
    args = parser.parse_args()
    overrides = {k: v for k, v in vars(args).items() if k != "repeats" and v is not None}
    config = dataclasses.replace(SynthMEConfig(), **overrides)
    n_clips = config.n_subjects * config.clips_per_subject
    print(f"config: {config}")

    times = generation_seconds(config, args.repeats)
    median = statistics.median(times)
    print(
        f"generate: median {median:.2f} s over {len(times)} runs ({', '.join(f'{t:.2f}' for t in times)}), "
        f"{n_clips / median:.1f} clips/s, {n_clips * config.n_frames / median:.0f} frames/s"
    )

    start = time.perf_counter()
    for spec in list_clips(config):
        render_clip(config, spec.subject, spec.sample)
    draw = time.perf_counter() - start
    print(
        f"drawing every clip in memory only: {draw:.2f} s ({draw / median:.0%} of a median generation; "
        "the rest is encoding jpg/mp4, masks and the sheet)"
    )

    with tempfile.TemporaryDirectory() as tmp:
        root = generate_synthme(Path(tmp) / "synthme", config, progress=False)
        print(f"tree on disk: {tree_megabytes(root):.1f} MB")
        for kind, errors in codec_errors(config, root).items():
            if errors:
                print(
                    f"decoded vs drawn, mean |error| (grey levels) {kind}: median {statistics.median(errors):.2f}, "
                    f"max {max(errors):.2f} over {len(errors)} clips"
                )

    apex_accuracy, change_accuracy = linear_probe_accuracies(config)
    print(
        f"LOSO logistic regression, raw 32x32 grey pixels: apex only {apex_accuracy:.2f}, "
        f"apex - onset {change_accuracy:.2f} (chance {1 / len(EMOTIONS):.2f}); "
        f"ratio {change_accuracy / max(apex_accuracy, 1e-9):.2f}"
    )


if __name__ == "__main__":
    main()
