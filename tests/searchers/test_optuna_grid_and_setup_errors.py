"""OptunaSearch: a sampler that stops the study (GridSampler) ends the search; errors that a run would meet in its
first trials (a define-by-run key with '/', a point outside a choice) are ConfigErrors at setup, before the
experiment folder exists."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

optuna = pytest.importorskip("optuna")

import tunesmith as ts  # noqa: E402
from tunesmith._errors import ConfigError  # noqa: E402
from tunesmith.searchers._base import FINISHED, UNLIMITED  # noqa: E402
from tunesmith.searchers.optuna import OptunaSearch  # noqa: E402
from tunesmith.space import choice, randint, uniform  # noqa: E402

GRID_SPACE: dict[str, Any] = {"x": choice([0.1, 0.9]), "n": randint(0, 2)}
GRID = {"x": [0.1, 0.9], "n": [0, 1]}
GRID_POINTS = [{"n": n, "x": x} for x in GRID["x"] for n in GRID["n"]]


def _grid_searcher() -> OptunaSearch:
    return OptunaSearch(sampler=optuna.samplers.GridSampler(GRID, seed=0))


def _sorted(configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(configs, key=lambda c: json.dumps(c, sort_keys=True))


# -- a sampler that stops the study --------------------------------------------------------------------------
@pytest.mark.parametrize("num_samples", [4, 6, UNLIMITED])
def test_grid_sampler_says_finished_once_its_grid_is_used_up(num_samples: int) -> None:
    """GridSampler calls study.stop() in the tell of the grid's last point: the searcher has no more trials."""
    searcher = _grid_searcher()
    searcher.setup(GRID_SPACE, "loss", "min", num_samples)
    configs = []
    for trial_id in range(10):
        config = searcher.suggest(trial_id)
        if config is FINISHED:
            break
        assert isinstance(config, dict)
        configs.append(config)
        searcher.observe(trial_id, {"loss": config["x"] + config["n"]}, True)
    assert _sorted(configs) == _sorted(GRID_POINTS)
    assert searcher.suggest(11) is FINISHED
    assert [t.state for t in searcher.study.trials] == [optuna.trial.TrialState.COMPLETE] * 4


def _grid_train(config: dict[str, Any]) -> None:
    ts.report({"loss": config["x"] + config["n"]})


@pytest.mark.parametrize(("num_samples", "max_concurrent"), [(4, 1), (6, 1), (6, 2)])
def test_run_with_a_grid_sampler_finishes_when_the_grid_is_used_up(num_samples: int, max_concurrent: int,
                                                                    results_dir: Path) -> None:
    """The run ends normally, every grid point run (two at a time, Optuna may give a still running point to a
    trial asked before the grid's last one ended: a repeat, as it does in a distributed study)."""
    result = ts.run(_grid_train, GRID_SPACE, metric="loss", mode="min", num_samples=num_samples, verbose=0,
                    max_concurrent=max_concurrent, name="grid", searcher=_grid_searcher())
    assert ts.load("grid").status == "finished" and not result.errors
    configs = [t.config for t in result.trials]
    assert _sorted([dict(c) for c in {json.dumps(c, sort_keys=True): c for c in configs}.values()]) == \
        _sorted(GRID_POINTS)
    assert len(configs) == 4 if max_concurrent == 1 else 4 <= len(configs) <= 5
    assert result.best.config == {"x": 0.1, "n": 0}


# -- define-by-run: a key the store cannot flatten -----------------------------------------------------------
def _slashed(trial: Any) -> None:
    trial.suggest_float("opt/lr", 1e-4, 1e-1, log=True)


def _fixed(trial: Any) -> None:
    trial.suggest_float("opt_lr", 1e-4, 1e-1, log=True)


def _constant_slashed(trial: Any) -> dict[str, Any]:
    """The returned constants hold a nested key with '/'."""
    trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    return {"model": {"a/b": 1}}


def test_define_by_run_key_with_a_slash_is_refused_at_setup() -> None:
    """The check a run makes on every suggested config (check_storable), made at setup on the probe's config."""
    with pytest.raises(ConfigError, match=r'^config\["opt/lr"\]: a key may not contain \'/\''):
        OptunaSearch(space=_slashed, seed=0).setup({}, "loss", "min", 3)
    with pytest.raises(ConfigError, match=r'^config\["model"\]\["a/b"\]: a key may not contain'):
        OptunaSearch(space=_constant_slashed, seed=0).setup({}, "loss", "min", 3)


def test_define_by_run_point_reaching_a_branch_with_a_slash_is_refused_at_setup() -> None:
    """Each point to evaluate is probed too: the branch it takes is checked as the first trials would be."""
    def space(trial: Any) -> None:
        if trial.suggest_float("x", 0.0, 1.0) == 1.0:  # a branch only a point reaches, not a random draw
            trial.suggest_float("edge/y", 0.0, 1.0)

    OptunaSearch(space=space, seed=0, points_to_evaluate=[{"x": 0.5}]).setup({}, "loss", "min", 3)
    with pytest.raises(ConfigError, match=r'^points_to_evaluate\[1\]: config\["edge/y"\]: a key may not contain'):
        OptunaSearch(space=space, seed=0, points_to_evaluate=[{"x": 0.5}, {"x": 1.0}]).setup({}, "loss", "min", 3)


def _lr_train(config: dict[str, Any]) -> None:
    ts.report({"loss": next(v for k, v in config.items() if k.endswith("lr"))})


def test_run_refuses_a_define_by_run_key_with_a_slash_before_the_experiment_folder_exists(results_dir: Path) -> None:
    with pytest.raises(ConfigError, match=r'config\["opt/lr"\]: a key may not contain'):
        ts.run(_lr_train, space=None, searcher=OptunaSearch(space=_slashed, seed=0), metric="loss", mode="min",
               num_samples=2, verbose=0, name="slash")
    assert not (results_dir / "slash").exists()
    result = ts.run(_lr_train, space=None, searcher=OptunaSearch(space=_fixed, seed=0), metric="loss", mode="min",
                    num_samples=2, verbose=0, name="slash")  # the name is free for the fixed function
    assert ts.load("slash").status == "finished" and len(result.trials) == 2


# -- points to evaluate outside a choice ---------------------------------------------------------------------
def _act_train(config: dict[str, Any]) -> None:
    ts.report({"loss": config["x"]})


@pytest.mark.filterwarnings("ignore:Fixed parameter x with value 5.0 is out of range")  # Optuna's, for x=5.0
def test_run_refuses_a_point_outside_a_choice_before_the_experiment_folder_exists(results_dir: Path) -> None:
    """Optuna cannot hold a categorical value outside its choices: OptunaSearch names the point at setup (where
    Random, QuasiRandom and BOHB run it as given)."""
    space = {"x": uniform(0, 1), "act": choice(["relu", "tanh"])}
    searcher = OptunaSearch(seed=0, points_to_evaluate=[{"x": 5.0, "act": "gelu"}])
    with pytest.raises(ConfigError, match=r'^points_to_evaluate\[0\]\["act"\]: \'gelu\' is none of the options'):
        ts.run(_act_train, space, metric="loss", mode="min", num_samples=2, verbose=0, name="pts", searcher=searcher)
    assert not (results_dir / "pts").exists()
    # a number outside its bounds is taken as given, as by the other searchers
    result = ts.run(_act_train, space, metric="loss", mode="min", num_samples=2, verbose=0, name="pts",
                    searcher=OptunaSearch(seed=0, points_to_evaluate=[{"x": 5.0, "act": "tanh"}]))
    assert min(result.trials, key=lambda t: t.id).config == {"x": 5.0, "act": "tanh"}


_NUMBERS_SPACE: dict[str, Any] = {"x": uniform(0, 1), "n": randint(0, 5), "q": ts.quniform(0, 1, 0.25),
                                   "l": ts.loguniform(1e-3, 1), "ql": ts.qloguniform(1, 100, 5), "k": 3,
                                   "d": {"y": uniform(0, 1)}}


_NAN = r"expected a number Optuna can hold \(not NaN\); got nan"


@pytest.mark.parametrize(("point", "message"), [
    pytest.param({"x": float("nan")}, _NAN, id="nan-uniform"),
    pytest.param({"q": float("nan")}, _NAN, id="nan-quniform"),
    pytest.param({"n": float("nan")}, _NAN, id="nan-randint"),
    pytest.param({"n": float("inf")}, r"expected an integer \(randint\); got inf", id="inf-randint"),
    pytest.param({"n": 2.5}, r"expected an integer \(randint\); got 2.5", id="2.5-randint"),
    pytest.param({"l": 0.0}, r"expected a positive number \(loguniform is on a log scale\); got 0.0",
                 id="0-loguniform"),
    pytest.param({"ql": -1.0}, r"expected a positive number \(qloguniform is on a log scale\); got -1.0",
                 id="qloguniform"),
    pytest.param({"k": 5}, r"5 is not the space's constant 3", id="constant"),
    pytest.param({"d": 5}, r"5 is not the space's constant \{'y': Uniform", id="nested-dict"),
])
def test_run_refuses_a_point_value_optuna_cannot_hold_before_the_experiment_folder_exists(
        results_dir: Path, point: dict[str, Any], message: str) -> None:
    """Optuna makes the config from its parameters: a NaN (no Optuna distribution holds one), a non-integer for an
    integer domain, a value a log-scaled distribution cannot hold, or another value for a constant of the space
    could not be run as given. Such a point is named at setup, not a raw ValueError at the first suggestion (NaN,
    inf, 0 on a log scale) nor a config that silently differs from it (2.5 run as 2, a constant's value dropped)."""
    match = rf'^points_to_evaluate\[0\]\["{next(iter(point))}"\]: {message}'
    searcher = OptunaSearch(seed=0, points_to_evaluate=[point])
    with pytest.raises(ConfigError, match=match):
        ts.run(_act_train, _NUMBERS_SPACE, metric="loss", mode="min", num_samples=2, verbose=0, name="pts",
               searcher=searcher)
    assert not (results_dir / "pts").exists()


def test_a_point_takes_an_integral_float_for_an_integer_domain_and_the_space_constant() -> None:
    """3.0 is the integer 3; 0.33 for qloguniform(1, 100, 5) (below q/2) is 5, as the domain rounds a draw."""
    searcher = OptunaSearch(seed=0, points_to_evaluate=[{"n": 3.0, "k": 3, "d": {"y": 0.5}, "ql": 0.33}])
    searcher.setup(_NUMBERS_SPACE, "loss", "min", 2)
    config = searcher.suggest(1)
    assert isinstance(config, dict)
    assert (config["n"], config["k"], config["d"], config["ql"]) == (3, 3, {"y": 0.5}, 5)


def _act_space(trial: Any) -> None:
    trial.suggest_float("x", 0, 1)
    trial.suggest_categorical("act", ["relu", "tanh"])


def test_define_by_run_point_outside_a_choice_is_refused_before_the_experiment_folder_exists(
        results_dir: Path) -> None:
    searcher = OptunaSearch(space=_act_space, seed=0, points_to_evaluate=[{"x": 0.5, "act": "gelu"}])
    with pytest.raises(ConfigError, match=r"^points_to_evaluate\[0\]: .*'gelu' not in \('relu', 'tanh'\)"):
        ts.run(_act_train, space=None, metric="loss", mode="min", num_samples=2, verbose=0, name="pts",
               searcher=searcher)
    assert not (results_dir / "pts").exists()


def test_a_point_keeps_its_option_where_a_choice_holds_1_and_1_0() -> None:
    """1 and 1.0 are one value to ``==``, but two options of ``choice([1, 1.0, True])``: a point (and a replayed
    config) is the option of its own type, not the first equal one."""
    points = [{"x": 1.0}, {"x": 1}, {"x": True}]
    searcher = OptunaSearch(seed=0, points_to_evaluate=points)
    searcher.setup({"x": choice([1, 1.0, True])}, "loss", "min", 3)
    given = [searcher.suggest(i) for i in (1, 2, 3)]
    assert [(c["x"], type(c["x"])) for c in given] == [(1.0, float), (1, int), (True, bool)]
    replayed = OptunaSearch(seed=0)
    replayed.setup({"x": choice([1, 1.0, True])}, "loss", "min", 3)
    replayed.restore_suggestion(1, {"x": 1.0})
    assert replayed._study.trials[0].params == {"x": 1}  # the option's index: 1.0 is the second


# -- a NaN option ----------------------------------------------------------------------------------------------
def _nan_train(config: dict[str, Any]) -> None:
    ts.report({"loss": 1.0 if config["c"] == 1 else 2.0})


def test_an_experiment_whose_choice_holds_nan_resumes_and_takes_a_nan_point(results_dir: Path) -> None:
    """``choice([nan, 1])``: a stored config holding the NaN option (or a point giving it) is that option, though
    NaN != NaN; the resume's replay and the point were refused ("nan is none of the options [nan, 1]")."""
    space = {"c": choice([float("nan"), 1])}
    first = ts.run(_nan_train, space, metric="loss", mode="min", num_samples=2, verbose=0, name="nan",
                   searcher=OptunaSearch(seed=0, points_to_evaluate=[{"c": float("nan")}]))
    assert math.isnan(min(first.trials, key=lambda t: t.id).config["c"])
    again = ts.run(_nan_train, space, metric="loss", mode="min", num_samples=3, verbose=0, name="nan", resume=True,
                   searcher=OptunaSearch(seed=0, points_to_evaluate=[{"c": float("nan")}]))
    assert len(again.trials) == 3 and all(t.status.value == "TERMINATED" for t in again.trials)
