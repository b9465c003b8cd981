"""merkit.pipeline.run: parameter checking, per-notebook parameters, atomic outputs, failures, resume, HTML + index.

The notebooks here are throwaway ones written by the tests (tests/helpers_pipeline.py); the kit's own notebooks
are executed in tests/test_notebooks.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from helpers_pipeline import COMMON, make_notebook, recorder_notebook

from merkit.pipeline.run import (
    ParameterError,
    PipelineError,
    check_parameters,
    format_metric,
    headline_metrics,
    load_params_file,
    parse_override,
    resolve_notebooks,
    run_pipeline,
)

pytestmark = pytest.mark.slow


@pytest.fixture()
def two_notebooks(tmp_path: Path) -> list[Path]:
    first = recorder_notebook(
        tmp_path / "nbs" / "01_first.ipynb",
        "epochs: int = 3  # number of epochs\nsubject: str = 'none'  # a subject id\n",
    )
    second = recorder_notebook(
        tmp_path / "nbs" / "02_second.ipynb",
        "lr: float = 0.1  # learning rate\nflag: bool = False  # a switch\n",
        (
            "pathlib.Path(run_dir, 'metrics.json')"
            ".write_text(json.dumps({'uf1': 0.75, 'uar': 0.5, 'per_class': {'a': 1}}))"
        ),
    )
    return [first, second]


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


# ---------------------------------------------------------------------------------------------- parameters


def test_parse_override_reads_yaml_scalars():
    assert parse_override("3") == 3
    assert parse_override("1e-3") == pytest.approx(0.001)
    assert parse_override("0.5") == 0.5
    assert parse_override("true") is True
    assert parse_override("meranet") == "meranet"


def test_load_params_file_reads_mapping_and_rejects_lists(tmp_path: Path):
    good = tmp_path / "p.yaml"
    good.write_text("epochs: 2\nmodel: stcnn\n")
    assert load_params_file(good) == {"epochs": 2, "model": "stcnn"}
    bad = tmp_path / "bad.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ParameterError, match="mapping"):
        load_params_file(bad)
    with pytest.raises(ParameterError, match="does not exist"):
        load_params_file(tmp_path / "missing.yaml")


def test_check_parameters_splits_by_notebook_and_coerces_by_declared_type(two_notebooks):
    per = check_parameters(
        {"epochs": "4", "subject": "006", "lr": "1e-2", "flag": "true", "run_dir": "/r", "data_root": ""},
        two_notebooks,
        raw_names={"epochs", "subject", "lr", "flag"},
    )
    first, second = two_notebooks
    assert per[first] == {"epochs": 4, "subject": "006", "run_dir": "/r", "data_root": ""}
    assert per[second] == {"lr": pytest.approx(0.01), "flag": True, "run_dir": "/r", "data_root": ""}


def test_check_parameters_rejects_unknown_name_listing_valid_ones(two_notebooks):
    with pytest.raises(ParameterError) as info:
        check_parameters({"epoch": 3}, two_notebooks)
    message = str(info.value)
    assert "epoch" in message and "unknown" in message
    for valid in ("epochs", "lr", "flag", "subject", "run_dir", "data_root"):
        assert valid in message


def test_check_parameters_rejects_wrong_type(two_notebooks):
    with pytest.raises(ParameterError, match="epochs.*integer"):
        check_parameters({"epochs": "three"}, two_notebooks, raw_names={"epochs"})
    with pytest.raises(ParameterError, match="flag.*true or false"):
        check_parameters({"flag": 3}, two_notebooks)


def test_resolve_notebooks_names_the_missing_one(tmp_path: Path):
    with pytest.raises(ParameterError, match="nope"):
        resolve_notebooks(["nope"], tmp_path)


# ---------------------------------------------------------------------------------------------- execution


def test_unknown_parameter_runs_nothing(tmp_path: Path, two_notebooks):
    run_dir = tmp_path / "run"
    with pytest.raises(ParameterError, match="unknown parameter"):
        run_pipeline(run_dir, {"learning_rate": 0.1}, two_notebooks, progress=False)
    assert not list(run_dir.glob("**/*.ipynb"))


def test_missing_data_root_is_refused_before_running(tmp_path: Path, two_notebooks):
    run_dir = tmp_path / "run"
    with pytest.raises(ParameterError, match="data_root .*does not exist"):
        run_pipeline(run_dir, {"data_root": str(tmp_path / "no_such_dataset")}, two_notebooks, progress=False)
    assert not list(run_dir.glob("**/*.ipynb"))


def test_pipeline_runs_in_order_with_own_parameters_html_and_index(tmp_path: Path, two_notebooks):
    run_dir = tmp_path / "run"
    data_root = tmp_path / "data"
    data_root.mkdir()
    result = run_pipeline(
        run_dir, {"epochs": 7, "lr": 0.01, "data_root": str(data_root)}, two_notebooks, progress=False, cell_timeout=60
    )
    first = _read(run_dir / "01_first.json")
    second = _read(run_dir / "02_second.json")
    # each notebook got only what it declares (plus run_dir / data_root), with absolute paths
    assert first == {
        "run_dir": str(run_dir.resolve()),
        "data_root": str(data_root.resolve()),
        "epochs": 7,
        "subject": "none",
    }
    assert second == {
        "run_dir": str(run_dir.resolve()),
        "data_root": str(data_root.resolve()),
        "lr": 0.01,
        "flag": False,
    }
    assert [run.status for run in result.notebooks] == ["executed", "executed"]
    for name in ("01_first", "02_second"):
        executed = nbformat.read(str(run_dir / "notebooks" / f"{name}.ipynb"), as_version=4)
        assert any("injected-parameters" in c.metadata.get("tags", []) for c in executed.cells)
        assert "<html" in (run_dir / "notebooks" / f"{name}.html").read_text().lower()
    assert not list((run_dir / "notebooks").glob(".*partial*"))
    index = result.index_html.read_text()
    assert "01_first.html" in index and "02_second.html" in index
    assert "uf1" in index and "0.7500" in index
    assert result.metrics["uf1"] == 0.75


def test_failure_names_notebook_and_cell_and_keeps_earlier_outputs(tmp_path: Path, two_notebooks):
    run_dir = tmp_path / "run"
    run_pipeline(run_dir, {}, two_notebooks, progress=False)
    first_output = run_dir / "notebooks" / "01_first.ipynb"
    before = first_output.read_bytes()

    broken = make_notebook(
        tmp_path / "nbs" / "02_second.ipynb",
        COMMON + "lr: float = 0.1  # learning rate\n",
        "x = 1",
        "y = x + 1",
        "raise ValueError('the data went missing')",
        "z = 3",
    )
    with pytest.raises(PipelineError) as info:
        run_pipeline(run_dir, {"lr": 0.5}, [two_notebooks[0], broken], progress=False, cell_timeout=60)
    err = info.value
    assert err.notebook == "02_second.ipynb"
    assert err.cell == 5  # markdown, parameters, x, y, raise: counted in the source notebook, not papermill's copy
    assert err.ename == "ValueError" and "the data went missing" in err.evalue
    message = str(err)
    assert "02_second.ipynb" in message and "cell 5" in message and "ValueError" in message
    # the earlier notebook was resumed, not rewritten; the failed one is kept aside, not as a finished output
    assert first_output.read_bytes() == before
    assert (run_dir / "notebooks" / "02_second.failed.ipynb").is_file()
    assert not (run_dir / "notebooks" / "02_second.ipynb").exists()
    assert "failed" in (run_dir / "index.html").read_text()


def test_failure_in_first_run_leaves_earlier_notebook_output(tmp_path: Path, two_notebooks):
    run_dir = tmp_path / "run"
    broken = make_notebook(tmp_path / "nbs" / "02_broken.ipynb", COMMON, "1 / 0")
    with pytest.raises(PipelineError, match="ZeroDivisionError"):
        run_pipeline(run_dir, {}, [two_notebooks[0], broken], progress=False)
    executed = nbformat.read(str(run_dir / "notebooks" / "01_first.ipynb"), as_version=4)
    assert executed.cells[-1].execution_count is not None
    assert all(o.get("output_type") != "error" for c in executed.cells for o in c.get("outputs", []))
    assert (run_dir / "01_first.json").is_file()
    assert (run_dir / "notebooks" / "01_first.html").is_file()


def test_cell_timeout_names_the_slow_cell(tmp_path: Path):
    slow = make_notebook(tmp_path / "01_slow.ipynb", COMMON, "a = 1", "import time\ntime.sleep(30)")
    with pytest.raises(PipelineError) as info:
        run_pipeline(tmp_path / "run", {}, [slow], progress=False, cell_timeout=2)
    assert info.value.notebook == "01_slow.ipynb"
    assert info.value.cell == 4
    assert "time.sleep" in str(info.value) or "import time" in str(info.value)


def test_resume_skips_unchanged_and_reruns_from_the_first_change(tmp_path: Path, two_notebooks):
    run_dir = tmp_path / "run"
    run_pipeline(run_dir, {"epochs": 1, "lr": 0.1}, two_notebooks, progress=False)
    again = run_pipeline(run_dir, {"epochs": 1, "lr": 0.1}, two_notebooks, progress=False)
    assert [r.status for r in again.notebooks] == ["skipped", "skipped"]
    changed_second = run_pipeline(run_dir, {"epochs": 1, "lr": 0.2}, two_notebooks, progress=False)
    assert [r.status for r in changed_second.notebooks] == ["skipped", "executed"]
    assert _read(run_dir / "02_second.json")["lr"] == 0.2
    changed_first = run_pipeline(run_dir, {"epochs": 2, "lr": 0.2}, two_notebooks, progress=False)
    assert [r.status for r in changed_first.notebooks] == ["executed", "executed"]
    forced = run_pipeline(run_dir, {"epochs": 2, "lr": 0.2}, two_notebooks, progress=False, resume=False)
    assert [r.status for r in forced.notebooks] == ["executed", "executed"]


def test_headline_metrics_puts_uf1_and_uar_first():
    flat = headline_metrics(
        {"loss": 0.3, "per_class": {"a": 0.1}, "uar": 0.6, "uf1": 0.7, "model": "meranet", "fold_seconds": {"01": 3.0}}
    )
    assert [key for key, _ in flat][:3] == ["uf1", "uar", "model"]
    assert ("per_class.a", 0.1) in flat
    assert not any("seconds" in key for key, _ in flat)


def test_format_metric_adds_the_bootstrap_interval():
    metrics = {"pooled": {"uf1": 0.75}, "ci": {"uf1": {"low": 0.6, "high": 0.9}}}
    assert format_metric(metrics, "pooled.uf1", 0.75) == "0.7500 [0.6000, 0.9000]"
    assert format_metric(metrics, "n_folds", 12) == "12"
