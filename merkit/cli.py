"""The ``merkit`` command: ``pipeline``, ``demo``, ``sweep``, ``compare``, ``report``, ``prepare``, ``synthme``, ``predict``,
``composite``, ``teach``, ``models``.

Every command has ``--help``. User errors (an unknown parameter, a missing data_root, a notebook that fails)
end with a one-line ``merkit: error: …`` on stderr and a non-zero exit code, without a traceback:

- exit 2: bad command line or parameters (nothing was run),
- exit 3: the run directory is locked by another live run (the message names its pid, host and start time),
- exit 1: a notebook or a command failed while running.

Heavy libraries (torch, papermill) are imported inside the commands so ``merkit --help`` answers at once.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
from pathlib import Path
from typing import Any, Sequence

from merkit.errors import MerkitError
from merkit.runlock import RunLock, RunLockedError

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_LOCKED = 3  # another live process holds the run directory


class UserError(MerkitError):
    """A problem the user can fix (bad path, bad option); reported in one line, exit code 2."""


# ----------------------------------------------------------------------------------------------------------
# pipeline / demo
# ----------------------------------------------------------------------------------------------------------


def _collect_params(param_files: Sequence[str], overrides: Sequence[Sequence[str]]) -> tuple[dict[str, Any], set[str]]:
    """Merge YAML files (later wins) then ``-p name value`` overrides; return params and the names typed raw."""
    from merkit.pipeline import load_params_file

    params: dict[str, Any] = {}
    for path in param_files:
        params.update(load_params_file(path))
    raw = set()
    for name, value in overrides:
        params[name] = value
        raw.add(name)
    return params, raw


def _print_result(result: Any) -> None:
    from merkit.pipeline import format_metric, headline_metrics

    for run in result.notebooks:
        print(f"  {run.name:<14} {run.status:<9} {run.seconds:7.1f} s  {run.html or run.output}")
    metrics = headline_metrics(result.metrics, limit=8)
    if metrics:
        print("headline metrics (pooled over all folds):")
        for key, value in metrics:
            print(f"  {key:<28} {format_metric(result.metrics, key, value)}")
    else:
        print("no metrics.json was written by these notebooks")
    print(f"index: {result.index_html}")


def _run_pipeline_command(args: argparse.Namespace, param_files: Sequence[str]) -> int:
    from merkit.pipeline import resolve_notebooks, run_pipeline, check_parameters, notebook_parameters

    params, raw = _collect_params(param_files, args.param or [])
    if args.list_params:
        sources = resolve_notebooks(args.notebooks, args.notebook_dir)
        check_parameters(params, sources, raw)
        for source in sources:
            print(source.name)
            for name, info in notebook_parameters(source).items():
                print(f"  {name}: {info['inferred_type_name']} = {info['default']}  # {info['help']}")
        return 0
    run_dir = args.run_dir or params.get("run_dir")
    if not run_dir:
        run_dir = f"runs/run-{_dt.datetime.now():%Y%m%d-%H%M%S}"
    params.pop("run_dir", None)
    print(f"merkit: running {len(args.notebooks)} notebook(s) into {Path(run_dir).resolve()}", file=sys.stderr)
    result = run_pipeline(
        run_dir,
        params,
        args.notebooks,
        notebook_dir=args.notebook_dir,
        cell_timeout=args.cell_timeout,
        resume=not args.no_resume,
        progress=not args.quiet,
        raw_names=raw,
    )
    _print_result(result)
    return 0


def cmd_pipeline(args: argparse.Namespace) -> int:
    return _run_pipeline_command(args, args.params or [])


def cmd_demo(args: argparse.Namespace) -> int:
    from merkit.pipeline import DEMO_PARAMS

    return _run_pipeline_command(args, [str(DEMO_PARAMS), *(args.params or [])])


def _add_pipeline_options(parser: argparse.ArgumentParser, default_run_dir: str | None) -> None:
    from merkit.pipeline import DEFAULT_CELL_TIMEOUT, DEFAULT_ORDER

    parser.add_argument(
        "--run-dir",
        default=default_run_dir,
        help="run directory to write into (default: %(default)s)" if default_run_dir else "run directory "
        "(default: runs/run-<timestamp>)",
    )
    parser.add_argument("--params", action="append", metavar="FILE.yaml", help="YAML file of name: value (repeatable; later wins)")
    parser.add_argument(
        "-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"),
        help="set one notebook parameter; VALUE is read as a YAML scalar (repeatable; wins over --params)",
    )
    parser.add_argument(
        "--notebooks", nargs="+", default=list(DEFAULT_ORDER), metavar="NB",
        help="notebooks to run, in order (names or paths; default: %(default)s)",
    )
    parser.add_argument("--notebook-dir", default=None, help="where notebook names are looked up (default: the kit's notebooks/)")
    parser.add_argument(
        "--cell-timeout", type=float, default=DEFAULT_CELL_TIMEOUT, metavar="SECONDS",
        help="give up on a cell after this many seconds (default: %(default)s)",
    )
    parser.add_argument("--no-resume", action="store_true", help="re-execute every notebook even if an identical run exists")
    parser.add_argument("--list-params", action="store_true", help="print each notebook's parameters and exit")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


# ----------------------------------------------------------------------------------------------------------
# sweep / compare / report
# ----------------------------------------------------------------------------------------------------------


def _print_compare(result: Any) -> None:
    for line in result.skipped:
        print(f"merkit: skipped {line}", file=sys.stderr)
    shown = [c for c in result.table.columns if c not in ("run_dir", "uf1_low", "uf1_high", "uar_low", "uar_high")]
    print(result.table[shown].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if result.seeds is not None:
        print("across seeds (mean, sd):")
        print(result.seeds.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"compare: {result.html} ({result.csv.name}, {result.png.name})")


def cmd_sweep(args: argparse.Namespace) -> int:
    from merkit.sweep import check_sweep, expand_grid, run_sweep, sweep_from_file

    spec = sweep_from_file(args.grid, out=args.out, executor=args.executor, workers=args.workers,
                           notebooks=args.notebooks)
    if args.dry_run:
        points = expand_grid(spec)
        check_sweep(spec, points, args.notebook_dir)
        for point in points:
            print(f"{point.run_dir}  {point.values}")
        return 0
    from merkit.pipeline import DEFAULT_CELL_TIMEOUT

    timeout = args.cell_timeout if args.cell_timeout is not None else DEFAULT_CELL_TIMEOUT
    result = run_sweep(spec, notebook_dir=args.notebook_dir, cell_timeout=timeout,
                       resume=not args.no_resume, progress=not args.quiet)
    if result.compare is not None:
        _print_compare(result.compare)
    else:
        for line in result.skipped:
            print(f"merkit: {line}", file=sys.stderr)
    for point in result.failed:
        print(f"merkit: error: run {point.name} failed: {point.error}", file=sys.stderr)
    return EXIT_FAILED if result.failed else 0


def cmd_compare(args: argparse.Namespace) -> int:
    from merkit.report import compare_runs

    out = args.out
    if out is None:
        parents = {Path(run).resolve().parent for run in args.run_dirs}
        out = parents.pop() if len(parents) == 1 else Path.cwd()
    _print_compare(compare_runs(args.run_dirs, out))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from merkit.report import write_report

    if not Path(args.run_dir).is_dir():
        raise UserError(f"run directory {args.run_dir} does not exist")
    print(f"report: {write_report(args.run_dir)}")
    return 0


# ----------------------------------------------------------------------------------------------------------
# models / prepare / predict
# ----------------------------------------------------------------------------------------------------------


def cmd_models(args: argparse.Namespace) -> int:
    from merkit.models import models_table

    table = models_table()
    print(table.to_string() if hasattr(table, "to_string") else table)
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from merkit.config import DataConfig
    from merkit.data.preprocess import PreprocessConfig
    from merkit.prepare import prepare_data

    if args.flow_folder:  # a community folder of 28x28 flow PNGs: dataset flow_folder, the folder is the data root
        if args.data_root and Path(args.data_root).expanduser() != Path(args.flow_folder).expanduser():
            raise UserError("give either --flow-folder DIR or --data-root DIR for a flow folder, not both")
        args.dataset, args.data_root = "flow_folder", args.flow_folder
    if not args.data_root:
        raise UserError("prepare needs --data-root DIR (or --flow-folder DIR --listing CSV)")
    if args.listing and args.dataset != "flow_folder":
        raise UserError(f"--listing is for a flow folder (--flow-folder DIR), not dataset {args.dataset!r}")
    data_root = Path(args.data_root).expanduser()
    if args.dataset == "synthme" and not data_root.exists():
        data_root.mkdir(parents=True)  # SynthME is generated into a new, empty folder
    protocol = args.protocol if args.protocol is not None else ("synthme_3class" if args.dataset == "synthme" else "")
    data = DataConfig(
        dataset=args.dataset,
        data_root=str(data_root),
        protocol=protocol,
        listing=args.listing,
        synthme_n_subjects=args.subjects,
        synthme_clips_per_subject=args.clips_per_subject,
        on_problem=args.on_problem,
    )
    preprocess = PreprocessConfig(frames=args.frames, size=args.size, crop=args.crop, no_face=args.no_face)
    # The user's one cache ($MERKIT_CACHE or runs/cache), never data_root: a licensed copy is often read-only.
    prepared = prepare_data(data, preprocess, cache_dir=args.cache_dir or "", flow=args.flow, progress=not args.quiet,
                            run_dir=args.run_dir)
    manifest = prepared.manifest
    print(f"dataset: {args.dataset} ({len(manifest)} clips, {manifest['subject'].nunique()} subjects)")
    print(f"data_root: {prepared.data_root}{' (SynthME generated)' if prepared.generated else ''}")
    if prepared.classes:
        counts = manifest["label"].value_counts().sort_index()
        print("classes: " + ", ".join(f"{prepared.classes[int(k)]} {int(v)}" for k, v in counts.items()))
    store = prepared.store
    if store.clips is None:
        print(f"store: {store.path}  flow images {tuple(store.flow.shape)} from the folder (no clips: flow models only)")
    else:
        flow = store.flow
        flow_text = f"  flow {tuple(flow.shape)} ({store.flow_config.method})" if flow is not None else ""
        print(f"store: {store.path}  clips {tuple(store.clips.shape)}{flow_text}")
    _print_data_problems(manifest)
    if prepared.problems_file is not None:
        print(f"data problems: {prepared.problems_file}")
    return 0


def cmd_synthme(args: argparse.Namespace) -> int:
    from merkit.data.synthetic import ReleaseExistsError, release_info, write_release

    try:
        out = write_release(args.kind, args.out, layout=args.layout, smic_layout=args.smic_layout,
                            smic_names=args.smic_names, scale=args.scale, small=args.small, seed=args.seed,
                            progress=not args.quiet)
    except (ReleaseExistsError, ValueError) as error:
        raise UserError(str(error)) from None
    info = release_info(out)
    counts = "a few clips per class (counts not checked)" if info["small"] else "the real release's counts"
    print(f"{args.kind} release written to {out}: {counts}, scale {info['scale']}; side files in {out}/synthme_truth")
    return 0


def _human_size(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


def cmd_cache(args: argparse.Namespace) -> int:
    from merkit.cache import cache_dir, cache_source, clear_cache, list_cache

    root = cache_dir(args.cache_dir or "", create=False)
    print(f"cache: {root}  ({cache_source(args.cache_dir or '')})")
    if args.action == "clear":
        print(f"freed {_human_size(clear_cache(root))}")
        return 0
    entries = list_cache(root)
    if not entries:
        print("  (empty)")
    for entry in entries:
        state = "" if entry.complete else "  (interrupted build, removed by the next build)"
        print(f"  {entry.kind:<8} {_human_size(entry.size):>10}  {entry.path.relative_to(root)}{state}")
    print(f"total {_human_size(sum(e.size for e in entries))}")
    return 0


def _print_data_problems(manifest: Any, limit: int = 20) -> None:
    """What the build fixed, dropped or left out (attrs['data_problems']), a line each."""
    from merkit.data.datasets import problems_table

    table = problems_table(manifest)
    if table.empty:
        return
    print(f"data problems handled ({len(table)}; on_problem={manifest.attrs.get('on_problem', 'error')}):")
    for row in table.head(limit).to_dict("records"):
        where = "/".join(str(x) for x in (row["dataset"], row["subject"], row["sample"]) if x not in (None, "", "None"))
        print(f"  {row['action']:<13} {where}: {row['detail']}")
    if len(table) > limit:
        print(f"  ... {len(table) - limit} more (data_problems.csv lists them all)")


def cmd_composite(args: argparse.Namespace) -> int:
    from merkit.data.datasets import build_megc2019, compare_ground_truth, read_megc_ground_truth, write_megc_ground_truth

    root = Path(args.data_root).expanduser()
    if not root.is_dir():
        raise UserError(f"composite data root {root} is not a folder (it holds CASME2/, SAMM/ and SMIC/)")
    annotations = {"casme2": args.casme2_sheet} if args.casme2_sheet else None
    composite = build_megc2019(root, annotations=annotations, on_problem=args.on_problem)
    per = composite.groupby("dataset")["sample"].size().to_dict()
    print(f"MEGC2019 composite: {len(composite)} clips, {len(set(zip(composite['dataset'], composite['subject'])))} "
          f"subjects ({', '.join(f'{k} {v}' for k, v in per.items())})")
    _print_data_problems(composite)
    if args.write:
        path = write_megc_ground_truth(composite, args.write)
        print(f"wrote the ground truth of {len(composite)} clips to {path}")
        return 0
    truth = read_megc_ground_truth(args.check)
    table = compare_ground_truth(composite, truth)
    disagree = table[table["status"] != "agree"]
    print(f"{args.check}: {int((table['status'] == 'agree').sum())} clip(s) agree, {len(disagree)} disagree")
    for row in disagree.to_dict("records"):
        print(f"  {row['dataset']}/{row['subject']}/{row['sample']}: {row['status']} "
              f"(built {row['built_label'] or '-'}, ground truth {row['truth_label'] or '-'})")
    return EXIT_FAILED if len(disagree) else 0


def cmd_teach(args: argparse.Namespace) -> int:
    from merkit.teach import TEACH_ORDER, build

    params, raw = _collect_params(args.params or [], args.param or [])
    built = build(args.out, params, args.notebooks or TEACH_ORDER, execute=not args.no_execute, cell_timeout=args.cell_timeout,
                  resume=not args.no_resume, progress=not args.quiet, raw_names=raw)
    print(f"student copies (no solutions, no outputs): {built.out / 'student'}")
    for run in built.pipeline.notebooks if built.pipeline else []:
        print(f"  {run.name:<14} {run.status:<9} {run.seconds:7.1f} s")
    if built.pipeline:
        print(f"instructor copies (solutions, executed): {built.out / 'instructor'}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from merkit.predict import predict_clip

    if not args.run and not args.checkpoint:
        raise UserError("predict needs --run RUN_DIR or --checkpoint FILE")
    prediction = predict_clip(
        args.clip,
        run_dir=args.run,
        checkpoint=args.checkpoint,
        onset=args.onset,
        offset=args.offset,
        apex=args.apex,
        out_dir=args.out,
        crop=args.crop,
        device=args.device,
    )
    print(prediction.describe())
    return 0


# ----------------------------------------------------------------------------------------------------------
# argument parser and entry point
# ----------------------------------------------------------------------------------------------------------


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
    p.add_argument("--out", default=None, help="folder of the run directories (default: the file's `out`, else runs/<GRID stem>)")
    # No argparse choices: merkit.sweep.SWEEP_EXECUTORS is the one list (checked before anything runs, exit 2).
    p.add_argument("--executor", default=None,
                   help="how runs are executed: sequential or processes (default: the file's, else sequential)")
    p.add_argument("--workers", type=int, default=None, help="runs at once with --executor processes")
    p.add_argument("--notebooks", nargs="+", default=None, metavar="NB", help="notebooks to run (default: the file's, else all)")
    p.add_argument("--notebook-dir", default=None, help="where notebook names are looked up (default: the kit's notebooks/)")
    p.add_argument("--cell-timeout", type=float, default=None, metavar="SECONDS", help="give up on a cell after this many seconds")
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
    p.add_argument("--dataset", default="synthme", help="dataset key (default: %(default)s)")
    p.add_argument("--data-root", default="", help="your dataset copy; for synthme a new or empty folder is filled")
    p.add_argument("--flow-folder", default="", metavar="DIR",
                   help="a community folder of 28x28 onset→apex flow PNGs ('<subject>_<clip> .png'): dataset flow_folder")
    p.add_argument("--listing", default="", metavar="CSV",
                   help="the flow folder's listing (HTNet-style composite list, or any CSV with subject, sample, label "
                   "[, dataset] columns); default: the folder's only *.csv")
    p.add_argument("--protocol", default=None, help="class mapping, e.g. casme2_5class (default: synthme_3class / none)")
    p.add_argument("--cache-dir", default=None, help="cache folder for generated SynthME and clip stores "
                   "(default: $MERKIT_CACHE, else runs/cache of the checkout; never inside DATA_ROOT)")
    p.add_argument("--frames", type=int, default=16, help="frames per clip after temporal normalisation (default: %(default)s)")
    p.add_argument("--size", type=int, default=32, help="clip side in pixels (default: %(default)s)")
    p.add_argument("--crop", default="auto", help="auto (face crops as is, raw frames get the Haar face box, per the "
                   "manifest's cropped flag), dataset (already cropped), haar, center or none (default: %(default)s)")
    p.add_argument("--no-face", default="error", choices=("error", "center"),
                   help="raw frames where the Haar cascade finds no face: error (names the clip) or center "
                   "(the centred square, recorded in the store index) (default: %(default)s)")
    p.add_argument(
        "--flow", default="", choices=("", "tvl1", "farneback", "dis"), metavar="METHOD",
        help="also store onset→apex (u, v, strain) flow images for the flow models (ststnet, offapexnet): "
        "tvl1, farneback or dis (default: no flow)",
    )
    p.add_argument("--on-problem", default="error", choices=("error", "fix", "drop"),
                   help="known sheet faults: error (report them all), fix (apply the errata and repairs the dataset "
                   "yaml declares, then report what is left), drop (leave those samples out) (default: %(default)s)")
    p.add_argument("--run-dir", default=None, help="also write data_problems.csv (what on_problem fixed or dropped) there")
    p.add_argument("--subjects", type=int, default=12, help="synthme only: subjects to generate (default: %(default)s)")
    p.add_argument("--clips-per-subject", type=int, default=9, help="synthme only: clips per subject (default: %(default)s)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_prepare)

    p = sub.add_parser(
        "synthme",
        help="write SynthME in the exact shape of a real release (casme2, samm, smic_hs, casme3a, megc2019)",
        description="Write an emulated release at OUT: the real release's folders, frame names, sheets and "
        "known sheet faults, with SynthME's faces and micro-motions; read it with that dataset's builder.",
    )
    p.add_argument("--as", dest="kind", required=True, metavar="KIND",
                   choices=("casme2", "samm", "smic_hs", "casme3a", "megc2019"),
                   help="casme2, samm, smic_hs, casme3a or megc2019 (OUT holds CASME2/, SAMM/, SMIC/)")
    p.add_argument("out", metavar="OUT", help="a new or empty folder")
    p.add_argument("--layout", default="both", choices=("raw", "cropped", "both"),
                   help="CASME II frames: raw (CASME2_RAW_selected/), cropped (Cropped/) or both (default: %(default)s)")
    p.add_argument("--smic-layout", default="raw", choices=("raw", "cropped", "both"),
                   help="SMIC-HS frames: raw (HS/), cropped (SMIC_all_cropped/HS/) or both (default: %(default)s)")
    p.add_argument("--smic-names", default="s1", choices=("s1", "s01"),
                   help="SMIC subject folder spelling (default: %(default)s)")
    p.add_argument("--scale", type=float, default=1.0, help="shrink frame sizes and clip lengths (default: %(default)s)")
    p.add_argument("--small", action="store_true", help="a few clips per class, for tests (counts are not the real ones)")
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
    p.add_argument("--apex", type=int, default=None, help="apex frame number; flow models read onset→apex "
                   "(default: the middle frame between onset and offset)")
    p.add_argument("--out", default=None, help="where to write the overlay PNG and prediction.json (default: beside the run)")
    p.add_argument("--crop", default="auto", help="face crop: auto (Haar face detector, else centred square), haar, "
                   "center, none, or dataset (the clip is already a face crop) (default: %(default)s)")
    p.add_argument("--device", default="cpu", help="torch device (default: %(default)s)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "cache",
        help="list or clear the cache of generated SynthME trees and clip stores",
        description="The one cache every run, notebook and `merkit prepare` shares: $MERKIT_CACHE, else runs/cache "
        "of the checkout (an installed package: ~/.cache/merkit). `list` shows each SynthME tree and clip store "
        "with its size; `clear` deletes them.",
    )
    p.add_argument("action", choices=("list", "clear"))
    p.add_argument("--cache-dir", default=None, help="another cache folder (default: $MERKIT_CACHE or runs/cache)")
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
    p.add_argument("--on-problem", default="error", choices=("error", "fix", "drop"),
                   help="known sheet faults: error (report), fix (apply the declared errata), drop (leave those "
                   "clips out) (default: %(default)s)")
    p.add_argument("--casme2-sheet", default=None, metavar="FILE",
                   help="CASME II sheet to read (default: CASME2-coding-20140508.xlsx, which defines the composite)")
    p.set_defaults(func=cmd_composite)

    from merkit.pipeline import DEFAULT_CELL_TIMEOUT

    p = sub.add_parser("teach", help="build the student and instructor copies of the notebooks for a lab",
                       description="teach build OUT: OUT/student/*.ipynb (exercises, no solutions, no outputs) and "
                       "OUT/instructor/*.ipynb (solutions, executed with papermill; see docs/teaching.md).")
    p.add_argument("action", choices=("build",))
    p.add_argument("out", metavar="OUT")
    p.add_argument("--params", action="append", metavar="FILE.yaml", help="YAML file of name: value for the instructor run (repeatable)")
    p.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"), help="set one notebook parameter (repeatable)")
    p.add_argument("--notebooks", nargs="+", default=None, metavar="NB", help="notebooks (default: 01_data … 05_leakage)")
    p.add_argument("--no-execute", action="store_true", help="write the student copies only")
    p.add_argument("--cell-timeout", type=float, default=DEFAULT_CELL_TIMEOUT, metavar="SECONDS", help="per-cell limit (default: %(default)s)")
    p.add_argument("--no-resume", action="store_true", help="re-execute every notebook")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_teach)

    p = sub.add_parser("models", help="print the model registry", description="Print every registered model with "
                       "its input kind, size and parameter count.")
    p.set_defaults(func=cmd_models)
    return parser


def _exit_code(err: MerkitError) -> int:
    """3 for a locked run directory, 1 for a notebook that failed while running, 2 for everything else."""
    if isinstance(err, RunLockedError):
        return EXIT_LOCKED
    from merkit.pipeline import PipelineError  # lazy: yaml and the pipeline stay out of ``merkit --help``

    if isinstance(err, PipelineError):
        return EXIT_FAILED
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``merkit`` (and ``python -m merkit.cli``); returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    early_lock = None
    if args.command in ("pipeline", "demo") and args.run_dir and not args.list_params:
        # Before the heavy imports: a second pipeline into a busy run directory is refused in well under a
        # second. run_pipeline takes the same lock again (re-entrant within this process).
        try:
            early_lock = RunLock(args.run_dir).acquire()
        except RunLockedError as err:
            print(f"merkit: error: {err}", file=sys.stderr)
            return EXIT_LOCKED
    try:
        return int(args.func(args) or 0)
    except MerkitError as err:
        # Every error the kit raises on purpose is a MerkitError with a message meant for a person: one line,
        # no traceback. The exit code says what kind (see the module docstring).
        if args.debug:
            raise
        print(f"merkit: error: {err}", file=sys.stderr)
        return _exit_code(err)
    except KeyboardInterrupt:
        print("merkit: interrupted", file=sys.stderr)
        return 130
    finally:
        if early_lock is not None:
            early_lock.release()


if __name__ == "__main__":
    sys.exit(main())
