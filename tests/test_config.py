"""Run configuration: validation, dict round trip, unknown keys, hashing, resumable fields."""

import dataclasses
import json
import warnings
from pathlib import Path

import pytest

from merkit.config import (
    PROTOCOL_NAMES,
    ConfigError,
    DataConfig,
    ModelConfig,
    ProtocolConfig,
    RunConfig,
    TrainConfig,
    load_config,
    resumable_keys,
    upgrade_saved,
)
from merkit.evaluation import splits as protocols
from merkit.models import list_models
from merkit.training.runs import DEFAULT_RESUMABLE_KEYS, RunConfigMismatch, RunDir


def test_round_trip_through_json():
    cfg = RunConfig(
        model=ModelConfig("meranet_small", {"width": 8}),
        train=TrainConfig(epochs=2, lr=3e-4),
        protocol=ProtocolConfig("group_kfold", k=3),
        preprocess={"size": 32, "frames": 8},
    )
    back = RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg
    assert back.to_dict()["train"]["epochs"] == 2


def test_missing_keys_take_defaults():
    cfg = RunConfig.from_dict({"train": {"epochs": 3}})
    assert cfg.train.epochs == 3
    assert cfg.train.batch_size == TrainConfig().batch_size
    assert cfg.protocol == ProtocolConfig()


def test_unknown_keys_are_all_listed_with_suggestions():
    with pytest.raises(ConfigError) as err:
        RunConfig.from_dict({"train": {"epoch": 3, "lr": 0.1}, "protocl": {}, "model": {"nme": "meranet"}})
    message = str(err.value)
    assert "'train.epoch' (did you mean 'train.epochs'?)" in message
    assert "'protocl' (did you mean 'protocol'?)" in message
    assert "'model.nme'" in message


@pytest.mark.parametrize(
    "section, kwargs, fragment",
    [
        (TrainConfig, {"optimizer": "adam"}, "optimizer must be one of ['adamw', 'sgd']"),
        (TrainConfig, {"schedule": "linear"}, "schedule must be one of"),
        (TrainConfig, {"loss": "mse"}, "loss must be one of"),
        (TrainConfig, {"precision": "fp16"}, "precision must be one of"),
        (TrainConfig, {"epochs": 0}, "epochs must be >= 1"),
        (TrainConfig, {"epochs": 2.5}, "epochs must be int"),
        (TrainConfig, {"lr": "0.1"}, "lr must be float"),
        (TrainConfig, {"class_weighted": 1}, "class_weighted must be bool"),
        (TrainConfig, {"val_fraction": 1.0}, "val_fraction must be in [0, 1)"),
        (TrainConfig, {"select_best": True}, "select_best needs an inner validation split"),
        (ProtocolConfig, {"name": "loocv"}, "name must be one of"),
        (ProtocolConfig, {"executor": "slurm"}, "executor must be one of"),
        (ProtocolConfig, {"k": 1}, "k must be >= 2"),
        (DataConfig, {"synthme_size": 0}, "synthme_size must be >= 1"),
    ],
)
def test_bad_values_raise_naming_the_field(section, kwargs, fragment):
    with pytest.raises(ConfigError, match=section.__name__) as err:
        section(**kwargs)
    assert fragment in str(err.value)


def test_unknown_model_is_refused_with_suggestion():
    with pytest.raises(ConfigError, match=r"unknown model 'meranet_smal' \(did you mean 'meranet_small'\?\)"):
        ModelConfig("meranet_smal")
    with pytest.raises(ConfigError, match="unknown model"):
        RunConfig.from_dict({"model": {"name": "resnet50"}})


def test_int_given_for_float_is_accepted():
    cfg = TrainConfig(lr=1, weight_decay=0)
    assert isinstance(cfg.lr, float) and cfg.lr == 1.0
    assert RunConfig.from_dict({"train": {"lr": 1}}) == RunConfig(train=TrainConfig(lr=1.0))


def test_sections_must_be_dataclasses():
    with pytest.raises(ConfigError, match="from_dict"):
        RunConfig(train={"epochs": 3})


def test_protocol_names_match_the_protocols_module():
    assert set(PROTOCOL_NAMES) == set(protocols.list_protocols())


def test_default_model_exists_in_registry():
    assert ModelConfig().name in list_models()


def test_resumable_keys_match_the_run_directory_default():
    assert (
        resumable_keys()
        == DEFAULT_RESUMABLE_KEYS
        == {
            "protocol.executor",
            "protocol.workers",
            "protocol.ray_address",
            "protocol.fold_batch",
            "protocol.memory_budget_mb",
        }
    )


def test_config_hash_ignores_scheduling_but_not_results():
    base = RunConfig()
    assert base.config_hash() == RunConfig().config_hash()
    assert len(base.config_hash()) == 16
    parallel = base.with_updates({"protocol.executor": "ray", "protocol.workers": 8})
    assert parallel.config_hash() == base.config_hash()
    for change in (
        {"train.seed": 1},
        {"train.lr": 2e-3},
        {"model.name": "stcnn"},
        {"preprocess.size": 64},
        {"model.overrides.width": 8},
        {"data.dataset": "casme2"},
    ):
        assert base.with_updates(change).config_hash() != base.config_hash(), change


def test_with_updates_validates_and_leaves_original():
    base = RunConfig()
    changed = base.with_updates({"train.epochs": 3, "model.overrides.width": 8, "preprocess.size": 32})
    assert changed.train.epochs == 3 and base.train.epochs == TrainConfig().epochs
    assert changed.model.overrides == {"width": 8} and changed.preprocess == {"size": 32}
    with pytest.raises(ConfigError, match="train.epoch"):
        base.with_updates({"train.epoch": 3})
    with pytest.raises(ConfigError, match="section"):
        base.with_updates({"epochs": 3})
    with pytest.raises(ConfigError, match="epochs must be >= 1"):
        base.with_updates({"train.epochs": 0})


def test_synthme_kwargs_name_synthme_config_fields():
    synthetic = pytest.importorskip("merkit.data.synthetic")
    kwargs = DataConfig(synthme_n_subjects=10, synthme_size=48).synthme_kwargs()
    assert kwargs["n_subjects"] == 10 and kwargs["size"] == 48
    known = {f.name for f in dataclasses.fields(synthetic.SynthMEConfig)}
    assert set(kwargs) <= known
    assert synthetic.SynthMEConfig(**kwargs).n_subjects == 10


def test_every_field_has_a_comment():
    import inspect

    import merkit.config.schema as module

    source = inspect.getsource(module)
    for cls in (DataConfig, ModelConfig, TrainConfig, ProtocolConfig, RunConfig):
        for f in dataclasses.fields(cls):
            lines = [line for line in source.splitlines() if line.strip().startswith(f"{f.name}:")]
            assert lines and all("  # " in line for line in lines), f"{cls.__name__}.{f.name}"


def test_run_dir_accepts_run_config_and_load_config_reads_it_back(tmp_path):
    cfg = RunConfig(train=TrainConfig(epochs=2))
    run = RunDir(tmp_path / "run", cfg, capture=False)
    assert load_config(run.path) == cfg
    resumed = RunDir(tmp_path / "run", cfg.with_updates({"protocol.executor": "processes"}), capture=False)
    import pandas as pd

    one_row = {"dataset": "synthme", "subject": "01", "sample": "a", "fold": "01", "gt": 0, "pred": 0}
    resumed.mark_fold_done("01", pd.DataFrame([one_row]))  # a finished fold: other configs are refused from now
    with pytest.raises(RunConfigMismatch, match="train.epochs: saved 2, now 3"):
        RunDir(tmp_path / "run", cfg.with_updates({"train.epochs": 3}), capture=False)


def test_load_config_names_the_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"train": {"epochz": 1}}))
    with pytest.raises(ConfigError, match=r"config.json: unknown config key\(s\): 'train.epochz'"):
        load_config(path)
    path.write_text("{")
    with pytest.raises(ConfigError, match="cannot read run config"):
        load_config(tmp_path)


def test_augmentation_is_filled_to_every_field_and_round_trips():
    from merkit.data.torch_dataset import Augmentation

    train = TrainConfig(augmentation={"crop_scale": [0.9, 1], "flip": 0})
    assert train.augmentation == {**Augmentation().to_dict(), "crop_scale": [0.9, 1.0], "flip": 0}
    assert train.clip_augmentation() == Augmentation(crop_scale=(0.9, 1.0), flip=0.0)
    assert TrainConfig().augmentation == Augmentation().to_dict()  # config.json says what the default was
    assert TrainConfig(augment=False).clip_augmentation() is None  # off: no augmentation at all
    cfg = RunConfig(train=train)
    assert RunConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    assert cfg.config_hash() != RunConfig().config_hash()  # the augmentation changes results, so the hash


@pytest.mark.parametrize(
    "augmentation, fragment",
    [
        ({"flp": 0.5}, "'flp' (did you mean 'flip'?)"),
        ({"flip": 1.5}, "flip must be a probability"),
        ({"crop_scale": [0.9]}, "crop_scale must be two numbers"),
        ({"crop_scale": [1.0, 0.9]}, "low <= high"),
        ({"temporal_shift": -1}, "temporal_shift must be >= 0"),
        ({"temporal_shift": 0.5}, "temporal_shift must be an int"),
        ({"contrast": 1.0}, "contrast must be in [0, 1)"),
        ({"brightness": "a"}, "brightness must be a number"),
    ],
)
def test_bad_augmentation_is_refused_naming_the_field(augmentation, fragment):
    with pytest.raises(ConfigError, match="augmentation") as err:
        TrainConfig(augmentation=augmentation)
    assert fragment in str(err.value)
    with pytest.raises(ConfigError, match="augmentation"):  # checked even while augmentation is off
        TrainConfig(augment=False, augmentation=augmentation)


def test_augmentation_fields_can_be_updated_with_dotted_keys():
    base = RunConfig().with_updates({"train.augmentation": {"flip": 0.0}})
    changed = base.with_updates({"train.augmentation.temporal_shift": 3})
    assert changed.train.augmentation["temporal_shift"] == 3
    assert changed.train.augmentation["flip"] == 0.0  # the other entries are kept
    with pytest.raises(ConfigError, match="did you mean 'contrast'"):
        base.with_updates({"train.augmentation.contrst": 0.2})


# ------------------------------------------------------------------- RunConfig.from_params (the notebooks' cell)


def test_from_params_builds_every_section_from_flat_names():
    from merkit.config import run_parameters

    params = dict(
        dataset="synthme",
        synthme_n_subjects=3,
        frames=8,
        size=32,
        temporal="onset_apex",
        model="meranet_small",
        attention="channel",
        epochs=2,
        lr=0.01,
        seed=5,
        precision="fp32",
        evaluation="group_kfold",
        k=3,
        executor="sequential",
    )
    config = RunConfig.from_params(**params)
    assert config.data.synthme_n_subjects == 3
    assert config.preprocess["frames"] == 8 and config.preprocess["temporal"] == "onset_apex"
    assert config.preprocess_config().size == 32
    assert config.model == ModelConfig(
        name="meranet_small", overrides={"frames": 8, "size": 32, "attention": "channel"}
    )
    assert (config.train.epochs, config.train.lr, config.train.seed) == (2, 0.01, 5)
    assert (config.protocol.name, config.protocol.k, config.protocol.executor) == ("group_kfold", 3, "sequential")
    namespace = {**params, "run_dir": "x", "cache_dir": "", "n_boot": 10, "In": []}  # a notebook's globals()
    assert run_parameters(namespace) == params
    assert RunConfig.from_params(**run_parameters(namespace)) == config


def test_from_params_gives_a_flow_model_no_clip_sizes_and_applies_the_recipe():
    config = RunConfig.from_params(model="ststnet", frames=8, size=32, epochs=3, recipe="published")
    assert config.model.overrides == {}
    assert config.train.epochs == 800 and config.train.batch_size == 256  # the recipe's fields win
    assert config.preprocess["frames"] == 8  # the store keeps the clips' preprocessing


def test_the_fast_ststnet_recipe_is_the_published_one_with_a_higher_rate_and_fewer_fixed_epochs():
    from merkit.config import TRAIN_RECIPES

    fast, published = TRAIN_RECIPES["fast"], TRAIN_RECIPES["published"]
    assert {k for k in fast if fast[k] != published[k]} == {"lr", "epochs"}  # same optimiser, batch, loss...
    assert (fast["lr"], fast["epochs"]) == (2e-3, 40)  # the candidate bench_recipe.py measured (performance.md)
    config = RunConfig.from_params(model="ststnet", epochs=3, recipe="fast")
    assert config.train.epochs == 40 and not config.train.select_best and config.train.val_fraction == 0


def test_from_params_names_every_unknown_parameter():
    with pytest.raises(ConfigError, match=r"'epochz' \(did you mean 'epochs'\?\), 'run_dir'"):
        RunConfig.from_params(epochz=3, run_dir="runs/x", lr=0.1)


def test_from_params_refuses_bad_values_naming_the_field():
    with pytest.raises(ConfigError, match="epochs must be >= 1"):
        RunConfig.from_params(epochs=0)
    with pytest.raises(ConfigError, match="no attention parameter"):
        RunConfig.from_params(model="stcnn", attention="channel")


def test_registry_input_kind_is_the_kind_of_the_built_model():
    from merkit.models import create_model, model_entry

    for name in list_models():
        assert model_entry(name).input_kind == create_model(name).input_spec.kind, name


# ------------------------------------------------------------------- saved files of an older kit

#: config.json files the kit saved before the class mapping was renamed label_map (tests/fixtures/behaviour).
SAVED_CONFIGS = sorted((Path(__file__).parent / "fixtures" / "behaviour").glob("*/config.json"))


@pytest.mark.parametrize("path", SAVED_CONFIGS, ids=lambda p: p.parent.name)
def test_upgrade_saved_reads_an_old_config_json_under_todays_names(path):
    saved = json.loads(path.read_text())
    assert saved["data"]["protocol"] == "synthme_3class" and "label_map" not in saved["data"]
    upgraded = upgrade_saved(saved, "config")
    assert upgraded["data"]["label_map"] == "synthme_3class" and "protocol" not in upgraded["data"]
    assert saved["data"]["protocol"] == "synthme_3class"  # the input is left as it was
    assert upgrade_saved(upgraded, "config") == upgraded  # today's names come back equal
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # loading an old file is not a deprecation the user must act on
        loaded = load_config(path)
    assert loaded.to_dict()["data"] == {**upgraded["data"]}


def test_upgrade_saved_refuses_a_file_whose_two_names_disagree_and_an_unknown_kind():
    with pytest.raises(ConfigError, match=r"data.protocol \('casme2_5class'.*data.label_map \('casme2_3class'\)"):
        upgrade_saved({"data": {"protocol": "casme2_5class", "label_map": "casme2_3class"}}, "config")
    assert upgrade_saved({"attrs": {"protocol": "x", "label_map": "x"}}, "store") == {"attrs": {"label_map": "x"}}
    with pytest.raises(ConfigError, match="unknown kind of saved file 'manifest'"):
        upgrade_saved({}, "manifest")


def test_code_and_parameters_know_only_the_new_name():
    with pytest.raises(ConfigError, match="unknown run parameter.*'protocol'"):
        RunConfig.from_params(protocol="casme2_5class")
    with pytest.raises(ConfigError, match="unknown config key.*'data.protocol'"):
        RunConfig.from_dict({"data": {"protocol": "casme2_5class"}})  # in memory: no upgrade, only at loading
    assert not hasattr(DataConfig(), "protocol")


def test_a_run_directory_of_the_old_format_resumes(tmp_path):
    old = json.loads(SAVED_CONFIGS[0].read_text())
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps(old))
    RunDir(tmp_path / "run", RunConfig.from_dict(upgrade_saved(old, "config")), capture=False)  # no RunConfigMismatch
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data"]["label_map"] == "synthme_3class"
