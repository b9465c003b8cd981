"""Run time of every exercise's solution, and of every notebook, in the instructor build of a lab.

    .venv/bin/python benchmarks/bench_teach.py                                 # the notebooks' defaults (~10 min idle)
    .venv/bin/python benchmarks/bench_teach.py --params notebooks/demo.yaml   # the `make demo` settings
    .venv/bin/python benchmarks/bench_teach.py -p epochs 2 -p leakage_seeds 2 --out /tmp/lab
    .venv/bin/python benchmarks/bench_teach.py --read /tmp/lab                # print the times of a finished build

Builds the lab with `merkit.pipeline.teach.build` (papermill, solutions included) into ``--out`` (a temporary folder by
default) and prints, per notebook, its wall time and the run time of each exercise's solution (the durations
papermill stores per cell), flagging any solution over the issue's one minute. The load average before and
after is printed too: on a shared machine the times are upper bounds.
The target: every solution under 60 s on 2 cores at the notebooks' default settings (docs/teaching.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pandas as pd
import yaml

from merkit.pipeline import teach

LIMIT_S = 60.0


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def report(out: Path) -> pd.DataFrame:
    """Print (and return) the solution times of the executed notebooks under ``out/instructor``."""
    tables = []
    for path in sorted((out / "instructor").glob("*.ipynb")):
        node = nbformat.read(str(path), as_version=4)
        wall = node.metadata.get("papermill", {}).get("duration")
        times = teach.solution_times(node, path.stem)
        tables.append(times)
        wall_text = "n/a" if wall is None else f"{wall:.1f} s"
        print(
            f"{path.stem}: notebook {wall_text}, solutions "
            + ", ".join(
                f"ex{row.exercise} {row.seconds:.1f} s{' (OVER 60 s)' if row.seconds > LIMIT_S else ''}"
                for row in times.itertuples()
            )
        )
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    if len(table):
        slowest = table.loc[table["seconds"].idxmax()]
        print(
            f"slowest solution: {slowest['notebook']} ex{slowest['exercise']} {slowest['seconds']:.1f} s; "
            f"{int((table['seconds'] > LIMIT_S).sum())} over {LIMIT_S:.0f} s"
        )
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", action="append", default=[], help="YAML of notebook parameters (repeatable)")
    parser.add_argument("-p", "--param", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    parser.add_argument("--out", help="build folder (default: a temporary one, removed afterwards)")
    parser.add_argument("--read", help="only print the times of an existing build folder")
    parser.add_argument("--notebooks", nargs="+", default=list(teach.TEACH_ORDER))
    args = parser.parse_args(argv)
    if args.read:
        report(Path(args.read))
        return 0
    params: dict = {}
    for file in args.params:
        params.update(yaml.safe_load(Path(file).read_text()) or {})
    params.update(dict(args.param))
    print(f"cpus {os.cpu_count()}, load average before {_loadavg()}, params {params or 'the notebooks defaults'}")
    with tempfile.TemporaryDirectory(prefix="bench_teach_") as scratch:
        out = Path(args.out) if args.out else Path(scratch) / "lab"
        started = time.perf_counter()
        teach.build(out, params, args.notebooks, progress=False, resume=False, raw_names=dict(args.param).keys())
        print(f"whole build {time.perf_counter() - started:.0f} s, load average after {_loadavg()}")
        report(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
