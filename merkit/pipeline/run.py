"""Run the notebooks in order with papermill: the batch face of the kit (`merkit pipeline`, `make demo`).

A pipeline run executes ``notebooks/01_data … 04_explain`` (or any list of notebooks) into one run directory::

    run_dir/
      notebooks/01_data.ipynb  01_data.html  …   executed copies and their HTML export
      notebooks/pipeline_state.json               what each executed notebook was run with (for resume)
      pipeline_params.yaml                         the parameters of the last run, as given
      index.html                                   the report: scores, figures, data, config, notebooks
      …                                            whatever the notebooks write (metrics.json, figures/, …)

Contract:

- Every parameter name is checked against ``papermill.inspect_notebook`` of all notebooks BEFORE anything runs:
  papermill itself only warns about an unknown name and the notebook's own default silently wins.
  Values are checked against the declared type (``epochs: int = 3`` refuses ``"three"``).
- Each notebook receives only the parameters it declares, plus ``run_dir`` and ``data_root`` (absolute paths).
- Executed notebooks are written atomically: papermill writes into a hidden partial file that is renamed into
  place on success, so a failed run never clobbers the notebooks that ran before it. The failed notebook is
  kept as ``NN_name.failed.ipynb`` (and ``.failed.html``) to read the error in context, until the notebook
  runs again (a success removes them). Executed copies hold no widget state (progress bars are dead there).
- A failing cell raises :class:`PipelineError` naming the notebook, the cell (position in the source
  notebook, 1-based), the exception type and message. Bad parameters raise :class:`ParameterError`.
- ``resume=True`` skips a notebook only when its executed copy exists and its source, its parameters, the
  kit (version, git commit, and a hash of the merkit sources, which catches uncommitted edits) and the
  manifest hash of the data are all unchanged, and every notebook before it was skipped too (later notebooks
  read earlier artefacts). Otherwise it re-runs and the pipeline says why (``NotebookRun.reason``).
- One pipeline per run directory: the run directory's lock (`merkit.runlock`) is taken before anything runs;
  a second pipeline (or ``run_protocol``) into it fails at once with `RunLockedError` naming the holder; a
  lock left by a killed run is taken over. Temporary files a killed run left in the run directory are removed.
- Progress: the current notebook is printed, and while it runs the fold runner's progress file
  (`merkit.progress`) is polled into one line: folds done / total, the fold group in training and its epoch
  (the bar moves with a group's epochs), and an ETA. Papermill's cell bar is off.
- Exercise solutions (cells tagged ``solution``, see `merkit.pipeline.teach`) are left out by default: a pipeline run
  executes the student view (exercise prompts and empty answer cells), so `make demo` does not pay for the
  solutions and a run on a real dataset never fails on a teaching assert. ``solutions=True`` (what
  ``merkit teach build`` uses for the instructor copies) executes them too. Cell positions in errors always
  refer to the committed notebook.

Rooms: this module runs the notebooks and decides what to re-run; the parameters and their checks are in
:mod:`merkit.pipeline.params`, the executed notebooks as files (student view, failing cell, HTML) in
:mod:`merkit.pipeline.notebook_files`, the headline metrics in :mod:`merkit.report.headline`. Their names are importable
from here as before.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml

from merkit._io import atomic_write_text, stable_hash
from merkit.errors import MerkitRuntimeError
from merkit.pipeline.notebook_files import (
    SOLUTION_TAG,
    export_html,
    failing_cell,
    output_name,
    remove_failed_copies,
    remove_leftovers,
    strip_widget_state,
    without_solutions,
)
from merkit.pipeline.params import (
    COMMON_PARAMETERS,
    DEFAULT_ORDER,
    DEMO_PARAMS,
    NOTEBOOK_DIR,
    ParameterError,
    check_dataset,
    check_parameters,
    check_paths,
    check_recipe,
    load_params_file,
    notebook_parameters,
    parse_override,
    resolve_notebooks,
)
from merkit.progress import PROGRESS_ENV, PROGRESS_FILE, read_progress
from merkit.report.headline import format_metric, headline_metrics, read_metrics
from merkit.report.notebook_run import NotebookRun
from merkit.runlock import LOCK_ENV, RunLock, RunLockedError

__all__ = [
    "PipelineError",
    "RunLockedError",
    "NotebookRun",
    "PipelineResult",
    "run_pipeline",
    "kit_identity",
    "manifest_identity",
    "rerun_reasons",
    "write_index",
    # the pipeline's pieces, importable from here as before (merkit.pipeline.params, merkit.pipeline.notebook_files,
    # merkit.report.headline):
    "ParameterError",
    "check_parameters",
    "load_params_file",
    "parse_override",
    "resolve_notebooks",
    "notebook_parameters",
    "check_paths",
    "check_dataset",
    "NOTEBOOK_DIR",
    "DEFAULT_ORDER",
    "COMMON_PARAMETERS",
    "DEMO_PARAMS",
    "SOLUTION_TAG",
    "export_html",
    "without_solutions",
    "remove_leftovers",
    "read_metrics",
    "headline_metrics",
    "format_metric",
]

#: Seconds one cell may run before the pipeline gives up on it (papermill has no limit unless told).
DEFAULT_CELL_TIMEOUT = 1800
STATE_FILE = "pipeline_state.json"
STATE_VERSION = 2
# Environment for the notebook kernels: no messages a user cannot act on (debugpy's frozen-modules warning,
# jupyter's path-migration notice).
_QUIET_KERNEL_ENV = {"PYDEVD_DISABLE_FILE_VALIDATION": "1", "JUPYTER_PLATFORM_DIRS": "1"}


class PipelineError(MerkitRuntimeError):
    """A notebook failed while executing.

    Attributes name the notebook, the failing cell (1-based position in the source notebook, ``None`` when
    unknown), the exception type/message raised in the kernel and the path of the partial executed notebook.
    """

    def __init__(
        self,
        notebook: str,
        cell: int | None,
        ename: str,
        evalue: str,
        output: Path | None = None,
        source_line: str = "",
    ):
        self.notebook = notebook
        self.cell = cell
        self.ename = ename
        self.evalue = evalue
        self.output = output
        self.source_line = source_line
        where = f"cell {cell}" if cell is not None else "an unknown cell"
        message = f"notebook {notebook} failed at {where}"
        if source_line:
            message += f" ({source_line!r})"
        message += f": {ename}: {evalue}"
        if output is not None:
            message += f" [executed copy with the error: {output}]"
        super().__init__(message)


@dataclass
class PipelineResult:
    """What `run_pipeline` did: the notebooks, the index page, and the run's headline metrics (may be empty)."""

    run_dir: Path
    notebooks: list[NotebookRun]
    index_html: Path
    metrics: dict[str, Any]


# ----------------------------------------------------------------------------------------------------------
# Execution
# ----------------------------------------------------------------------------------------------------------


def kit_identity() -> dict[str, Any]:
    """What version of the kit runs: ``version``, git ``commit`` (None outside a checkout) and ``sources``, a
    hash of every ``merkit/**/*.py`` (so an uncommitted edit, or an install without git, still shows)."""
    import merkit
    from merkit.training.runs import git_commit

    package = Path(merkit.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes() + b"\0")
    return {
        "version": merkit.__version__,
        "commit": git_commit(package).get("commit"),
        "sources": digest.hexdigest()[:16],
    }


def manifest_identity(params: Mapping[str, Any]) -> str:
    """A hash standing for the data the parameters describe: the manifest hash of ``data_root``'s sheet and
    frames, or, for SynthME generated under the cache (empty ``data_root``), a hash of its config (the tree
    is a function of it and of the kit, which `kit_identity` covers). ``"unreadable: …"`` when the manifest
    cannot be built (the first notebook then fails with the full error)."""
    from merkit.config import DataConfig

    try:
        data = DataConfig.of_params(params)
        if not data.data_root and data.dataset == "synthme":
            return "synthme:" + stable_hash(data.synthme_kwargs(), spaced=True)
        from merkit.data.datasets import build_manifest
        from merkit.data.manifest import manifest_hash

        return manifest_hash(build_manifest(data.dataset, Path(data.data_root), data.label_map or None))
    except Exception as err:  # noqa: BLE001 - any failure is the notebook's to report in full
        return f"unreadable: {type(err).__name__}"


def _state_entry(source: Path, params: Mapping[str, Any], kit: Mapping[str, Any], manifest: str) -> dict[str, Any]:
    return {
        "version": STATE_VERSION,
        "source": hashlib.sha256(source.read_bytes()).hexdigest(),
        "parameters": json.loads(json.dumps(dict(params), sort_keys=True, default=str)),
        "kit": dict(kit),
        "manifest": manifest,
    }


def rerun_reasons(saved: Any, current: Mapping[str, Any]) -> list[str]:
    """Why a notebook whose last run is recorded as ``saved`` must run again under ``current`` ([] = skip)."""
    if not isinstance(saved, Mapping) or saved.get("version") != STATE_VERSION:
        return ["no record of what it last ran with" if saved is None else "recorded by an older kit"]
    reasons = []
    if saved.get("source") != current["source"]:
        reasons.append("its source changed")
    before, now = saved.get("parameters", {}), current["parameters"]
    changed = sorted(k for k in set(before) | set(now) if before.get(k) != now.get(k))
    if changed:
        reasons.append("parameters changed: " + ", ".join(f"{k} {before.get(k)!r} -> {now.get(k)!r}" for k in changed))
    kit_before, kit_now = saved.get("kit", {}), current["kit"]
    if kit_before.get("version") != kit_now["version"]:
        reasons.append(f"the kit's version changed ({kit_before.get('version')} -> {kit_now['version']})")
    if kit_before.get("commit") and kit_now["commit"] and kit_before["commit"] != kit_now["commit"]:
        reasons.append(f"the kit's git commit changed ({kit_before['commit'][:10]} -> {kit_now['commit'][:10]})")
    elif kit_before.get("sources") != kit_now["sources"]:
        reasons.append("the kit's sources changed (merkit/ edited since)")
    if saved.get("manifest") != current["manifest"]:
        reasons.append(f"the data's manifest changed ({saved.get('manifest')} -> {current['manifest']})")
    return reasons


def run_pipeline(
    run_dir: str | os.PathLike,
    params: Mapping[str, Any] | None = None,
    notebooks: Iterable[str | os.PathLike] = DEFAULT_ORDER,
    *,
    notebook_dir: str | os.PathLike | None = None,
    kernel: str = "python3",
    cell_timeout: float | None = DEFAULT_CELL_TIMEOUT,
    resume: bool = True,
    progress: bool = True,
    raw_names: Iterable[str] = (),
    solutions: bool = False,
) -> PipelineResult:
    """Execute ``notebooks`` in order into ``run_dir`` with ``params``; see the module docstring for the contract.

    ``solutions`` executes the exercise solutions too (default: they are left out of the executed copies).

    ``params`` must not hold ``run_dir`` (it is the first argument); ``data_root`` may be empty (the notebooks
    then generate SynthME) or an existing directory. Raises `RunLockedError` at once when another live process
    holds the run directory, `ParameterError` before anything runs, and `PipelineError` when a notebook fails
    (earlier notebooks' executed copies stay in place). ``progress`` prints the current notebook and the fold
    progress of 03_loso on stderr.
    """
    # Every check that needs no run directory comes first: a typo leaves no empty directory or lock file behind.
    sources, params, per_notebook = _checked_parameters(
        Path(run_dir).resolve(), params, notebooks, notebook_dir, raw_names
    )
    # The report is written last: a page there that the report did not write stops the run before it starts.
    from merkit.report.index import check_report_page

    check_report_page(Path(run_dir) / "index.html")
    with RunLock(run_dir) as lock:
        if lock.stale and progress:
            _say(
                f"took over the lock of run directory {lock.run_dir} left by pid {lock.stale.get('pid')} on "
                f"{lock.stale.get('host')} (started {lock.stale.get('started')}), which is no longer running"
            )
        if progress:  # said once every check has passed: a refused run never claims to be running
            _say(f"running {len(sources)} notebook(s) into {lock.run_dir}")
        return _run_locked(lock, sources, params, per_notebook, kernel, cell_timeout, resume, progress, solutions)


def _say(text: str) -> None:
    import sys

    print(f"merkit: {text}", file=sys.stderr, flush=True)


class _ProgressLine:
    """Poll ``run_dir/progress.json`` in a thread and show it as one updating bar: folds done / total, the fold
    group in training and its epoch (the bar moves with the epochs), and the runner's ETA in tqdm's format."""

    def __init__(self, path: Path, label: str, since: float, enabled: bool):
        import threading

        self.path, self.label, self.since = path, label, since
        self.bar: Any = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True) if enabled else None
        if self.thread is not None:
            self.thread.start()

    def _poll(self) -> None:
        from tqdm.auto import tqdm

        seen = None
        while not self.stop.wait(0.5):
            record = read_progress(self.path)
            if not record or record.get("updated", 0) < self.since:
                continue
            group = record.get("group") or {}
            key = (record.get("stage"), record.get("done"), record.get("total"), group.get("index"), group.get("epoch"))
            if key == seen:
                continue
            seen = key
            if self.bar is None or self.bar.desc != f"{self.label} {record.get('stage', '')}":
                if self.bar is not None:
                    self.bar.close()
                self.bar = tqdm(
                    total=record.get("total"),
                    desc=f"{self.label} {record.get('stage', '')}",
                    bar_format="{desc}: |{bar}|{postfix}",
                    dynamic_ncols=True,
                )
            done = int(record.get("done", 0))
            text = f"{done}/{record.get('total')} folds"  # ", 3/68 folds · group 1/3 · epoch 312/800, ETA 12:34"
            share = 0.0
            if group:
                text += f" · group {group['index']}/{group['count']} · epoch {group['epoch']}/{group['epochs']}"
                share = group["folds"] * group["epoch"] / max(1, group["epochs"])
            eta = record.get("eta_seconds")
            text += f", ETA {tqdm.format_interval(eta) if eta is not None else '?'}"
            self.bar.n = done + share  # the bar advances with a group's epochs, not only when folds finish
            self.bar.set_postfix_str(text, refresh=False)
            self.bar.refresh()

    def close(self) -> None:
        if self.thread is not None:
            self.stop.set()
            self.thread.join(timeout=2)
        if self.bar is not None:
            self.bar.close()


def _checked_parameters(
    run_dir: Path,
    params: Mapping[str, Any] | None,
    notebooks: Iterable[str | os.PathLike],
    notebook_dir: str | os.PathLike | None,
    raw_names: Iterable[str],
) -> tuple[list[Path], dict[str, Any], dict[Path, dict[str, Any]]]:
    """The notebooks, the full parameters and each notebook's own, all checked; reads the notebooks, writes nothing.

    Raises `ParameterError` for an unknown name, a bad value, a missing data_root or an unknown dataset."""
    params = dict(params or {})
    if "run_dir" in params and Path(params.pop("run_dir")).resolve() != run_dir:
        raise ParameterError("run_dir is given twice with different values (as the run directory and as a parameter)")
    sources = resolve_notebooks(notebooks, notebook_dir)
    params["run_dir"] = str(run_dir)
    params.setdefault("data_root", "")
    per_notebook = check_parameters(params, sources, raw_names)
    if params["data_root"]:
        params["data_root"] = str(Path(params["data_root"]).expanduser().resolve())
        for own in per_notebook.values():
            own["data_root"] = params["data_root"]
    listing = str(params.get("listing") or "")
    if (
        listing and Path(listing).expanduser().is_file()
    ):  # a flow folder's listing named from here: absolute for the kernels
        params["listing"] = str(Path(listing).expanduser().resolve())
        for own in per_notebook.values():
            if "listing" in own:
                own["listing"] = params["listing"]
    check_paths(params)
    check_dataset(params)
    check_recipe({name: value for own in per_notebook.values() for name, value in own.items()})
    device = str(params.get("device") or "auto")
    if device not in ("auto", "cpu"):  # a device this machine lacks fails here, not in a kernel after 01_data
        from merkit.training.fold import resolve_device

        resolve_device(device)
    return sources, params, per_notebook


def _run_locked(
    lock: RunLock,
    sources: Sequence[Path],
    params: dict[str, Any],
    per_notebook: Mapping[Path, dict[str, Any]],
    kernel: str,
    cell_timeout: float | None,
    resume: bool,
    progress: bool,
    solutions: bool = False,
) -> PipelineResult:
    import nbformat
    import papermill
    from papermill.exceptions import PapermillExecutionError

    run_dir = lock.run_dir
    out_dir = run_dir / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_leftovers(run_dir)
    atomic_write_text(
        run_dir / "pipeline_params.yaml",
        yaml.safe_dump({k: v for k, v in params.items()}, sort_keys=True),
    )
    state_path = out_dir / STATE_FILE
    try:
        state: dict[str, Any] = json.loads(state_path.read_text()) if state_path.is_file() else {}
    except ValueError:
        state = {}
    kit = kit_identity()
    manifest: str | None = None  # computed once, when first needed

    # The kernels inherit the environment: the lock token lets run_protocol in, progress goes to our file.
    saved_env = {name: os.environ.get(name) for name in (LOCK_ENV, PROGRESS_ENV, *_QUIET_KERNEL_ENV)}
    os.environ.update(lock.child_env())
    os.environ[PROGRESS_ENV] = str(run_dir / PROGRESS_FILE)
    for name, value in _QUIET_KERNEL_ENV.items():
        os.environ.setdefault(name, value)
    runs: list[NotebookRun] = []
    upstream_reran = not resume
    try:
        for position, source in enumerate(sources):
            name = output_name(position, source)
            label = f"[{position + 1}/{len(sources)}] {name}"
            own = per_notebook[source]
            output = out_dir / f"{name}.ipynb"
            html_path = out_dir / f"{name}.html"
            if manifest is None:
                manifest = manifest_identity(params)
            current = _state_entry(source, {**own, "solutions": True} if solutions else own, kit, manifest)
            if not resume:
                reasons = ["resume is off"]
            elif upstream_reran:
                reasons = ["an earlier notebook ran"]
            elif not output.is_file():
                reasons = [
                    "it has not run into this directory yet" if name not in state else "its executed copy is missing"
                ]
            else:
                reasons = rerun_reasons(state.get(name), current)
            if not reasons:
                runs.append(
                    NotebookRun(name, source, output, html_path if html_path.is_file() else None, "skipped", 0.0, own)
                )
                if progress:
                    _say(f"{label}: skipped (source, parameters, kit and data unchanged)")
                continue
            reason = "; ".join(reasons)
            if progress:
                _say(f"{label}: running ({reason})")
            upstream_reran = True
            state.pop(name, None)
            atomic_write_text(state_path, json.dumps(state, indent=1, sort_keys=True))

            partial = out_dir / f".{name}.partial.ipynb"
            started = time.perf_counter()
            line = _ProgressLine(run_dir / PROGRESS_FILE, label, time.time(), progress)
            executed_source, positions = source, None
            node = nbformat.read(str(source), as_version=4)
            if not solutions and any(SOLUTION_TAG in cell.metadata.get("tags", []) for cell in node.cells):
                stripped, positions = without_solutions(node)  # the student view: solutions left out
                executed_source = out_dir / f".{name}.source.ipynb"
                atomic_write_text(executed_source, nbformat.writes(stripped))
            try:
                papermill.execute_notebook(
                    str(executed_source),
                    str(partial),
                    parameters=own,
                    kernel_name=kernel,
                    execution_timeout=cell_timeout,
                    progress_bar=False,
                    cwd=str(run_dir),
                    # the kernel's own log: "TCP without encryption" for a kernel on localhost, and on Ctrl-C
                    # a zmq traceback from the reply the shut-down kernel can no longer send; a user can act on
                    # neither, and errors in cells reach the notebook either way
                    extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
                    # Once the last cell has replied, the kernel holds nothing the run needs: every file is written
                    # (atomically) by a cell, and an executor that starts Ray or workers stops them before it
                    # returns. A graceful shutdown would wait for the interpreter to tear down torch's modules
                    # (1-2 s per notebook on a 2-core machine) for nothing.
                    shutdown_kernel="immediate",
                    # Widget state is kept during the run (nbclient's Output-widget handler needs it: without it an
                    # interactive viewer fails with a KeyError) and stripped from the copy afterwards
                    # (strip_widget_state), since a reopened notebook cannot find those models.
                )
            except Exception as err:  # noqa: BLE001 - every failure is reported with its notebook and cell
                line.close()
                failed = out_dir / f"{name}.failed.ipynb"
                cell, first_line = failing_cell(partial, positions)
                if executed_source != source:
                    executed_source.unlink(missing_ok=True)
                if isinstance(err, PapermillExecutionError):
                    ename, evalue = err.ename, err.evalue
                else:
                    lines = [text for text in str(err).splitlines() if text.strip()]
                    ename, evalue = type(err).__name__, lines[0] if lines else ""
                remove_failed_copies(out_dir, name)  # an earlier failure's copies would pass for this one's
                if partial.is_file():
                    strip_widget_state(partial)
                    os.replace(partial, failed)
                    try:
                        export_html(failed, out_dir / f"{name}.failed.html")
                    except Exception:  # noqa: BLE001 - the HTML is a convenience; the error is what matters
                        pass
                if output.is_file():
                    output.unlink()  # a copy from an earlier run would be mistaken for this run's
                runs.append(
                    NotebookRun(name, source, failed, None, "failed", time.perf_counter() - started, own, reason)
                )
                write_index(run_dir, runs)
                raise PipelineError(
                    source.name, cell, ename, evalue, failed if failed.is_file() else None, first_line
                ) from None
            line.close()
            if executed_source != source:
                executed_source.unlink(missing_ok=True)
            strip_widget_state(partial)
            os.replace(partial, output)
            export_html(output, html_path)
            remove_failed_copies(out_dir, name)  # the earlier failure is fixed: its copies are stale
            state[name] = current
            atomic_write_text(state_path, json.dumps(state, indent=1, sort_keys=True))
            seconds = time.perf_counter() - started
            runs.append(NotebookRun(name, source, output, html_path, "executed", seconds, own, reason))
            if progress:
                _say(f"{label}: done in {seconds:.1f} s")
    finally:
        for env_name, value in saved_env.items():
            if value is None:
                os.environ.pop(env_name, None)
            else:
                os.environ[env_name] = value

    index = write_index(run_dir, runs)
    return PipelineResult(run_dir, runs, index, read_metrics(run_dir))


def write_index(run_dir: str | os.PathLike, runs: Sequence[NotebookRun]) -> Path:
    """Write ``run_dir/index.html``, the run's report (`merkit.report.write_report`), and return its path."""
    from merkit.report import write_report

    return write_report(run_dir, runs)
