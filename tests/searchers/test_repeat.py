"""Repeat(n): each config n times with seeds 0..n-1; the wrapped searcher learns from the average."""

from __future__ import annotations

import logging
import math
import sys
from typing import Any

import pytest

import tunesmith as ts
from tunesmith.searchers._base import FINISHED
from tunesmith.searchers.optuna import OptunaSearch
from tunesmith.searchers.repeat import Repeat, average, fold_repeats
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



# -- warm start from an experiment that ran Repeat -----------------------------------------------------------
def _repeated(key: str = "seed") -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(config, last result) pairs as warm start reads them from an experiment run with ``Repeat(..., 2)``: each
    config twice, the repeat index under ``key``; a trial without the metric and a config outside the space too."""
    return [({"x": 0.5, "act": "relu", key: 0}, {"loss": 1.0, "training_iteration": 3}),
            ({"x": 0.5, "act": "relu", key: 1}, {"loss": 3.0, "training_iteration": 3}),
            ({"x": -0.5, "act": "tanh", key: 0}, {"loss": 4.0, "training_iteration": 3}),
            ({"x": -0.5, "act": "tanh", key: 1}, {"loss": 6.0, "training_iteration": 3}),
            ({"x": 0.25, "act": "relu", key: 0}, {"other": 1.0, "training_iteration": 3}),
            ({"x": 9.0, "act": "relu", key: 0}, {"loss": 0.0, "training_iteration": 3})]


@pytest.mark.parametrize("wrapped", [True, False], ids=["Repeat(OptunaSearch)", "OptunaSearch"])
def test_optuna_warm_starts_from_a_repeat_experiment_with_each_configs_average(wrapped: bool) -> None:
    """The key Repeat added is not one of the space's: stripped, and a config's repeats are told once, averaged
    (as Repeat tells its searcher live results). Every repeat of a config taken in counts."""
    inner = OptunaSearch(seed=2)
    searcher = Repeat(inner, 2) if wrapped else inner
    searcher.setup(SPACE, "loss", "min", 2)
    assert searcher.warm_start(_repeated()) == 4
    told = sorted((t.params["x"], t.params["act"], t.value) for t in inner.study.trials)
    assert told == [(-0.5, "tanh", 5.0), (0.5, "relu", 2.0)]
    config = searcher.suggest(7)
    assert isinstance(config, dict) and set(config) == ({"x", "act", "seed"} if wrapped else {"x", "act"})


@pytest.mark.parametrize("wrapped", [True, False], ids=["Repeat(BOHB)", "BOHB"])
def test_bohb_warm_starts_from_a_repeat_experiment_with_each_configs_average(wrapped: bool) -> None:
    inner = ts.BOHB(seed=2, min_points_in_model=2)
    searcher = Repeat(inner, 2) if wrapped else inner
    searcher.setup(SPACE, "loss", "min", 2)
    assert searcher.warm_start(_repeated()) == 4
    assert sorted(inner._obs[3.0].values()) == [2.0, 5.0]  # one observation per config, at its budget
    config = searcher.suggest(7)
    assert isinstance(config, dict) and set(config) == ({"x", "act", "seed"} if wrapped else {"x", "act"})


def test_warm_start_strips_repeat_index_when_the_space_has_a_seed() -> None:
    """With a "seed" key in the space Repeat numbers repeats under "repeat_index": that key goes, "seed" stays."""
    space = {**SPACE, "seed": choice([7, 8])}
    earlier = [({**config, "seed": 7}, result) for config, result in _repeated("repeat_index")]
    inner = OptunaSearch(seed=2)
    searcher = Repeat(inner, 2)
    searcher.setup(space, "loss", "min", 2)
    assert searcher.warm_start(earlier) == 4
    told = sorted((t.params["x"], t.params["seed"], t.value) for t in inner.study.trials)
    assert told == [(-0.5, 7, 5.0), (0.5, 7, 2.0)]
    plain = OptunaSearch(seed=2)  # the same without Repeat around it
    plain.setup(space, "loss", "min", 2)
    assert plain.warm_start(earlier) == 4 and len(plain.study.trials) == 2


def test_warm_start_from_an_experiment_without_repeat_takes_each_trial_as_it_is() -> None:
    inner = OptunaSearch(seed=2)
    searcher = Repeat(inner, 2)
    searcher.setup(SPACE, "loss", "min", 2)
    earlier = [({"x": 0.5, "act": "relu"}, {"loss": 1.0}), ({"x": 0.5, "act": "relu"}, {"loss": 3.0}),
               ({"x": 0.5, "act": "relu", "seed": "a"}, {"loss": 3.0})]  # not a repeat index: outside the space
    assert searcher.warm_start(earlier) == 2
    assert sorted(t.value for t in inner.study.trials) == [1.0, 3.0]


def _noisy(config: dict[str, Any]) -> None:
    ts.report({"loss": (config["x"] - 0.3) ** 2 + config["seed"]})


def test_run_warm_starts_from_an_experiment_that_ran_repeat(results_dir: Any, caplog: pytest.LogCaptureFixture) -> None:
    """End to end, as reported: the earlier trials' configs hold the "seed" Repeat added."""
    space = {"x": uniform(0, 1)}
    kw: dict[str, Any] = {"metric": "loss", "mode": "min", "verbose": 0}
    ts.run(_noisy, space, num_samples=2, searcher=Repeat(OptunaSearch(seed=1), 2), name="rep_src", **kw)
    inner = OptunaSearch(seed=2)
    with caplog.at_level(logging.INFO, logger="tunesmith"):
        ts.run(_noisy, space, num_samples=1, searcher=Repeat(inner, 2), warm_start="rep_src", **kw)
    assert "Repeat observed 4 of 4 finished earlier trials (0 skipped" in caplog.text
    earlier = sorted(inner.study.trials[:2], key=lambda t: t.number)
    assert [t.value for t in earlier] == [pytest.approx((t.params["x"] - 0.3) ** 2 + 0.5) for t in earlier]


# -- averages that overflow, and opposite infinities ---------------------------------------------------------
BIG = sys.float_info.max


def test_average_of_values_whose_sum_overflows_is_their_mean() -> None:
    """A sum past the float range (float max as a "diverged" value in every repeat) is no error: the mean is."""
    assert average([{"loss": BIG}, {"loss": BIG}]) == {"loss": BIG}
    assert average([{"loss": -BIG}, {"loss": -BIG}, {"loss": -BIG}]) == {"loss": -BIG}
    assert average([{"loss": BIG}, {"loss": BIG}, {"loss": -BIG}])["loss"] == pytest.approx(BIG / 3)
    assert average([{"loss": BIG}, {"loss": BIG / 2}])["loss"] == pytest.approx(BIG * 0.75)
    assert average([{"a": 0.1}, {"a": 0.2}, {"a": 0.3}])["a"] == math.fsum([0.1, 0.2, 0.3]) / 3  # as before


def test_average_of_opposite_infinities_is_nan() -> None:
    """+inf in one repeat and -inf in another: the mean is undefined, NaN (as when no repeat gave a number)."""
    assert math.isnan(average([{"score": math.inf}, {"score": -math.inf}, {"score": 1.0}])["score"])
    assert average([{"score": math.inf}, {"score": math.inf}, {"score": BIG}]) == {"score": math.inf}
    assert average([{"score": -math.inf}, {"score": BIG}, {"score": BIG}]) == {"score": -math.inf}


def test_warm_start_folds_repeats_whose_sum_overflows() -> None:
    """fold_repeats averages as Repeat does: no error, float max for two float max, NaN (skipped) for +-inf."""
    earlier = [({"x": 0.5, "act": "relu", "seed": 0}, {"loss": BIG, "s": math.inf}),
               ({"x": 0.5, "act": "relu", "seed": 1}, {"loss": BIG, "s": -math.inf}),
               ({"x": -0.5, "act": "tanh", "seed": 0}, {"loss": math.inf}),
               ({"x": -0.5, "act": "tanh", "seed": 1}, {"loss": -math.inf})]
    folded = fold_repeats(earlier, SPACE)
    assert [(c, r["loss"], n) for c, r, n in folded][:1] == [({"x": 0.5, "act": "relu"}, BIG, 2)]
    assert math.isnan(folded[0][1]["s"]) and math.isnan(folded[1][1]["loss"])
    inner = OptunaSearch(seed=2)
    searcher = Repeat(inner, 2)
    searcher.setup(SPACE, "loss", "min", 2)
    assert searcher.warm_start(earlier) == 2  # the +-inf config has no mean: skipped, as a result without it
    assert [(t.params["x"], t.value) for t in inner.study.trials] == [(0.5, BIG)]


def _diverges(config: dict[str, Any]) -> None:
    """float max for a config that diverged in every repeat; an extra key +inf in one repeat, -inf in the other."""
    ts.report({"loss": BIG if config["x"] > 0.5 else config["x"],
               "score": math.inf if config["seed"] == 0 else -math.inf})


def test_run_with_repeats_whose_average_overflows_finishes(results_dir: Any) -> None:
    inner = OptunaSearch(seed=1, points_to_evaluate=[{"x": 0.9}, {"x": 0.2}])
    result = ts.run(_diverges, {"x": uniform(0, 1)}, metric="loss", mode="min", num_samples=3,
                    searcher=Repeat(inner, 2), verbose=0, name="overflow")
    assert ts.load("overflow").status == "finished" and len(result.trials) == 6
    told = {t.params["x"]: t.value for t in inner.study.trials}
    assert told[0.9] == BIG and told[0.2] == 0.2
