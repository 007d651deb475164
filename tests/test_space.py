"""Tests for tunesmith.space: domains, validation, resolving, grid points, flatten, JSON."""

from __future__ import annotations

import copy
import enum
import json
import math
import random
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tunesmith._errors import ConfigError
from tunesmith.space import (
    Choice,
    Domain,
    Grid,
    LogUniform,
    SampleFrom,
    Uniform,
    choice,
    domains,
    flatten,
    grid,
    grid_points,
    lograndint,
    loguniform,
    normal,
    qloguniform,
    qnormal,
    quniform,
    randint,
    resolve,
    sample_from,
    space_from_json,
    space_to_json,
    unflatten,
    uniform,
    validate_space,
)

SETTINGS = settings(database=None, max_examples=200, deadline=None)
UNITS = st.floats(min_value=0.0, max_value=1.0)


def _is_multiple(value: float, q: float) -> bool:
    ratio = value / q
    return abs(ratio - round(ratio)) <= 1e-6 * max(1.0, abs(ratio))


def _double(config: dict[str, Any]) -> Any:
    return config["a"] * 2


class CountingRandom(random.Random):
    """A Random that counts draws, to see which domains were sampled."""

    def __init__(self, seed: int) -> None:
        super().__init__(seed)
        self.draws = 0

    def random(self) -> float:
        self.draws += 1
        return super().random()


# ------------------------------------------------------------------------------------------ validation

INF, NAN = float("inf"), float("nan")

BAD_SPACES = [
    ({"optim": {"lr": uniform(1, 1)}}, 'space["optim"]["lr"]', "low < high"),
    ({"x": uniform(2.0, 1.0)}, 'space["x"]', "low < high"),
    ({"x": randint(5, 3)}, 'space["x"]', "low < high"),
    ({"x": loguniform(10, 1)}, 'space["x"]', "low < high"),
    ({"x": loguniform(0, 1)}, 'space["x"]', "positive"),
    ({"x": loguniform(-2, -1)}, 'space["x"]', "positive"),
    ({"x": qloguniform(0, 10, 1)}, 'space["x"]', "positive"),
    ({"x": lograndint(0, 10)}, 'space["x"]', "positive"),
    ({"x": loguniform(1, 10, base=1)}, 'space["x"]', "base"),
    ({"x": loguniform(1, 10, base=-2)}, 'space["x"]', "base"),
    ({"x": quniform(0, 1, 0)}, 'space["x"]', "q > 0"),
    ({"x": quniform(0, 1, -0.5)}, 'space["x"]', "q > 0"),
    ({"x": qloguniform(1, 10, 0)}, 'space["x"]', "q > 0"),
    ({"x": qnormal(0, 1, 0)}, 'space["x"]', "q > 0"),
    ({"x": quniform(0.3, 0.4, 1)}, 'space["x"]', "multiple of q"),
    ({"x": normal(0, 0)}, 'space["x"]', "sd > 0"),
    ({"x": normal(0, -1)}, 'space["x"]', "sd > 0"),
    ({"x": choice([])}, 'space["x"]', "non-empty"),
    ({"x": grid([])}, 'space["x"]', "non-empty"),
    ({"x": choice("abc")}, 'space["x"]', "list"),  # type: ignore[arg-type]
    ({"x": choice({1, 2})}, 'space["x"]', "list"),  # type: ignore[arg-type]
    ({"x": grid("ab")}, 'space["x"]', "list"),  # type: ignore[arg-type]
    ({"x": sample_from(3)}, 'space["x"]', "callable"),  # type: ignore[arg-type]
    ({"x": uniform("0", 1)}, 'space["x"]', "number"),  # type: ignore[arg-type]
    ({"x": uniform(True, 2)}, 'space["x"]', "number"),
    ({"x": normal(None, 1)}, 'space["x"]', "number"),  # type: ignore[arg-type]
    ({"x": randint(0.5, 3)}, 'space["x"]', "an int"),  # type: ignore[arg-type]
    ({"x": randint(0, True)}, 'space["x"]', "an int"),
    ({"x": lograndint(1.0, 3)}, 'space["x"]', "an int"),  # type: ignore[arg-type]
    ({"x": uniform(NAN, 1)}, 'space["x"]', "finite"),
    ({"x": uniform(0, INF)}, 'space["x"]', "finite"),
    ({"x": normal(INF, 1)}, 'space["x"]', "finite"),
    ({"x": quniform(0, 1, NAN)}, 'space["x"]', "finite"),
    ({"x": randint(0, 10**400)}, 'space["x"]', "finite"),
    ({1: uniform(0, 1)}, "space[1]", "strings"),
    ({"a": {("t",): 1}}, "space[\"a\"][('t',)]", "strings"),
    ({"x": uniform}, 'space["x"]', "domain type"),
    ({"x": Uniform}, 'space["x"]', "domain type"),
    ({"x": {1, 2}}, 'space["x"]', "set"),
    ({"x": frozenset()}, 'space["x"]', "set"),
    ({"layers": [16, uniform(0, 1)]}, 'space["layers"][1]', "dict"),
    ({"layers": ({"w": randint(1, 3)},)}, 'space["layers"][0]["w"]', "dict"),
    ({"m": choice([{"g": grid([1, 2])}])}, 'space["m"].options[0]["g"]', "not allowed"),
    ({"m": grid([{"g": grid([1, 2])}])}, 'space["m"].values[0]["g"]', "not allowed"),
    ({"m": choice([1, {"lr": loguniform(0, 1)}])}, 'space["m"].options[1]["lr"]', "positive"),
    ({"m": choice([{"k": choice([uniform(3, 2)])}])}, 'space["m"].options[0]["k"].options[0]', "low < high"),
    ({"a": {"b": {"c": {"d": normal(0, -1)}}}}, 'space["a"]["b"]["c"]["d"]', "sd > 0"),
]


@pytest.mark.parametrize(("space", "where", "expected"), BAD_SPACES)
def test_validate_space_names_key_path_and_expectation(space: Any, where: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate_space(space)
    message = str(info.value)
    assert message.startswith(where + ":"), message
    assert expected in message


@pytest.mark.parametrize("space", [[("lr", uniform(0, 1))], "lr", None, uniform(0, 1)])
def test_validate_space_requires_a_dict(space: Any) -> None:
    with pytest.raises(ConfigError, match=r"^space: expected a dict"):
        validate_space(space)


def test_validate_space_reports_the_first_problem_only() -> None:
    space = {"a": uniform(0, 1), "b": normal(0, -1), "c": loguniform(0, 1)}
    with pytest.raises(ConfigError, match=r'^space\["b"\]') as info:
        validate_space(space)
    assert 'space["c"]' not in str(info.value)


def test_validate_space_accepts_constants_and_deep_nesting() -> None:
    class Activation:
        pass

    space = {
        "activation": Activation,  # a user class is a constant, unlike a domain class
        "fn": len,
        "layers": [16, 32, {"k": 3}],
        "shape": (3, 4),
        "none": None,
        "a": {"b": {"c": {"d": {"e": randint(1, 4)}}}},
        "arr": np.arange(3),
        "m": choice([{"lr": loguniform(1e-4, 1e-1), "inner": choice([normal(), 1])}, "plain"]),
        "g": grid([{"w": randint(1, 9)}, 2]),
        "numpy_bounds": uniform(np.float32(0.5), np.float64(2.0)),  # type: ignore[arg-type]
        "numpy_ints": randint(np.int64(0), np.int32(5)),  # type: ignore[arg-type]
    }
    validate_space(space)


# ------------------------------------------------------------------------------------- unit mappings


@SETTINGS
@given(low=st.floats(-1e6, 1e6), width=st.floats(1e-3, 1e6), u=UNITS)
def test_uniform_within_bounds(low: float, width: float, u: float) -> None:
    domain = uniform(low, low + width)
    validate_space({"x": domain})
    value = domain.from_unit(u)
    assert type(value) is float
    assert domain.low <= value <= domain.high


@SETTINGS
@given(low=st.floats(1e-6, 1e6), ratio=st.floats(1.001, 1e6), base=st.sampled_from([2, math.e, 10]),
       u=UNITS)
def test_loguniform_within_bounds(low: float, ratio: float, base: float, u: float) -> None:
    domain = loguniform(low, low * ratio, base)
    validate_space({"x": domain})
    value = domain.from_unit(u)
    assert type(value) is float
    assert domain.low <= value <= domain.high


@SETTINGS
@given(low=st.integers(-10**9, 10**9), width=st.integers(1, 10**9), u=UNITS)
def test_randint_ints_in_half_open_range(low: int, width: int, u: float) -> None:
    domain = randint(low, low + width)
    value = domain.from_unit(u)
    assert type(value) is int
    assert low <= value < low + width


@SETTINGS
@given(low=st.integers(1, 10**6), width=st.integers(1, 10**6), u=UNITS)
def test_lograndint_ints_in_half_open_range(low: int, width: int, u: float) -> None:
    domain = lograndint(low, low + width)
    value = domain.from_unit(u)
    assert type(value) is int
    assert low <= value < low + width


@SETTINGS
@given(low=st.floats(-1e4, 1e4), width=st.floats(1e-3, 1e4), q=st.floats(1e-3, 1e3), u=UNITS)
def test_quniform_multiple_of_q_within_bounds(low: float, width: float, q: float, u: float) -> None:
    domain = quniform(low, low + width, q)
    try:
        validate_space({"x": domain})
    except ConfigError:
        assume(False)  # no multiple of q in the range
    value = domain.from_unit(u)
    assert type(value) is float
    assert domain.low <= value <= domain.high
    assert _is_multiple(value, q)


@SETTINGS
@given(low=st.floats(1e-3, 1e4), ratio=st.floats(1.01, 1e3), q=st.floats(1e-3, 1e2), u=UNITS)
def test_qloguniform_multiple_of_q_within_bounds(low: float, ratio: float, q: float, u: float) -> None:
    domain = qloguniform(low, low * ratio, q)
    try:
        validate_space({"x": domain})
    except ConfigError:
        assume(False)
    value = domain.from_unit(u)
    assert domain.low <= value <= domain.high
    assert _is_multiple(value, q)


@SETTINGS
@given(mean=st.floats(-1e6, 1e6), sd=st.floats(1e-3, 1e3), q=st.floats(1e-2, 1e2), u=UNITS)
def test_normal_and_qnormal_finite(mean: float, sd: float, q: float, u: float) -> None:
    value = normal(mean, sd).from_unit(u)
    assert type(value) is float and math.isfinite(value)
    quantized = qnormal(mean, sd, q).from_unit(u)
    assert type(quantized) is float and _is_multiple(quantized, q)


def test_unit_mapping_shapes() -> None:
    assert uniform(2, 4).from_unit(0.5) == 3.0
    assert loguniform(1, 100).from_unit(0.5) == pytest.approx(10.0)
    assert loguniform(1, 100, base=2).from_unit(0.5) == pytest.approx(10.0)  # the base does not matter
    assert quniform(0, 1, 0.1).from_unit(0.34) == 0.3  # no 0.30000000000000004
    assert quniform(0.3, 0.71, 0.25).from_unit(0.0) == 0.5  # 0.25 is below low
    assert quniform(0.3, 0.71, 0.25).from_unit(1.0) == 0.5  # 0.75 is above high
    assert normal(5, 2).from_unit(0.5) == pytest.approx(5.0)
    assert normal(0, 1).from_unit(0.975) == pytest.approx(1.959964, abs=1e-5)
    assert [randint(0, 3).from_unit(u) for u in (0.0, 0.34, 0.67, 0.999, 1.0)] == [0, 1, 2, 2, 2]
    assert [choice(["a", "b", "c"]).from_unit(u) for u in (0.0, 0.5, 1.0)] == ["a", "b", "c"]
    assert grid([1, 2]).from_unit(0.7) == 2
    assert lograndint(1, 1000).from_unit(0.0) == 1
    assert lograndint(1, 1000).from_unit(1.0) == 999


@pytest.mark.parametrize("domain", [uniform(0, 1), loguniform(1, 2), quniform(0, 1, 0.5), normal(),
                                    qnormal(0, 1, 1), randint(0, 2), lograndint(1, 5), choice([1])])
@pytest.mark.parametrize("u", [0.0, 1.0])
def test_from_unit_edges_are_finite_and_in_range(domain: Domain, u: float) -> None:
    value = domain.from_unit(u)
    assert math.isfinite(value)
    if hasattr(domain, "low"):
        assert domain.low <= value <= domain.high  # type: ignore[attr-defined]


@pytest.mark.parametrize("u", [-0.1, 1.5, float("nan")])
def test_from_unit_rejects_u_outside_unit_interval(u: float) -> None:
    with pytest.raises(ValueError, match="u must be in"):
        uniform(0, 1).from_unit(u)


def test_numpy_bounds_give_python_scalars() -> None:
    assert type(randint(np.int64(0), np.int64(5)).from_unit(0.5)) is int  # type: ignore[arg-type]
    assert type(uniform(np.float32(0), np.float32(1)).from_unit(0.5)) is float  # type: ignore[arg-type]
    assert type(loguniform(np.float64(1), np.float64(10)).from_unit(0.5)) is float
    config = resolve({"n": randint(np.int64(0), np.int64(5))}, random.Random(0))  # type: ignore[arg-type]
    assert type(config["n"]) is int


def test_sample_uses_one_draw_through_from_unit() -> None:
    domain = loguniform(1e-4, 1e-1)
    rng_a, rng_b = random.Random(3), random.Random(3)
    assert domain.sample(rng_a) == domain.from_unit(rng_b.random())
    assert rng_a.random() == rng_b.random()  # both consumed exactly one draw


def test_domains_compare_by_arguments() -> None:
    assert uniform(0, 1) == uniform(0, 1)
    assert uniform(0, 1) != uniform(0, 2)
    assert loguniform(1, 10) != loguniform(1, 10, base=2)
    assert choice([1, {"a": uniform(0, 1)}]) == choice([1, {"a": uniform(0, 1)}])
    assert choice([1, 2]) != grid([1, 2])
    assert sample_from(_double) == sample_from(_double)
    assert sample_from(_double) != sample_from(len)


# ------------------------------------------------------------------------------------------ resolving


def test_constants_pass_through_and_containers_are_copied() -> None:
    marker = object()
    space = {"lr": 0.1, "name": "x", "layers": [16, [32]], "nested": {"k": {"j": None}}, "obj": marker,
             "shape": (2, 3), "flag": False}
    config = resolve(space, random.Random(0))
    assert config == {**space, "shape": [2, 3]}  # a tuple as the store gives it back: a list
    assert config["obj"] is marker
    config["layers"][1].append(64)
    config["nested"]["k"]["j"] = 1
    assert space["layers"] == [16, [32]]
    assert space["nested"] == {"k": {"j": None}}


def test_resolve_keeps_key_order_and_nesting() -> None:
    space = {"z": sample_from(lambda c: 1), "a": {"y": uniform(0, 1), "b": 2}, "m": 0}
    config = resolve(space, random.Random(0))
    assert list(config) == ["z", "a", "m"]
    assert list(config["a"]) == ["y", "b"]
    assert 0.0 <= config["a"]["y"] <= 1.0


SPACE = {
    "optim": {"lr": loguniform(1e-5, 1e-1), "momentum": uniform(0.5, 0.99)},
    "width": choice([32, 64, 128]),
    "depth": randint(1, 8),
    "seed": grid([0, 1, 2]),
}


def test_same_seed_same_configs_different_seed_different() -> None:
    def draw(seed: int) -> list[dict[str, Any]]:
        rng = random.Random(seed)
        return [resolve(SPACE, rng, point) for point in grid_points(SPACE) * 3]

    assert draw(1) == draw(1)
    assert draw(1) != draw(2)


def test_fixed_values_replace_domains_and_use_no_draws() -> None:
    rng = CountingRandom(0)
    config = resolve({"seed": grid([0, 1]), "lr": uniform(0, 1), "w": randint(1, 5)}, rng,
                     fixed={("seed",): 1, ("w",): 7})
    assert config["seed"] == 1
    assert config["w"] == 7
    assert rng.draws == 1  # only lr


def test_unfixed_grid_is_sampled_from_its_values() -> None:
    rng = random.Random(0)
    seen = {resolve({"g": grid(["a", "b", "c"])}, rng)["g"] for _ in range(100)}
    assert seen == {"a", "b", "c"}


def test_fixed_grid_value_holding_domains_is_resolved() -> None:
    space = {"opt": grid([{"name": "sgd", "lr": uniform(0, 1)}, {"name": "adam"}])}
    points = grid_points(space)
    config = resolve(space, random.Random(0), points[0])
    assert config["opt"]["name"] == "sgd" and 0 <= config["opt"]["lr"] <= 1
    assert resolve(space, random.Random(0), points[1]) == {"opt": {"name": "adam"}}


def test_conditional_choice_samples_only_chosen_branch() -> None:
    space = {
        "model": choice([
            {"type": "mlp", "width": randint(8, 16), "act": choice(["relu", "tanh"])},
            {"type": "cnn", "kernel": choice([3, 5]),
             "block": choice([{"kind": "res", "depth": randint(1, 4)}, {"kind": "plain"}])},
        ]),
        "lr": uniform(0, 1),
    }
    validate_space(space)
    kinds = set()
    for seed in range(300):
        rng = CountingRandom(seed)
        config = resolve(space, rng)
        model = config["model"]
        if model["type"] == "mlp":
            assert set(model) == {"type", "width", "act"}
            assert 8 <= model["width"] < 16 and model["act"] in ("relu", "tanh")
            expected_draws = 1 + 2 + 1
        else:
            assert set(model) == {"type", "kernel", "block"}
            block = model["block"]
            if block["kind"] == "res":
                assert set(block) == {"kind", "depth"} and 1 <= block["depth"] < 4
                expected_draws = 1 + 1 + 1 + 1 + 1
            else:
                assert block == {"kind": "plain"}
                expected_draws = 1 + 1 + 1 + 1
        assert rng.draws == expected_draws  # the branch not chosen drew nothing
        kinds.add((model["type"], model.get("block", {}).get("kind")))
        assert type(config["lr"]) is float
    assert kinds == {("mlp", None), ("cnn", "res"), ("cnn", "plain")}


def test_choice_option_may_be_a_domain() -> None:
    space = {"x": choice([uniform(10, 11), "off"])}
    values = {type(resolve(space, random.Random(s))["x"]) for s in range(50)}
    assert values == {float, str}


def test_sample_from_sees_resolved_values_and_runs_last_in_order() -> None:
    seen: list[dict[str, Any]] = []

    def first(config: dict[str, Any]) -> Any:
        seen.append(copy.deepcopy(config))
        config["a"] = "mutated"  # a copy: must not leak into the result
        return config["b"]["c"] + config["g"]

    space = {
        "s1": sample_from(first),
        "a": randint(0, 100),
        "b": {"c": uniform(0, 1), "s2": sample_from(lambda c: c["s1"] * 2)},
        "m": choice([{"s3": sample_from(lambda c: c["b"]["s2"] + c["a"])}]),
        "g": grid([10, 20]),
    }
    validate_space(space)
    config = resolve(space, random.Random(0), {("g",): 20})
    assert seen[0] == {"a": config["a"], "b": {"c": config["b"]["c"]}, "m": {}, "g": 20}
    assert config["s1"] == config["b"]["c"] + 20
    assert config["b"]["s2"] == config["s1"] * 2
    assert config["m"]["s3"] == config["b"]["s2"] + config["a"]
    assert isinstance(config["a"], int)


def test_sample_from_error_names_key_path_and_chains() -> None:
    space = {"opt": {"bad": sample_from(lambda c: c["missing"])}}
    with pytest.raises(ConfigError, match=r'^space\["opt"\]\["bad"\]: sample_from function') as info:
        resolve(space, random.Random(0))
    assert isinstance(info.value.__cause__, KeyError)


# ----------------------------------------------------------------------------------------- grid points


def test_grid_points_cross_in_key_order_first_slowest() -> None:
    space = {"a": grid([1, 2]), "lr": uniform(0, 1), "n": {"b": grid(["x", "y", "z"])}, "c": grid([None])}
    points = grid_points(space)
    assert points == [
        {("a",): 1, ("n", "b"): "x", ("c",): None},
        {("a",): 1, ("n", "b"): "y", ("c",): None},
        {("a",): 1, ("n", "b"): "z", ("c",): None},
        {("a",): 2, ("n", "b"): "x", ("c",): None},
        {("a",): 2, ("n", "b"): "y", ("c",): None},
        {("a",): 2, ("n", "b"): "z", ("c",): None},
    ]


@SETTINGS
@given(sizes=st.lists(st.integers(1, 4), max_size=4))
def test_grid_points_count_is_product(sizes: list[int]) -> None:
    space: dict[str, Any] = {f"g{i}": grid(list(range(n))) for i, n in enumerate(sizes)}
    space["lr"] = uniform(0, 1)
    points = grid_points(space)
    assert len(points) == math.prod(sizes)
    assert len({tuple(sorted(p.items())) for p in points}) == len(points)  # all distinct
    configs = [resolve(space, random.Random(0), p) for p in points]
    assert {tuple(c[f"g{i}"] for i in range(len(sizes))) for c in configs} == {
        tuple(p[(f"g{i}",)] for i in range(len(sizes))) for p in points}


def test_no_grid_gives_one_empty_point() -> None:
    assert grid_points({"lr": uniform(0, 1)}) == [{}]
    assert grid_points({}) == [{}]


def test_domains_lists_leaves_not_inside_options() -> None:
    lr = loguniform(1e-3, 1)
    inner = randint(1, 3)
    model = choice([{"w": inner}])
    g = grid([1, 2])
    space = {"optim": {"lr": lr, "const": 3}, "model": model, "g": g, "x": 1}
    assert domains(space) == [(("optim", "lr"), lr), (("model",), model), (("g",), g)]


# -------------------------------------------------------------------------------------------- flatten


def test_flatten_and_unflatten() -> None:
    config = {"optim": {"lr": 0.1, "betas": [0.9, 0.99]}, "width": 64, "empty": {}}
    flat = flatten(config)
    assert flat == {"optim/lr": 0.1, "optim/betas": [0.9, 0.99], "width": 64, "empty": {}}
    assert unflatten(flat) == config
    assert flatten(config, sep=".")["optim.lr"] == 0.1


def test_flatten_rejects_key_holding_separator() -> None:
    with pytest.raises(ConfigError, match="'a/b'"):
        flatten({"a/b": 1})


def test_unflatten_rejects_conflicting_keys() -> None:
    with pytest.raises(ConfigError, match="'a/b'"):
        unflatten({"a": 1, "a/b": 2})
    with pytest.raises(ConfigError, match="'a'"):
        unflatten({"a/b": 2, "a": 1})


KEYS = st.text(alphabet=st.characters(blacklist_characters="/"), max_size=5)
NESTED = st.recursive(
    st.none() | st.integers() | st.text(max_size=3) | st.lists(st.integers(), max_size=2),
    lambda children: st.dictionaries(KEYS, children, max_size=4),
    max_leaves=12,
)


@SETTINGS
@given(config=st.dictionaries(KEYS, NESTED, max_size=5))
def test_flatten_round_trip(config: dict[str, Any]) -> None:
    flat = flatten(config)
    assert all(not isinstance(v, dict) or v == {} for v in flat.values())
    assert unflatten(flat) == config


# ----------------------------------------------------------------------------------------------- JSON


def test_json_encoding_shape() -> None:
    encoded = space_to_json({"lr": loguniform(1e-4, 1e-1), "c": {"__domain__": "x"}, "t": (1, 2)})
    assert encoded["lr"] == {"__domain__": "loguniform", "low": 1e-4, "high": 1e-1, "base": 10}
    assert encoded["c"] == {"__domain__": "__dict__", "value": {"__domain__": "x"}}
    assert encoded["t"] == {"__domain__": "__tuple__", "items": [1, 2]}


def test_json_round_trip_keeps_constant_dict_that_looks_like_a_domain() -> None:
    space = {"c": {"__domain__": "uniform", "low": 0, "high": 1}, "l": [{"__domain__": "grid"}]}
    back = space_from_json(json.loads(json.dumps(space_to_json(space))))
    assert back == space
    assert not isinstance(back["c"], Domain)


def test_json_sample_from_keeps_repr_and_refuses_to_sample() -> None:
    space = {"a": 1, "s": sample_from(_double)}
    encoded = json.loads(json.dumps(space_to_json(space)))
    assert encoded["s"] == {"__domain__": "sample_from", "repr": repr(_double)}
    back = space_from_json(encoded)
    assert back == space
    assert isinstance(back["s"], SampleFrom) and back["s"].fn is None
    with pytest.raises(ConfigError, match=r'^space\["s"\]: .*not stored'):
        resolve(back, random.Random(0))
    with pytest.raises(ConfigError, match=r'^space\["s"\]: .*not stored'):
        validate_space(back)
    assert resolve(space, random.Random(0))["s"] == 2


def test_json_rejects_unstorable_constant_with_path() -> None:
    with pytest.raises(ConfigError, match=r'^space\["m"\]\["obj"\]: object cannot be stored as JSON'):
        space_to_json({"m": {"obj": object()}})


def test_json_numpy_constants_become_python_numbers() -> None:
    encoded = space_to_json({"a": np.int64(3), "b": np.float32(0.5)})
    assert json.loads(json.dumps(encoded)) == {"a": 3, "b": 0.5}


@pytest.mark.parametrize("obj", [
    {"x": {"__domain__": "gaussian", "mu": 0}},
    {"x": {"__domain__": "uniform", "low": 0}},
    {"x": {"__domain__": "uniform", "low": 0, "high": 1, "extra": 2}},
    {"x": {"__domain__": "__tuple__"}},
])
def test_json_decode_errors_name_path(obj: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=r'^space\["x"\]'):
        space_from_json(obj)


def test_json_requires_dicts() -> None:
    with pytest.raises(ConfigError, match=r"^space"):
        space_to_json([uniform(0, 1)])  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^space"):
        space_from_json([])  # type: ignore[arg-type]


FINITE = st.floats(-1e6, 1e6)
POSITIVE = st.floats(1e-3, 1e3)
LEAF_DOMAINS = st.one_of(
    st.builds(lambda lo, w: uniform(lo, lo + w), FINITE, POSITIVE),
    st.builds(lambda lo, r, b: loguniform(lo, lo * r, b), POSITIVE, st.floats(1.5, 100),
              st.sampled_from([2, 10])),
    st.builds(lambda lo, w: quniform(lo, lo + w + 1, 0.5), FINITE, POSITIVE),
    st.builds(lambda lo, r: qloguniform(lo, lo * r + 2, 1), POSITIVE, st.floats(1.5, 100)),
    st.builds(normal, FINITE, POSITIVE),
    st.builds(qnormal, FINITE, POSITIVE, POSITIVE),
    st.builds(lambda lo, w: randint(lo, lo + w), st.integers(-100, 100), st.integers(1, 100)),
    st.builds(lambda lo, w: lograndint(lo, lo + w), st.integers(1, 100), st.integers(1, 100)),
)
CONSTANTS = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=4),
    lambda children: (st.lists(children, max_size=3) | st.tuples(children, children)
                      | st.dictionaries(st.sampled_from(["__domain__", "k", "value"]), children, max_size=2)),
    max_leaves=6,
)
SPACE_KEYS = st.sampled_from(["a", "b", "lr", "__domain__", "value", "items", "é"])


def _spaces() -> st.SearchStrategy[dict[str, Any]]:
    values = st.recursive(
        LEAF_DOMAINS | CONSTANTS,
        lambda children: (
            st.dictionaries(SPACE_KEYS, children, max_size=3)
            | st.lists(children, min_size=1, max_size=3).map(choice)
        ),
        max_leaves=10,
    )
    with_grid = st.lists(st.one_of(st.integers(), st.text(max_size=2)), min_size=1, max_size=3).map(grid)
    return st.dictionaries(SPACE_KEYS, values | with_grid, max_size=4)


@SETTINGS
@given(space=_spaces(), seed=st.integers(0, 2**32))
def test_json_round_trip_generated_spaces(space: dict[str, Any], seed: int) -> None:
    validate_space(space)
    text = json.dumps(space_to_json(space))
    back = space_from_json(json.loads(text))
    assert back == space
    # The decoded space samples exactly like the original.
    assert resolve(back, random.Random(seed)) == resolve(space, random.Random(seed))


def test_round_trip_domain_types() -> None:
    space = {"lr": LogUniform(1e-3, 1.0), "c": Choice([1, 2]), "g": Grid([1])}
    assert space_from_json(space_to_json(space)) == space
    assert isinstance(space_from_json(space_to_json(space))["lr"], LogUniform)


# ------------------------------------------------------------------------------- everyday inputs (issue 14)


def test_numpy_and_torch_values_resolve_to_python_numbers() -> None:
    torch = pytest.importorskip("torch")
    space = {
        "g": grid(list(np.arange(3))), "c": choice([np.float32(0.5)]), "s": sample_from(lambda c: np.int64(7)),
        "k": np.int64(3), "f": np.float64(1.5), "b": np.bool_(True), "z": np.array(2.5), "t": torch.tensor(1.0),
        "arr": np.arange(2), "nested": {"n": [np.int32(1), (np.float32(0.25),)]}, "str": np.str_("x"),
    }
    validate_space(space)
    config = resolve(space, random.Random(0))
    assert config == {"g": config["g"], "c": 0.5, "s": 7, "k": 3, "f": 1.5, "b": True, "z": 2.5, "t": 1.0,
                      "arr": [0, 1], "nested": {"n": [1, [0.25]]}, "str": "x"}
    types = {k: type(v) for k, v in config.items()}
    assert types == {"g": int, "c": float, "s": int, "k": int, "f": float, "b": bool, "z": float, "t": float,
                     "arr": list, "nested": dict, "str": str}
    assert type(config["nested"]["n"][0]) is int and type(config["nested"]["n"][1][0]) is float
    json.dumps(config, allow_nan=False)  # the store can hold it as it is
    assert json.loads(json.dumps(space_to_json({"arr": np.arange(2)}))) == {"arr": [0, 1]}


@pytest.mark.parametrize("space, where", [
    ({"a/b": 1}, r'space\["a/b"\]'),
    ({"opt": {"lr/x": uniform(0, 1)}}, r'space\["opt"\]\["lr/x"\]'),
    ({"m": choice([{"w/h": 1}, {"w": 2}])}, r'space\["m"\]\.options\[0\]\["w/h"\]'),
    ({"m": grid([{"d": {"x/": 1}}])}, r'space\["m"\]\.values\[0\]\["d"\]\["x/"\]'),
])
def test_a_slash_in_a_config_key_is_refused_naming_the_key(space: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError, match=where + ": a key may not contain '/' .*flattened"):
        validate_space(space)


def test_a_slash_inside_a_constant_list_of_dicts_is_fine() -> None:
    validate_space({"layers": [{"in/out": 3}]})  # not flattened: lists are values


def test_check_storable_names_the_key_path_of_what_cannot_be_stored() -> None:
    from tunesmith.space import check_storable

    check_storable({"a": [1, {"x/y": (2.0, None)}], "b": {"c": "s", "d": True}, "e": float("nan")})
    with pytest.raises(ConfigError, match=r'^config\["a"\]\["b"\]\[1\]: set .*cannot be stored'):
        check_storable({"a": {"b": [1, {2}]}})
    with pytest.raises(ConfigError, match=r'^config\["a"\]\["x/y"\]: a key may not contain'):
        check_storable({"a": {"x/y": 1}})
    with pytest.raises(ConfigError, match=r'^config\["a"\]\[3\]: keys must be strings'):
        check_storable({"a": {3: 1}})


@SETTINGS
@given(sizes=st.lists(st.integers(1, 4), max_size=4))
def test_grid_points_by_index_are_the_cartesian_product(sizes: list[int]) -> None:
    import itertools

    from tunesmith.space import GridPoints

    space: dict[str, Any] = {f"g{i}": grid([f"v{i}.{j}" for j in range(n)]) for i, n in enumerate(sizes)}
    points = GridPoints(space)
    expected = [dict(zip([(f"g{i}",) for i in range(len(sizes))], combo, strict=True))
                for combo in itertools.product(*([f"v{i}.{j}" for j in range(n)] for i, n in enumerate(sizes)))]
    assert len(points) == points.size == len(expected)
    assert list(points) == expected == grid_points(space)
    assert points[-1] == expected[-1] and points[1:3] == expected[1:3]
    with pytest.raises(IndexError):
        points[len(expected)]


def test_a_grid_of_a_billion_points_is_indexed_without_being_built() -> None:
    from tunesmith.space import GridPoints

    values = list(range(1000))
    points = GridPoints({"a": grid(values), "n": {"b": grid(values)}, "lr": uniform(0, 1), "c": grid(values)})
    assert points.size == 10**9
    assert points[0] == {("a",): 0, ("n", "b"): 0, ("c",): 0}
    assert points[1001] == {("a",): 0, ("n", "b"): 1, ("c",): 1}  # first key slowest
    assert points[10**9 - 1] == {("a",): 999, ("n", "b"): 999, ("c",): 999}


def test_domains_are_values_equal_by_their_arguments_immutable_and_picklable():
    """Domains (``_record.FrozenRecord``): equal and hashed alike when of one class with equal arguments, shown
    by them, never changed after they are made, the same after pickling and copying."""
    import pickle

    a, b = loguniform(1e-4, 1e-1), loguniform(1e-4, 1e-1)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != loguniform(1e-4, 1e-1, base=2) and a != Uniform(1e-4, 1e-1)  # another argument, another class
    assert repr(a) == "LogUniform(low=0.0001, high=0.1, base=10)"
    with pytest.raises(AttributeError, match="LogUniform cannot be changed: cannot assign to 'low'"):
        a.low = 1.0  # type: ignore[misc]
    with pytest.raises(AttributeError, match="cannot delete 'high'"):
        del a.high
    assert a.low == 1e-4
    for copied in (pickle.loads(pickle.dumps(a)), copy.deepcopy(a), copy.copy(a)):
        assert copied == a and copied.base == 10 and type(copied) is LogUniform
    with pytest.raises(TypeError, match="unhashable"):
        hash(choice([1, 2]))  # a list among its arguments, as in a frozen dataclass
    assert choice([1, 2]) == Choice([1, 2]) and choice([1, 2]) != grid([1, 2])


# ------------------------------------------------------------------------ values a trial sees (issue 23)


class Optim(str, enum.Enum):
    ADAM = "adam"
    SGD = "sgd"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Ratio(float, enum.Enum):
    HALF = 0.5


def test_enum_values_reach_the_config_as_their_str_int_or_float_value() -> None:
    """A ``(str, Enum)`` is its str value (not ``str(member)``, ``'Optim.ADAM'``), an IntEnum its int: what the
    store holds and gives back on a resume, and what the spec stores."""
    space = {"optim": choice([Optim.ADAM, Optim.SGD]), "const": Optim.SGD, "level": grid([Level.HIGH]),
             "n": Level.LOW, "r": Ratio.HALF, "nested": {"l": [Optim.ADAM, (Level.HIGH,)]}}
    validate_space(space)
    for seed in range(4):
        config = resolve(space, random.Random(seed))
        assert config["optim"] in ("adam", "sgd") and type(config["optim"]) is str
        assert config["const"] == "sgd" and type(config["const"]) is str
        assert config["level"] == 2 and type(config["level"]) is int
        assert config["n"] == 1 and type(config["n"]) is int
        assert config["r"] == 0.5 and type(config["r"]) is float
        assert config["nested"] == {"l": ["adam", [2]]} and type(config["nested"]["l"][0]) is str
        assert json.loads(json.dumps(config)) == config
    assert json.loads(json.dumps(space_to_json(space)))["optim"] == {"__domain__": "choice", "options": ["adam", "sgd"]}


def test_choice_and_grid_options_are_plain_python_values() -> None:
    """Options are made plain where the domain is made, so every searcher compares them with the Python values
    a stored config holds (``np.True_`` is ``True``); tuples among them stay tuples (the space's own JSON)."""
    c = choice([np.bool_(True), np.bool_(False), np.int64(3), np.float32(0.5), Optim.ADAM, (np.int64(1), 2),
                {"lr": loguniform(1e-3, 1e-1), "k": np.int32(4)}])
    assert c.options == [True, False, 3, 0.5, "adam", (1, 2), {"lr": loguniform(1e-3, 1e-1), "k": 4}]
    assert [type(o) for o in c.options[:6]] == [bool, bool, int, float, str, tuple]
    assert type(c.options[5][0]) is int and type(c.options[6]["k"]) is int
    g = grid(list(np.arange(2)) + [np.bool_(True)])
    assert g.values == [0, 1, True] and [type(v) for v in g.values] == [int, int, bool]
    assert space_from_json(json.loads(json.dumps(space_to_json({"c": c})))) == {"c": c}
    assert space_to_json({"c": choice([(1, 2)])})["c"]["options"] == [{"__domain__": "__tuple__", "items": [1, 2]}]


def test_tuples_reach_the_config_as_the_lists_a_resume_reads_back() -> None:
    """The store keeps configs as JSON, which has lists only: a trial sees lists where the space had tuples on
    its first run too, not a tuple first and a list after a resume."""
    space = {"shape": (3, 224, 224), "c": choice([(1, 2), [3, 4]]), "n": {"t": ((1, 2), [(3,)])},
             "s": sample_from(lambda c: (c["shape"][0], tuple(c["c"])))}
    config = resolve(space, random.Random(0))
    assert config["shape"] == [3, 224, 224] and type(config["shape"]) is list
    assert type(config["c"]) is list and config["n"] == {"t": [[1, 2], [[3]]]}
    assert config["s"] == [3, config["c"]] and type(config["s"][1]) is list
    assert json.loads(json.dumps(config)) == config
    seen: list[Any] = []
    resolve({"t": (1, 2), "s": sample_from(lambda c: seen.append(c["t"]))}, random.Random(0))
    assert seen == [[1, 2]]  # sample_from sees the list too
    assert space_from_json(json.loads(json.dumps(space_to_json(space))))["shape"] == (3, 224, 224)  # the space


@pytest.mark.parametrize("make", [
    lambda inner: {"a": inner},
    lambda inner: [inner],
    lambda inner: choice([inner, 1]),
    lambda inner: [{"k": (inner,)}],
], ids=["dicts", "lists", "choices", "mixed-constants"])
@pytest.mark.parametrize("levels", [101, 400, 5000])
def test_a_space_nested_too_deep_is_a_config_error_not_a_recursion_error(make: Any, levels: int) -> None:
    value: Any = 1
    for _ in range(levels):
        value = make(value)
    with pytest.raises(ConfigError, match=r'^space\["a"\]: nested deeper than 100 levels$'):
        validate_space({"a": value})


def test_a_choice_of_a_constant_nested_too_deep_is_made_and_then_refused() -> None:
    deep: Any = 1
    for _ in range(5000):
        deep = [deep]
    for space in ({"a": choice([deep, 1])}, {"a": grid([deep])}):
        with pytest.raises(ConfigError, match=r'^space\["a"\]: nested deeper than 100 levels$'):
            validate_space(space)


def test_a_space_nested_100_levels_deep_is_fine() -> None:
    value: Any = 1
    for _ in range(98):
        value = {"a": value}
    space = {"a": {"b": [value]}}
    validate_space(space)
    assert json.loads(json.dumps(resolve(space, random.Random(0)))) == space
