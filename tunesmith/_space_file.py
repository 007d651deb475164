"""Search spaces written as YAML or JSON (``tunesmith run --space space.yaml``).

The file is a mapping with the same domains as Python. A domain is a mapping with one key, the domain's
name, holding its arguments as a list (positional) or a mapping (by name)::

    lr: {loguniform: [1e-4, 1e-1]}          # ts.loguniform(1e-4, 1e-1)
    momentum: {uniform: {low: 0.8, high: 0.99}}
    layers: {choice: [1, 2, 3]}             # ts.choice([1, 2, 3]); options may be domains or mappings
    seed: {grid: [0, 1, 2]}                 # ts.grid([0, 1, 2])
    optim:                                  # nested parameters
      name: adam                            # constants as plain values
      betas: [0.9, 0.999]
    odd: {const: {choice: 1}}               # a constant that would otherwise read as a domain

``sample_from`` needs Python code, so it has no file form. Plain values are read as in YAML 1.2 (``_Loader``):
``1e-4`` is a number, ``010`` is 10, ``on``/``yes``/``1:30``/``2024-01-01`` are text (YAML 1.1, PyYAML's own
reading, would give 1e-4 as text, 8, booleans, 90 and a date). Every error names the file and the key path
(``space["optim"]["lr"]``) and says what was expected.
"""

from __future__ import annotations

import difflib
import inspect
import io
import json
import os
import re
from typing import Any

import yaml

from tunesmith._errors import ConfigError
from tunesmith._secrets import mask_at
from tunesmith.space import (
    choice,
    grid,
    lograndint,
    loguniform,
    normal,
    qloguniform,
    qnormal,
    quniform,
    randint,
    uniform,
    validate_space,
)

DOMAINS: dict[str, Any] = {
    "uniform": uniform, "quniform": quniform, "loguniform": loguniform, "qloguniform": qloguniform,
    "normal": normal, "qnormal": qnormal, "randint": randint, "lograndint": lograndint,
    "choice": choice, "grid": grid,
}
CONST = "const"
_LISTS = {"choice": "options", "grid": "values"}
MAX_VALUES = 100_000  # a space file's values: YAML aliases make a few hundred bytes repeat a list billions of times
MAX_DEPTH = 100


class _Loader(yaml.SafeLoader):
    """Safe YAML whose plain scalars are read by the YAML 1.2 core schema, as every current YAML tool reads them,
    not by PyYAML's YAML 1.1 rules:

    * booleans are only ``true``/``false`` (``True``, ``FALSE``, ...): ``on``, ``off``, ``yes``, ``no`` stay text;
    * integers are decimal (``010`` is 10), ``0o10`` octal, ``0x10`` hex: ``1:30`` (base 60 in 1.1) is text;
    * floats include ``1e-4``, ``1E5`` and ``.5e3`` (1.1 needs a dot), ``-.5``, ``.inf`` and ``.nan``;
    * there are no timestamps (``2024-01-01`` is text) and no ``=`` value keys.

    Kept from PyYAML, as Python writes numbers: ``_`` between digits (``1_000``), ``0b`` binary, a sign before
    ``0x``/``0o``. ``null``/``~``/empty and ``<<`` merge keys are as before. The table is this class's own:
    ``yaml.SafeLoader`` keeps reading YAML 1.1.

    A file of more nodes than a space of ``MAX_VALUES`` values can have is refused while it is composed, before a
    Python object is made of each node (``_TooMany``).
    """

    _nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        # every node but the top mapping is a key or a value (an alias counts once here and its whole size as
        # values), and a key has a value: more than 2 * MAX_VALUES + 1 nodes are more than MAX_VALUES values
        self._nodes += 1
        if self._nodes > 2 * MAX_VALUES + 1:
            raise _TooMany(None, None, "too many values", self.peek_event().start_mark)
        return super().compose_node(parent, index)


class _TooMany(yaml.MarkedYAMLError):
    """A YAML file with more values than ``MAX_VALUES``, found while it is composed."""


# The class's own table (``add_implicit_resolver`` would append to a copy of SafeLoader's 1.1 one): SafeLoader's null
# and ``<<`` merge resolvers, then YAML 1.2's, in this order (the first that matches wins; _FLOAT matches "10" too).
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag in ("tag:yaml.org,2002:null", "tag:yaml.org,2002:merge")]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))
_INT = re.compile(r"^[-+]?(?:[0-9][0-9_]*|0o_*[0-7][0-7_]*|0x_*[0-9a-fA-F][0-9a-fA-F_]*|0b_*[01][01_]*)$")
_Loader.add_implicit_resolver("tag:yaml.org,2002:int", _INT, list("-+0123456789"))
_FLOAT = re.compile(r"^(?:[-+]?(?:\.[0-9][0-9_]*|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?"
                    r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$")
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+.0123456789"))


def _yaml_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    """An ``_INT``: decimal unless ``0o``/``0x``/``0b`` says otherwise (PyYAML reads a leading 0 as octal)."""
    text = str(loader.construct_scalar(node)).replace("_", "")
    sign, digits = (-1, text[1:]) if text[:1] == "-" else (1, text.lstrip("+"))
    base = {"0o": 8, "0x": 16, "0b": 2}.get(digits[:2], 10)
    return sign * int(digits if base == 10 else digits[2:], base)


_Loader.add_constructor("tag:yaml.org,2002:int", _yaml_int)


def _tagged(construct: Any, expected: str) -> Any:
    """``construct`` for a scalar whose tag may be written explicitly (``!!int 1:30``): a value it cannot read is
    an error naming the line and column and what the tag expected (not the value: it may be a secret)."""
    def build(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
        try:
            return construct(loader, node)
        except (ValueError, KeyError, AttributeError, OverflowError):
            tag = node.tag.rsplit(":", 1)[-1]
            raise yaml.constructor.ConstructorError(
                None, None, f"a value tagged !!{tag} must be {expected} (leave the tag out, or quote the value "
                "for text)", node.start_mark) from None
    return build


for _tag, _expected in (("int", "an integer"), ("float", "a number"), ("bool", "true or false"),
                        ("timestamp", "a date")):
    _Loader.add_constructor(f"tag:yaml.org,2002:{_tag}",
                            _tagged(_Loader.yaml_constructors[f"tag:yaml.org,2002:{_tag}"], _expected))


def _no_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    """A mapping that names a key given twice (PyYAML would keep the last one silently). Keys merged in
    with ``<<`` are not written here: the ones written here override them, as in YAML."""
    seen: set[Any] = set()
    for key_node, _value_node in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:  # an unhashable key: construct_mapping reports it
            continue
        if duplicate:
            raise yaml.constructor.ConstructorError(None, None, f"key {key!r} is given twice", key_node.start_mark)
    return loader.construct_mapping(node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


class _Twice(dict):  # type: ignore[type-arg]
    """A JSON object that gives ``key`` twice (found after parsing, to name its key path)."""

    key: str


def _json_pairs(pairs: list[tuple[str, Any]], twice: list[_Twice]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out and not isinstance(out, _Twice):
            out = _Twice(out)
            out.key = key
            twice.append(out)
        out[key] = value
    return out


def _json_twice(obj: Any, text: str, source: str) -> None:
    """Refuse a JSON object that gives a key twice (JSON would keep the last one silently), naming its key path
    and the line where it is given again."""
    found: tuple[Any, ...] | None = None
    stack: list[tuple[Any, tuple[Any, ...]]] = [(obj, ())]
    while stack and found is None:  # the object closest to the top (its parents give each key once)
        value, path = stack.pop()
        if isinstance(value, _Twice):
            found = (*path, value.key)
        elif isinstance(value, dict):
            stack.extend(reversed([(v, (*path, k)) for k, v in value.items()]))
        elif isinstance(value, list):
            stack.extend(reversed([(v, (*path, i)) for i, v in enumerate(value)]))
    if found is None:
        return
    where = "space" + "".join(f"[{i}]" if isinstance(i, int) else _key("", i) for i in found)
    try:
        line = f" (line {_json_line(text, found)})"
    except (ValueError, IndexError):
        line = ""
    raise ConfigError(f"{source}: {where}: key {found[-1]!r} is given twice{line}; give each key once")


_JSON_SPACE = re.compile(r"[ \t\n\r]*")


def _skip(text: str, pos: int) -> int:
    """Past the JSON whitespace at ``pos``."""
    space = _JSON_SPACE.match(text, pos)
    return space.end() if space else pos


def _json_line(text: str, path: tuple[Any, ...]) -> int:
    """The line of the second time the last key of ``path`` is given (the keys before it are given once), found by
    stepping over the values before it with the C JSON decoder."""
    decode = json.JSONDecoder().raw_decode
    pos = _skip(text, int(text.startswith("\ufeff")))
    for depth, part in enumerate(path):
        pos = _skip(text, pos + 1)  # past the '{' or '['
        if isinstance(part, int):
            for _ in range(part):
                pos = _skip(text, decode(text, pos)[1]) + 1  # past the value and its ','
                pos = _skip(text, pos)
            continue
        seen = 0
        while True:
            key, end = json.decoder.scanstring(text, pos + 1)  # type: ignore[attr-defined]
            if key == part:
                seen += 1
                if depth < len(path) - 1 or seen == 2:
                    break
            pos = _skip(text, end) + 1  # past the ':'
            pos = _skip(text, decode(text, _skip(text, pos))[1]) + 1  # past the value and its ','
            pos = _skip(text, pos)  # the next key
        if depth == len(path) - 1:
            return text.count("\n", 0, pos) + 1
        pos = _skip(text, _skip(text, end) + 1)  # past the ':': the value
    raise ValueError("no such key")


def load_space(path: str) -> dict[str, Any]:
    """Read and check a space file (``.yaml``, ``.yml`` or ``.json``; anything else is read as YAML,
    which JSON is a subset of).

    Returns:
        The space: a dict of domains, nested dicts and constants, already validated.

    Raises:
        ConfigError: the file is missing or unreadable, not valid YAML/JSON, or describes a bad space; the
            message starts with the file's path and names the key path.
    """
    try:
        with open(path, encoding="utf-8-sig") as f:  # a byte order mark, as some Windows editors write, is skipped
            text = f.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the space file ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:  # read() decodes the whole file at once: exc.start is its byte offset
        line = exc.object.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} on line {line}); save it "
                          "as UTF-8") from None
    return parse_space_text(text, source=path, json_only=os.path.splitext(path)[1].lower() == ".json")


def parse_space_text(text: str, source: str = "space", json_only: bool = False) -> dict[str, Any]:
    """Parse the text of a space file (YAML, or JSON with ``json_only``); see :func:`load_space`."""
    twice: list[_Twice] = []  # JSON objects that give a key twice
    try:
        if json_only:
            obj = json.loads(text.removeprefix("\ufeff"), object_pairs_hook=lambda pairs: _json_pairs(pairs, twice))
        else:
            stream = io.StringIO(text)
            stream.name = source  # type: ignore[misc]  # PyYAML names it in error marks
            obj = yaml.load(stream, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except _TooMany as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else "?"
        raise ConfigError(f"{source}: space: {_too_many(False)} (reached by line {line})") from None
    except (ValueError, yaml.YAMLError) as exc:
        kind = "JSON" if json_only else "YAML"
        raise ConfigError(f"{source}: not valid {kind}: {' '.join(str(exc).split())}") from None
    except RecursionError:  # the parsers recurse once or more per level
        raise ConfigError(f"{source}: nested deeper than {MAX_DEPTH} levels") from None
    if json_only and twice:
        _json_twice(obj, text, source)
    return parse_space(obj, source)


def parse_space(obj: Any, source: str = "space") -> dict[str, Any]:
    """Turn the data of a space file (dicts, lists, scalars) into a validated space.

    Args:
        obj: what YAML/JSON gave.
        source: the name errors start with (the file's path).

    Raises:
        ConfigError: naming ``source`` and the key path.
    """
    if obj is None:
        raise ConfigError(f"{source}: the space is empty; expected a mapping of parameter names to domains "
                          "or constants, e.g. lr: {loguniform: [1e-4, 1e-1]}")
    if not isinstance(obj, dict):
        raise ConfigError(f"{source}: expected a mapping of parameter names to domains or constants at the "
                          f"top level; got {_kind(obj)}")
    try:
        _check_size(obj)
        space = _mapping(obj, "space")
        validate_space(space)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    return space


def _check_size(obj: dict[Any, Any]) -> None:
    """Refuse, before anything is copied, a space that YAML aliases make huge or circular, or that is
    nested deeper than ``MAX_DEPTH``. PyYAML shares an aliased object; sizes are memoized by identity so
    that each is measured once, however often it is used."""
    measured: dict[int, tuple[int, int] | None] = {}  # id -> (values, levels of lists and mappings)
    aliased = False  # some list or mapping is used more than once (a YAML alias)

    def measure(value: Any, depth: int, where: str) -> tuple[int, int]:
        nonlocal aliased
        if not isinstance(value, (dict, list)):
            return 1, 0
        aliased = aliased or id(value) in measured
        if id(value) not in measured:
            if depth > MAX_DEPTH:
                raise ConfigError(f"{where}: nested deeper than {MAX_DEPTH} levels")
            measured[id(value)] = None  # being measured: met again inside, it contains itself
            items = [measure(item, depth + 1, where) for item in (value.values() if isinstance(value, dict)
                                                                     else value)]
            measured[id(value)] = 1 + sum(v for v, _ in items), 1 + max((n for _, n in items), default=0)
        known = measured[id(value)]
        if known is None:
            raise ConfigError(f"{where}: refers to itself (a YAML alias inside what it names), so it never ends")
        if depth + known[1] - 1 > MAX_DEPTH:  # a shared value met deeper than where it was measured
            raise ConfigError(f"{where}: nested deeper than {MAX_DEPTH} levels")
        return known

    total = 0
    for key, value in obj.items():
        values = measure(value, 1, _key("space", str(key)))[0]
        total += values
        if total > MAX_VALUES:
            where = _key("space", str(key)) if values > MAX_VALUES else "space"
            raise ConfigError(f"{where}: {_too_many(aliased)}")


def _too_many(aliased: bool) -> str:
    """Why a space is refused as too big; YAML aliases are named only where the space uses one."""
    if aliased:
        return (f"expands to more than {MAX_VALUES} values (YAML aliases repeat what they refer to each time they "
                "are used)")
    return (f"holds more than {MAX_VALUES} values (each number, text, true/false/null, list and mapping counts "
            f"once); a space file holds at most {MAX_VALUES:,}: give a larger space from Python (tunesmith.run)")


def _mapping(obj: dict[Any, Any], where: str, path: tuple[Any, ...] = ()) -> dict[str, Any]:
    out = {}
    for key, value in obj.items():
        if not isinstance(key, str):
            raise ConfigError(f"{where}[{key!r}]: parameter names must be text; got {_kind(key)} (quote it)")
        out[key] = _value(value, _key(where, key), (*path, key))
    return out


def _value(value: Any, where: str, path: tuple[Any, ...] = ()) -> Any:
    """``path``: the keys to ``value``; an error quotes a value as a config shows it there (a secret as ***)."""
    if isinstance(value, dict):
        names = [k for k in value if k in DOMAINS or k == CONST]
        if names and len(value) > 1:
            raise ConfigError(f"{where}: a domain is a mapping with one key, its name ({names[0]!r}); got the "
                              f"extra keys {sorted(str(k) for k in value if k != names[0])}. Put arguments "
                              f"in it, e.g. {{loguniform: [1e-4, 1e-1, 10]}}")
        if len(value) == 1:
            (name, args), = value.items()
            if name == CONST:
                return _constant(args, f"{where}.{CONST}", literal=True, path=path)
            if name in DOMAINS:
                return _domain(name, args, where, path)
            if name == "sample_from":
                raise ConfigError(f"{where}: sample_from needs Python code and has no file form; pass the "
                                  "space from Python (tunesmith.run) for it")
            near = difflib.get_close_matches(str(name), [*DOMAINS, CONST], n=1, cutoff=0.8)
            if near and isinstance(args, (list, dict)):
                raise ConfigError(f"{where}: unknown domain {name!r}; did you mean {near[0]!r}? (for a nested "
                                  f"parameter named {name!r} write {{const: {{{name}: ...}}}} or add keys)")
        return _mapping(value, where, path)
    return _constant(value, where, path=path)


def _domain(name: str, args: Any, where: str, path: tuple[Any, ...] = ()) -> Any:
    if name in _LISTS:
        items = args.get(_LISTS[name]) if isinstance(args, dict) and set(args) == {_LISTS[name]} else args
        if not isinstance(items, list):
            raise ConfigError(f"{where}: {name} expected a list of {_LISTS[name]}, e.g. {{{name}: [1, 2, 3]}}; "
                              f"got {_kind(args, path)}")
        return DOMAINS[name]([_value(item, f"{where}.{_LISTS[name]}[{i}]", path) for i, item in enumerate(items)])
    fn = DOMAINS[name]
    params = list(inspect.signature(fn).parameters.values())
    usage = ", ".join(p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default}"
                      for p in params)
    if args is None:
        args = []
    if isinstance(args, list):
        positional, named = args, {}
    elif isinstance(args, dict):
        positional, named = [], args
    else:
        raise ConfigError(f"{where}: {name} expected its arguments as a list [{usage}] or a mapping; "
                          f"got {_kind(args, path)}")
    try:
        inspect.signature(fn).bind(*positional, **{str(k): v for k, v in named.items()})
    except TypeError as exc:
        raise ConfigError(f"{where}: {name} takes [{usage}]; got {json.dumps(mask_at(path, args), default=str)} "
                          f"({exc})") from None
    for i, arg in enumerate([*positional, *named.values()]):
        if isinstance(arg, (dict, list)):
            label = params[i].name if i < len(positional) else list(named)[i - len(positional)]
            raise ConfigError(f"{where}: {name} expected {label} to be a number; got {_kind(arg, path)}")
    return fn(*positional, **{str(k): v for k, v in named.items()})


def _constant(value: Any, where: str, literal: bool = False, in_list: bool = False, path: tuple[Any, ...] = ()) -> Any:
    """A constant as JSON holds it: text, numbers, booleans, null, lists and mappings of those. Outside
    ``const`` (``literal``), a domain in a list (``in_list``: at any depth under one) is a mistake: lists are not
    sampled."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [_constant(item, f"{where}[{i}]", literal, in_list=True, path=path) for i, item in enumerate(value)]
    if isinstance(value, dict):
        if in_list and not literal and len(value) == 1 and next(iter(value)) in DOMAINS:
            raise ConfigError(f"{where}: domains inside a list are not sampled; give each its own key (e.g. layer0: "
                              "{choice: [...]}), or write {const: [...]} for a literal")
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ConfigError(f"{where}[{key!r}]: keys must be text; got {_kind(key)} (quote it)")
            out[key] = _constant(item, _key(where, key), literal, in_list, (*path, key))
        return out
    hint = " (quote it to keep it as text)" if type(value).__name__ in ("date", "datetime") else ""
    raise ConfigError(f"{where}: {_kind(value, path)} is not allowed; expected text, a number, true/false, null, "
                      f"a list or a mapping{hint}")


def _key(where: str, key: str) -> str:
    return f"{where}[{json.dumps(key)}]"


def _kind(value: Any, path: tuple[Any, ...] = ()) -> str:
    """``value`` quoted (short) with its type; ``path``: where it is in the space, to mask it as a config would be
    there (a secret as ***, a URL's password)."""
    shown = mask_at(path, value)  # any type: binary, a set or a date under a secret key is *** too
    text = json.dumps(shown, default=str) if not isinstance(shown, (set, bytes)) else repr(shown)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"
