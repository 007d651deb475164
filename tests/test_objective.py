"""The Objective value: run's metric/mode validated once, and the one place results are compared."""

from __future__ import annotations

import math

import pytest

from tunesmith._errors import ConfigError
from tunesmith._objective import Objective
from tunesmith.trial import Result


@pytest.mark.parametrize("metric, mode, message", [
    (None, "min", "mode='min' was given without a metric"),
    ("loss", None, "mode must be 'min' or 'max' when metric is given, got None"),
    ("loss", "minimize", "mode must be 'min' or 'max' when metric is given, got 'minimize'"),
    ("", "min", "metric must be the name \\(str\\) of a reported metric, or a list of names, got ''"),
    (3, "min", "metric must be the name \\(str\\) of a reported metric, or a list of names, got 3"),
    ([], [], "expected a metric name or a non-empty list of names, got \\[\\]"),
    (["loss", 2], ["min", "min"], "metric\\[1\\] must be the name \\(str\\) of a reported metric, got 2"),
    (["loss", "loss"], ["min", "min"], "metric\\[1\\]: 'loss' is listed twice"),
    (["loss", "lat"], "min", "mode must be a list of 2 'min'/'max' values, one per metric in \\['loss', 'lat'\\]"),
    (["loss", "lat"], ["min", "up"], "mode\\[1\\] \\(for metric 'lat'\\) must be 'min' or 'max', got 'up'"),
])
def test_from_args_names_the_bad_input(metric, mode, message):
    with pytest.raises(ConfigError, match=message):
        Objective.from_args(metric, mode)


def test_from_args_single_multi_and_none():
    single = Objective.from_args("loss", "min")
    assert (single.names, single.modes, single.is_multi, bool(single)) == (("loss",), ("min",), False, True)
    assert (single.metric, single.mode, single.primary) == ("loss", "min", "loss")
    multi = Objective.from_args(("loss", "lat"), ("min", "max"))
    assert (multi.names, multi.modes, multi.is_multi) == (("loss", "lat"), ("min", "max"), True)
    # the store keeps lists (as before), so old and new experiments read the same
    assert multi.to_spec() == {"metric": ["loss", "lat"], "mode": ["min", "max"]}
    assert multi.mode_of("lat") == "max" and multi.mode_of("acc") is None
    with pytest.raises(ValueError):
        multi.primary  # noqa: B018
    none = Objective.from_args(None, None)
    assert not none and none.to_spec() == {"metric": None, "mode": None}
    # a list of one name stays multi-objective: no single best, as run() treats it today
    assert Objective.from_args(["loss"], ["min"]).is_multi


def test_spec_round_trip_and_a_damaged_spec_reads_as_no_objective():
    for objective in (Objective.from_args("acc", "max"), Objective.from_args(["a", "b"], ["min", "max"]),
                      Objective()):
        assert Objective.from_spec(objective.to_spec()) == objective
    assert Objective.from_spec({"metric": "loss", "mode": "sideways"}) == Objective()


@pytest.mark.parametrize("mode, best, worst", [("min", 1.0, 2.0), ("max", 2.0, 1.0)])
def test_better_and_score_follow_the_mode(mode, best, worst):
    objective = Objective.from_args("m", mode)
    assert objective.better(best, worst) and not objective.better(worst, best)
    assert not objective.better(best, best)  # ties are not better
    assert not objective.better(math.nan, worst)
    # score: higher is better, whatever the mode
    assert objective.score({"m": best}) > objective.score({"m": worst})
    assert math.isnan(objective.score({"m": math.nan}))


def test_score_names_a_missing_or_non_numeric_metric_and_the_trial():
    objective = Objective.from_args("loss", "min")
    with pytest.raises(ConfigError, match="metric 'loss' is missing from the result of trial_00003 at iteration 2"):
        objective.score(Result(3, 2, {"acc": 1.0}))
    with pytest.raises(ConfigError, match="metric 'loss' of trial_00003 must be a number; got 'x'"):
        objective.score(Result(3, 2, {"loss": "x"}))
    with pytest.raises(ValueError):
        Objective.from_args(["a", "b"], ["min", "min"]).score({"a": 1, "b": 2})


def test_value_and_values_keep_only_usable_numbers():
    single = Objective.from_args("loss", "min")
    assert single.value({"loss": 3}) == 3.0
    assert single.value({"loss": math.nan}) is None
    assert single.value({"loss": True}) is None
    assert single.value({"acc": 1}) is None
    multi = Objective.from_args(["a", "b"], ["min", "max"])
    assert multi.value({"a": 1, "b": 2}) is None  # no single value
    assert multi.values({"a": 1, "b": 2}) == [1.0, 2.0]
    assert multi.values({"a": 1}) is None
    assert multi.missing({"a": 1, "b": None}) == ["b"]


def test_missing_error_messages():
    single = Objective.from_args("loss", "min")
    assert str(single.missing_error(["loss"], "trial_00001", "acc")) == (
        "metric 'loss' is not in the results of trial_00001 (it reported: acc); report it, or pass metric= one "
        "of those")
    multi = Objective.from_args(["a", "b"], ["min", "min"])
    assert "metric 'b' (of ['a', 'b']) is not in the results of trial_00001" in str(
        multi.missing_error(["b"], "trial_00001", "a"))


def test_searcher_and_scheduler_objectives_name_their_owner():
    with pytest.raises(ConfigError, match="metric: BOHB learns from results and needs the name of a reported "
                                          "metric; got \\['a', 'b'\\]"):
        Objective.for_searcher(["a", "b"], ["min", "min"], multi=False, owner="BOHB")
    assert Objective.for_searcher(["a", "b"], ["min", "max"]).names == ("a", "b")
    with pytest.raises(ConfigError, match="mode: X expects 'min' or 'max' for metric 'a'; got None"):
        Objective.for_searcher("a", None, owner="X")
    # a scheduler's own metric wins over the experiment's; a list from run() needs the scheduler's own
    assert Objective.for_scheduler("ASHA", "acc", "max", "loss", "min") == Objective.from_args("acc", "max")
    assert Objective.for_scheduler("ASHA", None, None, "loss", "min") == Objective.from_args("loss", "min")
    with pytest.raises(ConfigError, match="metric: ASHA needs the name of one reported metric"):
        Objective.for_scheduler("ASHA", None, None, ["a", "b"], ["min", "min"])
