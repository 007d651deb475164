"""points_to_evaluate: validation shared by every searcher, and how a point's values are merged."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from searcher_helpers import drain

import tunesmith as ts
from tunesmith._errors import ConfigError
from tunesmith.executors.simulated import SimulatedBackend
from tunesmith.searchers._base import Searcher
from tunesmith.searchers.bohb import BOHB
from tunesmith.searchers.points import check_points, check_points_fit
from tunesmith.searchers.random import Random
from tunesmith.searchers.sobol import QuasiRandom
from tunesmith.space import choice, grid, loguniform, randint, sample_from, uniform

SPACE = {"lr": loguniform(1e-4, 1e-1), "model": {"depth": uniform(1, 4), "act": "relu"},
         "optim": choice([{"name": "adam", "beta": uniform(0.8, 0.99)}, {"name": "sgd"}])}


def test_points_become_key_paths_following_the_nesting() -> None:
    assert check_points(None, SPACE) == []
    got = check_points([{"lr": 0.01, "model": {"depth": 2}}, {"optim": {"name": "sgd"}}], SPACE)
    # a dict under a nested dict of the space is followed; under a choice it picks the option it fits
    assert got == [{("lr",): 0.01, ("model", "depth"): 2}, {("optim",): {"name": "sgd"}, ("optim", "name"): "sgd"}]
    assert got[1][("optim",)] is SPACE["optim"].options[1]


def test_a_dict_for_a_choice_picks_the_option_it_fits_else_it_is_the_whole_value() -> None:
    adam, sgd = SPACE["optim"].options
    picked = check_points([{"optim": {"beta": 0.9}}, {"optim": {"name": "adam", "beta": 2.0}},
                           {"optim": {"name": "rmsprop"}}, {"optim": "sgd"}], SPACE)
    assert picked[0] == {("optim",): adam, ("optim", "beta"): 0.9} and picked[0][("optim",)] is adam
    assert picked[1][("optim",)] is adam  # 2.0 is outside its domain: the option whose keys and constants agree
    assert picked[2:] == [{("optim",): {"name": "rmsprop"}}, {("optim",): "sgd"}]  # fits no option: as given
    nested = {"optim": choice([{"beta": {"y": uniform(0, 1), "z": 3}}])}
    assert check_points([{"optim": {"beta": {"y": 0.5}}}], nested) == [
        {("optim",): nested["optim"].options[0], ("optim", "beta", "y"): 0.5}]  # its nested dicts followed


@pytest.mark.parametrize(("points", "match"), [
    ({"lr": 0.1}, "points_to_evaluate: expected a list of config dicts"),
    ([{"lr": 0.1}, 3], r"points_to_evaluate\[1\]: expected a config dict"),
    ([{"learning_rate": 0.1}], r'points_to_evaluate\[0\]\["learning_rate"\]: not a key of the space'),
    ([{"model": {"width": 3}}], r'points_to_evaluate\[0\]\["model"\]\["width"\]: not a key of the space'),
])
def test_bad_points_name_the_point_and_key(points: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        check_points(points, SPACE)


def test_more_points_than_trials() -> None:
    check_points_fit([{}, {}], 2)
    check_points_fit([{}, {}], None)
    with pytest.raises(ConfigError, match="points_to_evaluate: 3 points, but the searcher suggests only 2"):
        check_points_fit([{}, {}, {}], 2)



# -- points and grid keys (Random and QuasiRandom cross the grid) ------------------------------------------------

GRID_SPACE = {"g": grid(["a", "b", "c"]), "x": uniform(0, 1)}
CROSSING: dict[str, Callable[..., Searcher]] = {"random": Random, "quasirandom": QuasiRandom}


def _set_up(make: Callable[..., Searcher], space: dict[str, Any], num_samples: int,
            points: list[dict[str, Any]] | None, metric: str | None = None) -> Searcher:
    searcher = make(seed=0, points_to_evaluate=points)
    searcher.setup(space, metric, "min" if metric else None, num_samples)
    return searcher


@pytest.mark.parametrize("make", CROSSING.values(), ids=CROSSING)
def test_points_take_their_grid_points_tries_and_every_grid_point_still_runs_num_samples_times(make: Any) -> None:
    """A point that gives a grid key is one of that grid point's ``num_samples`` tries: it used to take the try of
    grid point ``k % 3`` instead ("a" never ran here with num_samples=1, and ran once in place of twice here)."""
    points = [{"g": "c", "x": 0.5}, {"x": 0.25}, {"g": "c", "x": 0.75}]
    configs = drain(_set_up(make, GRID_SPACE, 2, points))
    assert Counter(c["g"] for c in configs) == {"a": 2, "b": 2, "c": 2}  # points count towards grid x num_samples
    assert [(c["g"], c["x"]) for c in configs[:3]] == [("c", 0.5), ("a", 0.25), ("c", 0.75)]  # points first
    assert [c["g"] for c in configs[3:]] == ["b", "a", "b"]  # the tries left, in order
    once = drain(_set_up(make, GRID_SPACE, 1, [{"g": "c", "x": 0.5}]))
    assert [c["g"] for c in once] == ["c", "a", "b"]
    if make is QuasiRandom:  # the trials after the points are those the same slots have without points
        plain = drain(_set_up(make, GRID_SPACE, 2, None))
        assert configs[3:] == [plain[1], plain[3], plain[4]]


@pytest.mark.parametrize("make", CROSSING.values(), ids=CROSSING)
def test_a_point_giving_some_grid_keys_takes_the_first_free_grid_point_that_matches(make: Any) -> None:
    space = {"a": grid([1, 2]), "n": {"b": grid(["x", "y", "z"])}, "u": uniform(0, 1)}
    configs = drain(_set_up(make, space, 1, [{"n": {"b": "y"}}, {"n": {"b": "y"}}, {"a": 1}]))
    assert [(c["a"], c["n"]["b"]) for c in configs] == [(1, "y"), (2, "y"), (1, "x"), (1, "z"), (2, "x"), (2, "z")]


@pytest.mark.parametrize("make", CROSSING.values(), ids=CROSSING)
def test_a_point_outside_the_grid_is_one_trial_more(make: Any) -> None:
    """A grid value that is not in the grid (a baseline) is no grid point's try: every grid point still runs."""
    configs = drain(_set_up(make, GRID_SPACE, 1, [{"g": "z", "x": 0.5}]))
    assert [c["g"] for c in configs] == ["z", "a", "b", "c"]


@pytest.mark.parametrize("make", CROSSING.values(), ids=CROSSING)
def test_more_points_for_one_grid_point_than_num_samples_are_refused(make: Any) -> None:
    with pytest.raises(ConfigError, match=r'^points_to_evaluate\[2\]: every grid point with \{"g": "c"\} is '
                                          r"already tried num_samples=2 times by the points before it"):
        _set_up(make, GRID_SPACE, 2, [{"g": "c"}, {"g": "c"}, {"g": "c"}])
    _set_up(make, GRID_SPACE, -1, [{"g": "c"}] * 3)  # unlimited: each takes a try of a repeat of its own
    with pytest.raises(ConfigError, match=r"^points_to_evaluate: 4 points, but the searcher suggests only 3 trials"):
        _set_up(make, GRID_SPACE, 1, [{}] * 4)


def test_points_come_first_and_count_towards_the_grid_in_a_run(results_dir: Any) -> None:
    """Through ``run``, with the default searcher: the point's grid value is not run twice, and none is skipped."""
    def train(config: dict[str, Any]) -> Any:
        yield {"loss": config["x"]}

    result = ts.run(train, GRID_SPACE, num_samples=1, backend=SimulatedBackend({"cpu": 1}), verbose=0,
                    searcher=ts.Random(seed=0, points_to_evaluate=[{"g": "c", "x": 0.5}]))
    assert [t.config["g"] for t in result.trials] == ["c", "a", "b"]
    assert result.trials[0].config["x"] == 0.5


# -- partial points for conditional spaces -------------------------------------------------------------------------

CONDITIONAL: dict[str, Any] = {
    "x": uniform(0, 1),
    "optim": choice([
        {"type": "sgd", "momentum": uniform(0, 0.99), "nesterov": sample_from(lambda c: c["optim"]["momentum"] > 0.5)},
        {"type": "adam", "beta": randint(1, 5),
         "sched": choice([{"kind": "cos", "t": randint(1, 10)}, {"kind": "step"}])},
        "none"]),
    "steps": sample_from(lambda c: 10 if c["optim"] == "none" else 20),
}
CONDITIONAL_SEARCHERS: dict[str, Callable[..., Searcher]] = {"random": Random, "quasirandom": QuasiRandom,
                                                             "bohb": BOHB}


@pytest.mark.parametrize("make", CONDITIONAL_SEARCHERS.values(), ids=CONDITIONAL_SEARCHERS)
def test_a_partial_point_for_a_conditional_choice_gets_the_rest_of_its_option_from_the_space(make: Any) -> None:
    """A dict given for a choice of dicts picks the option it fits, and the keys of that option it leaves out are
    drawn as for any partial point: they used to be missing (``{"type": "sgd"}`` ran without its momentum)."""
    points = [{"optim": {"type": "sgd"}},
              {"optim": {"beta": 3}},
              {"optim": {"type": "adam", "sched": {"kind": "cos"}}},
              {"x": 0.5, "optim": {"momentum": 1.5}},  # outside its domain on purpose: still the sgd option
              {"optim": {"type": "rmsprop", "lr": 0.1}}]  # no option: the value as given (a baseline)
    configs = drain(_set_up(make, CONDITIONAL, len(points), points, metric="loss"))
    sgd, adam, cos, outside, baseline = (c["optim"] for c in configs)
    assert set(sgd) == {"type", "momentum", "nesterov"} and sgd["type"] == "sgd"
    assert 0 <= sgd["momentum"] <= 0.99 and sgd["nesterov"] == (sgd["momentum"] > 0.5)
    assert set(adam) == {"type", "beta", "sched"} and (adam["type"], adam["beta"]) == ("adam", 3)
    assert adam["sched"] in ({"kind": "step"}, {"kind": "cos", "t": adam["sched"].get("t")})
    assert set(cos) == {"type", "beta", "sched"} and cos["type"] == "adam" and 1 <= cos["beta"] < 5
    assert set(cos["sched"]) == {"kind", "t"} and cos["sched"]["kind"] == "cos" and 1 <= cos["sched"]["t"] < 10
    assert outside == {"type": "sgd", "momentum": 1.5, "nesterov": True} and configs[3]["x"] == 0.5
    assert baseline == {"type": "rmsprop", "lr": 0.1}
    assert [c["steps"] for c in configs] == [20] * 5  # sample_from keys see the completed option


def test_a_partial_conditional_point_in_a_run_gives_the_function_every_key_of_its_branch(results_dir: Any) -> None:
    seen: list[dict[str, Any]] = []

    def train(config: dict[str, Any]) -> Any:
        seen.append(config)
        yield {"loss": config["x"]}

    ts.run(train, CONDITIONAL, num_samples=1, backend=SimulatedBackend({"cpu": 1}), verbose=0,
           searcher=ts.Random(seed=0, points_to_evaluate=[{"optim": {"type": "sgd"}}]))
    assert set(seen[0]["optim"]) == {"type", "momentum", "nesterov"}
