"""The ``merkit`` argument parser: one sub-command per :mod:`merkit.cli.commands` function.

Options that are also run parameters (``merkit prepare --size``, ``--on-problem``, …) default to None here and
take the notebooks' defaults, the ``laptop`` profile over the library's (:mod:`merkit.config.profiles`), when the
command runs (:func:`merkit.cli.commands.profile_default`): one source, and no config import to print ``--help``.
"""

from __future__ import annotations

import argparse

from merkit.cache import CACHE_DEFAULT_HELP
from merkit.cli.commands import (
    cmd_cache,
    cmd_compare,
    cmd_composite,
    cmd_demo,
    cmd_models,
    cmd_pipeline,
    cmd_predict,
    cmd_prepare,
    cmd_report,
    cmd_sweep,
    cmd_synthme,
    cmd_teach,
)

#: How a --help names a default taken from the notebooks' (the laptop profile's) when the command runs.
AS_NOTEBOOKS = "the notebooks' value, `merkit pipeline --list-params`"


def _add_pipeline_options(parser: argparse.ArgumentParser, default_run_dir: str | None) -> None:
    from merkit.pipeline.run import DEFAULT_CELL_TIMEOUT, DEFAULT_ORDER

    parser.add_argument(
        "--run-dir",
        default=default_run_dir,
        help="run directory to write into (default: %(default)s)"
        if default_run_dir
        else "run directory (default: runs/run-<timestamp>)",
    )
    parser.add_argument(
        "--params", action="append", metavar="FILE.yaml", help="YAML file of name: value (repeatable; later wins)"
    )
    parser.add_argument(
        "-p",
        "--param",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        help="set one notebook parameter; VALUE is read as a YAML scalar (repeatable; wins over --params)",
    )
    parser.add_argument(
        "--notebooks",
        nargs="+",
        default=list(DEFAULT_ORDER),
        metavar="NB",
        help="notebooks to run, in order (names or paths; default: %(default)s)",
    )
    parser.add_argument(
        "--notebook-dir", default=None, help="where notebook names are looked up (default: the kit's notebooks/)"
    )
    parser.add_argument(
        "--cell-timeout",
        type=float,
        default=DEFAULT_CELL_TIMEOUT,
        metavar="SECONDS",
        help="give up on a cell after this many seconds (default: %(default)s)",
    )
    parser.add_argument(
        "--no-resume", action="store_true", help="re-execute every notebook even if an identical run exists"
    )
    parser.add_argument("--list-params", action="store_true", help="print each notebook's parameters and exit")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="merkit",
        description="merkit: micro-expression recognition research kit (MERANet, LOSO, Captum).",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser(
        "pipeline",
        help="execute the notebooks in order with papermill into a run directory",
        description="Execute notebooks/01_data … 04_explain with papermill into RUN_DIR/notebooks/, export them "
        "to HTML and write RUN_DIR/index.html. Parameter names are checked against the notebooks first.",
    )
    _add_pipeline_options(p, None)
    p.set_defaults(func=cmd_pipeline)

    p = sub.add_parser(
        "demo",
        help="the default SynthME run (what `make demo` calls)",
        description="Run the whole pipeline on a generated SynthME dataset with notebooks/demo.yaml "
        "(extra --params / -p override it) and print the headline metrics and the index page.",
    )
    _add_pipeline_options(p, "runs/demo")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "sweep",
        help="run the pipeline over a grid of parameters, then compare the runs",
        description="Run the pipeline once per combination of the lists under `grid:` in GRID.yaml, one run "
        "directory each (OUT/name=value_...), then write OUT/compare.csv, compare.html and compare.png. Every "
        "parameter of every run is checked against the notebooks before anything runs. Grid file keys: grid, "
        "params, params_files, notebooks, out, executor, workers.",
    )
    p.add_argument("grid", metavar="GRID.yaml")
    p.add_argument(
        "--out", default=None, help="folder of the run directories (default: the file's `out`, else runs/<GRID stem>)"
    )
    # No argparse choices: merkit.pipeline.sweep.SWEEP_EXECUTORS is the one list (checked before anything runs, exit 2).
    p.add_argument(
        "--executor",
        default=None,
        help="how runs are executed: sequential or processes (default: the file's, else sequential)",
    )
    p.add_argument("--workers", type=int, default=None, help="runs at once with --executor processes")
    p.add_argument(
        "--notebooks", nargs="+", default=None, metavar="NB", help="notebooks to run (default: the file's, else all)"
    )
    p.add_argument(
        "--notebook-dir", default=None, help="where notebook names are looked up (default: the kit's notebooks/)"
    )
    p.add_argument(
        "--cell-timeout", type=float, default=None, metavar="SECONDS", help="give up on a cell after this many seconds"
    )
    p.add_argument("--no-resume", action="store_true", help="re-execute every notebook of every run")
    p.add_argument("--dry-run", action="store_true", help="check the grid and list the runs without running them")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser(
        "compare",
        help="compare run directories side by side (table + figure)",
        description="Write compare.csv, compare.html and compare.png of the given run directories: pooled UF1/UAR "
        "with intervals, per-dataset scores, wall time and what differs in their configurations; mean ± sd "
        "over seeds. A directory without metrics.json is reported and skipped.",
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", default=None, help="where to write (default: the runs' common parent folder, else here)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "report",
        help="rebuild a run directory's index.html report",
        description="Write RUN_DIR/index.html from what the run directory holds (metrics, figures, data summary, "
        "configuration, notebooks); images are embedded, so the page opens without a server.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "prepare",
        help="generate SynthME and/or build a manifest and the preprocessed clip store",
        description="Build the manifest of DATASET under --data-root (for synthme, generating it there first when "
        "the folder is new or empty) and preprocess every clip into the clip store under --cache-dir.",
    )
    p.add_argument("--dataset", default=None, help=f"dataset key (default: {AS_NOTEBOOKS})")
    p.add_argument("--data-root", default="", help="your dataset copy; for synthme a new or empty folder is filled")
    p.add_argument(
        "--flow-folder",
        default="",
        metavar="DIR",
        help="a community folder of 28x28 onset→apex flow PNGs ('<subject>_<clip> .png'): dataset flow_folder",
    )
    p.add_argument(
        "--listing",
        default="",
        metavar="CSV",
        help="the flow folder's listing (HTNet-style composite list, or any CSV with subject, sample, label "
        "[, dataset] columns); default: the folder's only *.csv",
    )
    p.add_argument(
        "--label-map",
        default=None,
        help=f"class mapping, e.g. casme2_5class (default: synthme: {AS_NOTEBOOKS}; other datasets: none)",
    )
    p.add_argument(
        "--cache-dir",
        default=None,
        help=f"cache folder for generated SynthME and clip stores (default: {CACHE_DEFAULT_HELP}; never inside "
        "DATA_ROOT)",
    )
    p.add_argument(
        "--frames",
        type=int,
        default=None,
        help=f"frames per clip after temporal normalisation (default: {AS_NOTEBOOKS})",
    )
    p.add_argument("--size", type=int, default=None, help=f"clip side in pixels (default: {AS_NOTEBOOKS})")
    p.add_argument(
        "--crop",
        default=None,
        help="auto (face crops as is, raw frames get the Haar face box, per the "
        f"manifest's cropped flag), dataset (already cropped), haar, center or none (default: {AS_NOTEBOOKS})",
    )
    p.add_argument(
        "--no-face",
        default=None,
        choices=("error", "center"),
        help="raw frames where the Haar cascade finds no face: error (names the clip) or center "
        f"(the centred square, recorded in the store index) (default: {AS_NOTEBOOKS})",
    )
    p.add_argument(
        "--flow",
        default="",
        choices=("", "tvl1", "farneback", "dis"),
        metavar="METHOD",
        help="also store onset→apex (u, v, strain) flow images for the flow models (ststnet, offapexnet): "
        "tvl1, farneback or dis (default: no flow)",
    )
    p.add_argument(
        "--on-problem",
        default=None,
        choices=("error", "fix", "drop"),
        help="known sheet faults: fix (apply the errata and repairs the dataset yaml declares, list them in "
        "data_problems.csv, then report what is left), error (report them all), drop (leave those samples out) "
        f"(default: {AS_NOTEBOOKS})",
    )
    p.add_argument(
        "--run-dir", default=None, help="also write data_problems.csv (what on_problem fixed or dropped) there"
    )
    p.add_argument(
        "--subjects", type=int, default=None, help=f"synthme only: subjects to generate (default: {AS_NOTEBOOKS})"
    )
    p.add_argument(
        "--clips-per-subject", type=int, default=None, help=f"synthme only: clips per subject (default: {AS_NOTEBOOKS})"
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser(
        "synthme",
        help="write SynthME in the exact shape of a real release (casme2, samm, smic_hs, casme3a, megc2019)",
        description="Write an emulated release at OUT: the real release's folders, frame names, sheets and "
        "known sheet faults, with SynthME's faces and micro-motions; read it with that dataset's builder.",
    )
    p.add_argument(
        "--as",
        dest="kind",
        required=True,
        metavar="KIND",
        choices=("casme2", "samm", "smic_hs", "casme3a", "megc2019"),
        help="casme2, samm, smic_hs, casme3a or megc2019 (OUT holds CASME2/, SAMM/, SMIC/)",
    )
    p.add_argument("out", metavar="OUT", help="a new or empty folder")
    p.add_argument(
        "--layout",
        default="both",
        choices=("raw", "cropped", "both"),
        help="CASME II frames: raw (CASME2_RAW_selected/), cropped (Cropped/) or both (default: %(default)s)",
    )
    p.add_argument(
        "--smic-layout",
        default="raw",
        choices=("raw", "cropped", "both"),
        help="SMIC-HS frames: raw (HS/), cropped (SMIC_all_cropped/HS/) or both (default: %(default)s)",
    )
    p.add_argument(
        "--smic-names", default="s1", choices=("s1", "s01"), help="SMIC subject folder spelling (default: %(default)s)"
    )
    p.add_argument(
        "--scale", type=float, default=1.0, help="shrink frame sizes and clip lengths (default: %(default)s)"
    )
    p.add_argument(
        "--small", action="store_true", help="a few clips per class, for tests (counts are not the real ones)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_synthme)

    p = sub.add_parser(
        "predict",
        help="classify one video or frame folder with a trained model",
        description="Face crop, temporal normalisation, class probabilities and an attention overlay PNG "
        "for one clip (a video file or a folder of frames), with the model of a run or a checkpoint. "
        "Flow models (ststnet, offapexnet) get the onset→apex flow image and an IG attribution overlay.",
    )
    p.add_argument("clip", metavar="VIDEO_OR_FRAME_FOLDER")
    p.add_argument("--run", default=None, help="run directory whose trained model to use (e.g. runs/demo)")
    p.add_argument("--checkpoint", default=None, help="model checkpoint file (instead of --run)")
    p.add_argument("--onset", type=int, default=None, help="onset frame number (default: first frame)")
    p.add_argument("--offset", type=int, default=None, help="offset frame number (default: last frame)")
    p.add_argument(
        "--apex",
        type=int,
        default=None,
        help="apex frame number; flow models read onset→apex (default: the middle frame between onset and offset)",
    )
    p.add_argument(
        "--out", default=None, help="where to write the overlay PNG and prediction.json (default: beside the run)"
    )
    p.add_argument(
        "--crop",
        default="auto",
        help="face crop: auto (Haar face detector, else centred square), haar (the detector; a clip without a "
        "face is refused), center, none, or dataset (the clip is already a face crop) (default: %(default)s)",
    )
    p.add_argument(
        "--device", default=None, help=f"torch device (default: {AS_NOTEBOOKS}: auto picks cuda, mps, then cpu)"
    )
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "cache",
        help="list or clear the cache of generated SynthME trees and clip stores",
        description="The one cache every run, notebook and `merkit prepare` shares: $MERKIT_CACHE, else runs/cache "
        "of the checkout (an installed package: ~/.cache/merkit). `list` shows each SynthME tree and clip store "
        "with its size; `clear` deletes them, after saying how much it frees and asking (--yes: do not ask). Only "
        "entries merkit wrote are deleted, and only in a folder carrying merkit's cache tag (CACHEDIR.TAG).",
    )
    p.add_argument("action", choices=("list", "clear"))
    p.add_argument("--cache-dir", default=None, help=f"another cache folder (default: {CACHE_DEFAULT_HELP})")
    p.add_argument("--yes", action="store_true", help="clear: delete without asking (for scripts)")
    p.set_defaults(func=cmd_cache)

    p = sub.add_parser(
        "composite",
        help="build the MEGC2019 composite; write its ground-truth file or check yours against it",
        description="Build the MEGC2019 composite (442 clips, 68 subjects) from DATA_ROOT holding CASME2/, SAMM/ and "
        "SMIC/ (the class rule per part, the no-usable-apex rule, counts checked). --write GT.csv writes the "
        "official ground-truth format (no header, database,subject,video,label, CRLF); --check GT.csv compares "
        "the built composite with your ground-truth file clip by clip and exits 1 on any disagreement.",
    )
    p.add_argument("data_root", metavar="DATA_ROOT")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--write", metavar="GT.csv", help="write the built composite as an official ground-truth file")
    what.add_argument("--check", metavar="GT.csv", help="compare the built composite with this ground-truth file")
    p.add_argument(
        "--on-problem",
        default=None,
        choices=("error", "fix", "drop"),
        help="known sheet faults: fix (apply the declared errata), error (report), drop (leave those "
        f"clips out) (default: {AS_NOTEBOOKS})",
    )
    p.add_argument(
        "--casme2-sheet",
        default=None,
        metavar="FILE",
        help="CASME II sheet to read (default: CASME2-coding-20140508.xlsx, which defines the composite)",
    )
    p.set_defaults(func=cmd_composite)

    from merkit.pipeline.run import DEFAULT_CELL_TIMEOUT

    p = sub.add_parser(
        "teach",
        help="build the student and instructor copies of the notebooks for a lab",
        description="teach build OUT: OUT/student/*.ipynb (exercises, no solutions, no outputs) and "
        "OUT/instructor/*.ipynb (solutions, executed with papermill; see docs/teaching.md).",
    )
    p.add_argument("action", choices=("build",))
    p.add_argument("out", metavar="OUT")
    p.add_argument(
        "--params",
        action="append",
        metavar="FILE.yaml",
        help="YAML file of name: value for the instructor run (repeatable)",
    )
    p.add_argument(
        "-p",
        "--param",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        help="set one notebook parameter (repeatable)",
    )
    p.add_argument(
        "--notebooks", nargs="+", default=None, metavar="NB", help="notebooks (default: 01_data … 05_leakage)"
    )
    p.add_argument("--no-execute", action="store_true", help="write the student copies only")
    p.add_argument(
        "--cell-timeout",
        type=float,
        default=DEFAULT_CELL_TIMEOUT,
        metavar="SECONDS",
        help="per-cell limit (default: %(default)s)",
    )
    p.add_argument("--no-resume", action="store_true", help="re-execute every notebook")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_teach)

    p = sub.add_parser(
        "models",
        help="print the model registry",
        description="Print every registered model with its input kind, size and parameter count.",
    )
    p.set_defaults(func=cmd_models)
    return parser
