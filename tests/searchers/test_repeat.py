"""Repeat(n): each config n times with seeds 0..n-1; the wrapped searcher learns from the average."""

from __future__ import annotations

import math

import pytest

import tunesmith as ts
from tunesmith.searchers._base import FINISHED
from tunesmith.searchers.optuna import OptunaSearch
from tunesmith.searchers.repeat import Repeat, average
from tunesmith.space import choice, uniform

SPACE = {"x": uniform(-1, 1), "act": choice(["relu", "tanh"])}


def test_each_config_n_times_with_seeds_then_finished() -> None:
    repeat = Repeat(ts.Random(seed=5), n=3)
    repeat.setup(SPACE, "loss", "min", 2)
    configs = [repeat.suggest(i) for i in range(1, 7)]
    assert repeat.suggest(7) is FINISHED and repeat.suggest(8) is FINISHED
    plain = ts.Random(seed=5)
    plain.setup(SPACE, "loss", "min", 2)
    first, second = plain.suggest(0), plain.suggest(1)
    assert configs == [{**first, "seed": 0}, {**first, "seed": 1}, {**first, "seed": 2},
                       {**second, "seed": 0}, {**second, "seed": 1}, {**second, "seed": 2}]


def test_a_seed_key_in_the_space_is_left_alone() -> None:
    repeat = Repeat(ts.Random(seed=1), n=2)
    repeat.setup({**SPACE, "seed": choice([7, 8])}, "loss", "min", 1)
    a, b = repeat.suggest(1), repeat.suggest(2)
    assert isinstance(a, dict) and isinstance(b, dict)
    assert a["seed"] == b["seed"] in (7, 8) and (a["repeat_index"], b["repeat_index"]) == (0, 1)


def test_the_wrapped_searcher_observes_the_average_once_all_repeats_ended() -> None:
    inner = OptunaSearch(seed=0)
    repeat = Repeat(inner, n=3)
    repeat.setup(SPACE, "loss", "min", 4)
    for tid in (1, 2, 3):
        repeat.suggest(tid)
    repeat.observe(1, {"loss": 1.0, "training_iteration": 1}, False)  # intermediate: not passed on
    repeat.observe(3, {"loss": 3.0}, True)
    repeat.observe(1, {"loss": 1.0}, True)
    assert inner.study.trials[0].value is None  # one repeat still running
    repeat.observe(2, {"loss": math.nan}, True)  # a NaN is left out of the mean
    (told,) = inner.study.trials
    assert told.value == 2.0 and told.intermediate_values == {}


def test_average() -> None:
    assert average([{"a": 1, "b": "x"}, {"a": 2.0, "b": "y", "c": math.nan}, {}]) == \
        {"a": 1.5, "b": "x", "c": pytest.approx(math.nan, nan_ok=True)}
    assert average([{}, {}]) == {}
    assert average([{"a": math.inf}, {"a": 1}])["a"] == math.inf
    assert average([{"ok": True}, {"ok": False}]) == {"ok": True}  # booleans are not averaged

