"""The names of saved files: the error that names a bad key, the closest known name, and the one function that
reads a file an older kit saved (a run's ``config.json``, a model bundle's run config, a clip store's
``store.json``) under today's key names.

The class mapping was first saved as ``protocol`` (``data.protocol`` in a run config, ``attrs.protocol`` in a
store); it is ``label_map`` now, so that it cannot be confused with the fold protocol (``protocol.name``, the
notebooks' ``evaluation``). Only saved files are upgraded, here, where they are read; code, parameters and
flags know the new names only.

This module depends on :mod:`merkit.errors` alone, so every floor that reads a saved file may call it.
"""

from __future__ import annotations

import difflib
from typing import Any, Mapping

from merkit.errors import MerkitValueError

__all__ = ["ConfigError", "RENAMED_KEYS", "SAVED_KINDS", "unknown_name", "upgrade_saved"]


class ConfigError(MerkitValueError):
    """A configuration value or key is invalid; the message names the field(s)."""


#: Keys renamed since a kind of file was first saved: kind -> {section: {old key: new key}}.
RENAMED_KEYS: dict[str, dict[str, dict[str, str]]] = {
    "config": {"data": {"protocol": "label_map"}},  # a run's config.json, a model bundle's run config
    "store": {"attrs": {"protocol": "label_map"}},  # a clip store's store.json (the manifest's attrs)
}
SAVED_KINDS = tuple(RENAMED_KEYS)


def unknown_name(key: str, known: list[str]) -> str:
    """``'key'``, with the closest of ``known`` when there is one: ``'epochz' (did you mean 'epochs'?)``."""
    close = difflib.get_close_matches(key, known, n=1)
    return f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key)


def upgrade_saved(saved: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """``saved`` (the parsed JSON of a file of ``kind``, one of :data:`SAVED_KINDS`) with every renamed key
    (:data:`RENAMED_KEYS`) under its name today; a file in today's names comes back equal. A file holding both
    names with different values is a :class:`ConfigError` naming them. ``saved`` is not changed."""
    if kind not in RENAMED_KEYS:
        raise ConfigError(f"unknown kind of saved file {kind!r}; known: {', '.join(SAVED_KINDS)}")
    upgraded = dict(saved)
    for section, renamed in RENAMED_KEYS[kind].items():
        values = upgraded.get(section)
        if not isinstance(values, Mapping) or not set(renamed) & set(values):
            continue
        values = dict(values)
        for old, new in renamed.items():
            if old not in values:
                continue
            value = values.pop(old)
            if new in values and values[new] != value:
                raise ConfigError(
                    f"saved {kind} holds {section}.{old} ({value!r}, the older name of {section}.{new}) and "
                    f"{section}.{new} ({values[new]!r}), which disagree"
                )
            values.setdefault(new, value)
        upgraded[section] = values
    return upgraded
