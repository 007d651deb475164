"""result.importance(): PED-ANOVA hyperparameter importance (tunesmith/_importance.py)."""

from __future__ import annotations

import random

import pytest

import tunesmith as ts
from tunesmith._importance import ped_anova
from tunesmith.executors.simulated import SimulatedBackend


def objective(config):
    # lr decides (a narrow optimum on a log scale), noise is ignored; "opt" matters a little
    yield {"loss": abs(config["lr"] - 0.01) / 0.01 + (0.3 if config["opt"] == "sgd" else 0.0)}


SPACE = {"lr": ts.loguniform(1e-4, 1.0), "noise": ts.uniform(0, 1), "opt": ts.choice(["adam", "sgd"])}


@pytest.mark.parametrize("seed", range(5))
def test_the_dominant_parameter_gets_most_of_the_importance_and_noise_little(tmp_path, seed):
    result = ts.run(objective, space=SPACE, metric="loss", mode="min", num_samples=80, searcher=ts.Random(seed=seed),
                    backend=SimulatedBackend({"cpu": 8}), verbose=0, storage_path=str(tmp_path), name="imp")
    importance = result.importance()
    assert set(importance) == {"lr", "noise", "opt"}
    assert abs(sum(importance.values()) - 1) < 1e-9
    assert list(importance)[0] == "lr" and importance["lr"] > 0.6, importance
    assert importance["noise"] < 0.2, importance


def test_nested_parameters_and_determinism():
    rng = random.Random(0)
    configs = [{"a": rng.random(), "b": {"c": rng.random()}} for _ in range(50)]
    loss = [(c["a"] - 0.5) ** 2 + 0.01 * c["b"]["c"] for c in configs]
    low = ped_anova(configs, [-v for v in loss])
    assert set(low) == {"a", "b/c"} and low["a"] > 0.7, low
    assert ped_anova(configs, [-v for v in loss]) == low  # deterministic


def test_constant_parameters_score_zero_and_too_few_trials_are_an_error():
    configs = [{"a": i, "k": 1} for i in range(10)]
    assert ped_anova(configs, [float(i) for i in range(10)])["k"] == 0.0
    assert ped_anova(configs, [1.0] * 10) == {"a": 0.0, "k": 0.0}  # nothing matters: all ties
    with pytest.raises(ts.ConfigError, match="at least 4 trials"):
        ped_anova(configs[:3], [1.0, 2.0, 3.0])


def test_the_report_has_an_importance_bar_per_parameter(tmp_path):
    from tunesmith.plots import data as plot_data
    from tunesmith.plots.report import build_panels

    result = ts.run(objective, space=SPACE, metric="loss", mode="min", num_samples=40, searcher=ts.Random(seed=1),
                    backend=SimulatedBackend({"cpu": 8}), verbose=0, storage_path=str(tmp_path), name="imp")
    figure = plot_data.importance(result)
    (bars,) = figure["data"]
    assert bars["y"][-1] == "lr" and sorted(bars["y"]) == ["lr", "noise", "opt"]  # the largest on top
    assert dict(zip(bars["y"], bars["x"])) == pytest.approx(result.importance())
    panels, _notes = build_panels(result)
    assert "Parameter importance" in [p.title for p in panels]
    few = ts.run(objective, space=SPACE, metric="loss", mode="min", num_samples=3, verbose=0,
                 backend=SimulatedBackend({"cpu": 8}), storage_path=str(tmp_path), name="few")
    assert plot_data.importance(few) is None
