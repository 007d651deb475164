"""Space files (YAML/JSON) parse to the same spaces as Python; bad ones give one ConfigError naming the key."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from tunesmith._errors import ConfigError
from tunesmith._space_file import _Loader, load_space, parse_space, parse_space_text
from tunesmith.cli import cli
from tunesmith.space import (
    Domain,
    choice,
    grid,
    lograndint,
    loguniform,
    normal,
    qloguniform,
    quniform,
    randint,
    uniform,
)


class _Dumper(yaml.SafeDumper):
    """Quotes exactly the text that the space loader (YAML 1.2) reads as something else, such as "1e5" or
    "010", and leaves "on" or "1:30" plain, as the loader keeps them text."""

    yaml_implicit_resolvers = _Loader.yaml_implicit_resolvers

# Names with digits are never mistaken for (or close to) a domain name.
keys = st.from_regex(r"[a-z]{1,3}[0-9]{1,2}", fullmatch=True)
finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
positive = st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False)
scalars = st.none() | st.booleans() | st.integers(-10**6, 10**6) | finite | st.text(max_size=8)


@st.composite
def ordered(draw: Any, values: Any) -> tuple[Any, Any]:
    a, b = draw(values), draw(values)
    if a == b:
        b = a + 1 if isinstance(a, int) else a * 2 + 1
    return (min(a, b), max(a, b))


@st.composite
def leaf_domains(draw: Any) -> tuple[Domain, Any]:
    """A domain and how a file writes it."""
    kind = draw(st.sampled_from(["uniform", "loguniform", "normal", "randint", "lograndint", "quniform",
                                 "qloguniform", "choice"]))
    if kind == "uniform":
        low, high = draw(ordered(finite))
        return uniform(low, high), {"uniform": [low, high]}
    if kind == "loguniform":
        low, high = draw(ordered(positive))
        return loguniform(low, high), {"loguniform": {"low": low, "high": high}}
    if kind == "normal":
        mean, sd = draw(finite), draw(positive)
        return normal(mean, sd), {"normal": [mean, sd]}
    if kind == "randint":
        low, high = draw(ordered(st.integers(-1000, 1000)))
        return randint(low, high), {"randint": [low, high]}
    if kind == "lograndint":
        low, high = draw(ordered(st.integers(1, 1000)))
        return lograndint(low, high), {"lograndint": [low, high]}
    if kind == "quniform":
        return quniform(0.0, 1.0, 0.25), {"quniform": [0.0, 1.0, 0.25]}
    if kind == "qloguniform":
        return qloguniform(1.0, 100.0, 1.0, 10), {"qloguniform": {"low": 1.0, "high": 100.0, "q": 1.0, "base": 10}}
    options = draw(st.lists(scalars, min_size=1, max_size=4))
    return choice(options), {"choice": options}


@st.composite
def spaces(draw: Any, depth: int = 2) -> tuple[dict[str, Any], dict[str, Any]]:
    """A space and its file form, with nesting, constants, grids and choices of dicts."""
    space: dict[str, Any] = {}
    written: dict[str, Any] = {}
    for key in draw(st.lists(keys, min_size=1, max_size=5, unique=True)):
        what = draw(st.sampled_from(["domain", "constant", "list", "grid", "nested", "conditional"]))
        if what == "domain":
            space[key], written[key] = draw(leaf_domains())
        elif what == "constant":
            space[key] = written[key] = draw(scalars)
        elif what == "list":
            space[key] = written[key] = draw(st.lists(scalars, max_size=3))
        elif what == "grid" and depth == 2:
            values = draw(st.lists(scalars, min_size=1, max_size=3))
            space[key], written[key] = grid(values), {"grid": values}
        elif what == "conditional":
            inner, inner_written = draw(leaf_domains())
            space[key] = choice([{"opt": "a", "v": inner}, 5])
            written[key] = {"choice": [{"opt": "a", "v": inner_written}, 5]}
        elif depth > 0:
            space[key], written[key] = draw(spaces(depth - 1))
        else:
            space[key] = written[key] = draw(scalars)
    return space, written


@settings(max_examples=200, deadline=None)
@given(spaces())
def test_yaml_and_json_files_give_the_python_space(pair: tuple[dict[str, Any], dict[str, Any]]) -> None:
    space, written = pair
    text = yaml.dump(written, Dumper=_Dumper, sort_keys=False)
    assert parse_space_text(text, "s.yaml") == space
    assert parse_space_text(json.dumps(written), "s.json", json_only=True) == space


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from(["uniform", "loguniform", "choice", "grid", "const", "randint", "normal",
                                       "logunifrom", "sample_from", "a", "b"]) | st.text(max_size=3),
                      children, max_size=3),
    max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=4), json_values, max_size=4))
def test_any_input_gives_a_space_or_a_config_error(obj: dict[str, Any]) -> None:
    try:
        space = parse_space(obj, "s.yaml")
    except ConfigError as exc:
        assert str(exc).startswith("s.yaml: ")
        assert "\n" not in str(exc)
    else:
        assert isinstance(space, dict)


@settings(max_examples=100, deadline=None)
@given(st.lists(keys, min_size=1, max_size=4, unique=True))
def test_errors_name_the_key_path(path: list[str]) -> None:
    obj: dict[str, Any] = {"loguniform": [1.0, 0.5]}  # low > high
    for key in reversed(path):
        obj = {key: obj, "other": 1}
    where = "space" + "".join(f'["{k}"]' for k in path)
    with pytest.raises(ConfigError) as info:
        parse_space(obj, "s.yaml")
    assert str(info.value).startswith(f"s.yaml: {where}: loguniform expected low < high")


@pytest.mark.parametrize("text, message", [
    ("lr: {logunifrom: [1, 2]}", "unknown domain 'logunifrom'; did you mean 'loguniform'?"),
    ("lr: {loguniform: [1e-4, 1], base: 2}", "a domain is a mapping with one key"),
    ("lr: {uniform: [1]}", 'space["lr"]: uniform takes [low, high]'),
    ("lr: {uniform: 3}", "uniform expected its arguments as a list"),
    ("lr: {uniform: [[1], 2]}", "uniform expected low to be a number"),
    ("lr: {uniform: {low: 0, top: 1}}", "uniform takes [low, high]"),
    ("c: {choice: 3}", 'space["c"]: choice expected a list of options'),
    ("c: {grid: []}", "non-empty list"),
    ("c: {choice: [{grid: [1, 2]}]}", "grid([...]) is not allowed inside a choice"),
    ("x: [{choice: [1, 2]}]", 'space["x"][0]: domains inside a list are not sampled'),
    # deeper in a list (a mapping in a list holding a domain): refused as the Python API refuses it, not a
    # constant mapping {"uniform": [0, 1]} handed to the trial
    ("l: [{a: {uniform: [0, 1]}}]", 'space["l"][0]["a"]: domains inside a list are not sampled'),
    ("l: [[{b: [{grid: [1]}]}]]", 'space["l"][0][0]["b"][0]: domains inside a list are not sampled'),
    ("f: {sample_from: x}", "sample_from needs Python code"),
    ("d: !!timestamp 2024-01-01", "quote it to keep it as text"),
    ("1: 2", "parameter names must be text"),
    ("a: 1\na: 2", "key 'a' is given twice"),
    ("a: [", "not valid YAML"),
    ("", "the space is empty"),
    ("- 1", "expected a mapping"),
    ("lr: {loguniform: [0, 1]}", "positive bounds"),
])
def test_error_messages(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_space_text(text, "s.yaml")
    assert message in str(info.value) and str(info.value).startswith("s.yaml: ")


def test_numbers_constants_and_const_escape(tmp_path: Any) -> None:
    path = tmp_path / "space.yaml"
    path.write_text("lr: {loguniform: [1e-4, 1E-1]}\n"
                    "wd: 1e-5\n"
                    "layers: {choice: [1, 2, 3]}\n"
                    "seed: {grid: [0, 1, 2]}\n"
                    "optim:\n  name: adam\n  betas: [0.9, 0.999]\n  mom: {uniform: {low: 0.8, high: 0.99}}\n"
                    "literal: {const: {choice: [1, 2]}}\n"
                    "defaults: {normal: []}\n")
    assert load_space(str(path)) == {
        "lr": loguniform(1e-4, 1e-1), "wd": 1e-5, "layers": choice([1, 2, 3]), "seed": grid([0, 1, 2]),
        "optim": {"name": "adam", "betas": [0.9, 0.999], "mom": uniform(0.8, 0.99)},
        "literal": {"choice": [1, 2]}, "defaults": normal(),
    }


def test_json_files(tmp_path: Any) -> None:
    path = tmp_path / "space.json"
    path.write_text('{"lr": {"loguniform": [0.0001, 0.1]}, "seed": {"grid": [0, 1]}}')
    assert load_space(str(path)) == {"lr": loguniform(1e-4, 1e-1), "seed": grid([0, 1])}
    path.write_text('{"a": 1, "a": 2}')
    with pytest.raises(ConfigError, match="given twice"):
        load_space(str(path))
    with pytest.raises(ConfigError, match="cannot read the space file"):
        load_space(str(tmp_path / "missing.yaml"))


def _bomb(levels: int) -> str:
    """YAML whose aliases repeat nine times a level: 9**levels values from a few hundred bytes."""
    names = "abcdefghijklmnop"[:levels]
    lines = [f"{names[0]}: &{names[0]} [{','.join(['x'] * 9)}]"]
    lines += [f"{name}: &{name} [{','.join(['*' + prev] * 9)}]" for prev, name in zip(names, names[1:])]
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_without_expanding_it(tmp_path: Any) -> None:
    path = tmp_path / "laughs.yaml"
    path.write_text(_bomb(9))  # 9**9 values in 306 bytes; "f" alone is 9**6
    assert path.stat().st_size == 306
    with pytest.raises(ConfigError) as info:
        load_space(str(path))
    assert str(info.value).startswith(f'{path}: space["f"]: expands to more than 100000 values')
    assert "aliases repeat what they refer to" in str(info.value)
    res = CliRunner().invoke(cli, ["run", "train.py:train", "--space", str(path)])
    assert res.exit_code == 2 and res.output.startswith(f"error: {path}: ") and res.output.count("\n") == 1
    # Shared values count each time they are used, but a space within the bound loads.
    assert parse_space_text(_bomb(5), "s.yaml")["e"] == [[[[["x"] * 9] * 9] * 9] * 9] * 9
    with pytest.raises(ConfigError, match=r'^s\.yaml: space: expands to more than 100000 values'):
        parse_space_text(_bomb(5) + "".join(f"k{i}: *d\n" for i in range(20)), "s.yaml")


@pytest.mark.parametrize("text, json_only, message", [
    ("a: &x [*x]", False, 'space["a"]: refers to itself'),
    ("a: {b: &x [1, [*x]]}", False, 'space["a"]: refers to itself'),
    ("a: &x {b: *x}", False, "not valid YAML: found unconstructable recursive node"),
    ("a: " + "[" * 900 + "]" * 900, False, "nested deeper than 100 levels"),
    ('{"a": ' + "[" * 900 + "]" * 900 + "}", True, "nested deeper than 100 levels"),
    ('{"a": ' + '{"b": ' * 900 + "1" + "}" * 901, True, "nested deeper than 100 levels"),
    ('{"a": ' + "[" * 101 + "]" * 101 + "}", True, 'space["a"]: nested deeper than 100 levels'),
    ("a: &x " + "[" * 60 + "]" * 60 + "\nb: " + "[" * 45 + "*x" + "]" * 45, False,
     'space["b"]: nested deeper than 100 levels'),
])
def test_self_references_and_deep_nesting_are_config_errors(text: str, json_only: bool, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_space_text(text, "s.yaml", json_only)
    assert message in str(info.value) and str(info.value).startswith("s.yaml: ")
    assert "\n" not in str(info.value)


def test_nesting_up_to_the_bound_loads() -> None:
    assert parse_space_text('{"a": ' + "[" * 100 + "]" * 100 + "}", "s.json", json_only=True)["a"] is not None


@pytest.mark.parametrize("data, where", [
    (b'a: {choice: ["caf\xe9"]}\n', "byte 0xe9 on line 1"),
    (b"lr: 0.1\n" * 5000 + b"x: \xff\n", "byte 0xff on line 5001"),
    ('a: {choice: ["café"]}\n'.encode("utf-16"), "byte 0xff on line 1"),
])
def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Any, data: bytes, where: str) -> None:
    path = tmp_path / "l.yaml"
    path.write_bytes(data)
    with pytest.raises(ConfigError) as info:
        load_space(str(path))
    assert str(info.value).startswith(f"{path}: not UTF-8 text ({where}")
    assert "save it as UTF-8" in str(info.value)


def test_merge_keys_are_overridden_by_explicit_keys() -> None:
    text = ("defaults: &opt\n  lr: {loguniform: [1e-4, 1e-1]}\n  momentum: 0.9\n"
            "sgd:\n  <<: *opt\n  momentum: {uniform: [0.8, 0.99]}\n"
            "adam:\n  <<: [*opt, {beta: 0.9}]\n  beta: 0.95\n")
    space = parse_space_text(text, "s.yaml")
    assert space["sgd"] == {"lr": loguniform(1e-4, 1e-1), "momentum": uniform(0.8, 0.99)}
    assert space["adam"] == {"lr": loguniform(1e-4, 1e-1), "momentum": 0.9, "beta": 0.95}
    with pytest.raises(ConfigError, match="key 'beta' is given twice"):
        parse_space_text(text + "  beta: 0.5\n", "s.yaml")


@pytest.mark.parametrize("text, value", [
    (".5e3", 500.0), ("-.5E3", -500.0), ("+.5e+3", 500.0), (".5e-3", 0.0005), (".5", 0.5), ("1e-4", 1e-4),
    (".inf", float("inf")), ("-.Inf", float("-inf")), (".foo", ".foo"), (".e3", ".e3"), ("-.x5e3", "-.x5e3"),
])
def test_exponents_without_a_leading_digit_are_numbers(text: str, value: Any) -> None:
    assert parse_space_text(f"x: {text}", "s.yaml") == {"x": value}


def test_nan_still_reads_as_a_number() -> None:
    for text in (".nan", ".NaN"):
        assert math.isnan(parse_space_text(f"x: {text}", "s.yaml")["x"])


YAML_12 = """\
time: 1:30
neg_time: -1:30
time_float: 1:30.5
decimal: 010
negative: -010
octal: 0o10
hex: 0x10
thousands: 1_000
half: -.5
whole: 1.
date: 2024-01-01
equals: =
words: [on, off, yes, no, y, n, On, OFF, Yes, NO]
flags: [true, True, TRUE, false, False, FALSE, tRUE]
nothing: [null, Null, NULL, ~]
empty:
durations: [1:30, 2:00:00]
act: {choice: [on, off]}
width: {randint: [010, 020]}
on: 1
"""


def test_space_files_are_read_as_yaml_1_2(tmp_path: Any) -> None:
    """YAML 1.1 read on/off/yes/no as booleans, 1:30 as 90 (base 60) and 010 as 8 (octal); 1.2 does not."""
    path = tmp_path / "space.yaml"
    path.write_text(YAML_12)
    space = load_space(str(path))
    assert space == {
        "time": "1:30", "neg_time": "-1:30", "time_float": "1:30.5", "decimal": 10, "negative": -10, "octal": 8,
        "hex": 16, "thousands": 1000, "half": -0.5, "whole": 1.0, "date": "2024-01-01", "equals": "=",
        "words": ["on", "off", "yes", "no", "y", "n", "On", "OFF", "Yes", "NO"],
        "flags": [True, True, True, False, False, False, "tRUE"],
        "nothing": [None, None, None, None], "empty": None,
        "durations": ["1:30", "2:00:00"],
        "act": choice(["on", "off"]),
        "width": randint(10, 20),
        "on": 1,
    }
    assert [type(space[k]) for k in ("decimal", "octal", "hex", "half")] == [int, int, int, float]


def test_the_yaml_1_2_reading_leaves_pyyaml_itself_alone() -> None:
    assert yaml.safe_load("a: on\nb: 010\nc: 1:30\nd: 1e3") == {"a": True, "b": 8, "c": 90, "d": "1e3"}
    assert _Loader.yaml_implicit_resolvers is not yaml.SafeLoader.yaml_implicit_resolvers


@pytest.mark.parametrize("text, value", [
    ("0x_", "0x_"), ("0o_", "0o_"), ("0b_", "0b_"), ("-0x__", "-0x__"), ("0x_1f", 31), ("0b1_0", 2),
])
def test_a_base_prefix_without_digits_is_text(text: str, value: Any) -> None:
    """YAML 1.2 reads ``0x_`` as text: its integers need a digit after ``0x``/``0o``/``0b``."""
    assert parse_space_text(f"a: {text}", "s.yaml") == {"a": value}


@pytest.mark.parametrize("text, where, expected", [
    ("a: 1\nb: !!int 1:30\n", "line 2, column 4", "an integer"),
    ("a:\n  b: !!float abc\n", "line 2, column 6", "a number"),
    ("a: !!bool maybe\n", "line 1, column 4", "true or false"),
    ("a: !!timestamp 2024-13-45\n", "line 1, column 4", "a date"),
    ("a: !!timestamp nope\n", "line 1, column 4", "a date"),
])
def test_a_tagged_value_that_is_not_of_its_tag_names_the_line(text: str, where: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_space_text(text, "s.yaml")
    message = str(info.value)
    assert message.startswith("s.yaml: not valid YAML: ") and where in message and expected in message, message
    assert "invalid literal" not in message


def test_a_tagged_secret_that_is_not_of_its_tag_is_not_quoted() -> None:
    with pytest.raises(ConfigError) as info:
        parse_space_text("password: !!int hunter2hunter2\n", "s.yaml")
    assert "hunter2" not in str(info.value) and "line 1, column 11" in str(info.value)


@pytest.mark.parametrize("text, where, line", [
    ('{"opt": {"lr": 1, "lr": 2}}', 'space["opt"]["lr"]', 1),
    ('{\n  "a": 1,\n  "b": [{"x": 1},\n        {"x": 2,\n         "x": 3}]\n}', 'space["b"][1]["x"]', 5),
    ('{"a": 1,\n "a": {"c": 1, "c": 2}}', 'space["a"]', 2),
])
def test_a_json_key_given_twice_names_its_key_path_and_line(tmp_path: Any, text: str, where: str,
                                                             line: int) -> None:
    path = tmp_path / "dup.json"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_space(str(path))
    key = where.rsplit('["', 1)[1][:-2]
    assert str(info.value) == f"{path}: {where}: key {key!r} is given twice (line {line}); give each key once"


@pytest.mark.parametrize("name, text", [
    ("s.json", '{"a": {"uniform": [0, 1]}}'), ("s.yaml", "a: {uniform: [0, 1]}\n"),
])
def test_a_utf8_bom_is_read_past(tmp_path: Any, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert load_space(str(path)) == {"a": uniform(0, 1)}
    assert parse_space_text("\ufeff" + text, name, json_only=name.endswith(".json")) == {"a": uniform(0, 1)}


def test_the_size_limit_names_aliases_only_where_they_were_used(tmp_path: Any) -> None:
    """25,001 parameters of 4 values each, or a grid of 100,001 values: too many, but no alias to blame."""
    many = tmp_path / "many.json"
    many.write_text(json.dumps({f"p{i}": {"uniform": [0, 1]} for i in range(25_001)}))
    big = tmp_path / "big.yaml"
    big.write_text("g: {grid: [" + ", ".join(map(str, range(100_001))) + "]}\n")
    for path, where in ((many, "space"), (big, 'space["g"]')):
        with pytest.raises(ConfigError) as info:
            load_space(str(path))
        message = str(info.value)
        assert message.startswith(f"{path}: {where}: holds more than 100000 values") and "alias" not in message
    fits = tmp_path / "fits.yaml"
    fits.write_text("g: {grid: [" + ", ".join(map(str, range(99_990))) + "]}\n")
    assert len(load_space(str(fits))["g"].values) == 99_990


def test_a_huge_yaml_file_is_refused_before_it_is_built() -> None:
    """70,000 parameters of a mapping each (140,001 values): refused while PyYAML composes the file, before a
    Python object is made of each node."""
    text = "".join(f"k{i}: {{a: 1}}\n" for i in range(70_000))
    with pytest.raises(ConfigError, match=r'^s\.yaml: space: holds more than 100000 values'):
        parse_space_text(text, "s.yaml")


@pytest.mark.parametrize("text", [
    "password: !!binary aGVsbG8gaHVudGVyMg==\n", "password: [!!binary aGVsbG8gaHVudGVyMg==]\n",
    "db_password: !!timestamp 2024-01-01\n", "client_secret: !!set {hello hunter2: null}\n",
    "api_key: !!binary aGVsbG8gaHVudGVyMg==\n",
])
def test_a_value_of_any_type_under_a_secret_key_is_masked_in_errors(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_space_text(text, "s.yaml")
    message = str(info.value)
    assert "hunter2" not in message and "2024" not in message and '"***"' in message, message
