"""run()'s algorithm controls end to end: warm start, constraints, resources that depend on the config."""

from __future__ import annotations

import logging

import pytest
from click.testing import CliRunner

import tunesmith as ts
from tunesmith.cli import cli
from tunesmith.executors.local import LocalBackend
from tunesmith.plots.report import summary


def quadratic(config):
    ts.report({"loss": (config["x"] - 0.3) ** 2, "x": config["x"], "cpus": ts.get_resources()["cpu"]})


# -- warm start (issue 18 §2.5) ----------------------------------------------------------------------------
def test_warm_start_hands_earlier_finished_trials_to_a_model_based_searcher(results_dir, caplog):
    pytest.importorskip("optuna")
    ts.run(quadratic, {"x": ts.uniform(0, 1)}, metric="loss", mode="min", num_samples=12, seed=0,
           name="earlier", verbose=0)
    searcher = ts.OptunaSearch(seed=0, n_startup_trials=5)
    with caplog.at_level(logging.INFO, logger="tunesmith"):
        ts.run(quadratic, {"x": ts.uniform(0, 1)}, metric="loss", mode="min", num_samples=4, verbose=0,
               searcher=searcher, warm_start="earlier")
    assert len(searcher.study.trials) == 12 + 4
    assert "OptunaSearch observed 12 of 12 finished earlier trials (0 skipped" in caplog.text
    # a narrower space: the earlier configs outside it are skipped, with a count
    earlier = ts.load("earlier")
    inside = sum(0.5 <= t.config["x"] <= 1 for t in earlier.trials)
    caplog.clear()
    searcher = ts.OptunaSearch(seed=0)
    with caplog.at_level(logging.INFO, logger="tunesmith"):
        ts.run(quadratic, {"x": ts.uniform(0.5, 1)}, metric="loss", mode="min", num_samples=1, verbose=0,
               searcher=searcher, warm_start=[str(results_dir / "earlier")])
    assert f"observed {inside} of 12 finished earlier trials ({12 - inside} skipped" in caplog.text
    assert len(searcher.study.trials) == inside + 1


def test_random_ignores_warm_start_and_says_so(results_dir, caplog):
    ts.run(quadratic, {"x": ts.uniform(0, 1)}, num_samples=2, name="earlier", verbose=0)
    with caplog.at_level(logging.WARNING, logger="tunesmith"):
        ts.run(quadratic, {"x": ts.uniform(0, 1)}, num_samples=1, verbose=0, warm_start="earlier")
    assert "Random took in none of the 2 finished earlier trials" in caplog.text
    with pytest.raises(ts.ConfigError, match="warm_start: 'nope' is no experiment"):
        ts.run(quadratic, {"x": ts.uniform(0, 1)}, verbose=0, warm_start="nope")


# -- constraints (issue 18 §2.6) ---------------------------------------------------------------------------
def test_constraints_are_stored_and_best_and_the_front_are_feasible(results_dir):
    # lower loss for larger x, but only x <= 0.5 is feasible
    def train(config):
        ts.report({"loss": -config["x"], "cost": config["x"], "x": config["x"]})

    result = ts.run(train, {"x": ts.grid([0.2, 0.4, 0.6, 0.9])}, metric="loss", mode="min", verbose=0,
                    constraints=lambda r: [r["x"] - 0.5, -1.0], name="c")
    assert result.best.config["x"] == 0.4
    history = result.history(result.best.id)
    assert history[-1]["constraint/0"] == pytest.approx(-0.1) and history[-1]["constraint/1"] == -1.0
    assert [t.config["x"] for t in result.pareto_front(["loss", "cost"], ["min", "min"])] == [0.2, 0.4]
    # shown: `tunesmith show` has a feasible column, the report's summary a count
    out = CliRunner().invoke(cli, ["show", "c"], catch_exceptions=False).output
    assert "feasible" in out and "constraint/0" in out
    assert ("feasible trials", "2 of 4 (every constraint/<i> <= 0 in the last result)") in summary(result)


def test_constraints_reach_optuna_and_a_broken_function_is_a_config_error(results_dir):
    pytest.importorskip("optuna")
    searcher = ts.OptunaSearch(seed=0)
    ts.run(quadratic, {"x": ts.uniform(0, 1)}, metric="loss", mode="min", num_samples=3, verbose=0,
           searcher=searcher, constraints=lambda r: [r["x"] - 0.5])
    trial = searcher.study.trials[0]
    assert trial.constraints and list(trial.constraints.values())[0] == pytest.approx(trial.params["x"] - 0.5)
    with pytest.raises(ts.ConfigError, match=r"constraints\(trial_00001's result 1\) raised KeyError"):
        ts.run(quadratic, {"x": 0.1}, verbose=0, constraints=lambda r: [r["nope"]])
    with pytest.raises(ts.ConfigError, match="constraints must be a function"):
        ts.run(quadratic, {"x": 0.1}, verbose=0, constraints=[1.0])


# -- resources per config (issue 18 §2.7) ------------------------------------------------------------------
def test_resources_can_depend_on_the_config(results_dir):
    result = ts.run(quadratic, {"x": ts.grid([0.1, 0.2, 0.3])}, verbose=0,
                    backend=LocalBackend(total_resources={"cpu": 4}),
                    resources=lambda config: {"cpu": 1 if config["x"] < 0.25 else 3})
    by_x = {t.config["x"]: t for t in result.trials}
    assert [by_x[x].resources["cpu"] for x in (0.1, 0.2, 0.3)] == [1.0, 1.0, 3.0]
    assert [by_x[x].metrics["cpus"] for x in (0.1, 0.2, 0.3)] == [1.0, 1.0, 3.0]  # what the trial was given
    assert result.meta["spec"]["resources"]["callable"].endswith("<lambda>")


def test_a_config_asking_for_more_than_there_is_is_a_config_error_naming_it(results_dir):
    with pytest.raises(ts.ConfigError, match=r"resources\(config\) for trial 2 \(config \{'x': 0.9\}\).*"
                                             r"more than LocalBackend\(total_resources=\) gives"):
        ts.run(quadratic, {"x": ts.grid([0.1, 0.9])}, verbose=0, max_concurrent=1,
               backend=LocalBackend(total_resources={"cpu": 2}),
               resources=lambda config: {"cpu": 1 if config["x"] < 0.5 else 8})
