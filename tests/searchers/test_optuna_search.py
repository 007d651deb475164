"""Tests for OptunaSearch: space translation, ask/tell, conditional spaces, multi-objective, resume."""

from __future__ import annotations

import enum
import json
import math
import sys
from typing import Any

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

import tunesmith as ts  # noqa: E402
from tunesmith._errors import ConfigError  # noqa: E402
from tunesmith._optional import MissingDependency  # noqa: E402
from tunesmith.searchers._base import FINISHED, Searcher  # noqa: E402
from tunesmith.searchers.optuna import OptunaSearch  # noqa: E402
from tunesmith.space import (  # noqa: E402
    choice,
    grid,
    lograndint,
    loguniform,
    normal,
    qloguniform,
    qnormal,
    quniform,
    randint,
    sample_from,
    uniform,
)

SPACE: dict[str, Any] = {
    "lr": loguniform(1e-4, 1e-1),
    "dropout": uniform(0.0, 0.5),
    "q": quniform(0.1, 1.0, 0.1),
    "ql": qloguniform(1, 100, 5),
    "layers": randint(1, 4),
    "width": lograndint(8, 512),
    "act": choice(["relu", "tanh"]),
    "shape": choice([[1, 2], (3, 4)]),
    "batch": grid([16, 32]),
    "nested": {"wd": uniform(0, 1), "name": "fixed"},
}

CONDITIONAL: dict[str, Any] = {
    "x": uniform(-1, 1),
    "optim": choice([
        {"type": "sgd", "lr": loguniform(1e-3, 1), "momentum": uniform(0, 0.99)},
        {"type": "adam", "lr": loguniform(1e-4, 1e-1)},
        "none",
    ]),
}


def _objective(config: dict[str, Any]) -> float:
    value = (config.get("x", config.get("dropout", 0.0)) - 0.3) ** 2
    optim = config.get("optim")
    if isinstance(optim, dict):
        value += abs(math.log10(optim["lr"]) + 2) * 0.1
    return value


def _searcher(space: dict[str, Any], num_samples: int = 20, **kwargs: Any) -> OptunaSearch:
    kwargs.setdefault("seed", 0)
    searcher = OptunaSearch(**kwargs)
    searcher.setup(space, "loss", "min", num_samples)
    return searcher


def _drive(searcher: OptunaSearch, n: int, start: int = 0) -> list[dict[str, Any]]:
    configs = []
    for trial_id in range(start, start + n):
        config = searcher.suggest(trial_id)
        assert isinstance(config, dict)
        configs.append(config)
        searcher.observe(trial_id, {"loss": _objective(config), "training_iteration": 1}, True)
    return configs


def _inside(config: dict[str, Any]) -> None:
    assert 1e-4 <= config["lr"] <= 1e-1
    assert 0.0 <= config["dropout"] <= 0.5
    assert config["q"] in [round(0.1 * k, 10) for k in range(1, 11)]
    assert config["ql"] in [5.0 * k for k in range(1, 21)]
    assert type(config["layers"]) is int and 1 <= config["layers"] < 4
    assert type(config["width"]) is int and 8 <= config["width"] < 512
    assert config["act"] in ("relu", "tanh")
    assert config["shape"] in ([1, 2], [3, 4])  # a tuple reaches the config as the list the store holds
    assert config["batch"] in (16, 32)
    assert 0 <= config["nested"]["wd"] <= 1 and config["nested"]["name"] == "fixed"


def test_is_a_searcher_and_stores_constructor_args() -> None:
    searcher = OptunaSearch(sampler="random", seed=3, n_startup_trials=None, points_to_evaluate=[{"x": 1}])
    assert isinstance(searcher, Searcher)
    spec = searcher.to_spec()
    assert spec == {"type": "OptunaSearch", "sampler": "random", "seed": 3, "n_startup_trials": None,
                    "points_to_evaluate": [{"x": 1}]}
    json.dumps(spec)
    assert searcher.study is None


@pytest.mark.parametrize("sampler", ["tpe", "random", "nsgaii", "cmaes", "gp"])
def test_configs_stay_inside_the_space(sampler: str) -> None:
    if sampler == "cmaes":
        pytest.importorskip("cmaes")
    if sampler == "gp":
        pytest.importorskip("torch")
    startup = {"n_startup_trials": 3} if sampler in ("tpe", "cmaes", "gp") else {}
    n = 5 if sampler in ("gp", "cmaes") else 15  # GP fits are slow; a few model-based asks suffice
    searcher = _searcher(SPACE, num_samples=n, sampler=sampler, **startup)
    configs = []
    for trial_id in range(n):
        config = searcher.suggest(trial_id)
        assert isinstance(config, dict)
        _inside(config)
        configs.append(config)
        searcher.observe(trial_id, {"loss": config["dropout"] + config["lr"], "training_iteration": 1}, True)
    assert searcher.suggest(99) is FINISHED
    if sampler in ("random", "nsgaii"):  # model-based ones may well repeat the best value of a bound
        assert len({c["dropout"] for c in configs}) == len(configs)


def test_space_maps_to_optuna_distributions() -> None:
    searcher = _searcher(SPACE, sampler="random")
    searcher.suggest(0)
    dists = searcher.study.trials[0].distributions
    assert dists["lr"] == FloatDistribution(1e-4, 1e-1, log=True)
    assert dists["dropout"] == FloatDistribution(0.0, 0.5)
    assert dists["q"] == FloatDistribution(0.1, 1.0, step=0.1)
    assert dists["ql"] == IntDistribution(1, 20, log=True)  # multiples of q=5
    assert dists["layers"] == IntDistribution(1, 3)  # randint's high is excluded
    assert dists["width"] == IntDistribution(8, 511, log=True)
    assert dists["act"] == CategoricalDistribution(["relu", "tanh"])
    assert dists["shape"] == CategoricalDistribution([0, 1])  # not JSON scalars: indices
    assert dists["batch"] == CategoricalDistribution([16, 32])  # grid: searched, not crossed
    assert dists["nested/wd"] == FloatDistribution(0.0, 1.0)
    assert "nested/name" not in dists


def test_quniform_values_are_exact_multiples() -> None:
    searcher = _searcher({"q": quniform(0.1, 1.0, 0.1)}, num_samples=30, sampler="random")
    values = {searcher.suggest(i)["q"] for i in range(30)}  # type: ignore[index]
    assert values <= {0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0}  # no 0.30000000000000004


def test_grid_is_searched_not_crossed() -> None:
    searcher = _searcher({"g": grid([1, 2, 3]), "x": uniform(0, 1)}, num_samples=4)
    configs = _drive(searcher, 4)
    assert searcher.suggest(4) is FINISHED  # num_samples trials, not 3 x num_samples
    assert all(c["g"] in (1, 2, 3) for c in configs)


def test_tpe_learns_a_quadratic() -> None:
    searcher = _searcher({"x": uniform(-1, 1)}, num_samples=40, n_startup_trials=10)
    configs = _drive(searcher, 40)
    near = sum(abs(c["x"] - 0.3) < 0.15 for c in configs[10:])
    assert near >= 9  # of 30 model-based suggestions; random search would put about 4.5 there
    assert min(abs(c["x"] - 0.3) for c in configs) < 0.02


def test_intermediate_results_are_reported_and_final_told() -> None:
    searcher = _searcher({"x": uniform(0, 1)})
    searcher.suggest(0)
    for step, loss in [(1, 0.9), (2, 0.5), (2, 0.4), (3, 0.3)]:  # step 2 again (a restart): ignored
        searcher.observe(0, {"loss": loss, "training_iteration": step}, False)
    searcher.observe(0, {"loss": 0.3, "training_iteration": 3}, True)
    trial = searcher.study.trials[0]
    assert trial.intermediate_values == {1: 0.9, 2: 0.5, 3: 0.3}
    assert trial.state is TrialState.COMPLETE and trial.value == 0.3
    searcher.observe(0, {"loss": 0.1}, True)  # told already: ignored
    searcher.observe(7, {"loss": 0.1}, True)  # never suggested: ignored


@pytest.mark.parametrize("final", [{}, {"loss": float("nan")}, {"other": 1.0}, {"loss": "bad"}])
def test_nothing_usable_is_told_as_failed(final: dict[str, Any]) -> None:
    searcher = _searcher({"x": uniform(0, 1)})
    searcher.suggest(0)
    searcher.observe(0, {"loss": float("nan"), "training_iteration": 1}, False)
    searcher.observe(0, final, True)
    trial = searcher.study.trials[0]
    assert trial.state is TrialState.FAIL
    assert trial.intermediate_values == {}
    assert isinstance(searcher.suggest(1), dict)  # and the search goes on


def test_maximize() -> None:
    searcher = OptunaSearch(seed=0)
    searcher.setup({"x": uniform(0, 1)}, "acc", "max", 3)
    searcher.suggest(0)
    assert searcher.study.direction == optuna.study.StudyDirection.MAXIMIZE


def test_num_samples_and_unlimited() -> None:
    searcher = _searcher({"x": uniform(0, 1)}, num_samples=2, sampler="random")
    assert isinstance(searcher.suggest(0), dict) and isinstance(searcher.suggest(1), dict)
    assert searcher.suggest(2) is FINISHED and searcher.suggest(3) is FINISHED
    unlimited = _searcher({"x": uniform(0, 1)}, num_samples=-1, sampler="random")
    assert all(isinstance(unlimited.suggest(i), dict) for i in range(50))


def test_optuna_logging_is_quiet(capsys: pytest.CaptureFixture[str]) -> None:
    _drive(_searcher({"x": uniform(0, 1)}, num_samples=3), 3)
    captured = capsys.readouterr()
    assert "finished with value" not in captured.err + captured.out


# ----------------------------------------------------------------------------------- conditional


def test_conditional_space_round_trips() -> None:
    searcher = _searcher(CONDITIONAL, num_samples=30, sampler="random")
    configs = _drive(searcher, 30)
    kinds = set()
    for config, trial in zip(configs, searcher.study.trials, strict=True):
        optim = config["optim"]
        index = trial.params["optim"]
        if index == 2:
            assert optim == "none"
            assert set(trial.params) == {"x", "optim"}
        else:
            expected = {0: {"type", "lr", "momentum"}, 1: {"type", "lr"}}[index]
            assert isinstance(optim, dict) and set(optim) == expected  # only the chosen branch's keys
            assert optim["type"] == ("sgd", "adam")[index]
            branch = {k for k in trial.params if k.startswith(f"optim/{index}/")}
            assert set(trial.params) == {"x", "optim", *branch}  # Optuna sees only the chosen branch
            assert trial.params[f"optim/{index}/lr"] == optim["lr"]
            assert trial.distributions[f"optim/{index}/lr"].log
        kinds.add(index)
    assert kinds == {0, 1, 2}


def test_conditional_tpe_uses_grouped_multivariate_sampling() -> None:
    searcher = _searcher(CONDITIONAL, num_samples=25, n_startup_trials=5)
    _drive(searcher, 25)
    sampler = searcher.study.sampler
    assert isinstance(sampler, optuna.samplers.TPESampler)
    assert sampler._group and sampler._multivariate  # private, but the point of the test


def test_nested_choices_and_domain_options() -> None:
    space = {"a": choice([uniform(0, 1), {"b": choice([{"c": randint(0, 3)}, "leaf"])}, 7])}
    searcher = _searcher(space, num_samples=40, sampler="random")
    configs = _drive(searcher, 40)
    seen = set()
    for config, trial in zip(configs, searcher.study.trials, strict=True):
        a = config["a"]
        if isinstance(a, float):
            seen.add("float")
            assert set(trial.params) == {"a", "a/0"} and 0 <= a <= 1
        elif a == 7:
            seen.add("seven")
            assert set(trial.params) == {"a"}
        elif a["b"] == "leaf":
            seen.add("leaf")
            assert set(trial.params) == {"a", "a/1/b"}
        else:
            seen.add("c")
            assert set(trial.params) == {"a", "a/1/b", "a/1/b/0/c"} and a["b"]["c"] in (0, 1, 2)
    assert seen == {"float", "seven", "leaf", "c"}


# --------------------------------------------------------------------------------- multi-objective


def test_multi_objective_tells_values_and_finds_the_front() -> None:
    searcher = OptunaSearch(seed=0)
    searcher.setup({"x": uniform(0, 1)}, ["loss", "latency"], ["min", "min"], 12)
    assert [d.name for d in searcher.study.directions] == ["MINIMIZE", "MINIMIZE"]
    for trial_id in range(12):
        config = searcher.suggest(trial_id)
        assert isinstance(config, dict)
        x = config["x"]
        searcher.observe(trial_id, {"loss": x, "latency": 1 - x, "training_iteration": 1}, False)
        searcher.observe(trial_id, {"loss": x, "latency": 1 - x, "training_iteration": 1}, True)
    trials = searcher.study.trials
    assert all(t.values == [t.params["x"], 1 - t.params["x"]] for t in trials)
    assert all(t.intermediate_values == {} for t in trials)  # Optuna cannot report several objectives
    assert len(searcher.study.best_trials) == 12  # x against 1 - x: every point is on the front


def test_multi_objective_with_a_missing_metric_fails_the_trial() -> None:
    searcher = OptunaSearch(seed=0, sampler="random")
    searcher.setup({"x": uniform(0, 1)}, ["loss", "latency"], ["min", "max"], 3)
    searcher.suggest(0)
    searcher.observe(0, {"loss": 1.0}, True)
    assert searcher.study.trials[0].state is TrialState.FAIL


# ------------------------------------------------------------------------------- points & replay


def test_points_to_evaluate_come_first_and_partial_ones_are_completed() -> None:
    points = [{"x": 0.25, "optim": {"type": "adam", "lr": 0.01}}, {"x": -0.5}, {"optim": "none"}]
    searcher = _searcher(CONDITIONAL, num_samples=5, points_to_evaluate=points)
    configs = _drive(searcher, 5)
    assert configs[0] == {"x": 0.25, "optim": {"type": "adam", "lr": 0.01}}
    assert configs[1]["x"] == -0.5
    assert configs[2]["optim"] == "none" and -1 <= configs[2]["x"] <= 1
    assert searcher.study.trials[0].params == {"x": 0.25, "optim": 1, "optim/1/lr": 0.01}


def _log_run(make: Any, space: dict[str, Any], crash_at: int, concurrent: int = 3
             ) -> tuple[OptunaSearch, dict[int, dict[str, Any]], list[tuple[int, dict[str, Any], bool]]]:
    """An uninterrupted run up to ``crash_at`` suggestions, several trials running at once, each
    reporting 3 intermediate results; returns the searcher and what the store would hold."""
    searcher = make()
    searcher.setup(space, "loss", "min", 100)
    configs: dict[int, dict[str, Any]] = {}
    observed: list[tuple[int, dict[str, Any], bool]] = []
    running: list[int] = []
    next_id = 0
    while next_id < crash_at:
        while len(running) < concurrent and next_id < crash_at:
            configs[next_id] = searcher.suggest(next_id)  # type: ignore[assignment]
            running.append(next_id)
            next_id += 1
        trial_id = running.pop(0)
        for step in (1, 2, 3):
            result = {"loss": _objective(configs[trial_id]) + 1 / step, "training_iteration": step}
            searcher.observe(trial_id, result, False)
            observed.append((trial_id, result, False))
        searcher.observe(trial_id, result, True)
        observed.append((trial_id, result, True))
    return searcher, configs, observed


def _replay(make: Any, space: dict[str, Any], configs: dict[int, dict[str, Any]],
            observed: list[tuple[int, dict[str, Any], bool]]) -> OptunaSearch:
    """What the controller does on resume: setup, then per trial in id order its suggestion and its
    stored observations."""
    searcher = make()
    searcher.setup(space, "loss", "min", 100)
    for trial_id in sorted(configs):
        searcher.restore_suggestion(trial_id, json.loads(json.dumps(configs[trial_id])))  # via the store
        for tid, result, final in observed:
            if tid == trial_id:
                searcher.observe(tid, result, final)
    return searcher


@pytest.mark.parametrize("space", [
    {"x": uniform(-1, 1), "lr": loguniform(1e-4, 1), "k": randint(0, 10), "c": choice(["a", "b", "c"]),
     "q": quniform(0.1, 1, 0.1)},
    CONDITIONAL,
], ids=["flat", "conditional"])
@pytest.mark.parametrize("crash_at", [4, 13])
def test_resume_by_replay_gives_the_same_next_suggestions_tpe(space: dict[str, Any], crash_at: int) -> None:
    def make() -> OptunaSearch:
        return OptunaSearch(seed=11, n_startup_trials=5, points_to_evaluate=[{"x": 0.5}])

    uninterrupted, configs, observed = _log_run(make, space, crash_at)
    resumed = _replay(make, space, configs, observed)
    assert len(resumed.study.trials) == len(uninterrupted.study.trials)
    # Trials still running at the interruption are running in the replayed study too.
    assert ([t.state for t in resumed.study.trials] == [t.state for t in uninterrupted.study.trials])
    ahead = [uninterrupted.suggest(crash_at + i) for i in range(3)]
    assert [resumed.suggest(crash_at + i) for i in range(3)] == ahead


def test_replay_with_a_config_outside_the_options_names_the_trial() -> None:
    searcher = _searcher(CONDITIONAL)
    with pytest.raises(ConfigError, match=r'^trial 4\'s stored config\["optim"\]: \'rmsprop\' is none'):
        searcher.restore_suggestion(4, {"x": 0.1, "optim": "rmsprop"})


def test_a_sampler_instance_is_used_as_given() -> None:
    sampler = optuna.samplers.RandomSampler(seed=1)
    searcher = OptunaSearch(sampler=sampler)
    searcher.setup({"x": uniform(0, 1)}, "loss", "min", 3)
    _drive(searcher, 3)
    assert searcher.study.sampler is sampler
    assert searcher.to_spec()["sampler"].startswith("<optuna.samplers")


# ----------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(("space", "match"), [
    ({"a": {"b": normal(0, 1)}}, r'^space\["a"\]\["b"\]: normal is unbounded'),
    ({"a": qnormal(0, 1, 0.5)}, r'^space\["a"\]: qnormal is unbounded'),
    ({"s": sample_from(lambda c: 1)}, r'^space\["s"\]: sample_from is not supported'),
    ({"o": choice([{"x": uniform(0, 1)}, {"y": normal()}])}, r'^space\["o"\]\.options\[1\]\["y"\]: normal'),
    # a '/' in a key, which could make two keys one Optuna name, is refused by validate_space first
    ({"a/b": uniform(0, 1), "a": {"b": uniform(0, 1)}}, r'^space\["a/b"\]: a key may not contain'),
    ({"lr": loguniform(0, 1)}, r'^space\["lr"\]: .*positive'),
    # Optuna holds ints as floats: past 2**53 it drew the wrong integers, or failed inside numpy
    ({"k": lograndint(10**20, 10**20 + 4)}, r'^space\["k"\]: lograndint bounds beyond 2\*\*53'),
    ({"k": {"n": randint(-(2**53) - 2, -(2**53) + 5)}}, r'^space\["k"\]\["n"\]: randint bounds beyond 2\*\*53'),
])
def test_bad_spaces_name_the_key(space: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        OptunaSearch(seed=0).setup(space, "loss", "min", 5)


def test_sampler_instance_with_seed_or_startup_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^seed: a sampler instance keeps its own seed"):
        OptunaSearch(sampler=optuna.samplers.TPESampler(), seed=1).setup({"x": uniform(0, 1)}, "l", "min", 2)
    with pytest.raises(ConfigError, match=r"^n_startup_trials: a sampler instance"):
        OptunaSearch(sampler=optuna.samplers.TPESampler(), n_startup_trials=2).setup(
            {"x": uniform(0, 1)}, "l", "min", 2)


def test_missing_optuna_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)  # import optuna now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'tunesmith\[optuna\]'") as info:
        OptunaSearch(seed=0).setup({"x": uniform(0, 1)}, "loss", "min", 2)
    assert isinstance(info.value, MissingDependency) and isinstance(info.value, ImportError)
    assert MissingDependency is ts.MissingDependency  # catchable by its public name


# -- define-by-run spaces (issue 18 §2.9) --------------------------------------------------------------------
def _define(trial: Any) -> dict[str, Any]:
    """A conditional space as Optuna users write it: sgd has a momentum, adam does not."""
    optim = trial.suggest_categorical("optim", ["sgd", "adam"])
    trial.suggest_float("lr", 1e-4, 1e-1, log=True)
    if optim == "sgd":
        trial.suggest_float("momentum", 0.0, 0.99)
    return {"epochs": 3}


def _define_searcher(**kwargs: Any) -> OptunaSearch:
    searcher = OptunaSearch(space=_define, seed=3, **kwargs)
    searcher.setup({}, "loss", "min", 30)
    return searcher


def test_define_by_run_space_draws_conditional_configs() -> None:
    searcher = _define_searcher()
    configs = [searcher.suggest(i) for i in range(12)]
    assert all(isinstance(c, dict) and c["epochs"] == 3 and 1e-4 <= c["lr"] <= 1e-1 for c in configs)
    assert all(("momentum" in c) == (c["optim"] == "sgd") for c in configs)  # type: ignore[operator,index]
    assert {c["optim"] for c in configs} == {"sgd", "adam"}  # type: ignore[index]
    assert searcher.to_spec()["space"] == {"define_by_run": "_define"}


def test_define_by_run_learns_and_replays() -> None:
    def space(trial: Any) -> None:
        trial.suggest_float("x", -1, 1)

    def make() -> OptunaSearch:
        return OptunaSearch(space=space, seed=5, n_startup_trials=5)

    searcher = make()
    searcher.setup({}, "loss", "min", 40)
    configs = _drive(searcher, 40)
    assert sum(abs(c["x"] - 0.3) < 0.15 for c in configs[10:]) >= 9  # TPE, not random (about 4.5)
    # replayed from the stored configs, the next suggestion is the uninterrupted one
    uninterrupted = make()
    uninterrupted.setup({}, "loss", "min", 40)
    first = _drive(uninterrupted, 8)
    resumed = make()
    resumed.setup({}, "loss", "min", 40)
    for i, config in enumerate(first):
        resumed.restore_suggestion(i, json.loads(json.dumps(config)))
        resumed.observe(i, {"loss": _objective(config), "training_iteration": 1}, True)
    assert resumed.suggest(8) == uninterrupted.suggest(8)


def test_define_by_run_errors_are_config_errors_at_setup() -> None:
    def broken(trial: Any) -> None:
        trial.suggest_float("x", 1, 0)

    with pytest.raises(ConfigError, match=r"OptunaSearch\(space=.*broken\): the define-by-run function raised"):
        OptunaSearch(space=broken).setup({}, "loss", "min", 3)
    with pytest.raises(ConfigError, match="pass space=None to run"):
        OptunaSearch(space=_define).setup({"x": uniform(0, 1)}, "loss", "min", 3)
    with pytest.raises(ConfigError, match="expected a define-by-run function"):
        OptunaSearch(space={"x": uniform(0, 1)})


def test_define_by_run_through_run(tmp_path: Any) -> None:
    import tunesmith as ts

    result = ts.run(_train_define, metric="loss", mode="min", num_samples=6, verbose=0,
                    searcher=OptunaSearch(space=_define, seed=1), storage_path=str(tmp_path))
    assert len(result.trials) == 6 and not result.errors
    assert all(("momentum" in t.config) == (t.config["optim"] == "sgd") for t in result.trials)


def _train_define(config: dict[str, Any]) -> None:
    import tunesmith as ts

    ts.report({"loss": config["lr"] + config.get("momentum", 0.0)})


# -- warm start (issue 18 §2.5) ----------------------------------------------------------------------------
def test_warm_start_adds_earlier_trials_and_skips_those_outside_the_space() -> None:
    searcher = _searcher({"x": uniform(0, 1), "c": choice(["a", "b"])}, n_startup_trials=5)
    earlier = [({"x": i / 20, "c": c}, {"loss": (i / 20 - 0.3) ** 2 + (c == "b")}) for i in range(20) for c in "ab"]
    outside = [({"x": 2.0, "c": "a"}, {"loss": 0.0}),  # out of range
               ({"x": 0.5, "c": "z"}, {"loss": 0.0}),  # not an option
               ({"x": 0.5}, {"loss": 0.0}),  # a key missing
               ({"x": 0.5, "c": "a", "y": 1}, {"loss": 0.0}),  # a key this space lacks
               ({"x": 0.5, "c": "a"}, {"other": 1.0})]  # no metric
    assert searcher.warm_start(earlier + outside) == 40
    trials = searcher.study.trials
    assert len(trials) == 40 and all(t.state is TrialState.COMPLETE for t in trials)
    # past the startup trials already: the first suggestions are TPE's, in the good region (random: 3 of 10)
    first = [searcher.suggest(i) for i in range(10)]
    assert sum(abs(c["x"] - 0.3) < 0.15 and c["c"] == "a" for c in first) >= 6  # type: ignore[index]


def test_warm_start_define_by_run_checks_ranges() -> None:
    searcher = _define_searcher()
    used = searcher.warm_start([({"optim": "adam", "lr": 0.01, "epochs": 3}, {"loss": 1.0}),
                                ({"optim": "sgd", "lr": 0.01, "momentum": 0.5, "epochs": 3}, {"loss": 0.5}),
                                ({"optim": "adam", "lr": 5.0, "epochs": 3}, {"loss": 0.1}),  # out of range
                                ({"optim": "adam", "lr": 0.01, "momentum": 0.5, "epochs": 3}, {"loss": 0.1})])
    assert used == 2


# -- constraints (issue 18 §2.6) ---------------------------------------------------------------------------
@pytest.mark.parametrize("sampler", ["tpe", "nsgaii"])
def test_constraints_reach_the_sampler(sampler: str) -> None:
    searcher = OptunaSearch(sampler=sampler, seed=0)
    assert searcher.use_constraints() is True
    searcher.setup({"x": uniform(0, 1)}, "loss", "min", 10)
    config = searcher.suggest(0)
    assert isinstance(config, dict)
    searcher.observe(0, {"loss": 1.0, "constraint/0": 0.5, "constraint/1": -1.0}, True)
    attrs = searcher.study.trials[0].system_attrs
    if hasattr(optuna.trial.Trial, "set_constraint"):  # Optuna >= 5
        assert attrs["constraints:constraint/0"] == 0.5 and attrs["constraints:constraint/1"] == -1.0
    else:
        assert attrs["constraints"] == (0.5, -1.0)
    assert OptunaSearch(sampler="random").use_constraints() is False


class Optim(str, enum.Enum):
    ADAM = "adam"
    SGD = "sgd"


def _make_seeded() -> OptunaSearch:
    return OptunaSearch(seed=5, n_startup_trials=3)


def test_enum_options_reach_the_config_as_their_values_and_a_resume_replays_them() -> None:
    space = {"optim": choice([Optim.ADAM, Optim.SGD]), "x": uniform(0, 1), "const": Optim.ADAM}
    uninterrupted, configs, observed = _log_run(_make_seeded, space, 8)
    assert {c["optim"] for c in configs.values()} == {"adam", "sgd"}
    assert all(type(c["optim"]) is str and type(c["const"]) is str and c["const"] == "adam"
               for c in configs.values())
    resumed = _replay(_make_seeded, space, configs, observed)  # the stored configs hold "adam", "sgd"
    assert [resumed.suggest(8 + i) for i in range(3)] == [uninterrupted.suggest(8 + i) for i in range(3)]


def test_numpy_bool_options_and_constants_replay_and_warm_start() -> None:
    space = {"flag": choice([np.bool_(True), np.bool_(False)]), "on": np.bool_(True), "x": uniform(0, 1)}
    uninterrupted, configs, observed = _log_run(_make_seeded, space, 8)
    assert {c["flag"] for c in configs.values()} == {True, False}
    assert all(type(c["flag"]) is bool and c["on"] is True for c in configs.values())
    resumed = _replay(_make_seeded, space, configs, observed)
    assert [resumed.suggest(8 + i) for i in range(3)] == [uninterrupted.suggest(8 + i) for i in range(3)]
    earlier = [(json.loads(json.dumps(c)), {"loss": _objective(c)}) for c in configs.values()]
    assert _searcher(space).warm_start(earlier) == 8
    assert _searcher({"on": np.bool_(True), "x": uniform(0, 1)}).warm_start(
        [({"on": True, "x": 0.5}, {"loss": 1.0})]) == 1


def test_points_to_evaluate_may_hold_numpy_values() -> None:
    space = {"flag": choice([True, False]), "x": uniform(0, 1), "k": randint(0, 10), "c": choice([(1, 2), "a"])}
    points = [{"flag": np.bool_(True), "x": np.float32(0.5), "k": np.int64(3), "c": (np.int64(1), 2)},
              {"flag": np.bool_(False)}]
    configs = _drive(_searcher(space, num_samples=3, points_to_evaluate=points), 3)
    assert configs[0] == {"flag": True, "x": 0.5, "k": 3, "c": [1, 2]}
    assert type(configs[0]["flag"]) is bool and type(configs[0]["k"]) is int
    assert configs[1]["flag"] is False
