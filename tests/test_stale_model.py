"""No stale model: a model.pt records the RunConfig it was trained under, and load_model(expect=…) refuses another."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from merkit.config import ModelConfig, ProtocolConfig, RunConfig, TrainConfig
from merkit.data.preprocess import PreprocessConfig
from merkit.models import create_model
from merkit.predict import StaleModelError, load_model, save_model

PREPROCESS = PreprocessConfig(frames=8, size=16)
OVERRIDES = {"frames": 8, "size": 16}


def lab_config(model: str = "meranet_small", **train) -> RunConfig:
    return RunConfig(
        model=ModelConfig(name=model, overrides=dict(OVERRIDES)),
        train=TrainConfig(epochs=1, **train),
        protocol=ProtocolConfig(name="group_kfold", k=4),
        preprocess=PREPROCESS.to_dict(),
    )


def _save(path: Path, config: RunConfig | None) -> Path:
    torch.manual_seed(0)
    net = create_model(config.model.name if config else "meranet_small", num_classes=3, **OVERRIDES).eval()
    return save_model(path, net, classes=["negative", "positive", "surprise"], preprocess=PREPROCESS, run_config=config)


def test_the_model_of_the_current_parameters_loads(tmp_path: Path):
    path = _save(tmp_path / "lab" / "model.pt", lab_config())
    bundle = load_model(path, expect=lab_config(device="cpu"))  # where it ran does not change the network
    assert type(bundle.model).__name__ == "MERANet"
    assert bundle.run_config["model"]["name"] == "meranet_small"
    assert bundle.written["run_dir"] == str((tmp_path / "lab").resolve())


def test_a_model_of_other_parameters_is_refused_naming_its_origin(tmp_path: Path):
    path = _save(tmp_path / "lab" / "model.pt", lab_config())
    with pytest.raises(StaleModelError) as caught:
        load_model(path, expect=lab_config(model="stcnn", lr=0.01))  # the student changed `model` and `lr`
    message = str(caught.value)
    assert str(path) in message and str((tmp_path / "lab").resolve()) in message
    assert "model.name: saved 'meranet_small', now 'stcnn'" in message and "train.lr" in message


def test_a_bundle_without_a_record_is_refused_when_checked_but_loads_otherwise(tmp_path: Path):
    path = _save(tmp_path / "model.pt", None)  # as an older kit wrote it
    with pytest.raises(StaleModelError, match="no record of the parameters"):
        load_model(path, expect=lab_config())
    assert load_model(path).run_config is None  # merkit predict --checkpoint still reads it
