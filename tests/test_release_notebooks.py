"""The four notebooks on every emulated real release, read with that dataset's own builder and yaml.

A user points ``data_root`` at their copy as the release ships it and picks the dataset and its class mapping;
every other parameter keeps the notebooks' defaults except the tiny sizes that keep the run short. Releases
with known sheet faults (SAMM's apexes, CAS(ME)^3's seven rows, and so the MEGC2019 composite that holds SAMM)
stop by default and name the faults; the user then runs them with ``on_problem=fix``, as here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pandas as pd
import papermill
import pytest

from merkit.data.synthetic import write_release
from merkit.pipeline import DEFAULT_ORDER, NOTEBOOK_DIR, run_pipeline

TINY = {"frames": 8, "size": 32}
EXTRA = {"epochs": 1, "batch_size": 4, "k": 3, "compare": "", "n_boot": 20, "n_explain": 2, "ig_steps": 4,
         "viewer_clips": 2, "methods": "ig,attention", "device": "cpu"}
NOTEBOOKS = [name for name in DEFAULT_ORDER if (NOTEBOOK_DIR / f"{name}.ipynb").exists()]


@dataclass(frozen=True)
class Release:
    """One emulated release and the parameters a user with that copy would give."""

    kind: str
    folder: str  # where the user unpacked it
    params: dict
    options: dict = field(default_factory=dict)  # write_release options (layout, scale)
    path_prefix: str = ""  # every manifest path starts with it (which release folder was read)


RELEASES = {
    "casme2_raw": Release("casme2", "CASME2", {"dataset": "casme2", "protocol": "casme2_5class"},
                          {"layout": "raw"}, "CASME2_RAW_selected/"),
    "casme2_cropped": Release("casme2", "CASME2", {"dataset": "casme2", "protocol": "casme2_5class"},
                              {"layout": "cropped", "scale": 0.5}, "Cropped/"),
    "samm": Release("samm", "SAMM", {"dataset": "samm", "protocol": "samm_5class", "on_problem": "fix"},
                    {"scale": 0.25}),
    "smic_hs": Release("smic_hs", "SMIC", {"dataset": "smic_hs", "protocol": "smic_3class"}, {"scale": 0.5}),
    "casme3a": Release("casme3a", "CASME3", {"dataset": "casme3a", "protocol": "casme3a_3class", "on_problem": "fix"},
                       {"scale": 0.25}),
    "megc2019": Release("megc2019", "MEGC2019", {"dataset": "megc2019", "protocol": "megc2019_3class",
                                                 "evaluation": "megc2019", "on_problem": "fix"},
                        {"layout": "cropped", "scale": 0.5}),
}


def _declared() -> set[str]:
    return set().union(*(papermill.inspect_notebook(str(NOTEBOOK_DIR / f"{n}.ipynb")) for n in NOTEBOOKS))


def _no_errors(notebook: Path) -> None:
    nb = nbformat.read(str(notebook), as_version=4)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            assert output.get("output_type") != "error", "".join(output.get("traceback", []))[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(RELEASES))
def test_all_four_notebooks_run_on_an_emulated_release(name: str, tmp_path: Path):
    release = RELEASES[name]
    root = write_release(release.kind, tmp_path / release.folder, small=True, progress=False, **release.options)
    declared = _declared()
    params = {"data_root": str(root), **release.params, **TINY}
    assert set(release.params) <= declared, "every release parameter is a notebook parameter"
    params.update({k: v for k, v in EXTRA.items() if k in declared})
    run_dir = tmp_path / "run"
    result = run_pipeline(run_dir, params, NOTEBOOKS, cell_timeout=300, progress=False)
    assert [r.status for r in result.notebooks] == ["executed"] * len(NOTEBOOKS)
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
    if release.params.get("on_problem") == "fix":
        problems = pd.read_csv(run_dir / "data_problems.csv")
        assert problems["action"].str.startswith("fixed").any(), "what was fixed is written to the run directory"
