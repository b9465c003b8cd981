"""SynthME release mode: time and size of the emulated releases the tests and users write.

    .venv/bin/python benchmarks/bench_releases.py                 # the test trees, 3 repeats
    .venv/bin/python benchmarks/bench_releases.py --repeats 1 --full   # also full-size (scale 1) trees

Targets: a full-count MEGC2019 root at ``--scale 0.1`` well under 30 s; a scaled ``--small`` tree in a few
seconds (a scale-1 one writes ~2000 real-size frames: 10 s). Prints the median wall and CPU seconds over ``--repeats``
fresh trees, the ratio to the target, clips written and megabytes on disk. Single runs jitter 2-4x on a shared CPU, so
medians are quoted.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from merkit.data.synthetic import write_release

CASES = [  # (label, kind, options, target seconds)
    ("megc2019 full counts, scale 0.1", "megc2019", {"scale": 0.1, "layout": "cropped"}, 30.0),
    ("casme2 small, scale 0.25", "casme2", {"small": True, "scale": 0.25}, 5.0),
    # ~2000 real-size frames (640x480 raw + the face crops): JPEG encoding alone is a few seconds
    ("casme2 small, scale 1 (640x480 raw + cropped)", "casme2", {"small": True}, 10.0),
    ("smic_hs small, scale 0.2", "smic_hs", {"small": True, "scale": 0.2}, 5.0),
    ("casme3a full counts, scale 0.05", "casme3a", {"scale": 0.05}, 30.0),
]
FULL = [("casme2 full, scale 1", "casme2", {}, 600.0), ("samm full, scale 1", "samm", {}, 600.0)]


def measure(kind: str, options: dict, repeats: int) -> tuple[float, float, int, float]:
    walls, cpus = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            wall, cpu = time.perf_counter(), time.process_time()
            root = write_release(kind, Path(tmp) / "release", progress=False, **options)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
            files = [p for p in root.rglob("*") if p.is_file()]
            clips = sum(1 for line in (root / "synthme_truth" / "motion_regions.csv").open()) - 1
            megabytes = sum(p.stat().st_size for p in files) / 1e6
    return statistics.median(walls), statistics.median(cpus), clips, megabytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--full", action="store_true", help="also the full-size trees (minutes)")
    args = parser.parse_args()
    for label, kind, options, target in CASES + (FULL if args.full else []):
        wall, cpu, clips, megabytes = measure(kind, options, args.repeats)
        print(
            f"{label:50s} wall {wall:6.1f} s  cpu {cpu:6.1f} s  (target {target:.0f} s: {wall / target:4.2f}x)  "
            f"{clips} clip folders  {megabytes:7.1f} MB"
        )


if __name__ == "__main__":
    main()
