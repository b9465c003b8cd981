"""The STSTNet baseline through ``merkit pipeline``, end to end: the README's flow-folder command on a generated set.

    .venv/bin/python benchmarks/bench_recipe_pipeline.py                                   # the published recipe
    .venv/bin/python benchmarks/bench_recipe_pipeline.py --params notebooks/ststnet_fast.yaml
    .venv/bin/python benchmarks/bench_recipe_pipeline.py --quick                           # a few minutes
    .venv/bin/python benchmarks/bench_recipe_pipeline.py -p precision bf16                 # any other parameter

What it does:
1. Writes the generated composite-shaped flow set of ``bench_recipe.py`` (``bench_folds.generated_flow_set`` at
   ``bench_recipe.CLASS_STRENGTH``: 442 images, 68 subjects, the composite's class mix, 28×28×3) as a community
   flow folder (``<subject>_<sample> .png`` + the composite listing; CASME II, SAMM and SMIC-HS subjects in the
   real folder's counts, 24 / 28 / 16, named as those releases name them), with
   :func:`merkit.data.flow.export_flow_release`.
2. Runs the README's command on it, in a child process, as a user would::

       merkit pipeline --run-dir RUN --params notebooks/ststnet_published.yaml -p data_root FOLDER -p listing CSV

   all four notebooks (01_data … 04_explain) with the yaml's settings and the ``-p`` given here. ``--quick`` adds
   ``-p recipe fast -p n_explain 2`` (a recipe fixes the epochs: ``-p epochs`` alone would not shorten it).
3. Prints the wall time of the whole command and of each notebook (the pipeline's own lines), the executor the run
   chose (``executor.json``) and the pooled UF1/UAR (``metrics.json``), and the machine's load before and after.

The set is generated: the time is what the command takes on data of the composite's shape; the UF1 says nothing
about the real folder (the generated set's class field is weak on purpose, so that no recipe is perfect).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _machine import load_average
from bench_folds import generated_flow_set
from bench_recipe import CLASS_STRENGTH

ROOT = Path(__file__).resolve().parents[1]
#: The real composite's subjects per dataset (MEGC2019: 24 CASME II, 28 SAMM, 16 SMIC-HS; 68 in all).
COMPOSITE_SUBJECTS = (("casme2", 24), ("samm", 28), ("smic_hs", 16))


def composite_index(subjects: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    """An export index for the generated set: each generated subject becomes a subject of one dataset, named as
    that release names them (``sub01``, ``006``, ``s01``), with one sample name per clip."""
    names = []  # generated subject i -> (dataset, the release's subject name)
    for dataset, count in COMPOSITE_SUBJECTS:
        for number in range(1, count + 1):
            name = {"casme2": f"sub{number:02d}", "samm": f"{number + 5:03d}"}.get(dataset, f"s{number:02d}")
            names.append((dataset, name))
    assert len(names) == len(np.unique(subjects)), "the generated set must have the composite's 68 subjects"
    rows, clips = [], {}
    for subject, label in zip(subjects.tolist(), labels.tolist()):
        dataset, name = names[subject]
        n = clips[subject] = clips.get(subject, 0) + 1
        sample = {"casme2": f"EP{n:02d}_01f", "samm": f"{name}_{n}_1"}.get(dataset, f"{name}_ne_{n:02d}")
        rows.append({"dataset": dataset, "subject": name, "sample": sample, "label": int(label)})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", default=str(ROOT / "notebooks" / "ststnet_published.yaml"))
    parser.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "merkit_bench_recipe_pipeline"))
    parser.add_argument("--quick", action="store_true", help="-p recipe fast -p n_explain 2: a few minutes")
    parser.add_argument("-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"), help="passed on")
    args = parser.parse_args()

    from merkit.data.flow import export_flow_release

    out = Path(args.out)
    label = "".join(f"_{name}-{value}" for name, value in args.p) + ("_quick" if args.quick else "")
    folder, run_dir = out / "flow_folder", out / f"run_{Path(args.params).stem}{label}"
    if run_dir.exists():
        sys.exit(f"{run_dir} exists: remove it (a rerun would resume it, and the time would not be the whole run's)")
    images, labels, subjects = generated_flow_set(class_strength=CLASS_STRENGTH)
    listing = export_flow_release(folder, images, composite_index(subjects, labels))
    command = [
        sys.executable, "-m", "merkit.cli", "pipeline", "--run-dir", str(run_dir), "--params", args.params,
        "-p", "data_root", str(folder), "-p", "listing", str(listing),
    ]  # fmt: skip
    if args.quick:
        command += ["-p", "recipe", "fast", "-p", "n_explain", "2"]
    for name, value in args.p:
        command += ["-p", name, value]
    print(f"load before: {load_average()}; {len(images)} images, {len(np.unique(subjects))} subjects in {folder}")
    print(" ".join(command), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    executor = json.loads((run_dir / "executor.json").read_text())
    pooled = json.loads((run_dir / "metrics.json").read_text())["pooled"]
    print(f"load after: {load_average()}")
    print(f"executor: {executor['executor']} ({executor['reason']}); precision {executor['precision']['precision']}")
    print(
        f"pipeline {Path(args.params).name}{label}: UF1 {pooled['uf1']:.3f} "
        f"UAR {pooled['uar']:.3f}, all four notebooks in {seconds:.0f} s ({seconds / 60:.1f} min)"
    )


if __name__ == "__main__":
    main()
