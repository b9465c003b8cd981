"""The pipeline's parameters: parameter files, ``-p`` overrides, and the check against what the notebooks declare.

Every name is checked against ``papermill.inspect_notebook`` of all notebooks before anything runs (papermill
itself only warns about an unknown name and the notebook's own default silently wins); values are checked
against the declared type (``epochs: int = 3`` refuses ``"three"``). Nothing is executed here.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml

from merkit.errors import MerkitValueError

__all__ = [
    "ParameterError",
    "NOTEBOOK_DIR",
    "DEFAULT_ORDER",
    "COMMON_PARAMETERS",
    "DEMO_PARAMS",
    "load_params_file",
    "parse_override",
    "notebook_parameters",
    "resolve_notebooks",
    "check_parameters",
    "check_paths",
    "check_dataset",
    "check_recipe",
]

#: Where the kit's notebooks live: package data (``merkit/notebooks``; the checkout's top-level ``notebooks`` links
#: to it), so an installed kit finds them wherever it runs.
NOTEBOOK_DIR = Path(str(resources.files("merkit") / "notebooks"))
#: The notebooks of a full run, in order.
DEFAULT_ORDER: tuple[str, ...] = ("01_data", "02_train", "03_loso", "04_explain")
#: Parameters every notebook receives whether or not it is asked for them by name.
COMMON_PARAMETERS: tuple[str, ...] = ("run_dir", "data_root")
#: The default parameter file of `merkit demo` / `make demo`.
DEMO_PARAMS = NOTEBOOK_DIR / "demo.yaml"


class ParameterError(MerkitValueError):
    """A parameter name, value or path the notebooks cannot use; raised before any notebook runs."""


# ----------------------------------------------------------------------------------------------------------
# Parameters: files, overrides, checking
# ----------------------------------------------------------------------------------------------------------


def load_params_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a YAML mapping of parameter name -> value; an empty file is an empty mapping."""
    path = Path(path)
    if not path.is_file():
        raise ParameterError(f"parameter file {path} does not exist")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ParameterError(
            f"parameter file {path} is not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start}); "
            "save it as UTF-8"
        ) from None
    except yaml.YAMLError as err:
        raise ParameterError(f"parameter file {path} is not valid YAML: {err}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ParameterError(f"parameter file {path} must hold a mapping of name: value, not {type(loaded).__name__}")
    return {str(k): v for k, v in loaded.items()}


def parse_override(text: str) -> Any:
    """Parse the value of ``-p name value`` as a YAML scalar (``3`` -> 3, ``true`` -> True, ``1e-3`` -> 0.001).

    Values of parameters declared ``str`` are later taken verbatim instead (see `check_parameters`), so a
    subject id such as ``006`` is not turned into the number 6.
    """
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str) and value.lower() in ("nan", "+inf", "-inf", "inf"):
        return float(value)
    if isinstance(value, (dict, list)):
        return text  # papermill parameters are scalars; keep what was typed
    # YAML 1.1 reads 1e-3 as a string (no dot); the user meant a number.
    if isinstance(value, str):
        try:
            return float(value) if any(ch in value for ch in ".eE") else value
        except ValueError:
            return value
    return value


@dataclass(frozen=True)
class _Declared:
    name: str
    type_name: str  # as papermill inferred it: "int", "float", "str", "bool", "None", …
    default: str
    help: str
    notebook: str


def notebook_parameters(path: str | os.PathLike) -> dict[str, dict[str, str]]:
    """The parameters a notebook declares in its ``parameters`` cell, as `papermill.inspect_notebook` gives them.

    Raises `ParameterError` if the notebook does not exist or is not a readable notebook.
    """
    import papermill

    path = Path(path)
    if not path.is_file():
        raise ParameterError(f"notebook {path} does not exist")
    try:
        return papermill.inspect_notebook(str(path))
    except UnicodeDecodeError as err:
        raise ParameterError(f"notebook {path} is not UTF-8 text (byte offset {err.start}): not a notebook") from None
    except (
        ValueError,
        TypeError,
        KeyError,
        AttributeError,
    ) as err:  # a file that is not a notebook (bad JSON or shape)
        reason = " ".join(str(err).split())[:200]
        raise ParameterError(f"notebook {path} is not a readable notebook ({type(err).__name__}: {reason})") from None


def resolve_notebooks(
    notebooks: Iterable[str | os.PathLike] = DEFAULT_ORDER, notebook_dir: str | os.PathLike | None = None
) -> list[Path]:
    """Turn names (``01_data``), file names or paths into existing notebook paths, in the given order."""
    base = Path(notebook_dir) if notebook_dir is not None else NOTEBOOK_DIR
    paths = []
    for item in notebooks:
        candidate = Path(item)
        if candidate.suffix != ".ipynb":
            candidate = candidate.with_name(candidate.name + ".ipynb")
        if not candidate.is_absolute() and not candidate.exists():
            candidate = base / candidate
        if not candidate.is_file():
            raise ParameterError(f"notebook {item!s} not found (looked for {candidate})")
        paths.append(candidate.resolve())
    if not paths:
        raise ParameterError("no notebooks to run")
    return paths


def _coerce(value: Any, declared: _Declared, raw: bool) -> Any:
    """Check (and where unambiguous convert) a value against the type declared in the parameters cell."""
    kind = declared.type_name
    where = (
        f"parameter {declared.name!r} (declared `{declared.name}: {kind} = {declared.default}` in {declared.notebook})"
    )
    if kind == "str":
        if isinstance(value, str):
            return value
        if value is None:
            return ""  # `data_root:` left empty in a YAML file means "no value"
        if raw or isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ParameterError(f"{where} expects a string, got {value!r}")
    if raw:
        value = parse_override(value)
    if kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ParameterError(f"{where} expects an integer, got {value!r}")
    if kind == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ParameterError(f"{where} expects a number, got {value!r}")
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise ParameterError(f"{where} expects true or false, got {value!r}")
    return value  # no (or an unusual) annotation: pass through as given


def check_parameters(
    params: Mapping[str, Any],
    notebooks: Sequence[Path],
    raw_names: Iterable[str] = (),
) -> dict[Path, dict[str, Any]]:
    """Check every name against what the notebooks declare; return each notebook's own parameters.

    ``raw_names`` are parameters whose value is the text typed after ``-p`` (parsed here by declared type).
    Raises `ParameterError` listing the valid names on an unknown name, or naming the parameter on a bad value.
    Nothing is executed.
    """
    declared_by_notebook: dict[Path, dict[str, _Declared]] = {}
    all_declared: dict[str, _Declared] = {}
    for path in notebooks:
        declared = {
            name: _Declared(
                name, info.get("inferred_type_name", "None"), info.get("default", ""), info.get("help", ""), path.name
            )
            for name, info in notebook_parameters(path).items()
        }
        declared_by_notebook[path] = declared
        for name, item in declared.items():
            all_declared.setdefault(name, item)

    unknown = sorted(set(params) - set(all_declared) - set(COMMON_PARAMETERS))
    if unknown:
        valid = ", ".join(sorted(set(all_declared) | set(COMMON_PARAMETERS)))
        names = ", ".join(unknown)
        raise ParameterError(f"unknown parameter {names}; the notebooks declare: {valid}")

    values = {}
    for name, value in params.items():
        if name in all_declared:
            values[name] = _coerce(value, all_declared[name], raw=name in raw_names)
        else:
            values[name] = str(value)  # run_dir / data_root not declared by these notebooks

    per_notebook = {}
    for path, declared in declared_by_notebook.items():
        own = {name: values[name] for name in declared if name in values}
        for name in COMMON_PARAMETERS:
            if name in values:
                own[name] = values[name]
        per_notebook[path] = own
    return per_notebook


def check_paths(params: dict[str, Any]) -> None:
    data_root = params.get("data_root")
    if data_root:
        if not Path(data_root).is_dir():
            raise ParameterError(
                f"data_root {data_root} does not exist or is not a directory "
                "(leave data_root empty to generate SynthME under the run directory)"
            )


def check_dataset(params: Mapping[str, Any]) -> None:
    """Raise `ParameterError` when ``params['dataset']`` (if given) is not a dataset the kit knows, or is a real
    dataset without a ``data_root`` (only SynthME is generated when data_root is empty).

    Checked before any kernel starts: otherwise either surfaces in the first notebook, seconds later, and an
    unknown key as "needs data_root"."""
    dataset = params.get("dataset")
    if dataset in (None, ""):
        return
    from merkit.data.datasets import list_datasets

    known = list_datasets()
    if str(dataset) not in known:
        close = difflib.get_close_matches(str(dataset), known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ParameterError(f"unknown dataset {str(dataset)!r} (known: {', '.join(known)}){hint}")
    if dataset != "synthme" and not params.get("data_root"):
        raise ParameterError(
            f"dataset {dataset!r} needs data_root: the folder of your own copy (-p data_root DIR); the kit never "
            "downloads a dataset, and only synthme is generated when data_root is empty"
        )


def check_recipe(values: Mapping[str, Any]) -> None:
    """Raise `ParameterError` when ``values['recipe']`` is not a known training recipe, or when ``values`` also
    give a setting that recipe fixes at another value (``-p epochs 4`` beside ``recipe published``): the recipe
    would replace it without a word (:func:`merkit.config.train_config`). ``values`` are the parameters as the
    user gave them, already typed."""
    recipe = str(values.get("recipe") or "")
    if not recipe:
        return
    from merkit.config import TRAIN_RECIPES, ConfigError, train_config

    try:
        train_config(recipe)  # an unknown name: its ConfigError lists the known ones
    except ConfigError as err:
        raise ParameterError(str(err)) from None
    fixed = TRAIN_RECIPES[recipe]
    clashes = [name for name in fixed if name in values and values[name] != fixed[name]]
    if clashes:
        given = ", ".join(f"{name} {values[name]!r}" for name in clashes)
        fixes = ", ".join(f"{name} {fixed[name]!r}" for name in clashes)
        raise ParameterError(
            f"recipe {recipe!r} fixes {fixes}, which would replace the given {given}: drop those parameters, "
            "or set recipe '' to give every training setting yourself"
        )
