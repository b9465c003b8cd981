"""A name → model registry, so that a notebook (papermill parameters are scalars) picks a model by name.

A registered name is a model class plus default keyword arguments. ``create_model(name, num_classes,
**overrides)`` merges the defaults with the overrides, checks every override against the class's
constructor, builds the model and records ``model.model_name`` and ``model.model_config`` (the exact
keyword arguments used, JSON friendly) so a run directory can store how to rebuild it.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from merkit._io import to_jsonable
from merkit.errors import MerkitValueError

__all__ = ["register_model", "create_model", "list_models", "model_entry", "ModelEntry"]


@dataclass(frozen=True)
class ModelEntry:
    """One registered name: the class, its default keyword arguments and a one-line description."""

    name: str
    cls: type[nn.Module]
    defaults: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def constructor_defaults(self) -> dict[str, Any]:
        """The class's own default for every constructor argument that has one."""
        parameters = inspect.signature(self.cls.__init__).parameters
        return {n: p.default for n, p in parameters.items() if n != "self" and p.default is not inspect.Parameter.empty}

    @property
    def input_kind(self) -> str:
        """``"clip"`` or ``"flow"``: the ``InputSpec.kind`` of every model of this entry, read from the class
        (``cls.input_kind``) without building one."""
        kind = getattr(self.cls, "input_kind", None)
        if kind not in ("clip", "flow"):
            raise TypeError(
                f"model class {self.cls.__name__} of {self.name!r} declares no input_kind ('clip' or 'flow')"
            )
        return kind

    def accepted_arguments(self) -> list[str]:
        """Keyword arguments the class's constructor accepts (``num_classes`` included)."""
        parameters = inspect.signature(self.cls.__init__).parameters
        return [name for name in parameters if name != "self"]


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, cls: type[nn.Module], description: str = "", **defaults: Any) -> None:
    """Register ``cls`` under ``name`` with default constructor arguments ``defaults``."""
    if name in _REGISTRY:
        raise MerkitValueError(f"model name {name!r} is already registered")
    entry = ModelEntry(name=name, cls=cls, defaults=dict(defaults), description=description)
    unknown = sorted(set(defaults) - set(entry.accepted_arguments()))
    if unknown:
        raise TypeError(f"defaults {unknown} for {name!r} are not arguments of {cls.__name__}")
    _REGISTRY[name] = entry


def list_models() -> list[str]:
    """Registered model names, in registration order (MERANet family first, then baselines)."""
    return list(_REGISTRY)


def model_entry(name: str) -> ModelEntry:
    """The registry entry for ``name``; ValueError listing the known names when it is unknown."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise MerkitValueError(f"unknown model {name!r}; known models: {', '.join(list_models())}") from None


def create_model(name: str, num_classes: int = 3, **overrides: Any) -> nn.Module:
    """Build the model registered as ``name`` with ``num_classes`` outputs.

    ``overrides`` replace the registered defaults (e.g. ``create_model("meranet_small", attention="none",
    size=32)``). An unknown name or an argument the model does not take raises ValueError naming the
    known names / accepted arguments. The model gets ``model_name`` and ``model_config`` attributes.
    """
    entry = model_entry(name)
    if "num_classes" in overrides:
        raise MerkitValueError("pass num_classes as create_model's own argument, not inside overrides")
    if num_classes < 1:
        raise MerkitValueError(f"num_classes must be >= 1, got {num_classes}")
    accepted = entry.accepted_arguments()
    unknown = sorted(set(overrides) - set(accepted))
    if unknown:
        raise MerkitValueError(
            f"model {name!r} ({entry.cls.__name__}) does not take {unknown}; "
            f"it accepts: {', '.join(a for a in accepted if a != 'num_classes')}"
        )
    # Every argument made explicit, so model_config states the whole architecture, not only the overrides.
    kwargs = {**entry.constructor_defaults(), **entry.defaults, **overrides, "num_classes": num_classes}
    model = entry.cls(**kwargs)
    model.model_name = name
    model.model_config = {"name": name, **to_jsonable(kwargs)}  # tuples become lists: it round-trips through JSON
    return model
