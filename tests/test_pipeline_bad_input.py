"""Bad input to `merkit pipeline`, typed as a user types it: one line naming the parameter or file, exit 2, no
traceback, and nothing created or left half-written; Ctrl-C mid-run; what a rerun cleans up.

The quick cases call the command in this process (``merkit.cli.main``: what ``merkit`` runs) against the kit's own
notebooks; nothing in them starts a kernel. The cases that execute notebooks use throwaway ones
(tests/helpers_pipeline.py) and are marked slow.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import nbformat
import pytest
from helpers_pipeline import COMMON, make_notebook

from merkit.cli import EXIT_USAGE, main, system_error_message
from merkit.pipeline.notebook_files import WIDGET_VIEW
from merkit.pipeline.run import NOTEBOOK_DIR, PipelineError, run_pipeline
from merkit.runlock import LOCK_FILE

REPO = Path(__file__).resolve().parent.parent


def _one_line_error(capsys: pytest.CaptureFixture[str], code: int, expected: int = EXIT_USAGE) -> str:
    """The one ``merkit: error:`` line of a refused command (and nothing that looks like a traceback)."""
    err = capsys.readouterr().err
    assert code == expected, err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("merkit: error:")]
    assert len(errors) == 1, err
    return errors[0]


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


# ------------------------------------------------------------------------------- checked before anything exists


def test_a_typo_in_a_parameter_leaves_no_run_directory(tmp_path: Path, capsys):
    run_dir = tmp_path / "runs" / "typo"
    code = main(["pipeline", "--run-dir", str(run_dir), "-p", "epoch", "1"])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE and "Traceback" not in err
    assert err.splitlines() == [line for line in err.splitlines() if line.startswith("merkit: error:")]  # only that
    assert "unknown parameter epoch" in err and "epochs" in err
    assert not run_dir.exists() and not (tmp_path / "runs").exists()


def test_a_typo_into_an_earlier_run_directory_changes_nothing_there(tmp_path: Path, capsys):
    """A run directory that has run before (its lock file is there, free): the early lock is taken and given back,
    the typo is refused, and every file in it is as it was."""
    run_dir = tmp_path / "run"
    (run_dir / "notebooks").mkdir(parents=True)
    (run_dir / LOCK_FILE).write_text("")
    (run_dir / "metrics.json").write_text('{"uf1": 0.5}')
    before = _tree(run_dir)
    code = main(["pipeline", "--run-dir", str(run_dir), "-p", "epoch", "1"])
    assert "unknown parameter epoch" in _one_line_error(capsys, code)
    assert _tree(run_dir) == before


def test_a_pipeline_into_a_folder_with_a_foreign_index_page_stops_before_any_notebook(tmp_path: Path, capsys):
    """The report is the pipeline's last step: a user's own index.html there stops the run before it starts,
    rather than after every notebook has run."""
    run_dir = tmp_path / "mine"
    run_dir.mkdir()
    (run_dir / "index.html").write_text("<h1>mine</h1>")
    before = _tree(run_dir)
    code = main(["pipeline", "--run-dir", str(run_dir), "--notebooks", "01_data"])
    line = _one_line_error(capsys, code)
    assert "index.html" in line and "not written by merkit report" in line
    assert _tree(run_dir) == before


def test_an_unknown_dataset_is_named_as_unknown_before_any_kernel(tmp_path: Path, capsys):
    run_dir = tmp_path / "run"
    started = time.monotonic()
    code = main(["pipeline", "--run-dir", str(run_dir), "-p", "dataset", "casme"])
    elapsed = time.monotonic() - started
    line = _one_line_error(capsys, code)
    assert "unknown dataset 'casme'" in line and "known: " in line and "casme2" in line
    assert "did you mean 'casme2'" in line and "data_root" not in line
    assert not run_dir.exists()
    # No kernel started: a kernel alone takes seconds. Generous, for a loaded shared machine.
    assert elapsed < 30


def test_a_real_dataset_without_a_data_root_is_refused_before_any_kernel(tmp_path: Path, capsys):
    run_dir = tmp_path / "run"
    code = main(["pipeline", "--run-dir", str(run_dir), "-p", "dataset", "casme2"])
    line = _one_line_error(capsys, code)
    assert "dataset 'casme2' needs data_root" in line and "synthme" in line
    assert not run_dir.exists()


def test_a_setting_the_recipe_fixes_is_refused_naming_both(tmp_path: Path, capsys):
    """``-p epochs 4`` beside the published recipe would silently train 800 epochs: refused before any kernel."""
    run_dir = tmp_path / "run"
    yaml_file = NOTEBOOK_DIR / "ststnet_published.yaml"
    args = ["--params", str(yaml_file), "-p", "data_root", str(tmp_path), "-p", "epochs", "4"]
    code = main(["pipeline", "--run-dir", str(run_dir), *args])
    line = _one_line_error(capsys, code)
    assert "recipe 'published' fixes epochs 800" in line and "the given epochs 4" in line and "recipe ''" in line
    assert not run_dir.exists()


def test_a_setting_equal_to_the_recipes_and_an_unknown_recipe(tmp_path: Path, capsys):
    from merkit.pipeline.params import ParameterError, check_recipe

    check_recipe({"recipe": "published", "epochs": 800, "lr": 5e-5, "seed": 3})  # agrees, or not fixed by it
    check_recipe({"recipe": "", "epochs": 4})  # no recipe: the parameters as given
    with pytest.raises(ParameterError, match="unknown training recipe 'publish'; known: ''"):
        check_recipe({"recipe": "publish"})


# ------------------------------------------------------------------------------- the CLI's boundary: OS errors


def test_a_run_directory_under_a_regular_file_is_one_line_naming_it(tmp_path: Path, capsys):
    (tmp_path / "results").write_text("a file, not a folder")
    run_dir = tmp_path / "results" / "run1"
    code = main(["pipeline", "--run-dir", str(run_dir)])
    line = _one_line_error(capsys, code)
    assert str(run_dir) in line and "Not a directory" in line
    assert (tmp_path / "results").read_text() == "a file, not a folder"


def test_a_run_directory_the_system_refuses_is_one_line_naming_it(capsys):
    """Even root may not create a folder at the top of sysfs (PermissionError; EROFS where sysfs is read-only)."""
    if not Path("/sys/kernel").is_dir():
        pytest.skip("no /sys here: nowhere that refuses root a folder")
    run_dir = Path("/sys") / f"merkit-test-{uuid.uuid4().hex[:8]}"
    code = main(["pipeline", "--run-dir", str(run_dir)])
    line = _one_line_error(capsys, code)
    assert str(run_dir) in line
    assert not run_dir.exists()


def test_a_params_file_that_is_not_utf8_is_named(tmp_path: Path, capsys):
    params = tmp_path / "mine.yaml"
    params.write_bytes("model: meranet  # réglage\n".encode("latin-1"))
    run_dir = tmp_path / "run"
    code = main(["pipeline", "--run-dir", str(run_dir), "--params", str(params)])
    line = _one_line_error(capsys, code)
    assert str(params) in line and "UTF-8" in line
    assert not run_dir.exists()


def test_a_notebook_that_is_not_a_notebook_is_named(tmp_path: Path, capsys):
    notebooks = tmp_path / "nbs"
    notebooks.mkdir()
    (notebooks / "01_latin.ipynb").write_bytes('{"cells": [], "note": "été"}'.encode("latin-1"))
    (notebooks / "02_text.ipynb").write_text("print('hello')\n")
    for name in ("01_latin", "02_text"):
        code = main(
            ["pipeline", "--notebook-dir", str(notebooks), "--notebooks", name, "--run-dir", str(tmp_path / "r")]
        )
        line = _one_line_error(capsys, code)
        assert str(notebooks / f"{name}.ipynb") in line and "not" in line
    assert not (tmp_path / "r").exists()


def test_system_error_message_names_the_file_or_says_how_to_find_it():
    try:
        Path("/nonexistent-merkit-dir/x").read_text()
    except OSError as err:
        assert system_error_message(err) == "/nonexistent-merkit-dir/x: No such file or directory (FileNotFoundError)"
    try:
        "caf\xe9".encode("latin-1").decode("utf-8")
    except UnicodeDecodeError as err:
        message = system_error_message(err)
        assert "utf-8" in message and "0xe9" in message and "--debug" in message and "\n" not in message
    assert system_error_message(OSError("disk on fire\nsecond line")) == "OSError: disk on fire second line"


# ------------------------------------------------------------------------------- runs: Ctrl-C, reruns, widgets


def _pipeline(run_dir: Path, notebooks: Path, *names: str) -> subprocess.Popen:
    """`merkit pipeline` in a session of its own, as a terminal runs it (Ctrl-C goes to the whole group)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for name in ("MERKIT_RUN_LOCK", "MERKIT_PROGRESS_FILE"):
        env.pop(name, None)
    command = ["pipeline", "--notebook-dir", str(notebooks), "--notebooks", *names, "--run-dir", str(run_dir)]
    return subprocess.Popen(
        [sys.executable, "-m", "merkit.cli", *command],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # A terminal's Ctrl-C finds SIGINT at its default; a test worker may have left it ignored (a library in an
        # earlier test), a child inherits that, and Python then never raises KeyboardInterrupt: reset it here.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


@pytest.mark.slow
def test_ctrl_c_mid_run_prints_no_kernel_traceback_and_the_run_resumes(tmp_path: Path):
    notebooks = tmp_path / "nbs"
    make_notebook(
        notebooks / "01_quick.ipynb", COMMON, "import pathlib\npathlib.Path(run_dir, 'quick').write_text('1')"
    )
    make_notebook(
        notebooks / "02_wait.ipynb",
        COMMON,
        "import pathlib, time\n"
        "pathlib.Path(run_dir, 'waiting').write_text('1')\n"
        "while not pathlib.Path(run_dir, 'go').exists():\n"
        "    time.sleep(0.1)",
    )
    run_dir = tmp_path / "run"
    process = _pipeline(run_dir, notebooks, "01_quick", "02_wait")
    try:
        deadline = time.monotonic() + 300
        while not (run_dir / "waiting").exists():
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "02_wait never started"
            time.sleep(0.2)
        os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        _, err = process.communicate(timeout=300)  # a hang guard, generous for a loaded machine
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 130, err
    assert err.rstrip().endswith("merkit: interrupted"), err
    assert "Traceback" not in err and "zmq" not in err, err
    assert not (run_dir / "notebooks" / "02_wait.ipynb").exists()

    (run_dir / "go").write_text("1")
    again = _pipeline(run_dir, notebooks, "01_quick", "02_wait")
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert "01_quick: skipped" in err and "02_wait: running" in err
    assert (run_dir / "notebooks" / "02_wait.ipynb").is_file()
    assert not list(run_dir.rglob("*.partial.*")) and not list(run_dir.rglob("*.tmp"))


@pytest.mark.slow
def test_a_successful_rerun_removes_the_failed_copies_and_no_copy_keeps_widget_state(tmp_path: Path):
    notebooks = tmp_path / "nbs"
    make_notebook(
        notebooks / "01_bar.ipynb",
        COMMON + "fail: bool = False  # fail after the progress bar\n",
        "from tqdm.auto import tqdm\nfor _ in tqdm(range(3), desc='steps'):\n    pass",
        "assert not fail, 'asked to fail'",
    )
    run_dir = tmp_path / "run"
    out = run_dir / "notebooks"
    with pytest.raises(PipelineError, match="asked to fail"):
        run_pipeline(run_dir, {"fail": True}, ["01_bar"], notebook_dir=notebooks, progress=False)
    failed = out / "01_bar.failed.ipynb"
    assert failed.is_file() and (out / "01_bar.failed.html").is_file()
    _assert_no_widget_state(failed)

    run_pipeline(run_dir, {"fail": False}, ["01_bar"], notebook_dir=notebooks, progress=False)
    assert not failed.exists() and not (out / "01_bar.failed.html").exists()
    assert (out / "01_bar.ipynb").is_file() and (out / "01_bar.html").is_file()
    _assert_no_widget_state(out / "01_bar.ipynb")


def _assert_no_widget_state(path: Path) -> None:
    node = nbformat.read(str(path), as_version=4)
    assert "widgets" not in node.metadata
    outputs = [output for cell in node.cells for output in cell.get("outputs", [])]
    assert not [output for output in outputs if WIDGET_VIEW in output.get("data", {})]
    # the bar stays readable as text (a widget's output carries a text/plain form)
    assert any("steps" in str(output.get("data", {}).get("text/plain", "")) for output in outputs), outputs
