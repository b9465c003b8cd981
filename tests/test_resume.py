"""Pipeline resume that knows what changed: a notebook is skipped only when its source, its parameters, the kit
(version, commit, sources) and the data's manifest are unchanged; otherwise it re-runs and says why."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers_pipeline import COMMON, make_notebook

import merkit
from merkit.pipeline.run import kit_identity, run_pipeline

DATA_PARAMETERS = 'dataset: str = "synthme"  # dataset key\nprotocol: str = "synthme_3class"  # class mapping\n'


@pytest.fixture()
def notebook(tmp_path: Path) -> Path:
    return make_notebook(
        tmp_path / "nb" / "01_count.ipynb",
        COMMON + DATA_PARAMETERS,
        "import pathlib\nlog = pathlib.Path(run_dir, 'runs.txt')\n"
        "log.write_text(log.read_text() + 'x' if log.exists() else 'x')",
    )


@pytest.fixture()
def licensed_copy(tmp_path: Path) -> Path:
    from merkit.data.synthetic import SynthMEConfig, generate_synthme

    return generate_synthme(
        tmp_path / "copy", SynthMEConfig(n_subjects=3, clips_per_subject=3, n_frames=8, size=32), progress=False
    )


def test_changed_kit_version_reruns_and_says_why(
    tmp_path: Path, notebook: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
):
    run_dir = tmp_path / "run"
    run_pipeline(run_dir, {}, [notebook], progress=False)
    assert [r.status for r in run_pipeline(run_dir, {}, [notebook], progress=False).notebooks] == ["skipped"]
    monkeypatch.setattr(merkit, "__version__", "99.0.0")
    again = run_pipeline(run_dir, {}, [notebook], progress=True)
    assert again.notebooks[0].status == "executed"
    assert "version changed" in again.notebooks[0].reason and "99.0.0" in again.notebooks[0].reason
    assert "99.0.0" in capsys.readouterr().err  # said on the terminal, not only recorded
    assert (run_dir / "runs.txt").read_text() == "xx"


def test_changed_manifest_reruns_and_says_why(tmp_path: Path, notebook: Path, licensed_copy: Path):
    import openpyxl

    run_dir = tmp_path / "run"
    params = {"data_root": str(licensed_copy)}
    run_pipeline(run_dir, params, [notebook], progress=False)
    assert run_pipeline(run_dir, params, [notebook], progress=False).notebooks[0].status == "skipped"
    sheet = licensed_copy / "SynthME-coding.xlsx"
    book = openpyxl.load_workbook(sheet)
    rows = list(book.active.iter_rows(min_row=2))
    rows[0][8].value = "surprise" if rows[0][8].value != "surprise" else "happiness"  # 'Estimated Emotion'
    book.save(sheet)
    again = run_pipeline(run_dir, params, [notebook], progress=False)
    assert again.notebooks[0].status == "executed" and "manifest changed" in again.notebooks[0].reason


def test_changed_sources_and_parameters_are_named(tmp_path: Path, notebook: Path, monkeypatch: pytest.MonkeyPatch):
    import merkit.pipeline.run as pipeline

    run_dir = tmp_path / "run"
    run_pipeline(run_dir, {"protocol": "synthme_3class"}, [notebook], progress=False)
    edited = {**kit_identity(), "sources": "0" * 16}  # the same commit with an uncommitted edit of merkit/
    monkeypatch.setattr(pipeline, "kit_identity", lambda: edited)
    again = run_pipeline(run_dir, {"protocol": "synthme_2class"}, [notebook], progress=False)
    reason = again.notebooks[0].reason
    assert "sources changed" in reason and "protocol 'synthme_3class' -> 'synthme_2class'" in reason


def test_state_of_an_older_kit_reruns(tmp_path: Path, notebook: Path):
    run_dir = tmp_path / "run"
    run_pipeline(run_dir, {}, [notebook], progress=False)
    (run_dir / "notebooks" / "pipeline_state.json").write_text('{"01_count": "0123abcd"}')  # the old format
    again = run_pipeline(run_dir, {}, [notebook], progress=False)
    assert again.notebooks[0].status == "executed" and "older kit" in again.notebooks[0].reason
