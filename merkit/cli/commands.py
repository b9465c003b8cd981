"""What each ``merkit`` command does (``cmd_<name>(args) -> exit code``); :mod:`merkit.cli.parser` wires them up.

The kit's modules are imported inside each command: ``merkit --help`` builds the parser without torch,
pandas or papermill.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from merkit.cli.exits import EXIT_FAILED, UserError
from merkit.errors import MerkitError

# ----------------------------------------------------------------------------------------------------------
# pipeline / demo
# ----------------------------------------------------------------------------------------------------------


def _collect_params(param_files: Sequence[str], overrides: Sequence[Sequence[str]]) -> tuple[dict[str, Any], set[str]]:
    """Merge YAML files (later wins) then ``-p name value`` overrides; return params and the names typed raw."""
    from merkit.pipeline.run import load_params_file

    params: dict[str, Any] = {}
    for path in param_files:
        params.update(load_params_file(path))
    raw = set()
    for name, value in overrides:
        params[name] = value
        raw.add(name)
    return params, raw


def _print_result(result: Any) -> None:
    from merkit.pipeline.run import format_metric, headline_metrics

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
    from merkit.pipeline.run import check_parameters, notebook_parameters, resolve_notebooks, run_pipeline

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
    from merkit.pipeline.run import DEMO_PARAMS

    return _run_pipeline_command(args, [str(DEMO_PARAMS), *(args.params or [])])


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
    from merkit.pipeline.sweep import check_sweep, expand_grid, run_sweep, sweep_from_file

    spec = sweep_from_file(
        args.grid, out=args.out, executor=args.executor, workers=args.workers, notebooks=args.notebooks
    )
    if args.dry_run:
        points = expand_grid(spec)
        check_sweep(spec, points, args.notebook_dir)
        for point in points:
            print(f"{point.run_dir}  {point.values}")
        return 0
    from merkit.pipeline.run import DEFAULT_CELL_TIMEOUT

    timeout = args.cell_timeout if args.cell_timeout is not None else DEFAULT_CELL_TIMEOUT
    result = run_sweep(
        spec, notebook_dir=args.notebook_dir, cell_timeout=timeout, resume=not args.no_resume, progress=not args.quiet
    )
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


def notebook_defaults() -> dict[str, Any]:
    """Every run parameter's default as the notebooks declare it: the ``laptop`` profile over the library's
    defaults (:func:`merkit.config.profiles.profile_params`). The options of ``merkit prepare``, ``composite`` and
    ``predict`` that are run parameters default to these (the parser leaves them None)."""
    from merkit.config.profiles import NOTEBOOK_PROFILE, profile_params

    return profile_params(NOTEBOOK_PROFILE)


def _given_or_default(args: argparse.Namespace, names: Sequence[str]) -> None:
    """Fill each option of ``names`` that the user did not give (None) with the notebooks' default."""
    defaults = notebook_defaults()
    for name in names:
        if getattr(args, name) is None:
            setattr(args, name, defaults[name])


def cmd_prepare(args: argparse.Namespace) -> int:
    from merkit.config import DataConfig
    from merkit.data.preprocess import PreprocessConfig
    from merkit.prepare import prepare_data

    defaults = notebook_defaults()
    args.subjects = defaults["synthme_n_subjects"] if args.subjects is None else args.subjects
    args.clips_per_subject = (
        defaults["synthme_clips_per_subject"] if args.clips_per_subject is None else args.clips_per_subject
    )
    _given_or_default(args, ("dataset", "frames", "size", "crop", "no_face", "on_problem"))
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
    if data_root.is_dir() and not _readable_folder(data_root):
        raise UserError(f"data root {data_root} cannot be read (permission denied): give your user read access")
    if args.label_map is None:  # the notebooks' class mapping is SynthME's: another dataset gets none unless named
        args.label_map = defaults["label_map"] if args.dataset == defaults["dataset"] else ""
    data = DataConfig(
        dataset=args.dataset,
        data_root=str(data_root),
        label_map=args.label_map,
        listing=args.listing,
        synthme_n_subjects=args.subjects,
        synthme_clips_per_subject=args.clips_per_subject,
        on_problem=args.on_problem,
    )
    preprocess = PreprocessConfig(frames=args.frames, size=args.size, crop=args.crop, no_face=args.no_face)
    # The user's one cache ($MERKIT_CACHE or runs/cache), never data_root: a licensed copy is often read-only.
    try:
        prepared = prepare_data(
            data,
            preprocess,
            cache_dir=args.cache_dir or "",
            flow=args.flow,
            progress=not args.quiet,
            run_dir=args.run_dir,
        )
    except OSError as error:
        if isinstance(error, MerkitError) or not error.filename:
            raise
        # A file or folder the system refuses (permissions, a vanished mount): name it, no traceback.
        raise UserError(f"{error.filename}: {error.strerror or error}") from error
    manifest = prepared.manifest
    print(f"dataset: {args.dataset} ({len(manifest)} clips, {manifest['subject'].nunique()} subjects)")
    print(f"data_root: {prepared.data_root}{' (SynthME generated)' if prepared.generated else ''}")
    if prepared.classes:
        counts = manifest["label"].value_counts().sort_index()
        print("classes: " + ", ".join(f"{prepared.classes[int(k)]} {int(v)}" for k, v in counts.items()))
    store = prepared.store
    if store.clips is None:
        print(
            f"store: {store.path}  flow images {tuple(store.flow.shape)} from the folder (no clips: flow models only)"
        )
    else:
        flow = store.flow
        flow_text = f"  flow {tuple(flow.shape)} ({store.flow_config.method})" if flow is not None else ""
        print(f"store: {store.path}  clips {tuple(store.clips.shape)}{flow_text}")
    _print_data_problems(manifest)
    if prepared.problems_file is not None:
        print(f"data problems: {prepared.problems_file}")
    return 0


def _readable_folder(path: Path) -> bool:
    """Whether this process may list ``path`` and enter it (checked as the effective user where the system can:
    under ``sudo -u`` or a set-uid switch the real user is someone else)."""
    effective = os.access in os.supports_effective_ids
    return os.access(path, os.R_OK | os.X_OK, effective_ids=effective)


def cmd_synthme(args: argparse.Namespace) -> int:
    from merkit.data.synthetic import ReleaseExistsError, release_info, write_release

    try:
        out = write_release(
            args.kind,
            args.out,
            layout=args.layout,
            smic_layout=args.smic_layout,
            smic_names=args.smic_names,
            scale=args.scale,
            small=args.small,
            seed=args.seed,
            progress=not args.quiet,
        )
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


def _print_cache_entries(entries: Any, root: Path) -> None:
    for entry in entries:
        state = "" if entry.complete else "  (interrupted build, removed by the next build)"
        print(f"  {entry.kind:<8} {_human_size(entry.size):>10}  {entry.path.relative_to(root)}{state}")


def _confirmed(what: str) -> bool:
    """Ask on the terminal whether to delete ``what``; False for anything but yes. Without a terminal there is
    no one to ask: UserError."""
    try:
        interactive = sys.stdin.isatty()
    except (AttributeError, OSError, ValueError):
        interactive = False
    if not interactive:
        raise UserError(
            f"cache clear would delete {what}, but there is no terminal to ask: nothing deleted (add --yes)"
        )
    try:
        answer = input(f"delete {what}? [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def cmd_cache(args: argparse.Namespace) -> int:
    from merkit.cache import (
        CACHE_TAG,
        cache_dir,
        cache_source,
        check_merkit_cache,
        clear_cache,
        is_merkit_cache,
        list_cache,
    )

    root = cache_dir(args.cache_dir or "", create=False)
    print(f"cache: {root}  ({cache_source(args.cache_dir or '')})")
    entries = list_cache(root)
    if args.action == "clear":
        if not root.is_dir():
            print("  (no cache folder: nothing to delete)")
            return 0
        check_merkit_cache(root)  # ForeignCacheError (one line, exit 2) for a folder merkit did not create
        if not entries:
            print("  (empty: nothing to delete)")
            return 0
        _print_cache_entries(entries, root)
        size = _human_size(sum(e.size for e in entries))
        what = f"{len(entries)} {'entry' if len(entries) == 1 else 'entries'} ({size})"
        if not args.yes and not _confirmed(what):
            print("nothing deleted")
            return 0
        print(f"freed {_human_size(clear_cache(root))}")
        return 0
    if not entries:
        print("  (empty)")
    _print_cache_entries(entries, root)
    print(f"total {_human_size(sum(e.size for e in entries))}")
    if root.is_dir() and not is_merkit_cache(root):
        print(
            f"(no merkit cache tag {CACHE_TAG}: merkit did not create this folder; `cache clear` deletes nothing here)"
        )
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
    from merkit.data.datasets import (
        build_megc2019,
        compare_ground_truth,
        read_megc_ground_truth,
        write_megc_ground_truth,
    )

    root = Path(args.data_root).expanduser()
    if not root.is_dir():
        raise UserError(f"composite data root {root} is not a folder (it holds CASME2/, SAMM/ and SMIC/)")
    annotations = {"casme2": args.casme2_sheet} if args.casme2_sheet else None
    _given_or_default(args, ("on_problem",))
    composite = build_megc2019(root, annotations=annotations, on_problem=args.on_problem)
    per = composite.groupby("dataset")["sample"].size().to_dict()
    print(
        f"MEGC2019 composite: {len(composite)} clips, {len(set(zip(composite['dataset'], composite['subject'])))} "
        f"subjects ({', '.join(f'{k} {v}' for k, v in per.items())})"
    )
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
        print(
            f"  {row['dataset']}/{row['subject']}/{row['sample']}: {row['status']} "
            f"(built {row['built_label'] or '-'}, ground truth {row['truth_label'] or '-'})"
        )
    return EXIT_FAILED if len(disagree) else 0


def cmd_teach(args: argparse.Namespace) -> int:
    from merkit.pipeline.teach import TEACH_ORDER, build

    params, raw = _collect_params(args.params or [], args.param or [])
    built = build(
        args.out,
        params,
        args.notebooks or TEACH_ORDER,
        execute=not args.no_execute,
        cell_timeout=args.cell_timeout,
        resume=not args.no_resume,
        progress=not args.quiet,
        raw_names=raw,
    )
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
    _given_or_default(args, ("device",))
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
