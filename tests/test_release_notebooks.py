"""The four notebooks on every emulated real release, read with that dataset's own builder and yaml.

A user points ``data_root`` at their copy as the release ships it and picks the dataset and its class mapping;
every other parameter keeps the notebooks' defaults except the tiny sizes that keep the run short. Releases
with known sheet faults (SAMM's apexes, CAS(ME)^3's seven rows, and so the MEGC2019 composite that holds SAMM)
run with the default ``on_problem`` (fix): the declared errata and repairs are applied and listed in
``data_problems.csv``. An emulated release carries the kit's side files with the true motion regions, which
04_explain scores against; the CASME II cropped copy goes without them, as a real copy does, so 04_explain takes
the path every real dataset takes (mass per facial region, attention-vs-attribution agreement, no scores against
a true motion region).

The six runs are independent (own release folder, own run directory, store keys of their own), so one module
fixture runs the selected ones two at a time, each in a subprocess with one torch thread (the test machine has
two cores; kernel start-up, not arithmetic, is most of a tiny run); each test then checks its own release.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pandas as pd
import papermill
import pytest

from merkit.explain import REGION_NAMES
from merkit.pipeline.run import DEFAULT_ORDER, NOTEBOOK_DIR

REPO = Path(__file__).resolve().parent.parent

TINY = {"frames": 8, "size": 32}
EXTRA = {
    "epochs": 1,
    "batch_size": 4,
    "k": 3,
    "compare": "",
    "n_boot": 20,
    "n_explain": 2,
    "ig_steps": 4,
    "viewer_clips": 2,
    "methods": "ig,attention",
    "device": "cpu",
}
NOTEBOOKS = [name for name in DEFAULT_ORDER if (NOTEBOOK_DIR / f"{name}.ipynb").exists()]


@dataclass(frozen=True)
class Release:
    """One emulated release and the parameters a user with that copy would give."""

    kind: str
    folder: str  # where the user unpacked it
    params: dict
    options: dict = field(default_factory=dict)  # write_release options (layout, scale)
    path_prefix: str = ""  # every manifest path starts with it (which release folder was read)
    motion_masks: bool = True  # False: the kit's true motion regions are removed, as a real copy has none


#: The releases with declared sheet faults: the default on_problem fixes them and data_problems.csv lists them.
FAULTY = {"samm", "casme3a", "megc2019"}
RELEASES = {
    "casme2_raw": Release(  # raw frames: 04_explain's regions sit in the Haar crop of 01_data (checked below)
        "casme2",
        "CASME2",
        {"dataset": "casme2", "label_map": "casme2_5class", "methods": "ig,gradcam,attention"},
        {"layout": "raw"},
        "CASME2_RAW_selected/",
    ),
    "casme2_cropped": Release(  # without motion masks: 04_explain's real-data path, regions in the dataset's crop
        "casme2",
        "CASME2",
        {"dataset": "casme2", "label_map": "casme2_5class", "methods": "ig,gradcam,attention"},
        {"layout": "cropped", "scale": 0.5},
        "Cropped/",
        motion_masks=False,
    ),
    "samm": Release("samm", "SAMM", {"dataset": "samm", "label_map": "samm_5class"}, {"scale": 0.25}),
    "smic_hs": Release("smic_hs", "SMIC", {"dataset": "smic_hs", "label_map": "smic_3class"}, {"scale": 0.5}),
    "casme3a": Release("casme3a", "CASME3", {"dataset": "casme3a", "label_map": "casme3a_3class"}, {"scale": 0.25}),
    "megc2019": Release(
        "megc2019",
        "MEGC2019",
        {"dataset": "megc2019", "label_map": "megc2019_3class", "evaluation": "megc2019"},
        {"layout": "cropped", "scale": 0.5},
    ),
}


def _declared() -> set[str]:
    return set().union(*(papermill.inspect_notebook(str(NOTEBOOK_DIR / f"{n}.ipynb")) for n in NOTEBOOKS))


def _no_errors(notebook: Path) -> None:
    nb = nbformat.read(str(notebook), as_version=4)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            assert output.get("output_type") != "error", "".join(output.get("traceback", []))[-2000:]


#: What one subprocess does: write the release as it ships, then run the notebooks on it as a user would.
WORKER = """
import json, shutil, sys
from pathlib import Path
from merkit.data.synthetic import write_release
from merkit.pipeline.run import run_pipeline
job = json.loads(sys.argv[1])
root = write_release(job["kind"], Path(job["folder"]), small=True, progress=False, **job["options"])
if not job["motion_masks"]:  # keep release.json (small: counts not checked), drop what a real copy never has
    (root / "synthme_truth" / "motion_regions.csv").unlink()
    shutil.rmtree(root / "synthme_truth" / "masks")
result = run_pipeline(Path(job["run_dir"]), {"data_root": str(root), **job["params"]}, job["notebooks"],
                      cell_timeout=300, progress=False)
Path(job["statuses"]).write_text(json.dumps([run.status for run in result.notebooks]))
"""
AT_ONCE = 2
RUN_LIMIT_S = 1200


@dataclass
class ReleaseRun:
    """What one release's subprocess left: its run directory, exit status, output and notebook statuses."""

    run_dir: Path
    returncode: int
    log: str
    statuses: list[str]


def _release_params(release: Release, declared: set[str]) -> dict:
    return {**TINY, **{k: v for k, v in EXTRA.items() if k in declared}, **release.params}


def _selected(request: pytest.FixtureRequest) -> list[str]:
    """The releases whose test is selected in this session (``-k samm`` runs only SAMM's)."""
    chosen = {
        item.callspec.params["name"]
        for item in request.session.items
        if item.module is request.module and "name" in getattr(getattr(item, "callspec", None), "params", {})
    }
    return [name for name in RELEASES if name in chosen]


@pytest.fixture(scope="module")
def release_runs(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, ReleaseRun]:
    declared = _declared()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
    }
    pending = list(_selected(request))
    running: dict[str, tuple[subprocess.Popen, float]] = {}
    runs: dict[str, ReleaseRun] = {}
    folders: dict[str, Path] = {}
    try:
        while pending or running:
            while pending and len(running) < AT_ONCE:
                name = pending.pop(0)
                folder = folders[name] = tmp_path_factory.mktemp(name)
                release = RELEASES[name]
                job = {
                    "kind": release.kind,
                    "folder": str(folder / release.folder),
                    "options": release.options,
                    "motion_masks": release.motion_masks,
                    "params": _release_params(release, declared),
                    "notebooks": NOTEBOOKS,
                    "run_dir": str(folder / "run"),
                    "statuses": str(folder / "statuses.json"),
                }
                with (folder / "log.txt").open("w") as log:  # a file, not a pipe: a full pipe would stall the run
                    process = subprocess.Popen(
                        [sys.executable, "-c", WORKER, json.dumps(job)],
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                running[name] = (process, time.monotonic())
            for name, (process, started) in list(running.items()):
                if process.poll() is None and time.monotonic() - started > RUN_LIMIT_S:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
                if process.poll() is not None:
                    del running[name]
                    folder = folders[name]
                    statuses = folder / "statuses.json"
                    runs[name] = ReleaseRun(
                        folder / "run",
                        process.returncode,
                        (folder / "log.txt").read_text(),
                        json.loads(statuses.read_text()) if statuses.is_file() else [],
                    )
            time.sleep(0.5)
    finally:
        for process, _ in running.values():  # interrupted: leave nothing running
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return runs


@pytest.mark.slow
@pytest.mark.parametrize("name", list(RELEASES))
def test_all_four_notebooks_run_on_an_emulated_release(name: str, release_runs: dict[str, ReleaseRun]):
    release = RELEASES[name]
    declared = _declared()
    assert set(release.params) <= declared, "every release parameter is a notebook parameter"
    run = release_runs[name]
    assert run.returncode == 0, run.log[-3000:]
    assert run.statuses == ["executed"] * len(NOTEBOOKS)
    run_dir = run.run_dir
    for notebook in NOTEBOOKS:
        _no_errors(run_dir / "notebooks" / f"{notebook}.ipynb")

    manifest = pd.read_csv(run_dir / "manifest.csv", dtype={"subject": str})
    expected_datasets = {"casme2", "samm", "smic_hs"} if release.kind == "megc2019" else {release.kind}
    assert set(manifest["dataset"]) == expected_datasets
    assert manifest["path"].str.startswith(release.path_prefix).all()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    # one fold per subject (per dataset and subject for the composite)
    assert metrics["n_folds"] == manifest.groupby(["dataset", "subject"]).ngroups
    assert 0 <= metrics["pooled"]["uf1"] <= 1
    # 04_explain on any dataset: mass per facial region over time for every method, the attention-vs-attribution
    # agreement, in the crop 01_data made (raw frames: the automatic Haar crop; a cropped release: as it ships)
    methods = set(_release_params(release, declared)["methods"].split(","))
    regions = pd.read_csv(run_dir / "explain_region_scores.csv")
    assert set(regions["method"]) == methods and regions["clip"].nunique() == EXTRA["n_explain"]
    assert set(regions["region"]) == {*REGION_NAMES, "other"}
    assert set(pd.read_csv(run_dir / "explain_agreement.csv")["method"]) == methods - {"attention"}
    sources = pd.read_csv(run_dir / "explain_region_sources.csv")
    assert len(sources) == EXTRA["n_explain"]
    if name == "casme2_raw":
        assert set(sources["crop_method"]) == {"haar"}
        assert (run_dir / "figures" / "01_crop_box.png").stat().st_size > 1000
    if name == "casme2_cropped":
        assert set(sources["crop_method"]) == {"dataset"}
    for figure in ("04_regions", "04_region_mass", "04_region_heatmap", "04_agreement", "04_montage", "04_overlay"):
        assert (run_dir / "figures" / f"{figure}.png").stat().st_size > 1000
    # scores against the true motion region only where the kit's side files give it (never on a real copy)
    assert (run_dir / "explain_scores.csv").is_file() == release.motion_masks
    if release.kind in FAULTY:  # the default on_problem (fix) applied the declared errata or repairs
        problems = pd.read_csv(run_dir / "data_problems.csv")
        assert problems["action"].str.startswith("fixed").any(), "what was fixed is written to the run directory"
