"""bf16 against fp32 for 3D clip models and for STSTNet's fused step: pooled LOSO UF1 over several training seeds,
and speed per step.

    .venv/bin/python benchmarks/bench_precision.py                           # meranet_small, meranet, ststnet; 3 seeds
    .venv/bin/python benchmarks/bench_precision.py --models ststnet          # STSTNet only (about 10 min on 2 cores)
    .venv/bin/python benchmarks/bench_precision.py --models meranet_small --seeds 3 --speed-steps 20
    .venv/bin/python benchmarks/bench_precision.py --device cuda             # the same on a GPU
    .venv/bin/python benchmarks/bench_precision.py --precisions fp32 --runs-dir R &   # in two processes, then
    .venv/bin/python benchmarks/bench_precision.py --precisions bf16 --runs-dir R     # once more with both: the table

Cost on a 2-core CPU: one meranet_small LOSO at the laptop profile is 12 folds of about 5 s each in fp32 on an idle
machine, several times that on a loaded one; MERANet's is several times that. The default (2 models x 3 seeds x 2
precisions) takes hours there: ``--models meranet_small`` and ``--folds`` make it smaller.

The evidence ``precision: auto`` follows on CPU (:mod:`merkit.training.precision`): bf16 autocast (with
``channels_last_3d``) is chosen for clip models only if their LOSO UF1 under bf16 stays inside fp32's bootstrap
interval on the default SynthME.

What it does:
1. Takes the demo's run parameters (the ``laptop`` profile of :mod:`merkit.config.profiles` with the run
   parameters ``notebooks/demo.yaml`` adds: SynthME 12 subjects x 9 clips, grey clips, fixed epochs, AdamW,
   augmentation; the run prints the values) and builds its clip store once (cached in ``--cache``, not timed).
   Each model is built for that clip size, as the notebooks do.
2. For each model, each training seed (``--seeds``; the LOSO folds do not depend on the seed, so every run
   scores the same 12 folds) and each precision, runs the full LOSO sequentially (``run_protocol``) and reads
   the pooled UF1 of its predictions.
3. Intervals: a paired bootstrap over clips. Each replicate draws the clips with replacement once and scores
   every seed's predictions on that same draw; the replicate's statistic is the mean pooled UF1 over the
   seeds. The 2.5/97.5 percentiles give each precision's interval of its seed-mean UF1. The rule: bf16 passes
   when its seed-mean UF1 lies inside fp32's interval. Clips of one subject are not independent, so the
   interval is optimistic (narrow): the rule is strict, not lenient.
4. Speed: the median wall time of one training step (forward, backward, AdamW) on a batch of the demo's size,
   after warm-up steps, for each model: fp32, bf16 as the kit trains it (``channels_last_3d`` on CPU) and bf16
   in the default layout, with the fp32/bf16 ratios; and whether three backward passes from the same weights
   on the same batch give bit-identical gradients in each. On a shared machine the times are indicative only;
   the UF1 figures do not depend on the load (fp32 runs repeat exactly for the seed).

``ststnet`` in ``--models`` is measured on its own data and trainer, as ``precision: auto`` uses it: the generated
composite-shaped flow set of ``bench_recipe.py`` (442 images, 68 subjects), its 68 LOSO folds trained by the fused
fold-batched step (one group, as ``executor: auto`` runs STSTNet on CPU) under a recipe (``--ststnet-recipe``,
default ``fast``; ``published`` takes 800 epochs per run), per training seed and precision (bf16: the fused step's
GEMMs take bf16 operands, fp32 sums). The same paired seed-mean bootstrap gives the intervals. Speed: seconds per
epoch and fold of a group of ``--ststnet-group`` folds under the published recipe's batch (compiled epilogues, as a
long run compiles them), and whether two identical short trainings end on bit-identical weights.

It prints the machine's load (``/proc/loadavg``) before and after, and the CPU's native bf16 support as
``merkit.training.precision.cpu_bf16_support`` reports it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from _machine import load_average

DEMO_YAML = Path(__file__).resolve().parents[1] / "notebooks" / "demo.yaml"
PRECISIONS = ("fp32", "bf16")


def demo_params(device: str, epochs: int | None) -> dict:
    """The demo's run parameters (those ``RunConfig.from_params`` takes), on ``device``: the notebooks' profile
    with the run parameters of ``notebooks/demo.yaml`` on top."""
    from merkit.config import run_parameter_names
    from merkit.config.profiles import NOTEBOOK_PROFILE, profile_params

    demo = yaml.safe_load(DEMO_YAML.read_text())
    known = run_parameter_names()
    params = {**profile_params(NOTEBOOK_PROFILE), **{k: v for k, v in demo.items() if k in known}}
    params.update(device=device, executor="sequential")
    if epochs is not None:
        params["epochs"] = epochs
    return params


def seed_mean_uf1_bootstrap(runs: list[pd.DataFrame], num_classes: int, n_boot: int, seed: int = 0) -> np.ndarray:
    """Mean pooled UF1 over ``runs`` (one predictions table per training seed, the same clips) for each of
    ``n_boot`` paired replicates that resample the clips once for every run: (n_boot,)."""
    keys = ["dataset", "subject", "sample"]
    ordered = [r.sort_values(keys).reset_index(drop=True) for r in runs]
    for r in ordered[1:]:
        if not r[keys].equals(ordered[0][keys]):
            raise ValueError("the runs scored different clips: not the same folds")
    n = len(ordered[0])
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)  # (n_boot, n)
    scores = []
    for r in ordered:
        gt, pred = r["gt"].to_numpy(np.int64), r["pred"].to_numpy(np.int64)
        true_onehot = np.eye(num_classes)[gt]  # (n,) -> (n, k)
        pred_onehot = np.eye(num_classes)[pred]  # (n,) -> (n, k)
        tp = weights @ ((gt == pred)[:, None] * true_onehot)  # (n_boot, n) @ (n, k) -> (n_boot, k)
        support, predicted = weights @ true_onehot, weights @ pred_onehot  # (n_boot, k) each
        with np.errstate(divide="ignore", invalid="ignore"):
            f1 = np.where(support > 0, 2 * tp / (support + predicted), np.nan)  # 2tp / (2tp + fp + fn)
        scores.append(np.nanmean(f1, axis=1))  # (n_boot,): classes absent from a replicate are left out
    return np.mean(scores, axis=0)  # (runs, n_boot) -> (n_boot,)


def loso_table(args: argparse.Namespace, prepared, params: dict) -> tuple[pd.DataFrame, list[dict]]:
    """Per run: model, precision, seed, UF1, UAR, fold seconds; and per model with both precisions, the
    seed-mean UF1 of each with its paired bootstrap interval."""
    from merkit.config import RunConfig
    from merkit.evaluation.metrics import pooled_scores
    from merkit.training.runner import run_protocol

    classes = list(prepared.classes)
    rows, summary = [], []
    with tempfile.TemporaryDirectory() as scratch:
        runs = Path(args.runs_dir) if args.runs_dir else Path(scratch)
        for name in args.models:
            preds: dict[str, list[pd.DataFrame]] = {p: [] for p in args.precisions}
            for seed in args.seeds:
                for precision in args.precisions:
                    config = RunConfig.from_params(**{**params, "model": name, "precision": precision, "seed": seed})
                    run_dir = runs / f"{name}_{precision}_seed{seed}"  # a kept run resumes: done folds are skipped
                    predictions = run_protocol(
                        config, prepared.store, run_dir, folds=args.folds, progress=False, n_boot=1
                    )
                    predictions = predictions[predictions["fold"].isin(args.folds or predictions["fold"])]
                    histories = [
                        run_dir / "folds" / f"fold_{key}" / "history.csv" for key in predictions["fold"].unique()
                    ]
                    seconds = sum(float(pd.read_csv(h)["seconds"].sum()) for h in histories)
                    scores = pooled_scores(predictions["gt"], predictions["pred"], len(classes), warn_absent=False)
                    preds[precision].append(predictions)
                    row = {
                        "model": name,
                        "precision": precision,
                        "seed": seed,
                        "uf1": round(scores["uf1"], 4),
                        "uar": round(scores["uar"], 4),
                        "fold_s": round(seconds, 1),
                    }
                    rows.append(row)
                    print(row, f"load {load_average()}", flush=True)
            if set(PRECISIONS) - set(args.precisions):
                continue
            line = {"model": name}
            for precision in PRECISIONS:
                boot = seed_mean_uf1_bootstrap(preds[precision], len(classes), args.n_boot)
                mean = float(np.mean([r["uf1"] for r in rows if r["model"] == name and r["precision"] == precision]))
                low, high = np.percentile(boot, [2.5, 97.5])
                line[precision] = {
                    "mean_uf1": round(mean, 4),
                    "low": round(float(low), 4),
                    "high": round(float(high), 4),
                }
            fp32 = line["fp32"]
            line["bf16_within_fp32_interval"] = bool(fp32["low"] <= line["bf16"]["mean_uf1"] <= fp32["high"])
            summary.append(line)
    return pd.DataFrame(rows), summary


def ststnet_evidence(args: argparse.Namespace) -> dict:
    """STSTNet's fused step in fp32 and bf16 on the generated composite-shaped flow set (module docstring): per-run
    UF1, seed-mean intervals, speed per epoch and fold, and whether identical trainings repeat bit for bit."""
    from bench_folds import generated_flow_set
    from bench_recipe import CLASS_STRENGTH, RECIPES, run_recipe

    from merkit.config import TrainConfig
    from merkit.data.torch_dataset import FlowDataset
    from merkit.models import create_model
    from merkit.training.batched.stack import train_folds

    images, labels, subjects = generated_flow_set(class_strength=CLASS_STRENGTH)
    keys = np.unique(subjects)
    result: dict = {"recipe": args.ststnet_recipe}
    if not args.no_speed:
        speed = {}
        for precision in PRECISIONS:
            fields = RECIPES["published"]
            members = np.stack([subjects != s for s in keys[: args.ststnet_group]])

            def train(epochs: int, compile_step: bool) -> list:
                models = []
                for i in range(len(members)):
                    torch.manual_seed(i)
                    models.append(create_model("ststnet", num_classes=3))
                return train_folds(
                    models,
                    TrainConfig(**{**fields, "epochs": epochs}, device=args.device, precision=precision),
                    seeds=list(range(len(members))),
                    num_classes=3,
                    shared=FlowDataset((images, labels), encoding="bgr255"),
                    members=members,
                    group_seed=1,
                    compile_step=compile_step,
                )

            first, second = train(2, False), train(2, False)  # two identical short trainings
            repeats = all(
                torch.equal(a, b)
                for (m1, _), (m2, _) in zip(first, second)
                for a, b in zip(m1.state_dict().values(), m2.state_dict().values())
            )
            history = train(args.ststnet_speed_epochs, True)[0][1]
            per_fold = float(np.median(history["seconds"].to_numpy()[2:]))  # after the compile's first epochs
            speed[precision] = {"ms_per_epoch_and_fold": round(per_fold * 1e3, 2), "weights_repeat": repeats}
        speed["speedup"] = round(speed["fp32"]["ms_per_epoch_and_fold"] / speed["bf16"]["ms_per_epoch_and_fold"], 2)
        print(
            f"\nststnet, fused step, group of {args.ststnet_group} folds, batch {RECIPES['published']['batch_size']}, "
            f"median of {args.ststnet_speed_epochs - 2} epochs (load {load_average()}): fp32 "
            f"{speed['fp32']['ms_per_epoch_and_fold']} ms, bf16 {speed['bf16']['ms_per_epoch_and_fold']} ms per epoch "
            f"and fold ({speed['speedup']}x); identical trainings repeat bit for bit: fp32 "
            f"{speed['fp32']['weights_repeat']}, bf16 {speed['bf16']['weights_repeat']}",
            flush=True,
        )
        result["speed"] = speed
    if not args.no_loso:
        preds: dict[str, list[pd.DataFrame]] = {p: [] for p in PRECISIONS}
        rows = []
        for seed in args.seeds:
            for precision in PRECISIONS:
                r = run_recipe(args.ststnet_recipe, images, labels, subjects, len(keys), precision=precision, seed=seed)
                preds[precision].append(r["predictions"])
                row = {"model": "ststnet", "precision": precision, "seed": seed, "uf1": round(r["uf1"], 4)}
                row |= {"uar": round(r["uar"], 4), "seconds": round(r["seconds"], 1)}
                rows.append(row)
                print(row, f"load {load_average()}", flush=True)
        line: dict = {"model": "ststnet", "recipe": args.ststnet_recipe}
        for precision in PRECISIONS:
            boot = seed_mean_uf1_bootstrap(preds[precision], 3, args.n_boot)
            low, high = np.percentile(boot, [2.5, 97.5])
            mean = float(np.mean([r["uf1"] for r in rows if r["precision"] == precision]))
            line[precision] = {"mean_uf1": round(mean, 4), "low": round(float(low), 4), "high": round(float(high), 4)}
        fp32 = line["fp32"]
        line["bf16_within_fp32_interval"] = bool(fp32["low"] <= line["bf16"]["mean_uf1"] <= fp32["high"])
        result.update(runs=rows, interval=line)
    return result


def step_profile(
    name: str, precision: str, params: dict, prepared, steps: int, warmup: int, layout: bool = True
) -> tuple[float, bool]:
    """(median seconds of one training step, whether the gradients repeat) of ``name`` under ``precision`` on a
    demo-sized batch. ``layout``: use the memory format the kit trains in (``channels_last_3d`` for a clip model
    in bf16 on CPU); False keeps the default layout. "Repeat": three backward passes from the same weights on
    the same batch give bit-identical gradients."""
    from merkit.config import RunConfig
    from merkit.data.inputs import input_adapter
    from merkit.models import create_model
    from merkit.training.fold import resolve_device
    from merkit.training.precision import resolve_precision

    config = RunConfig.from_params(**{**params, "model": name, "precision": precision})
    device = resolve_device(config.train.device)
    torch.manual_seed(0)
    model = create_model(name, num_classes=len(prepared.classes), **config.model.overrides).to(device)
    dtype = resolve_precision(precision, device, model)
    adapter = input_adapter(model)
    memory_format = adapter.memory_format(device, dtype) if layout else None
    batch = config.train.batch_size
    x = adapter.example(prepared.store, batch).to(device)  # (b, c, t, h, w)
    if memory_format is not None:
        model = model.to(memory_format=memory_format)
        x = x.contiguous(memory_format=memory_format)
    y = torch.arange(batch, device=device) % len(prepared.classes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.train.lr)
    criterion = torch.nn.CrossEntropyLoss()
    model.train()

    def backward() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device_type=device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = model(x)  # (b, k)
        criterion(logits.float(), y).backward()

    grads = []
    for _ in range(3):  # train-mode BN normalises with the batch's statistics: the same weights, the same pass
        torch.manual_seed(1)  # the same dropout masks
        backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    repeats = all(torch.equal(grads[0], g) for g in grads[1:])
    times = []
    for i in range(warmup + steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return statistics.median(times), repeats


def clip_evidence(args: argparse.Namespace, params: dict) -> dict:
    """The clip models' part (module docstring, 1.–4.): their per-step speed and LOSO UF1 table on SynthME."""
    from merkit.config import RunConfig
    from merkit.prepare import prepare_data

    base = RunConfig.from_params(**params)
    prepared = prepare_data(base.data, base.preprocess_config(), cache_dir=args.cache, progress=False)
    print(
        f"laptop profile + {DEMO_YAML.name}: SynthME {base.data.synthme_n_subjects} subjects x "
        f"{base.data.synthme_clips_per_subject} clips, clips {tuple(prepared.store.clips.shape[1:])}, "
        f"{base.train.epochs} epochs, lr {base.train.lr:g}, batch {base.train.batch_size}, "
        f"augment {base.train.augment}; LOSO folds {', '.join(args.folds) if args.folds else 'all'}, "
        f"training seeds {args.seeds}"
    )
    results: dict = {}

    if not args.no_speed:
        speed = []
        for name in args.models:
            fp32, fp32_repeats = step_profile(name, "fp32", params, prepared, args.speed_steps, warmup=3)
            bf16, bf16_repeats = step_profile(name, "bf16", params, prepared, args.speed_steps, warmup=3)
            plain, plain_repeats = step_profile(name, "bf16", params, prepared, args.speed_steps, 3, layout=False)
            speed.append(
                {
                    "model": name,
                    "fp32_ms": round(fp32 * 1e3, 1),
                    "bf16_ms": round(bf16 * 1e3, 1),
                    "speedup": round(fp32 / bf16, 2),
                    "bf16_default_layout_ms": round(plain * 1e3, 1),
                    "speedup_default_layout": round(fp32 / plain, 2),
                    "grads_repeat_fp32": fp32_repeats,
                    "grads_repeat_bf16": bf16_repeats,
                    "grads_repeat_bf16_default_layout": plain_repeats,
                }
            )
        print(
            f"\nper training step (batch {base.train.batch_size}, median of {args.speed_steps}; bf16 as the kit "
            f"trains it, with its memory format, and in the default layout; load {load_average()}):"
        )
        print(pd.DataFrame(speed).to_string(index=False), flush=True)
        results["speed"] = speed

    if not args.no_loso:
        table, summary = loso_table(args, prepared, params)
        print(f"\nLOSO pooled UF1 per run (load {load_average()}):")
        print(table.to_string(index=False))
        print(f"\nseed-mean UF1 [paired clip bootstrap 95% interval, {args.n_boot} replicates]:")
        for line in summary:
            fp32, bf16 = line["fp32"], line["bf16"]
            print(
                f"  {line['model']}: fp32 {fp32['mean_uf1']:.3f} [{fp32['low']:.3f}, {fp32['high']:.3f}]  "
                f"bf16 {bf16['mean_uf1']:.3f} [{bf16['low']:.3f}, {bf16['high']:.3f}]  "
                f"bf16 inside fp32's interval: {'yes' if line['bf16_within_fp32_interval'] else 'NO'}"
            )
        passed = bool(summary) and all(line["bf16_within_fp32_interval"] for line in summary)
        if summary:
            print(
                f"\nUF1 test: bf16 inside fp32's interval for every model: {'yes' if passed else 'NO'} (necessary for "
                "precision auto to pick bf16 on CPU, with repeatable gradients: merkit/training/precision.py)"
            )
        results.update(runs=table.to_dict("records"), intervals=summary, bf16_passes=passed)

    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models", default="meranet_small,meranet,ststnet", help="comma-separated clip models, and/or ststnet"
    )
    parser.add_argument("--ststnet-recipe", default="fast", help="STSTNet's LOSO recipe (default: %(default)s)")
    parser.add_argument("--ststnet-group", type=int, default=34, help="folds in STSTNet's timed group")
    parser.add_argument("--ststnet-speed-epochs", type=int, default=12, help="epochs of STSTNet's timed group")
    parser.add_argument("--seeds", default="0,1,2", help="training seeds (default: %(default)s)")
    parser.add_argument(
        "--folds", default="", help="only these LOSO folds (held-out subjects, e.g. 01,02,03,04); default: all"
    )
    parser.add_argument("--epochs", type=int, default=None, help="epochs per fold (default: the laptop profile's)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: %(default)s)")
    parser.add_argument("--n-boot", type=int, default=2000, help="bootstrap replicates (default: %(default)s)")
    parser.add_argument("--speed-steps", type=int, default=20, help="timed steps per model and precision")
    parser.add_argument("--precisions", default="fp32,bf16", help="which LOSO runs to train (default: both)")
    parser.add_argument(
        "--runs-dir",
        default="",
        help="keep the LOSO runs here (a later call resumes them: run the precisions in two processes, then "
        "once more with both to print the table); default: a temporary directory",
    )
    parser.add_argument("--no-loso", action="store_true", help="only the per-step speed")
    parser.add_argument("--no-speed", action="store_true", help="only the LOSO UF1 table")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--json", default="", help="also write the results to this JSON file")
    parser.add_argument(
        "--cache",
        default=str(Path(tempfile.gettempdir()) / "merkit_bench_precision"),
        help="where SynthME and the clip store are cached between runs",
    )
    args = parser.parse_args()
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    with_ststnet = "ststnet" in args.models
    args.models = [m for m in args.models if m != "ststnet"]
    args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    args.folds = [f.strip() for f in args.folds.split(",") if f.strip()] or None
    args.precisions = [p.strip() for p in args.precisions.split(",") if p.strip() in PRECISIONS]
    if args.threads:
        torch.set_num_threads(args.threads)

    from merkit.models import create_model
    from merkit.training.fold import resolve_device
    from merkit.training.precision import choose_precision, cpu_bf16_support

    params = demo_params(args.device, args.epochs)
    device = resolve_device(args.device)
    start_load = load_average()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}, nice {os.nice(0)}")
    print(f"load before: {start_load}")
    probe = cpu_bf16_support()
    print(f"CPU native bf16: {probe.feature or 'none'} (from {probe.source})")
    if device.type == "cuda":
        print(f"GPU: {torch.cuda.get_device_name(device)}, bf16 supported: {torch.cuda.is_bf16_supported()}")

    results: dict = {"device": str(device), "cpu_bf16": probe.feature, "load_before": start_load}
    if args.models:
        results.update(clip_evidence(args, params))
    if with_ststnet:
        results["ststnet"] = ststnet = ststnet_evidence(args)
        if "interval" in ststnet:
            line = ststnet["interval"]
            fp32, bf16 = line["fp32"], line["bf16"]
            print(
                f"\nststnet ({line['recipe']} recipe, generated flow set, 68 folds), seed-mean UF1 [paired clip "
                f"bootstrap 95% interval, {args.n_boot} replicates]: fp32 {fp32['mean_uf1']:.3f} "
                f"[{fp32['low']:.3f}, {fp32['high']:.3f}]  bf16 {bf16['mean_uf1']:.3f} [{bf16['low']:.3f}, "
                f"{bf16['high']:.3f}]  bf16 inside fp32's interval: "
                f"{'yes' if line['bf16_within_fp32_interval'] else 'NO'}"
            )

    for name in args.models + (["ststnet"] if with_ststnet else []):
        choice = choose_precision("auto", device, create_model(name))
        print(f"precision auto here chooses {choice.precision} for {name}: {choice.reason}")
        results.setdefault("auto", {})[name] = choice.record()
    print(f"load after: {load_average()}")
    results.update(load_after=load_average())
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
