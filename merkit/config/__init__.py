"""The run's vocabulary: the configuration dataclasses saved beside every result, and how old ones are read.

- :mod:`merkit.config.schema`: :class:`RunConfig` and its sections, the training recipes, the flat
  notebook-parameter mapping.
- :mod:`merkit.config.profiles`: the named profiles (the notebooks' lighter ``laptop`` configuration).
- :mod:`merkit.config.upgrade`: the one function that reads a file an older kit saved under today's keys.
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
