"""The names of run configurations: the error that names a bad key, the closest known name, and the old names
of a renamed key (saved ``config.json`` files and parameters of an older kit) in today's names.

Renamed (issue 11): the class mapping ``protocol`` (``data.protocol``, the ``protocol`` parameter) is
``label_map``, so that it cannot be confused with the fold protocol (``protocol.name``, the notebooks'
``evaluation``). The old name is still read, with a DeprecationWarning.
"""

from __future__ import annotations

import difflib
import warnings
from typing import Any, Mapping

from merkit.errors import MerkitValueError

__all__ = ["ConfigError", "DEPRECATED_MESSAGE", "unknown_name", "upgrade_data_keys", "upgrade_config_dict"]

#: What an old name of the class mapping says (``DataConfig.protocol``, the ``protocol`` parameter, ``data.protocol``).
DEPRECATED_MESSAGE = (
    "'protocol' as the name of the class mapping is deprecated: use 'label_map' "
    "(the fold protocol is protocol.name, the notebooks' 'evaluation')"
)


class ConfigError(MerkitValueError):
    """A configuration value or key is invalid; the message names the field(s)."""


def unknown_name(key: str, known: list[str]) -> str:
    """``'key'``, with the closest of ``known`` when there is one: ``'epochz' (did you mean 'epochs'?)``."""
    close = difflib.get_close_matches(key, known, n=1)
    return f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key)


def upgrade_data_keys(values: Mapping[str, Any], what: str = "config key") -> dict[str, Any]:
    """``values`` with the deprecated class-mapping name ``protocol`` renamed ``label_map`` (a DeprecationWarning
    says so); both given and different is a :class:`ConfigError`. Used for data sections of saved configs and
    for flat parameters (``what`` names which in the messages)."""
    values = dict(values)
    if "protocol" not in values:
        return values
    old = values.pop("protocol")
    if "label_map" in values and values["label_map"] != old:
        raise ConfigError(
            f"{what} 'protocol' ({old!r}) and 'label_map' ({values['label_map']!r}) disagree; "
            "give label_map only ('protocol' is its deprecated name)"
        )
    warnings.warn(DEPRECATED_MESSAGE, DeprecationWarning, stacklevel=3)
    values.setdefault("label_map", old)
    return values


def upgrade_config_dict(d: Mapping[str, Any]) -> dict[str, Any]:
    """A saved run config (``config.json``, a model bundle's) in today's key names: ``data.protocol`` (before
    issue 11) becomes ``data.label_map``. Resume checks and model bundles compare configs in these names."""
    d = dict(d)
    if isinstance(d.get("data"), Mapping) and "protocol" in d["data"]:
        d["data"] = upgrade_data_keys(d["data"], "config key data.")
    return d
