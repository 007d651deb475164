"""run(constraints=fn): the values the function may return, and what a constrained Optuna sampler is told."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

import tunesmith as ts
from tunesmith.trial import TrialStatus


def train(config):
    ts.report({"loss": config["x"], "lat": math.nan if config["x"] < 0.5 else config["x"]})


def _no_trial_left_running(name):
    stored = ts.load(name)
    assert stored.status == "failed"
    assert not [t for t in stored.trials if t.status in (TrialStatus.RUNNING, TrialStatus.PENDING)]
    return stored


# -- what the function may return ---------------------------------------------------------------------------
@pytest.mark.parametrize("returned, stored", [
    (-1.0, [-1.0]),
    ((-1, 0.5), [-1.0, 0.5]),
    ([np.float32(-0.5), np.int64(2)], [-0.5, 2.0]),
    (np.array([-1.0, 2.0]), [-1.0, 2.0]),
    (np.array(-3.0), [-3.0]),
    ([Fraction(-1, 2)], [-0.5]),
    ([np.array(-1.0), math.nan, math.inf], [-1.0, math.nan, math.inf]),
], ids=["float", "tuple", "numpy-scalars", "1d-array", "0d-array", "fraction", "0d-items-nan-inf"])
def test_numbers_sequences_and_1d_arrays_are_constraint_values(results_dir, returned, stored):
    result = ts.run(train, {"x": 0.7}, verbose=0, constraints=lambda r: returned, name="ok")
    metrics = result.trials[0].metrics
    assert [metrics[f"constraint/{i}"] for i in range(len(stored))] == pytest.approx(stored, nan_ok=True)
    assert f"constraint/{len(stored)}" not in metrics
    assert all(type(metrics[f"constraint/{i}"]) is float for i in range(len(stored)))


@pytest.mark.parametrize("returned, match", [
    (["-1"], r"'-1' \(str\) is not a number"),
    ([True], r"True \(bool\) is not a number"),
    ([-1.0, None], r"None \(NoneType\) is not a number"),
    ("-1", r"'-1' \(str\) is not a number"),
    ({"lat": -1.0}, r"\{'lat': -1.0\} \(dict\) is not a number"),
    (np.array([[-1.0]]), r"a 2-dimensional array"),
    (np.array(["-1"]), r"'-1' \(str\) is not a number"),
    (np.array([True]), r"True \(bool\) is not a number"),
    ([], r"no value; a constraints function must return at least one"),
], ids=["str", "bool", "none", "bare-str", "dict", "2d-array", "str-array", "bool-array", "empty"])
def test_anything_but_numbers_is_a_config_error_naming_the_value(results_dir, returned, match):
    with pytest.raises(ts.ConfigError, match=r"constraints\(trial_00001's result 1\) returned .*" + match):
        ts.run(train, {"x": 0.7}, verbose=0, constraints=lambda r: returned, name="bad")
    stored = _no_trial_left_running("bad")
    # the result is kept, as infeasible
    assert stored.trials[0].metrics["loss"] == 0.7 and stored.trials[0].metrics["constraint/0"] == math.inf


# -- a constrained Optuna sampler ----------------------------------------------------------------------------
def test_a_nan_constraint_is_infeasible_for_the_gp_sampler(results_dir):
    pytest.importorskip("optuna")
    pytest.importorskip("torch")
    searcher = ts.OptunaSearch(sampler="gp", seed=1, n_startup_trials=2)
    result = ts.run(train, {"x": ts.uniform(0, 1)}, metric="loss", mode="min", num_samples=6, max_concurrent=1,
                    searcher=searcher, constraints=lambda r: [r["lat"] - 0.9], name="nan", verbose=0)
    assert result.status == "finished"
    assert all(t.status is TrialStatus.TERMINATED for t in result.trials) and len(result.trials) == 6
    told = {t.params["x"]: t.constraints for t in searcher.study.trials}
    assert any(x < 0.5 for x in told)  # a NaN was told
    for x, constraints in told.items():
        assert constraints == {"constraint/0": math.inf if x < 0.5 else pytest.approx(x - 0.9)}
    # stored as the function returned it (NaN: not feasible)
    assert all(math.isnan(t.metrics["constraint/0"]) for t in result.trials if t.config["x"] < 0.5)


def test_a_change_in_the_number_of_constraint_values_is_a_config_error(results_dir):
    pytest.importorskip("optuna")
    pytest.importorskip("torch")
    searcher = ts.OptunaSearch(sampler="gp", seed=1, n_startup_trials=1,
                               points_to_evaluate=[{"x": 0.2}, {"x": 0.8}])

    def constraints(result):
        return [result["loss"] - 0.5] if result["loss"] < 0.5 else [result["loss"] - 0.5, -1.0]

    with pytest.raises(ts.ConfigError, match=r"constraints\(trial_00002's result 1\) returned 2 values; "
                                             r"the earlier results had 1"):
        ts.run(train, {"x": ts.uniform(0, 1)}, metric="loss", mode="min", num_samples=6, max_concurrent=1,
               searcher=searcher, constraints=constraints, name="count", verbose=0)
    stored = _no_trial_left_running("count")
    assert [t.config["x"] for t in stored.trials] == [0.2, 0.8]


@pytest.mark.parametrize("results, told", [
    ([{"constraint/0": -0.1}, {"constraint/0": math.nan}], [{"constraint/0": -0.1}, {"constraint/0": math.inf}]),
    ([{"constraint/0": -0.1}, {"constraint/0": 0.5, "constraint/1": 1.0},
      {"constraint/0": -0.5, "constraint/1": -2.0, "constraint/2": -1.0}],
     [{"constraint/0": -0.1}, {"constraint/0": 1.5}, {"constraint/0": -0.5}]),
    ([{"constraint/0": -0.1, "constraint/1": -1.0}, {"constraint/0": 0.5}],
     [{"constraint/0": -0.1, "constraint/1": -1.0}, {"constraint/0": 0.5, "constraint/1": math.inf}]),
], ids=["nan", "more", "fewer"])
def test_the_gp_sampler_is_always_told_as_many_constraint_values(results, told):
    """Stored results (a resume replays them) that changed their number of values, or hold NaN: the sampler
    is told the first result's number of values (missing ones +inf, the extra ones as one with their feasibility
    and violation) and +inf for NaN, and suggests on."""
    pytest.importorskip("optuna")
    pytest.importorskip("torch")
    searcher = ts.OptunaSearch(sampler="gp", seed=0, n_startup_trials=1)
    searcher.use_constraints()
    searcher.setup({"x": ts.uniform(0, 1)}, "loss", "min", 10)
    for i, constraints in enumerate(results):
        assert isinstance(searcher.suggest(i), dict)
        searcher.observe(i, {"loss": float(i), **constraints}, True)
    assert isinstance(searcher.suggest(len(results)), dict)
    assert [t.constraints for t in searcher.study.trials if t.state.is_finished()] == told


def test_a_warm_start_from_an_experiment_without_constraints_reaches_the_gp_sampler(results_dir):
    """Earlier trials without constraint values are told as Optuna's TPE and NSGA-II take a trial without
    constraints (feasible): the GP sampler needs every trial to have the same constraints."""
    pytest.importorskip("optuna")
    pytest.importorskip("torch")
    ts.run(train, {"x": ts.uniform(0, 1)}, metric="loss", mode="min", num_samples=3, name="earlier", verbose=0)
    searcher = ts.OptunaSearch(sampler="gp", seed=0, n_startup_trials=1)
    result = ts.run(train, {"x": ts.uniform(0, 1)}, metric="loss", mode="min", num_samples=3, max_concurrent=1,
                    searcher=searcher, warm_start="earlier", constraints=lambda r: [r["loss"] - 0.5], verbose=0)
    assert result.status == "finished" and len(result.trials) == 3
    told = [t.constraints for t in searcher.study.trials if t.state.is_finished()]
    assert told[:3] == [{"constraint/0": 0.0}] * 3 and len(told) == 6
