"""Checks of user input: ``validate_space`` (a whole space, before any trial starts) and ``check_storable``
(a resolved config the store must hold as JSON). Each error names the key path and what was expected.
"""

from __future__ import annotations

import json
from typing import Any

from tunesmith._errors import ConfigError
from tunesmith._secrets import mask_text_at
from tunesmith.space._domains import _CONSTRUCTORS, Choice, Domain, Grid, KeyPath
from tunesmith.space._flatten import FLAT_SEP
from tunesmith.space._plain import _PLAIN_TYPES

MAX_DEPTH = 100  # levels of dicts, lists, tuples and choice/grid options under a key: as a space file's

_ALLOWED = ("a domain (uniform(...), loguniform(...), randint(...), choice([...]), grid([...]), "
            "sample_from(fn), ...), a nested dict, or a constant (number, string, bool, None, list, "
            "tuple or other object)")


def validate_space(space: dict[str, Any]) -> None:
    """Check a whole space before any trial starts.

    Args:
        space: a dict of parameter names to domains, nested dicts or constants.

    Raises:
        ConfigError: for the first problem found, naming its key path (``space["optim"]["lr"]``) and
            what was expected.
    """
    if not isinstance(space, dict):
        raise ConfigError(f"space: expected a dict of parameter names to domains or constants; got "
                          f"{type(space).__name__}")
    _check_depth(space)
    _check_dict(space, "space", in_option=False)


def _check_depth(space: dict[Any, Any]) -> None:
    """Refuse a value nested deeper than ``MAX_DEPTH`` (the checks below, ``resolve`` and the store recurse once or
    more per level: a ``RecursionError`` otherwise), naming its top-level key. A walk without recursion; a
    container that holds itself is too deep."""
    for key, value in space.items():
        stack: list[tuple[Any, int]] = [(value, 1)]
        while stack:
            item, depth = stack.pop()
            children: Any
            if isinstance(item, (Choice, Grid)):
                children = item.options if isinstance(item, Choice) else item.values
            elif isinstance(item, dict):
                children = list(item.values())
            elif isinstance(item, (list, tuple)):
                children = item
            else:
                continue
            if depth > MAX_DEPTH:
                raise ConfigError(f"{_key('space', key)}: nested deeper than {MAX_DEPTH} levels")
            if isinstance(children, (list, tuple)):  # else a choice/grid that _problem refuses
                stack.extend((child, depth + 1) for child in children)


def _check_dict(mapping: dict[Any, Any], where: str, in_option: bool, path: tuple[Any, ...] = ()) -> None:
    for key, value in mapping.items():
        _check_key(key, where)
        _check_value(value, _key(where, key), in_option, (*path, key))


def _check_key(key: Any, where: str) -> None:
    """A config key is a string without ``/``: results, ``show``, ``dataframe()`` and the report name a nested
    key by its path joined with ``/`` (``optim/lr``), so a ``/`` inside a key would read as two keys."""
    if not isinstance(key, str):
        raise ConfigError(f"{where}[{key!r}]: keys must be strings; got {type(key).__name__}")
    if FLAT_SEP in key:
        raise ConfigError(f"{_key(where, key)}: a key may not contain {FLAT_SEP!r} (flattened config keys join "
                          f"nested keys with it, e.g. 'optim{FLAT_SEP}lr'); nest a dict instead, or use another "
                          "character such as '.' or '_'")


def _check_value(value: Any, where: str, in_option: bool, path: tuple[Any, ...] = ()) -> None:
    """``path``: the keys to ``value`` (a problem with a domain under a secret-looking one is told without the
    values it quotes)."""
    if isinstance(value, Domain):
        problem = value._problem()
        if problem:
            raise ConfigError(f"{where}: {mask_text_at(path, problem, *(getattr(value, f) for f in value._fields))}")
        if isinstance(value, Grid) and in_option:
            raise ConfigError(f"{where}: grid([...]) is not allowed inside a choice or grid option; "
                              "expected it at a top-level or nested dict key (use choice([...]) here)")
        if isinstance(value, (Choice, Grid)):
            items = value.options if isinstance(value, Choice) else value.values
            for i, item in enumerate(items):
                _check_value(item, f"{where}.{_items_name(value)}[{i}]", True, path)
    elif isinstance(value, dict):
        _check_dict(value, where, in_option, path)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_constant(item, f"{where}[{i}]")
    else:
        _check_constant(value, where)


def _check_constant(value: Any, where: str) -> None:
    """Constants inside lists are not sampled, so a domain there is a mistake, not a constant."""
    if isinstance(value, Domain):
        raise ConfigError(f"{where}: domains inside a list or tuple are not sampled; expected them as "
                          "dict values (e.g. {\"layer0\": ..., \"layer1\": ...})")
    if isinstance(value, (set, frozenset)):
        raise ConfigError(f"{where}: a set is not allowed (its order is not defined); expected {_ALLOWED}. "
                          "For one of several values use choice([...])")
    if (isinstance(value, type) and issubclass(value, Domain)) or any(value is c for c in _CONSTRUCTORS):
        name = getattr(value, "__name__", repr(value))
        raise ConfigError(f"{where}: got the domain type {name} itself, not a domain; expected {_ALLOWED}. "
                          "Call it with its arguments, e.g. uniform(0.0, 1.0)")
    if isinstance(value, dict):
        for key, item in value.items():
            _check_constant(item, _key(where, key))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_constant(item, f"{where}[{i}]")


def check_storable(config: dict[str, Any], where: str = "config") -> None:
    """Check that the store can hold ``config`` as it is: JSON (dicts with string keys, lists, tuples,
    None/bool/int/float/str), with keys that flatten (no ``/`` in a key of a nested dict).

    ``resolve`` makes numpy and torch numbers plain, so this fails only for values that no conversion could
    store (an object, a set, bytes...), typically returned by a ``sample_from`` function.

    Raises:
        ConfigError: naming the key path of the first value or key that cannot be stored.
    """
    if not isinstance(config, dict):
        raise ConfigError(f"{where}: expected a dict; got {type(config).__name__}")
    _check_storable(config, where, True)


def _check_storable(value: Any, where: str, flattened: bool) -> None:
    """``flattened``: ``value`` is reached through dicts only, so a dict's keys become flat names."""
    if type(value) in _PLAIN_TYPES:
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if flattened:
                _check_key(key, where)
            elif not isinstance(key, str):
                raise ConfigError(f"{where}[{key!r}]: keys must be strings to be stored; got {type(key).__name__}")
            _check_storable(item, _key(where, key), flattened)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_storable(item, f"{where}[{i}]", False)
    elif not isinstance(value, (str, int, float)):
        raise ConfigError(f"{where}: {type(value).__name__} {value!r:.80} cannot be stored (the store keeps "
                          "configs as JSON); expected a dict, a list, a tuple, or a None/bool/int/float/str value")


def _items_name(domain: Choice | Grid) -> str:
    return "options" if isinstance(domain, Choice) else "values"


def _key(where: str, key: Any) -> str:
    return f"{where}[{json.dumps(key) if isinstance(key, str) else repr(key)}]"


def _where(path: KeyPath) -> str:
    where = "space"
    for key in path:
        where = _key(where, key)
    return where
