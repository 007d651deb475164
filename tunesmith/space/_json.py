"""A space as JSON (the store's experiment spec) and back: ``space_to_json`` / ``space_from_json``."""

from __future__ import annotations

import sys
from typing import Any

from tunesmith._errors import ConfigError
from tunesmith.space._domains import _KINDS, Domain, SampleFrom
from tunesmith.space._plain import plain
from tunesmith.space._validate import _key

# The JSON key that marks an encoded domain (or an escaped constant dict / tuple).
_TAG = "__domain__"
_ESCAPED_DICT = "__dict__"
_TUPLE = "__tuple__"


def space_to_json(space: dict[str, Any]) -> dict[str, Any]:
    """Encode a space as JSON-compatible data (for the store's experiment spec).

    Domains become ``{"__domain__": "loguniform", "low": ..., "high": ..., "base": ...}``; constants stay
    as they are, except tuples (``{"__domain__": "__tuple__", "items": [...]}``) and constant dicts that
    hold a ``"__domain__"`` key (``{"__domain__": "__dict__", "value": {...}}``). ``sample_from`` keeps
    only ``repr(fn)``.

    Raises:
        ConfigError: naming the key path of a value that JSON cannot hold.
    """
    if not isinstance(space, dict):
        raise ConfigError(f"space: expected a dict; got {type(space).__name__}")
    encoded: dict[str, Any] = _encode(space, "space")
    return encoded


def space_from_json(obj: dict[str, Any]) -> dict[str, Any]:
    """Decode what ``space_to_json`` wrote; the result compares equal to the original space.

    ``sample_from`` comes back without its function: sampling it raises ``ConfigError``.

    Raises:
        ConfigError: an unknown ``"__domain__"`` kind or missing/extra fields, naming the key path.
    """
    if not isinstance(obj, dict):
        raise ConfigError(f"space: expected a JSON object; got {type(obj).__name__}")
    decoded: dict[str, Any] = _decode(obj, "space")
    return decoded


def _encode(value: Any, where: str) -> Any:
    if isinstance(value, SampleFrom):  # the function itself is not stored
        return {_TAG: value.kind, "repr": value.description}
    if isinstance(value, Domain):
        out: dict[str, Any] = {_TAG: value.kind}
        for name in value._fields:
            out[name] = _encode(getattr(value, name), f"{where}.{name}")
        return out
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(f"{where}[{key!r}]: keys must be strings to store as JSON; got "
                                  f"{type(key).__name__}")
            out[key] = _encode(item, _key(where, key))
        return {_TAG: _ESCAPED_DICT, "value": out} if _TAG in value else out
    if isinstance(value, list):
        return [_encode(item, f"{where}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, tuple):
        return {_TAG: _TUPLE, "items": [_encode(item, f"{where}[{i}]") for i, item in enumerate(value)]}
    if value is None or type(value) in (bool, int, float, str):
        return value
    data = sys.modules.get("tunesmith.data")  # not imported here: a plain run's start loads no hashing (a DataRef
    if data is not None and isinstance(value, data.DataRef):  # exists only once tunesmith.data was imported)
        raise ConfigError(f"{where}: a DataRef is not a config value (configs are stored as JSON in the experiment; "
                          "the data lasts only while its driver runs); capture it in the training function "
                          "instead: ref = ts.put(data) in the driver, then def train(config): data = ts.get(ref)")
    converted = plain(value)  # numpy numbers, arrays and scalars, torch tensors, a (str, Enum) or IntEnum member
    if converted is not value:
        return _encode(converted, where)
    raise ConfigError(f"{where}: {type(value).__name__} cannot be stored as JSON; expected a domain, a dict, "
                      "a list, a tuple, or a None/bool/int/float/str constant")


def _decode(obj: Any, where: str) -> Any:
    if isinstance(obj, list):
        return [_decode(item, f"{where}[{i}]") for i, item in enumerate(obj)]
    if not isinstance(obj, dict):
        return obj
    if _TAG not in obj:
        return {key: _decode(item, _key(where, key)) for key, item in obj.items()}
    kind = obj[_TAG]
    body = {key: item for key, item in obj.items() if key != _TAG}
    try:
        if kind == _ESCAPED_DICT:
            return {key: _decode(item, _key(where, key)) for key, item in body.pop("value").items()}
        if kind == _TUPLE:
            return tuple(_decode(item, f"{where}[{i}]") for i, item in enumerate(body.pop("items")))
        if kind == SampleFrom.kind:
            return SampleFrom(None, fn_repr=str(body.pop("repr")))
        if kind not in _KINDS:
            raise ConfigError(f"{where}: unknown domain kind {kind!r}; expected one of "
                              f"{sorted([*_KINDS, SampleFrom.kind])}")
        return _KINDS[kind](**{key: _decode(item, f"{where}.{key}") for key, item in body.items()})
    except (KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{where}: malformed encoded {kind!r}: {obj!r}") from exc
