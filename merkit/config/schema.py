"""Run configuration: dataclasses that mirror the notebooks' parameters and are saved next to every result.

A :class:`RunConfig` groups what determines a result: the data (:class:`DataConfig`), the model
(:class:`ModelConfig`), training (:class:`TrainConfig`), the evaluation protocol (:class:`ProtocolConfig`)
and the preprocessing parameters (a plain dict of ``merkit.data.preprocess.PreprocessConfig`` fields, kept
as a dict so this module depends on nothing else in the kit).

- ``to_dict()`` / ``from_dict()`` round-trip through JSON (``config.json`` of a run directory);
  ``from_dict`` refuses unknown keys, listing all of them with the closest known name.
- ``config_hash()`` is a short stable hash of everything that changes results: fields marked
  ``resumable`` (how folds are scheduled: executor, workers, Ray address) are left out, so the same
  experiment run sequentially or on a cluster has the same hash (and :class:`merkit.training.runs.RunDir` lets
  those fields change on resume; :func:`resumable_keys` lists them).
- ``with_updates({"train.epochs": 3})`` gives a copy with dotted keys changed (sweeps, notebooks).
- ``RunConfig.from_params(**parameters)`` builds the whole config from the notebooks' flat parameters
  (``epochs=3, model="stcnn", frames=16, evaluation="loso"``, see :func:`run_parameter_names`);
  ``run_parameters(globals())`` picks those names out of a notebook's namespace.

Every field is validated on construction; a bad value raises :class:`ConfigError` naming the field.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from merkit._io import atomic_write_json, flatten_dict, stable_hash
from merkit.evaluation.splits import PROTOCOLS
from merkit.upgrade import ConfigError, unknown_name, upgrade_saved

__all__ = [
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "ProtocolConfig",
    "RunConfig",
    "PROTOCOL_NAMES",
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

PROTOCOL_NAMES = tuple(PROTOCOLS)  # the fold protocols merkit.evaluation.splits implements: named there only
EXECUTOR_NAMES = (
    "auto",
    "sequential",
    "batched",
    "processes",
    "ray",
)  # the one list of executor names (merkit.training.runner checks a run's against it)


def _resumable(default: Any) -> Any:
    """A field that only says how folds are scheduled: may change on resume, not part of the hash."""
    return field(default=default, metadata={"resumable": True})


def _choice(name: str, value: Any, allowed: tuple) -> list[str]:
    return [] if value in allowed else [f"{name} must be one of {list(allowed)}, got {value!r}"]


class _Section:
    """Shared behaviour of the config sections: type checks on construction, dict round trip."""

    def __post_init__(self) -> None:
        problems = []
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            expected = hints[f.name]
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                object.__setattr__(self, f.name, float(value))  # 1 is a fine learning rate too
            elif expected in (int, float) and (isinstance(value, bool) or not isinstance(value, expected)):
                problems.append(f"{f.name} must be {expected.__name__}, got {value!r}")
            elif expected in (str, bool, dict) and not isinstance(value, expected):
                problems.append(f"{f.name} must be {expected.__name__}, got {value!r}")
        if not problems:
            problems = self._check()
        if problems:
            raise ConfigError(f"invalid {type(self).__name__}: " + "; ".join(problems))

    def _check(self) -> list[str]:
        return []

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))  # type: ignore[call-overload]

    @classmethod
    def of_params(cls, params: Mapping[str, Any]) -> Any:
        """The section built from the entries of ``params`` named like its fields (the others are ignored)."""
        names = _section_fields(cls)
        return cls(**{k: v for k, v in params.items() if k in names})


@dataclass
class DataConfig(_Section):
    """Which clips: dataset, where its copy lives, and which class mapping labels them."""

    dataset: str = "synthme"  # dataset key (merkit.data.datasets.list_datasets()), e.g. casme2, megc2019
    data_root: str = ""  # root of the user's copy (or where SynthME is generated); "" = notebook decides
    label_map: str = "synthme_3class"  # class mapping of the manifest (data_manifests/<dataset>.yaml), not the folds
    # "fix" applies the errata and rule-based repairs data_manifests/<dataset>.yaml declares, then stops on
    # what is left (an undeclared problem names its file and sample); what was fixed or dropped goes to
    # data_problems.csv. Same default as the builders' (merkit.data.datasets.DEFAULT_ON_PROBLEM).
    on_problem: str = "fix"  # known sheet faults: fix (declared errata), error (report all, stop), drop (leave out)
    listing: str = ""  # flow_folder only: the listing CSV (absolute or relative to data_root); "" = its only *.csv
    synthme_seed: int = 0  # SynthME only: master seed of the generated dataset
    synthme_n_subjects: int = 12  # SynthME only: number of subjects (= LOSO folds)
    synthme_clips_per_subject: int = 9  # SynthME only: clips per subject (classes balanced)
    synthme_n_frames: int = 40  # SynthME only: frames per clip
    synthme_size: int = 96  # SynthME only: frame side in pixels

    def _check(self) -> list[str]:
        problems = [] if self.dataset else ["dataset must not be empty"]
        problems += _choice("on_problem", self.on_problem, ("error", "fix", "drop"))
        for name in ("synthme_n_subjects", "synthme_clips_per_subject", "synthme_n_frames", "synthme_size"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        return problems

    def synthme_kwargs(self) -> dict:
        """The SynthME knobs as ``merkit.data.synthetic.SynthMEConfig`` keyword arguments."""
        prefix = "synthme_"
        return {
            f.name[len(prefix) :]: getattr(self, f.name) for f in dataclasses.fields(self) if f.name.startswith(prefix)
        }


@dataclass
class ModelConfig(_Section):
    """Which network: a registry name plus constructor overrides."""

    name: str = "meranet"  # registry name (merkit.models.list_models()); checked on construction
    overrides: dict = field(default_factory=dict)  # extra create_model keyword arguments, e.g. {"width": 16}

    def _check(self) -> list[str]:
        from merkit.models import list_models  # lazy: keeps `import merkit.config` free of torch

        known = list_models()
        if self.name not in known:
            close = difflib.get_close_matches(self.name, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            return [f"unknown model {self.name!r}{hint}; known models: {', '.join(known)}"]
        return []


@dataclass
class TrainConfig(_Section):
    """How one fold is trained (read by merkit.training.fold). Never selects anything on the held-out subject."""

    epochs: int = 30  # fixed number of epochs per fold (the default model selection: none)
    batch_size: int = 8  # clips per optimisation step
    optimizer: str = "adamw"  # "adamw" or "sgd" (SGD uses Nesterov momentum)
    lr: float = 1e-3  # peak learning rate
    weight_decay: float = 1e-4  # decoupled (AdamW) or L2 (SGD) weight decay
    momentum: float = 0.9  # SGD momentum (ignored by AdamW)
    schedule: str = "cosine"  # learning-rate schedule: "cosine" (to 0 over the epochs), "step" or "none"
    step_size: int = 0  # "step" schedule: epochs between decays; 0 = epochs // 3
    step_gamma: float = 0.1  # "step" schedule: factor applied at each decay
    loss: str = "ce"  # "ce" (cross-entropy) or "focal"
    focal_gamma: float = 2.0  # focal loss focusing exponent (loss = "focal" only)
    label_smoothing: float = 0.0  # cross-entropy label smoothing (loss = "ce" only)
    class_weighted: bool = True  # weight the loss by inverse class frequency of the fold's training set
    grad_clip: float = 0.0  # clip the gradient global norm to this value; 0 = no clipping
    precision: str = "auto"  # "fp32", "bf16" (autocast) or "auto" (by device, model, evidence: training/precision.py)
    device: str = "auto"  # "auto" (cuda, then mps, then cpu) or a torch device string such as "cuda:1"
    seed: int = 0  # run seed; each fold derives its own seed from (seed, fold key)
    deterministic: bool = False  # torch deterministic algorithms (slower on GPU; CPU runs repeat anyway)
    val_fraction: float = 0.0  # inner validation split from TRAINING subjects only; 0 = fixed epochs
    select_best: bool = False  # keep the epoch best on the inner validation split (needs val_fraction > 0)
    num_workers: int = 0  # DataLoader worker processes per fold (0 = load in the training process)
    augment: bool = True  # augment training clips (see `augmentation`); never validation or test clips
    # The dict is filled to every field on construction, so config.json records exactly what was used.
    augmentation: dict = field(default_factory=dict)  # Augmentation fields over its defaults, if augment is on

    def _check(self) -> list[str]:
        problems = _choice("optimizer", self.optimizer, ("adamw", "sgd"))
        problems += _choice("schedule", self.schedule, ("cosine", "step", "none"))
        problems += _choice("loss", self.loss, ("ce", "focal"))
        problems += _choice("precision", self.precision, ("fp32", "bf16", "auto"))
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr",):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("weight_decay", "momentum", "step_size", "focal_gamma", "grad_clip", "num_workers"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.label_smoothing < 1:
            problems.append(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0 <= self.val_fraction < 1:
            problems.append(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.select_best and self.val_fraction == 0:
            problems.append(
                "select_best needs an inner validation split (val_fraction > 0): "
                "selection on the held-out subject is not offered"
            )
        if not self.device:
            problems.append("device must not be empty (use 'auto')")
        try:
            self.augmentation = self.clip_augmentation(always=True).to_dict()
        except ValueError as err:
            problems.append(f"augmentation: {err}")
        return problems

    def clip_augmentation(self, *, always: bool = False) -> Any:
        """The :class:`~merkit.data.torch_dataset.Augmentation` of ``augmentation``, or None when ``augment`` is off.

        ``always=True`` builds it even when ``augment`` is off (validation).
        """
        from merkit.data.torch_dataset import Augmentation  # lazy: keeps `import merkit.config` free of torch

        return Augmentation.from_dict(self.augmentation) if self.augment or always else None


@dataclass
class ProtocolConfig(_Section):
    """How folds are formed and where they run (merkit.evaluation.splits)."""

    name: str = "loso"  # "loso", "megc2019" (composite LOSO), "lodo" (leave one dataset out), "group_kfold"
    k: int = 5  # number of folds for "group_kfold" (whole subjects per fold)
    # "batched" trains folds together as one stacked model; "auto" picks it on CUDA, on CPU for an STSTNet
    # (the fused step, measured faster) and "sequential" for other models on CPU; the choice goes to executor.json
    executor: str = _resumable("auto")  # "auto", "sequential", "batched", "processes" (local pool) or "ray"
    workers: int = _resumable(1)  # parallel folds for "processes" (0 = one per core or GPU)
    ray_address: str = _resumable("")  # Ray cluster address ("auto", "ray://host:10001"); "" = local Ray
    fold_batch: int = _resumable(0)  # "batched": folds per group; 0 = as many as fit memory_budget_mb
    memory_budget_mb: int = _resumable(0)  # "batched": memory for one fold group; 0 = 128 MB on CPU, half of free CUDA

    def _check(self) -> list[str]:
        problems = _choice("name", self.name, PROTOCOL_NAMES)
        problems += _choice("executor", self.executor, EXECUTOR_NAMES)
        for name in ("fold_batch", "memory_budget_mb"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.k < 2:
            problems.append(f"k must be >= 2, got {self.k}")
        if self.workers < 0:
            problems.append(f"workers must be >= 0, got {self.workers}")
        return problems


_SECTIONS: dict[str, type[_Section]] = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "protocol": ProtocolConfig,
}


@dataclass
class RunConfig:
    """Everything that determines a run's results; saved as ``config.json`` in its run directory."""

    data: DataConfig = field(default_factory=DataConfig)  # which clips
    model: ModelConfig = field(default_factory=ModelConfig)  # which network
    train: TrainConfig = field(default_factory=TrainConfig)  # how each fold is trained
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)  # how folds are formed and run
    preprocess: dict = field(default_factory=dict)  # PreprocessConfig fields (merkit.data.preprocess)

    def __post_init__(self) -> None:
        for name, cls in _SECTIONS.items():
            if not isinstance(getattr(self, name), cls):
                raise ConfigError(
                    f"RunConfig.{name} must be a {cls.__name__}, got "
                    f"{type(getattr(self, name)).__name__} (use RunConfig.from_dict for dicts)"
                )
        if not isinstance(self.preprocess, dict):
            raise ConfigError(f"RunConfig.preprocess must be a dict, got {type(self.preprocess).__name__}")

    def to_dict(self) -> dict:
        """Nested plain dict, JSON-ready (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_params(cls, **params: Any) -> RunConfig:
        """The run config of the notebooks' flat parameters: ``RunConfig.from_params(epochs=3, model="stcnn")``.

        Names (:func:`run_parameter_names`): every field of :class:`DataConfig`, :class:`TrainConfig` and
        ``PreprocessConfig`` under its own name; the fields of :class:`ProtocolConfig` but ``name``; and
        ``model`` (registry name), ``attention`` (MERANet attention, empty: the model's own), ``recipe`` (a
        :data:`TRAIN_RECIPES` name, empty: the parameters as given) and ``evaluation`` (the fold protocol).
        Missing names take the dataclasses' defaults. The model's overrides come from
        :func:`model_overrides`: a clip model is built for the preprocessed clips' frames and size.
        An unknown name is a :class:`ConfigError` naming every one (with the closest known name).
        """
        from merkit.data.preprocess import PreprocessConfig  # lazy: keeps `import merkit.config` free of OpenCV

        known = run_parameter_names()
        unknown = [unknown_name(name, sorted(known)) for name in params if name not in known]
        if unknown:
            raise ConfigError(
                "unknown run parameter(s): " + ", ".join(unknown) + "; a run takes " + ", ".join(sorted(known))
            )
        fields = _section_fields(PreprocessConfig)
        preprocess = PreprocessConfig(**{k: v for k, v in params.items() if k in fields})
        model = params.get("model", ModelConfig.name)
        train = {k: v for k, v in params.items() if k in _section_fields(TrainConfig)}
        protocol = ProtocolConfig.of_params(
            {k: v for k, v in params.items() if k != "name"}
            | ({"name": params["evaluation"]} if "evaluation" in params else {})
        )
        return cls(
            data=DataConfig.of_params(params),
            model=ModelConfig(
                name=model,
                overrides=model_overrides(
                    model, frames=preprocess.frames, size=preprocess.size, attention=params.get("attention", "")
                ),
            ),
            train=train_config(params.get("recipe", ""), **train),
            protocol=protocol,
            preprocess=preprocess.to_dict(),
        )

    def preprocess_config(self) -> Any:
        """``preprocess`` as a ``merkit.data.preprocess.PreprocessConfig`` (what ``prepare_data`` takes)."""
        from merkit.data.preprocess import PreprocessConfig  # lazy: keeps `import merkit.config` free of OpenCV

        return PreprocessConfig(**self.preprocess)

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        """Build from a nested dict (e.g. a saved ``config.json``); missing keys take their defaults.

        Unknown keys raise :class:`ConfigError` listing every one of them as a dotted key, with the
        closest known name when there is one.
        """
        if not isinstance(d, dict):
            raise ConfigError(f"a run config must be a dict, got {type(d).__name__}")
        unknown = [
            unknown_name(key, list(_SECTIONS) + ["preprocess"])
            for key in d
            if key not in _SECTIONS and key != "preprocess"
        ]
        sections: dict[str, Any] = {}
        for name, section_cls in _SECTIONS.items():
            values = d.get(name, {})
            if not isinstance(values, dict):
                raise ConfigError(f"config section {name!r} must be a dict, got {type(values).__name__}")
            known = [f.name for f in dataclasses.fields(section_cls)]
            unknown += [
                unknown_name(f"{name}.{key}", [f"{name}.{k}" for k in known]) for key in values if key not in known
            ]
            sections[name] = values
        if unknown:
            raise ConfigError("unknown config key(s): " + ", ".join(unknown))
        return cls(
            **{name: section_cls(**sections[name]) for name, section_cls in _SECTIONS.items()},
            preprocess=dict(d.get("preprocess", {})),
        )

    def config_hash(self, length: int = 16) -> str:
        """Stable hex hash of the config without the resumable (scheduling) fields."""
        flat = flatten_dict(self.to_dict())
        kept = {k: v for k, v in flat.items() if k not in resumable_keys()}
        return stable_hash(kept, length)

    def with_updates(self, changes: dict[str, Any]) -> RunConfig:
        """A validated copy with dotted keys changed: ``cfg.with_updates({"train.epochs": 3})``.

        ``preprocess.<field>`` keys set entries of the preprocess dict; ``<section>.<dict field>.<entry>`` keys
        set one entry of a dict field (``model.overrides.width``, ``train.augmentation.temporal_shift``).
        """
        d = self.to_dict()
        for key, value in changes.items():
            section, _, leaf = key.partition(".")
            if not leaf or section not in d or not isinstance(d[section], dict):
                raise ConfigError(f"update key {key!r} must be '<section>.<field>' with a section among {list(d)}")
            field_name, _, entry = leaf.partition(".")
            if entry and isinstance(d[section].get(field_name), dict):  # model.overrides.X, train.augmentation.X
                d[section][field_name][entry] = value
            else:
                d[section][leaf] = value
        return RunConfig.from_dict(d)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the config as JSON atomically."""
        return atomic_write_json(path, self.to_dict())


#: Named training recipes: TrainConfig fields that replace the notebook's own (``train_config(recipe=...)``).
#: ``published``: the STSTNet authors' recipe as their public code runs it (Liong et al., FG 2019): Adam
#: (= AdamW with no weight decay) at lr 5e-5, batch 256, 800 fixed epochs, constant learning rate, plain
#: (unweighted) cross-entropy, no augmentation, no epoch selection.
#: ``fast``: the kit's recommended fast STSTNet recipe, ``published`` with lr 2e-3 and 40 fixed epochs (20×
#: fewer epochs). Chosen on the kit's generated composite-shaped flow set (benchmarks/bench_recipe.py, 68-fold
#: LOSO, last epoch scored; the figures are in docs/performance.md). Evidence on generated data only.
_PUBLISHED = {
    "optimizer": "adamw",
    "weight_decay": 0.0,
    "lr": 5e-5,
    "batch_size": 256,
    "epochs": 800,
    "schedule": "none",
    "class_weighted": False,
    "label_smoothing": 0.0,
    "loss": "ce",
    "augment": False,
    "val_fraction": 0.0,
    "select_best": False,
    "grad_clip": 0.0,
}
TRAIN_RECIPES: dict[str, dict[str, Any]] = {
    "published": _PUBLISHED,
    "fast": {**_PUBLISHED, "lr": 2e-3, "epochs": 40},
}


def train_config(recipe: str = "", **values: Any) -> TrainConfig:
    """The TrainConfig of the notebooks' parameters ``values``, with a named ``recipe``'s fields on top.

    ``recipe=""`` keeps ``values`` as given; a name of :data:`TRAIN_RECIPES` replaces the fields it fixes
    (e.g. ``published`` sets epochs 800 whatever ``epochs`` says) and keeps the others (seed, device,
    precision). An unknown name is a ConfigError listing the known ones.
    """
    if recipe and recipe not in TRAIN_RECIPES:
        raise ConfigError(
            f"unknown training recipe {recipe!r}; known: '' (the parameters as given), "
            + ", ".join(repr(r) for r in TRAIN_RECIPES)
        )
    return TrainConfig(**{**values, **(TRAIN_RECIPES[recipe] if recipe else {})})


def model_overrides(model: str, *, frames: int | None = None, size: int | None = None, attention: str = "") -> dict:
    """The constructor overrides the notebooks pass to ``model``: a clip model gets the clips' ``frames`` and
    ``size``; a flow model (ststnet, ststnet_kit, offapexnet) none of them (its input is the 28×28 flow image,
    not the clip); ``attention`` only when given, and a ConfigError when the model has no attention."""
    entry = _model_entry(model)
    accepted = entry.accepted_arguments()
    overrides: dict[str, Any] = {}  # what the model is built with
    if entry.input_kind == "clip":
        overrides.update({k: v for k, v in (("frames", frames), ("size", size)) if v is not None and k in accepted})
    if attention:
        if "attention" not in accepted:
            raise ConfigError(f"model {model!r} has no attention parameter (attention={attention!r}); leave it empty")
        overrides["attention"] = attention
    return overrides


def variant_config(config: RunConfig, variant: str) -> RunConfig:
    """The run config of a comparison variant written ``name`` or ``name:attention`` (e.g. ``meranet_small:none``).

    The variant keeps everything of ``config`` but the model: when it reads the same kind of input as the base
    model (clips, or flow images: ``ModelEntry.input_kind``, no model is built), it takes the base model's input
    overrides (``frames``, ``size``, ``in_channels``) that its constructor accepts; plus ``attention`` when given.
    So a flow baseline (``ststnet``) keeps its own 28×28 input beside a clip model, and an attention variant of a
    model without attention is a :class:`ConfigError` listing the arguments the model does take.
    """
    name, _, attention = variant.strip().partition(":")
    entry = _model_entry(name)
    accepted = entry.accepted_arguments()
    carried = ("frames", "size", "in_channels")
    same_kind = entry.input_kind == _model_entry(config.model.name).input_kind
    overrides = {k: v for k, v in config.model.overrides.items() if same_kind and k in carried and k in accepted}
    if attention:
        if "attention" not in accepted:
            raise ConfigError(f"variant {variant!r}: model {name!r} has no attention parameter (it takes {accepted})")
        overrides["attention"] = attention
    return config.with_updates({"model.name": name, "model.overrides": overrides})


def _model_entry(name: str) -> Any:
    from merkit.models import model_entry  # lazy: keeps `import merkit.config` free of torch

    try:
        return model_entry(name)
    except ValueError as err:
        raise ConfigError(str(err)) from None


def _section_fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


def run_parameter_names() -> frozenset[str]:
    """The flat parameter names ``RunConfig.from_params`` takes: the notebooks' parameters that describe a run
    (every DataConfig, TrainConfig and PreprocessConfig field, ProtocolConfig's but ``name``, and ``model``,
    ``attention``, ``recipe``, ``evaluation``)."""
    from merkit.data.preprocess import PreprocessConfig  # lazy: keeps `import merkit.config` free of OpenCV

    return frozenset(
        _section_fields(DataConfig)
        | _section_fields(TrainConfig)
        | _section_fields(PreprocessConfig)
        | (_section_fields(ProtocolConfig) - {"name"})
        | {"model", "attention", "recipe", "evaluation"}
    )


def run_parameters(namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of ``namespace`` (a notebook's ``globals()``, a parameter file) that ``RunConfig.from_params``
    takes: the run's parameters, without the notebook's own (``run_dir``, ``cache_dir``, ``n_boot``, …)."""
    names = run_parameter_names()
    return {name: value for name, value in namespace.items() if name in names}


def load_config(path: str | os.PathLike) -> RunConfig:
    """Read a ``config.json`` (or a run directory holding one) back into a :class:`RunConfig`; a file an older kit
    wrote is read under today's key names (:func:`merkit.upgrade.upgrade_saved`)."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"cannot read run config {path}: {err}") from err
    try:
        return RunConfig.from_dict(upgrade_saved(d, "config") if isinstance(d, dict) else d)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err


def resumable_keys() -> frozenset[str]:
    """Dotted keys of fields marked resumable (scheduling only), e.g. ``protocol.executor``."""
    return frozenset(
        f"{name}.{f.name}"
        for name, cls in _SECTIONS.items()
        for f in dataclasses.fields(cls)
        if f.metadata.get("resumable")
    )
