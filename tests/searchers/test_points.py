"""points_to_evaluate: validation shared by every searcher, and how a point's values are merged."""

from __future__ import annotations

from typing import Any

import pytest

from tunesmith._errors import ConfigError
from tunesmith.searchers.points import check_points, check_points_fit, merge_fixed
from tunesmith.space import choice, loguniform, uniform

SPACE = {"lr": loguniform(1e-4, 1e-1), "model": {"depth": uniform(1, 4), "act": "relu"},
         "optim": choice([{"name": "adam", "beta": uniform(0.8, 0.99)}, {"name": "sgd"}])}


def test_points_become_key_paths_following_the_nesting() -> None:
    assert check_points(None, SPACE) == []
    got = check_points([{"lr": 0.01, "model": {"depth": 2}}, {"optim": {"name": "sgd"}}], SPACE)
    # a dict under a nested dict of the space is followed; under a choice it is the whole option
    assert got == [{("lr",): 0.01, ("model", "depth"): 2}, {("optim",): {"name": "sgd"}}]


def test_merge_keeps_a_whole_given_option() -> None:
    base = {("lr",): 0.001, ("optim",): {"name": "adam", "beta": 0.9}, ("optim", "beta"): 0.9}
    given = {("optim",): {"name": "sgd"}}
    assert merge_fixed(base, given) == {("lr",): 0.001, ("optim",): {"name": "sgd"}}


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

