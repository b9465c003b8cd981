"""The run's vocabulary: the configuration dataclasses saved beside every result, and how old ones are read.

- :mod:`merkit.config.schema`: :class:`RunConfig` and its sections, the training recipes, the flat
  notebook-parameter mapping.
- :mod:`merkit.config.profiles`: the named profiles (the notebooks' lighter ``laptop`` configuration).
Saved files an older kit wrote are read under today's keys by :func:`merkit.upgrade.upgrade_saved` (the ground
floor, since the clip store reads one too).
"""

from merkit.config.schema import (
    EXECUTOR_NAMES,
    PROTOCOL_NAMES,
    TRAIN_RECIPES,
    ConfigError,
    DataConfig,
    ModelConfig,
    ProtocolConfig,
    RunConfig,
    TrainConfig,
    load_config,
    model_overrides,
    resumable_keys,
    run_parameter_names,
    run_parameters,
    train_config,
    upgrade_saved,
    variant_config,
)

__all__ = [
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "ProtocolConfig",
    "RunConfig",
    "PROTOCOL_NAMES",
    "EXECUTOR_NAMES",
    "resumable_keys",
    "load_config",
    "TRAIN_RECIPES",
    "train_config",
    "model_overrides",
    "variant_config",
    "run_parameter_names",
    "upgrade_saved",
    "run_parameters",
]
