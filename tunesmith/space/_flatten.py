"""Flat views of a config: ``{"optim": {"lr": 0.1}}`` <-> ``{"optim/lr": 0.1}``."""

from __future__ import annotations

from typing import Any

from tunesmith import _flat
from tunesmith._errors import ConfigError

# Joins nested config keys in flat views (results, ``show``, ``dataframe()``, the report): ``optim/lr``.
FLAT_SEP = "/"


def flatten(config: dict[str, Any], sep: str = "/") -> dict[str, Any]:
    """Nested dicts to one level: ``{"optim": {"lr": 0.1}}`` -> ``{"optim/lr": 0.1}``.

    An empty nested dict is kept as a value so that ``unflatten`` gives it back.

    Raises:
        ConfigError: a key is not a string or contains ``sep``.
    """
    return _flat.flatten(config, sep, strict=True)


def unflatten(flat: dict[str, Any], sep: str = "/") -> dict[str, Any]:
    """The inverse of ``flatten``: ``{"optim/lr": 0.1}`` -> ``{"optim": {"lr": 0.1}}``.

    Raises:
        ConfigError: two keys disagree, e.g. ``"a"`` holds a value and ``"a/b"`` needs it to be a dict.
    """
    out: dict[str, Any] = {}
    for name, value in flat.items():
        *parents, last = name.split(sep)
        target = out
        for i, key in enumerate(parents):
            target = target.setdefault(key, {})
            if not isinstance(target, dict):
                raise ConfigError(f"config key {name!r}: {sep.join(parents[:i + 1])!r} is a value, "
                                  "expected a dict")
        if last in target:
            raise ConfigError(f"config key {name!r}: given twice (as a value and as a dict)")
        target[last] = value
    return out
