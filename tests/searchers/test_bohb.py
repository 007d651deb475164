"""Tests for BOHB: budgets from training_iteration, the density model, replay, bad input."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tunesmith._errors import ConfigError
from tunesmith.searchers._base import FINISHED, Searcher
from tunesmith.searchers._unit_cube import to_unit
from tunesmith.searchers.bohb import BOHB
from tunesmith.space import choice, grid, lograndint, loguniform, randint, sample_from, uniform

SPACE: dict[str, Any] = {
    "x": uniform(-1, 1),
    "lr": loguniform(1e-4, 1e-1),
    "k": randint(0, 10),
    "act": choice(["relu", "tanh"]),
    "g": grid([1, 2]),
}

CONDITIONAL: dict[str, Any] = {
    "x": uniform(-1, 1),
    "optim": choice([{"type": "sgd", "m": uniform(0, 1)}, {"type": "adam", "b": randint(1, 5)}, "none"]),
    "twice": sample_from(lambda c: 2 * c["x"]),
}


def _searcher(space: dict[str, Any], num_samples: int = 50, **kwargs: Any) -> BOHB:
    kwargs.setdefault("seed", 0)
    searcher = BOHB(**kwargs)
    searcher.setup(space, "loss", "min", num_samples)
    return searcher


def _loss(config: dict[str, Any], budget: int = 9) -> float:
    return (config["x"] - 0.3) ** 2 + 1.0 / budget


def _asha_like(searcher: BOHB, n: int, start: int = 0) -> list[dict[str, Any]]:
    """Sequential trials with rungs at budgets 1 and 3 (max 9), ASHA's rule: a trial goes on past a
    rung when it is in the top third of the results recorded there so far."""
    configs = []
    rungs: dict[int, list[float]] = {1: [], 3: []}
    for trial_id in range(start, start + n):
        config = searcher.suggest(trial_id)
        assert isinstance(config, dict)
        configs.append(config)
        for budget in (1, 3, 9):
            result = {"loss": _loss(config, budget), "training_iteration": budget}
            searcher.observe(trial_id, result, False)
            if budget == 9:
                break
            rung = sorted([*rungs[budget], result["loss"]])
            rungs[budget] = rung
            if result["loss"] > rung[max(0, len(rung) // 3 - 1)]:
                break
        searcher.observe(trial_id, result, True)
    return configs


def test_is_a_searcher_and_stores_constructor_args() -> None:
    searcher = BOHB(seed=1, top_n_percent=20)
    assert isinstance(searcher, Searcher)
    assert searcher.to_spec() == {
        "type": "BOHB", "seed": 1, "min_points_in_model": None, "top_n_percent": 20,
        "random_fraction": 1 / 3, "bandwidth_factor": 3.0, "min_bandwidth": 1e-3, "n_candidates": 64,
        "points_to_evaluate": None}


def test_configs_inside_the_space_and_num_samples() -> None:
    searcher = _searcher(SPACE, num_samples=30)
    configs = _asha_like(searcher, 30)
    assert searcher.suggest(30) is FINISHED  # grid searched, not crossed
    for c in configs:
        assert -1 <= c["x"] <= 1 and 1e-4 <= c["lr"] <= 1e-1
        assert type(c["k"]) is int and 0 <= c["k"] < 10
        assert c["act"] in ("relu", "tanh") and c["g"] in (1, 2)


def test_model_budget_is_the_largest_with_enough_observations() -> None:
    searcher = _searcher({"x": uniform(-1, 1)}, min_points_in_model=2)  # a budget needs 2 + 2 observations
    assert searcher.model_budget() is None
    for trial_id, budgets in enumerate([(1, 3, 9), (1, 3), (1, 3), (1,), (1, 3, 9)]):
        searcher.suggest(trial_id)
        for b in budgets:
            searcher.observe(trial_id, {"loss": 1.0, "training_iteration": b}, False)
    assert searcher.model_budget() == 3.0  # 1 has 5, 3 has 4, 9 has only 2
    for trial_id in (5, 6):
        searcher.suggest(trial_id)
        searcher.observe(trial_id, {"loss": 1.0, "training_iteration": 9}, True)
    assert searcher.model_budget() == 9.0
    # NaN and missing metrics are not observations.
    for trial_id in (7, 8, 9, 10):
        searcher.suggest(trial_id)
        searcher.observe(trial_id, {"loss": float("nan"), "training_iteration": 27}, False)
        searcher.observe(trial_id, {"acc": 1.0, "training_iteration": 27}, False)
        searcher.observe(trial_id, {}, True)
    assert searcher.model_budget() == 9.0


def test_default_min_points_is_dims_plus_one() -> None:
    searcher = _searcher({"a": uniform(0, 1), "b": uniform(0, 1)})
    for trial_id in range(5):
        searcher.suggest(trial_id)
        searcher.observe(trial_id, {"loss": 1.0, "training_iteration": 1}, True)
        assert searcher.model_budget() == (1.0 if trial_id == 4 else None)  # 3 + 2 observations
    assert _searcher({"a": uniform(0, 1), "b": uniform(0, 1)}, min_points_in_model=4)._min_points == 4


def test_the_model_finds_the_good_region() -> None:
    hits, closest = [], []
    for seed in range(5):
        configs = _asha_like(_searcher({"x": uniform(-1, 1)}, num_samples=60, seed=seed), 60)
        late = [abs(c["x"] - 0.3) for c in configs[20:]]
        hits.append(sum(d < 0.15 for d in late))
        closest.append(min(late))
    assert sorted(hits)[2] >= 15, hits  # median of 40; random search would put about 6 there
    assert sorted(closest)[2] < 0.05, closest


def test_max_mode_flips_the_sign() -> None:
    searcher = BOHB(seed=0, random_fraction=0.0)
    searcher.setup({"x": uniform(-1, 1)}, "score", "max", 40)
    xs = []
    for trial_id in range(40):
        config = searcher.suggest(trial_id)
        assert isinstance(config, dict)
        xs.append(config["x"])
        searcher.observe(trial_id, {"score": -abs(config["x"] + 0.5)}, True)  # best at -0.5
    assert sum(abs(x + 0.5) < 0.15 for x in xs[10:]) >= 12


def test_conditional_space() -> None:
    searcher = _searcher(CONDITIONAL, num_samples=40, random_fraction=0.0)
    configs = _asha_like(searcher, 40)
    kinds = set()
    for c in configs:
        assert c["twice"] == 2 * c["x"]
        if c["optim"] == "none":
            kinds.add("none")
        else:
            kinds.add(c["optim"]["type"])
            assert set(c["optim"]) == ({"type", "m"} if c["optim"]["type"] == "sgd" else {"type", "b"})
    assert kinds == {"none", "sgd", "adam"}


def test_points_to_evaluate_come_first() -> None:
    searcher = _searcher(CONDITIONAL, points_to_evaluate=[{"x": 0.25, "optim": "none"}, {"x": -0.5}])
    first, second = searcher.suggest(0), searcher.suggest(1)
    assert first == {"x": 0.25, "optim": "none", "twice": 0.5}
    assert isinstance(second, dict) and second["x"] == -0.5


def test_bad_space_and_num_samples() -> None:
    with pytest.raises(ConfigError, match=r'^space\["x"\]: .*low < high'):
        BOHB(seed=0).setup({"x": uniform(1, 0)}, "loss", "min", 10)
    with pytest.raises(ConfigError, match=r"^num_samples"):
        BOHB(seed=0).setup({"x": uniform(0, 1)}, "loss", "min", 0)


def test_warm_start_gives_the_model_its_observations_and_skips_configs_outside_the_space() -> None:
    searcher = BOHB(seed=0, min_points_in_model=3, random_fraction=0.0)
    searcher.setup({"x": uniform(0, 1)}, "loss", "min", 20)
    earlier = [({"x": i / 10}, {"loss": (i / 10 - 0.3) ** 2, "training_iteration": 4}) for i in range(10)]
    outside = [({"x": 3.0}, {"loss": 0.0, "training_iteration": 4}), ({"y": 0.1}, {"loss": 0.0}),
               ({"x": 0.5}, {"other": 1.0})]
    assert searcher.warm_start(earlier + outside) == 10
    assert searcher.model_budget() == 4.0  # a model from the first suggestion on
    first = [searcher.suggest(i) for i in range(8)]
    assert sum(abs(c["x"] - 0.3) < 0.2 for c in first) >= 6  # type: ignore[index]  # random: about 3


def test_warm_start_takes_configs_of_numpy_options_and_constants() -> None:
    """numpy options and constants are the Python values a stored config holds (np.True_ is True)."""
    searcher = BOHB(seed=0, min_points_in_model=3, random_fraction=0.0)
    searcher.setup({"x": uniform(0, 1), "flag": choice([np.bool_(True), np.bool_(False)]), "on": np.bool_(True),
                    "k": np.int64(2)}, "loss", "min", 20)
    earlier = [({"x": i / 10, "flag": i % 2 == 0, "on": True, "k": 2}, {"loss": i / 10, "training_iteration": 4})
               for i in range(10)]
    assert searcher.warm_start(earlier) == 10
    config = searcher.suggest(0)
    assert isinstance(config, dict) and type(config["flag"]) is bool and config["on"] is True


@pytest.mark.parametrize(("make", "low", "high"), [
    (randint, 0, 7), (randint, 2**53, 2**53 + 4), (randint, 10**300, 10**300 + 5),
    (lograndint, 1, 9), (lograndint, 2**53, 2**53 + 3), (lograndint, 10**300, 10**300 + 5),
])
def test_an_integer_config_maps_back_to_itself_through_the_unit_cube(make: Any, low: int, high: int) -> None:
    """BOHB learns from configs mapped into the cube (``to_unit``): each integer must come back as itself, also past
    2**53, where floats no longer hold every integer."""
    domain = make(low, high)
    for k in range(low, high):
        u = to_unit(domain, k)
        assert u is not None and domain.from_unit(u) == k, (k, u)
