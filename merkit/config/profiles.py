"""Named profiles: a deliberate set of run parameters over the library's defaults, declared once.

The library's defaults are the fields of the config dataclasses (:mod:`merkit.config.schema`) and of
``merkit.data.preprocess.PreprocessConfig``: the method at its intended size (MERANet on 64-pixel clips, 30
epochs, lr 1e-3). A profile changes a few of them on purpose and says so by its name.

``laptop`` is the profile the kit's notebooks, ``notebooks/demo.yaml`` and ``merkit prepare`` run: the
laptop-sized MERANet (``meranet_small``) on 24-pixel clips, 10 fixed epochs at a higher learning rate (3e-3, so
that 10 epochs converge), and 4 subject folds for the single split of 02_train and 04_explain (a quarter of the
subjects held out). It is named after the machine it is for, a laptop's CPU cores, rather than after the
notebooks: ``merkit prepare`` builds the same clip store outside them. Its size is set by the demo's time on two
CPU cores: the whole demo, its comparison included, within five minutes at a pooled LOSO UF1 well above chance
(README.md has the measured time and score).

Papermill needs literal defaults in a notebook's ``parameters`` cell, so the notebooks repeat these values;
``tests/test_defaults.py`` builds every notebook's configuration from its declared defaults and fails on any
difference from :func:`profile_params` of :data:`NOTEBOOK_PROFILE`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from merkit.config.schema import DataConfig, ModelConfig, ProtocolConfig, TrainConfig, run_parameter_names
from merkit.upgrade import ConfigError

__all__ = ["PROFILES", "NOTEBOOK_PROFILE", "library_defaults", "profile_params", "profile_differences"]

#: Profile name -> the run parameters (flat names, as ``RunConfig.from_params`` takes them) it sets over the
#: library's defaults.
PROFILES: dict[str, dict[str, Any]] = {
    "laptop": {
        "model": "meranet_small",  # MERANet's laptop-sized build (merkit.models), not the full "meranet"
        "size": 24,  # clip side in pixels (PreprocessConfig.size: 64)
        "epochs": 10,  # fixed epochs per fold (TrainConfig.epochs: 30)
        "lr": 3e-3,  # peak learning rate for the shorter schedule (TrainConfig.lr: 1e-3)
        "k": 4,  # subject folds of the single split in 02_train / 04_explain (ProtocolConfig.k: 5)
    },
}
#: The profile the notebooks' parameters cells, notebooks/demo.yaml and `merkit prepare` declare.
NOTEBOOK_PROFILE = "laptop"


def _field_defaults(cls: type) -> dict[str, Any]:
    values = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            values[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            values[f.name] = f.default_factory()
    return values


def library_defaults() -> dict[str, Any]:
    """Every run parameter (:func:`~merkit.config.schema.run_parameter_names`) with the library's default: the
    config dataclasses' and ``PreprocessConfig``'s fields under their own names, ``evaluation`` the fold protocol
    (``ProtocolConfig.name``), ``model`` the registry name, ``attention`` and ``recipe`` empty (the model's own,
    the parameters as given)."""
    from merkit.data.preprocess import PreprocessConfig  # lazy: keeps `import merkit.config` free of OpenCV

    protocol = _field_defaults(ProtocolConfig)
    values = {
        **_field_defaults(DataConfig),
        **_field_defaults(TrainConfig),
        **_field_defaults(PreprocessConfig),
        **{name: value for name, value in protocol.items() if name != "name"},
        "evaluation": protocol["name"],
        "model": ModelConfig.name,
        "attention": "",
        "recipe": "",
    }
    assert set(values) == run_parameter_names(), "a run parameter without a library default"
    return values


def profile_params(name: str) -> dict[str, Any]:
    """Every run parameter's default under profile ``name``: :func:`library_defaults` with the profile's values
    on top. An unknown name is a :class:`ConfigError` listing the profiles."""
    if name not in PROFILES:
        raise ConfigError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}")
    return {**library_defaults(), **PROFILES[name]}


def profile_differences(params: Mapping[str, Any], name: str = NOTEBOOK_PROFILE) -> list[str]:
    """``name: given X, profile Y`` for every run parameter of ``params`` whose value differs from profile
    ``name`` (other names are ignored); empty when ``params`` follows the profile."""
    expected = profile_params(name)
    return [
        f"{key}: given {value!r}, profile {name!r} says {expected[key]!r}"
        for key, value in params.items()
        if key in expected and value != expected[key]
    ]
