"""The tiny LOSO runs behind the "behaviour does not change" test (tests/test_behaviour_unchanged.py).

The golden files under ``tests/fixtures/behaviour/`` were written by ``make_golden`` at commit af411c4, before
issue 11's refactor (SynthME outputs of the kit itself: nothing from a real dataset). Each run goes the way the
notebooks go: flat parameters -> DataConfig / PreprocessConfig / RunConfig -> prepare_data -> run_protocol.
The configs are built here as the notebooks built them, section by section, on purpose, so the test also holds the new
``RunConfig.from_params`` to the values the notebooks used to build by hand.

Regenerate (only when a behaviour change is intended, and say so in the commit):
    PYTHONPATH=$PWD .venv/bin/python -m tests.helpers_behaviour tests/fixtures/behaviour
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from tests.helpers_pipeline import TINY_SYNTHME

FIXTURES = Path(__file__).parent / "fixtures" / "behaviour"

#: One clip model (augmentation, cosine schedule, class weights) and one flow model (DIS flow images), two epochs
#: each so the schedule and the second epoch's data order count; CPU fp32, fixed seed.
RUNS: dict[str, dict[str, Any]] = {
    "meranet_small": {"model": "meranet_small", "flow_method": ""},
    "offapexnet": {"model": "offapexnet", "flow_method": "dis"},
}
PARAMS: dict[str, Any] = {
    **TINY_SYNTHME,
    "dataset": "synthme",
    "label_map": "synthme_3class",
    "on_problem": "error",  # what the golden runs used (the default then; SynthME has no sheet faults to fix)
    "synthme_seed": 0,
    "temporal": "onset_offset",
    "crop": "auto",
    "no_face": "error",
    "epochs": 2,
    "batch_size": 4,
    "lr": 0.003,
    "seed": 7,
    "device": "cpu",
    "precision": "fp32",
    "augment": True,
    "evaluation": "loso",
    "k": 5,
}


def notebook_config(params: dict[str, Any], model: str) -> tuple[Any, Any, Any]:
    """(DataConfig, PreprocessConfig, RunConfig) built as notebooks 02-04 built them at af411c4."""
    from merkit.config import DataConfig, ModelConfig, ProtocolConfig, RunConfig, model_overrides, train_config
    from merkit.data.preprocess import PreprocessConfig

    p = params
    preprocess = PreprocessConfig(
        frames=p["frames"], size=p["size"], temporal=p["temporal"], crop=p["crop"], no_face=p["no_face"]
    )
    data = DataConfig(
        dataset=p["dataset"],
        data_root="",
        label_map=p["label_map"],
        on_problem=p["on_problem"],
        synthme_seed=p["synthme_seed"],
        synthme_n_subjects=p["synthme_n_subjects"],
        synthme_clips_per_subject=p["synthme_clips_per_subject"],
        synthme_n_frames=p["synthme_n_frames"],
        synthme_size=p["synthme_size"],
    )
    config = RunConfig(
        data=data,
        model=ModelConfig(name=model, overrides=model_overrides(model, frames=p["frames"], size=p["size"])),
        train=train_config(
            "",
            epochs=p["epochs"],
            batch_size=p["batch_size"],
            lr=p["lr"],
            seed=p["seed"],
            device=p["device"],
            precision=p["precision"],
            augment=p["augment"],
        ),
        protocol=ProtocolConfig(name=p["evaluation"], k=p["k"]),
        preprocess=preprocess.to_dict(),
    )
    return data, preprocess, config


def run_tiny_loso(name: str, run_dir: Path, cache_dir: Path, config: Any = None) -> pd.DataFrame:
    """Run the tiny LOSO ``name`` of RUNS into ``run_dir`` (``config``: a RunConfig to use instead of the
    hand-built one); returns the predictions as ``run_protocol`` returned them."""
    from merkit.data.preprocess import PreprocessConfig
    from merkit.prepare import prepare_data
    from merkit.training.runner import run_protocol

    spec = RUNS[name]
    data, preprocess, built = notebook_config(PARAMS, spec["model"])
    config = built if config is None else config
    preprocess = PreprocessConfig(**config.preprocess) if config is not built else preprocess
    prepared = prepare_data(
        config.data, preprocess, cache_dir=cache_dir, flow=spec["flow_method"] or None, progress=False
    )
    return run_protocol(config, prepared.store, run_dir, executor="sequential", progress=False)


def make_golden(out: Path) -> None:
    """Write ``<name>/predictions.csv``, ``metrics.json`` and ``config.json`` of every tiny run under ``out``."""
    import tempfile

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name in RUNS:
            run_dir = Path(tmp) / name
            run_tiny_loso(name, run_dir, Path(tmp) / "cache")
            (out / name).mkdir(exist_ok=True)
            for file in ("predictions.csv", "metrics.json", "config.json"):
                shutil.copyfile(run_dir / file, out / name / file)


if __name__ == "__main__":
    make_golden(Path(sys.argv[1]) if len(sys.argv) > 1 else FIXTURES)
