"""The `merkit` command line: help for every command, one-line errors with non-zero exits, a pipeline run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers_pipeline import COMMON, make_notebook, recorder_notebook

from merkit.cli import EXIT_FAILED, EXIT_USAGE, build_parser, main

COMMANDS = ("pipeline", "demo", "prepare", "predict", "composite", "models")


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `python -m merkit.cli` as a user would (a separate process: exit code and stderr are real)."""
    return subprocess.run(
        [sys.executable, "-m", "merkit.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def _assert_one_line_error(result: subprocess.CompletedProcess, code: int, *needles: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("merkit: error:")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: merkit " + command)
    assert len(out.splitlines()) > 3


def test_top_level_help_lists_every_command():
    help_text = build_parser().format_help()
    for command in COMMANDS:
        assert command in help_text


@pytest.fixture()
def notebook_dir(tmp_path: Path) -> Path:
    recorder_notebook(tmp_path / "nbs" / "01_a.ipynb", "epochs: int = 3  # number of epochs\n")
    recorder_notebook(
        tmp_path / "nbs" / "02_b.ipynb",
        "model: str = 'meranet'  # model name\n",
        "pathlib.Path(run_dir, 'metrics.json').write_text(json.dumps({'uf1': 0.625, 'uar': 0.5}))",
    )
    return tmp_path / "nbs"


@pytest.mark.slow
def test_unknown_parameter_exits_2_with_one_line(tmp_path: Path, notebook_dir: Path):
    result = run_cli(
        "pipeline",
        "--notebook-dir",
        str(notebook_dir),
        "--notebooks",
        "01_a",
        "02_b",
        "--run-dir",
        str(tmp_path / "run"),
        "-p",
        "epoch",
        "3",
    )
    _assert_one_line_error(result, EXIT_USAGE, "unknown parameter epoch", "epochs", "model")
    assert not (tmp_path / "run" / "notebooks" / "01_a.ipynb").exists()


@pytest.mark.slow
def test_missing_data_root_exits_2(tmp_path: Path, notebook_dir: Path):
    result = run_cli(
        "pipeline",
        "--notebook-dir",
        str(notebook_dir),
        "--notebooks",
        "01_a",
        "--run-dir",
        str(tmp_path / "run"),
        "-p",
        "data_root",
        str(tmp_path / "nowhere"),
    )
    _assert_one_line_error(result, EXIT_USAGE, "data_root", "nowhere", "does not exist")


@pytest.mark.slow
def test_params_file_and_override_run_and_print_index(tmp_path: Path, notebook_dir: Path):
    params = tmp_path / "p.yaml"
    params.write_text("epochs: 5\nmodel: stcnn\n")
    result = run_cli(
        "pipeline",
        "--notebook-dir",
        str(notebook_dir),
        "--notebooks",
        "01_a",
        "02_b",
        "-q",
        "--run-dir",
        str(tmp_path / "run"),
        "--params",
        str(params),
        "-p",
        "epochs",
        "9",
    )
    assert result.returncode == 0, result.stderr
    assert '"epochs": 9' in (tmp_path / "run" / "01_a.json").read_text()
    assert '"model": "stcnn"' in (tmp_path / "run" / "02_b.json").read_text()
    assert "uf1" in result.stdout and "0.6250" in result.stdout
    assert f"index: {(tmp_path / 'run' / 'index.html').resolve()}" in result.stdout


@pytest.mark.slow
def test_failing_notebook_exits_1_naming_notebook_and_cell(tmp_path: Path, notebook_dir: Path):
    make_notebook(notebook_dir / "02_b.ipynb", COMMON, "ok = True", "raise RuntimeError('no faces found')")
    result = run_cli(
        "pipeline",
        "--notebook-dir",
        str(notebook_dir),
        "--notebooks",
        "01_a",
        "02_b",
        "-q",
        "--run-dir",
        str(tmp_path / "run"),
    )
    _assert_one_line_error(result, EXIT_FAILED, "02_b.ipynb", "cell 4", "RuntimeError", "no faces found")
    assert (tmp_path / "run" / "notebooks" / "01_a.ipynb").is_file()


def test_list_params_prints_declarations(tmp_path: Path, notebook_dir: Path, capsys):
    code = main(["pipeline", "--notebook-dir", str(notebook_dir), "--notebooks", "01_a", "02_b", "--list-params"])
    assert code == 0
    out = capsys.readouterr().out
    assert "epochs: int = 3  # number of epochs" in out
    assert "model: str = 'meranet'  # model name" in out


def test_models_prints_the_registry(capsys):
    from merkit.models import list_models

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in list_models():
        assert name in out


def test_prepare_generates_synthme_and_reports_store(tmp_path: Path, capsys):
    code = main(
        [
            "prepare",
            "--data-root",
            str(tmp_path / "synth"),
            "--subjects",
            "2",
            "--clips-per-subject",
            "3",
            "--frames",
            "4",
            "--size",
            "16",
            "-q",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "6 clips, 2 subjects" in out and "SynthME generated" in out and "(6, 4, 16, 16, 1)" in out


def test_prepare_missing_data_root_is_one_line(tmp_path: Path, capsys):
    code = main(
        ["prepare", "--dataset", "casme2", "--data-root", str(tmp_path / "CASME2"), "--label-map", "casme2_5class"]
    )
    assert code == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith("merkit: error:") and "CASME2" in err and len(err.strip().splitlines()) == 1


def test_prepare_flow_stores_onset_apex_flow_images(tmp_path: Path, capsys):
    from merkit.data.store import ClipStore

    code = main(
        [
            "prepare",
            "--data-root",
            str(tmp_path / "synth"),
            "--subjects",
            "2",
            "--clips-per-subject",
            "2",
            "--frames",
            "4",
            "--size",
            "16",
            "--flow",
            "farneback",
            "-q",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "flow (4, 28, 28, 3) (farneback)" in out
    store_path = out.split("store: ")[1].split()[0]
    store = ClipStore.load(store_path)
    assert store.flow_config.method == "farneback" and store.flow.shape == (4, 28, 28, 3)
    assert float(abs(store.flow[..., :2].astype("float32")).max()) > 0  # SynthME clips move between onset and apex


def test_prepare_unknown_flow_method_exits_2(tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["prepare", "--data-root", str(tmp_path / "synth"), "--flow", "lucas"])
    assert info.value.code == EXIT_USAGE
    assert "lucas" in capsys.readouterr().err
