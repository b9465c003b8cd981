"""Dataset specs: the declarative ``data_manifests/<dataset>.yaml`` files, loaded and checked.

A spec says where the annotation sheet is and how it is laid out, how subject ids are normalised, where
clips live on disk, the dataset's emotion vocabulary, label maps (``label_maps:``: emotion -> class, emotions
dropped), errata, exclusions and the counts a build must reproduce. See ``data_manifests/README.md`` for the keys.

A dataset file that still calls its label maps ``protocols:`` / ``default_protocol:`` (an older copy under
``$MERKIT_MANIFESTS``) is refused with the key's name today, so that its label maps are not silently missing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from merkit.data.manifest import ManifestError, ManifestProblem

#: Environment variable naming another manifests folder (tests, or a user's own dataset files).
MANIFESTS_ENV = "MERKIT_MANIFESTS"


def manifests_dir() -> Path:
    """The ``data_manifests`` folder: ``$MERKIT_MANIFESTS`` when set, else the package's own (package data)."""
    override = os.environ.get(MANIFESTS_ENV)
    if override:
        return Path(override)
    return Path(str(resources.files("merkit") / "data_manifests"))


@dataclass(frozen=True)
class LabelMap:
    """A label map: ``classes`` in label order, ``mapping`` emotion -> class, ``drop`` emotions left out.

    A composite declares its map per part (``parts``: dataset key -> a LabelMap with the same classes), since
    the same emotion word does not go to the same class in every part (MEGC2019: CASME II fear is out, SAMM
    fear is negative). ``exclude`` names the rules that leave samples out (``no_usable_apex``).
    """

    name: str
    classes: tuple[str, ...]
    mapping: dict[str, str]
    drop: tuple[str, ...]
    expected: dict[str, Any] | None
    exclusions: tuple[dict[str, Any], ...] = ()
    parts: dict[str, "LabelMap"] = field(default_factory=dict)
    exclude: tuple[str, ...] = ()

    def for_part(self, dataset: str) -> "LabelMap":
        """The label map applied to one part of a composite (itself when it declares no parts)."""
        return self.parts.get(dataset, self) if self.parts else self

    def label_of(self, emotion: str, dataset: str | None = None) -> int | None:
        """Class index of an emotion (in part ``dataset`` of a composite); None when the label map drops it
        (or does not know it)."""
        if self.parts:
            if dataset not in self.parts:
                return None
            return self.parts[dataset].label_of(emotion)
        target = self.mapping.get(emotion)
        return None if target is None else self.classes.index(target)


#: Dataset-file keys an older kit used -> their names now (a file with an old key is refused, naming the new one).
RENAMED_SPEC_KEYS = {"protocols": "label_maps", "default_protocol": "default_label_map"}


#: ``builder:`` values of dataset files written when each sheet dataset had a builder module of its own; they
#: are read as ``sheet`` (``smic_e`` with ``sample_spelling: megc2019``, what its module did).
_FORMER_SHEET_BUILDERS = ("casme2", "samm", "casme3a", "smic_e")


@dataclass(frozen=True)
class DatasetSpec:
    """A loaded ``<dataset>.yaml``; ``raw`` keeps every key for the builder."""

    key: str
    file: Path
    builder: str
    raw: dict[str, Any]
    label_maps: dict[str, LabelMap] = field(default_factory=dict)

    @property
    def emotions(self) -> tuple[str, ...]:
        return tuple(self.raw.get("emotions") or ())

    @property
    def expected(self) -> dict[str, Any] | None:
        return self.raw.get("expected")

    @property
    def default_label_map(self) -> str | None:
        """The ``default_label_map:`` of the file (``None`` when it names none)."""
        name = self.raw.get("default_label_map")
        return None if name is None else str(name)

    def label_map(self, name: str) -> LabelMap:
        """The label map called ``name``; ``ManifestError`` naming the ones the dataset has otherwise."""
        if name not in self.label_maps:
            known = ", ".join(sorted(self.label_maps)) or "none"
            raise ManifestError(
                [ManifestProblem(self.key, None, None, f"unknown label map {name!r}; {self.key} has: {known}")]
            )
        return self.label_maps[name]


def _spec_problem(dataset: str, file: Path, message: str) -> ManifestError:
    return ManifestError([ManifestProblem(dataset, None, None, f"{file}: {message}")])


def list_spec_files() -> dict[str, Path]:
    """Dataset key -> yaml file of every spec in :func:`manifests_dir`."""
    folder = manifests_dir()
    return {path.stem: path for path in sorted(folder.glob("*.yaml"))} if folder.is_dir() else {}


def load_spec(dataset: str) -> DatasetSpec:
    """Load and check ``<manifests_dir>/<dataset>.yaml``; ``ManifestError`` for an unknown key or a bad file."""
    files = list_spec_files()
    if dataset not in files:
        known = ", ".join(files) or f"none (no *.yaml in {manifests_dir()})"
        raise ManifestError([ManifestProblem(dataset, None, None, f"unknown dataset {dataset!r}; known: {known}")])
    file = files[dataset]
    stamp = file.stat().st_mtime_ns
    return _load_spec_cached(str(file), stamp, dataset)


def _load_map(
    dataset: str, file: Path, what: str, classes: tuple[str, ...], body: dict[str, Any], emotions: set[str]
) -> LabelMap:
    """The ``map``/``drop`` of a label map (or of one part of it), checked against ``classes`` and ``emotions``."""
    mapping = {str(k): str(v) for k, v in (body.get("map") or {}).items()}
    drop = tuple(str(e) for e in (body.get("drop") or ()))
    strays = sorted(set(mapping.values()) - set(classes))
    if strays:
        raise _spec_problem(dataset, file, f"{what}: map targets {strays} are not among classes {list(classes)}")
    both = sorted(set(mapping) & set(drop))
    if both:
        raise _spec_problem(dataset, file, f"{what}: {both} both mapped and dropped")
    # Every emotion of the dataset must be either mapped or dropped explicitly: a forgotten emotion
    # would otherwise vanish from the label map without anyone deciding it should.
    forgotten = sorted(emotions - set(mapping) - set(drop))
    if emotions and forgotten:
        raise _spec_problem(dataset, file, f"{what}: emotions {forgotten} neither mapped nor dropped")
    return LabelMap(what, classes, mapping, drop, None)


@lru_cache(maxsize=64)
def _load_spec_cached(file_name: str, stamp: int, dataset: str) -> DatasetSpec:
    file = Path(file_name)
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise _spec_problem(dataset, file, f"not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise _spec_problem(dataset, file, "must be a mapping of keys")
    if raw.get("dataset", dataset) != dataset:
        raise _spec_problem(dataset, file, f"declares dataset {raw.get('dataset')!r}, file name says {dataset!r}")
    builder = str(raw.get("builder", dataset))
    if builder in _FORMER_SHEET_BUILDERS:  # a dataset file written before the kinds (a $MERKIT_MANIFESTS folder)
        if builder == "smic_e":
            raw = {**raw, "sample_spelling": raw.get("sample_spelling", "megc2019")}
        builder = "sheet"
    renamed = [f"{old!r} is now {new!r}" for old, new in RENAMED_SPEC_KEYS.items() if old in raw]
    if renamed:
        raise _spec_problem(dataset, file, "rename the key(s): " + "; ".join(renamed))
    entries = [*(raw.get("errata") or ()), *(raw.get("exclusions") or ())]
    entries += [e for body in (raw.get("label_maps") or {}).values() for e in (body.get("exclusions") or ())]
    for entry in entries:
        for key in ("subject", "sample"):
            if key in entry and not isinstance(entry[key], str):
                # YAML reads 032_3_1 as the number 1689 and 006 as 6: ids must be quoted strings
                raise _spec_problem(dataset, file, f"{key} {entry[key]!r} of {entry} must be a quoted string")
    emotions = set(raw.get("emotions") or ())
    label_maps: dict[str, LabelMap] = {}
    for name, body in (raw.get("label_maps") or {}).items():
        classes = tuple(body.get("classes") or ())
        if not classes:
            raise _spec_problem(dataset, file, f"label map {name}: no classes")
        parts = {
            str(part): _load_map(dataset, file, f"label map {name} part {part}", classes, part_body, set())
            for part, part_body in (body.get("parts") or {}).items()
        }
        own = _load_map(dataset, file, f"label map {name}", classes, body, emotions)
        label_maps[name] = LabelMap(
            name,
            classes,
            own.mapping,
            own.drop,
            body.get("expected"),
            tuple(body.get("exclusions") or ()),
            {part: LabelMap(f"{name}[{part}]", classes, p.mapping, p.drop, None) for part, p in parts.items()},
            tuple(str(rule) for rule in (body.get("exclude") or ())),
        )
    return DatasetSpec(dataset, file, builder, raw, label_maps)
