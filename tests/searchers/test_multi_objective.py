"""Multi-objective experiments end to end: run(metric=[...], mode=[...]) on real local worker processes."""

from __future__ import annotations

import os
from typing import Any

import pytest

import tunesmith as ts
from tunesmith.schedulers.asha import ASHA
from tunesmith.searchers._pareto import dominates
from tunesmith.searchers.optuna import OptunaSearch
from tunesmith.store.sqlite import STORE_FILE

pytestmark = pytest.mark.timeout(120)

SPACE = {"x": ts.uniform(0, 2), "y": ts.uniform(0, 1)}


def two_costs(config: dict[str, Any]) -> None:
    # loss is best near x=1, y=0; latency near x=0, y=1: the two pull apart, so the front has many trials
    x, y = config["x"], config["y"]
    for step in range(1, 4):
        ts.report({"loss": (x - 1) ** 2 + y + 1 / step, "latency": x + (1 - y) ** 2, "acc": 1 - y / 2},
                  checkpoint=ts.Checkpoint.from_state({"step": step}))


def only_loss(config: dict[str, Any]) -> None:
    ts.report({"loss": config["x"]})


def brute_front(trials: list[Any], metrics: list[str], modes: list[str]) -> list[int]:
    signs = [1.0 if m == "min" else -1.0 for m in modes]
    pts = {t.id: tuple(s * t.last_result[m] for s, m in zip(signs, metrics)) for t in trials}
    return sorted(i for i, p in pts.items() if not any(dominates(q, p) for q in pts.values()))


def test_nsgaii_sees_both_metrics_and_the_front_is_the_non_dominated_trials(results_dir: Any) -> None:
    searcher = OptunaSearch(sampler="nsgaii", seed=0)
    result = ts.run(two_costs, space=SPACE, metric=["loss", "latency"], mode=["min", "min"], num_samples=14,
                    searcher=searcher, name="mo-nsga", verbose=0)
    assert len(result.trials) == 14
    assert all(t.status is ts.TrialStatus.TERMINATED for t in result.trials)
    # the searcher got both: its study has two directions and every trial was told two values
    study = searcher.study
    assert [d.name for d in study.directions] == ["MINIMIZE", "MINIMIZE"]
    told = {tuple(ft.params[k] for k in ("x", "y")): ft.values for ft in study.trials}
    for t in result.trials:
        assert told[(t.config["x"], t.config["y"])] == [t.last_result["loss"], t.last_result["latency"]]
    front = result.pareto_front()
    assert [t.id for t in front] == brute_front(result.trials, ["loss", "latency"], ["min", "min"])
    assert 1 < len(front) < 14  # trade-offs exist, and some trials are dominated
    # Optuna's own front of the same study agrees
    assert sorted((t.last_result["loss"], t.last_result["latency"]) for t in front) == \
        sorted(tuple(ft.values) for ft in study.best_trials)
    # the stored spec keeps both, so load() and resume see them
    loaded = ts.load("mo-nsga")
    assert loaded.metric == ["loss", "latency"] and loaded.mode == ["min", "min"]
    assert [t.id for t in loaded.pareto_front()] == [t.id for t in front]
    with pytest.raises(ts.ConfigError, match="pareto_front"):
        loaded.best  # noqa: B018 - the property raises
    best_loss = loaded.get_best("loss")
    assert best_loss.last_result["loss"] == min(t.last_result["loss"] for t in result.trials)
    assert best_loss.checkpoint is not None and best_loss.checkpoint.load() == {"step": 3}


def test_random_multi_objective_with_max_mode_progress_and_resume(results_dir: Any, capsys: Any) -> None:
    metric, mode = ["loss", "acc"], ["min", "max"]
    result = ts.run(two_costs, space=SPACE, metric=metric, mode=mode, num_samples=6, searcher=ts.Random(seed=4),
                    name="mo-random", verbose=1)
    out = capsys.readouterr()
    assert "done in" in out.out + out.err  # the progress display ran with several metrics to its end
    assert [t.id for t in result.pareto_front()] == brute_front(result.trials, metric, mode)
    # resume with more samples: the replayed Random continues its sequence, the front covers all trials
    more = ts.run(two_costs, space=SPACE, metric=metric, mode=mode, num_samples=9, searcher=ts.Random(seed=4),
                  name="mo-random", verbose=0, resume=True)
    assert len(more.trials) == 9
    assert [t.config for t in more.trials[:6]] == [t.config for t in result.trials]
    straight = ts.run(two_costs, space=SPACE, metric=metric, mode=mode, num_samples=9, searcher=ts.Random(seed=4),
                      name="mo-straight", verbose=0)
    assert [t.config for t in more.trials] == [t.config for t in straight.trials]
    assert [t.id for t in more.pareto_front()] == brute_front(more.trials, metric, mode)
    with pytest.raises(ts.ConfigError, match="resume: .*metric=\\['loss', 'acc'\\]"):
        ts.run(two_costs, space=SPACE, metric=["loss", "latency"], mode=mode, num_samples=9,
               name="mo-random", verbose=0, resume=True)


def test_a_scheduler_comparing_by_one_metric_needs_its_own(results_dir: Any) -> None:
    with pytest.raises(ts.ConfigError, match="metric: ASHA needs the name of one reported metric"):
        ts.run(two_costs, space=SPACE, metric=["loss", "latency"], mode=["min", "min"], num_samples=2,
               scheduler=ASHA(max_t=3), name="mo-asha", verbose=0)
    assert not os.path.exists(os.path.join(str(results_dir), "mo-asha", STORE_FILE))
    result = ts.run(two_costs, space=SPACE, metric=["loss", "latency"], mode=["min", "min"], num_samples=4,
                    scheduler=ASHA(max_t=3, metric="loss", mode="min"), name="mo-asha", verbose=0, seed=1)
    assert len(result.trials) == 4 and result.pareto_front()


def test_every_metric_must_be_reported(results_dir: Any) -> None:
    with pytest.raises(ts.ConfigError, match="metric 'latency' \\(of \\['loss', 'latency'\\]\\) is not in the res"):
        ts.run(only_loss, space=SPACE, metric=["loss", "latency"], mode=["min", "min"], num_samples=2,
               name="mo-missing", verbose=0)
    result = ts.run(only_loss, space=SPACE, metric=["loss", "latency"], mode=["min", "min"], num_samples=2,
                    name="mo-lax", verbose=0, strict_metric_checking=False)
    assert result.pareto_front() == []  # no trial reported latency


def test_keep_by_one_of_several_metrics_uses_its_mode(results_dir: Any) -> None:
    result = ts.run(two_costs, space=SPACE, metric=["loss", "acc"], mode=["min", "max"], num_samples=2,
                    keep=1, keep_by="acc", name="mo-keep", verbose=0, seed=2)
    for t in result.trials:  # acc is the same at every step: the latest is kept
        assert os.listdir(os.path.join(t.path, "checkpoints")) == ["checkpoint_000003"]
    with pytest.raises(ts.ConfigError, match=r"keep_by='latency' is not a metric the run optimises \(\['loss', "
                                             r"'acc'\]\).*keep_by=\('latency', 'max'\)"):
        ts.run(two_costs, space=SPACE, metric=["loss", "acc"], mode=["min", "max"], num_samples=2,
               keep=1, keep_by="latency", name="mo-keep2", verbose=0)


@pytest.mark.parametrize(("metric", "mode", "match"), [
    (["loss", "latency"], "min", "mode must be a list of 2 'min'/'max' values"),
    (["loss", "latency"], ["min"], "mode must be a list of 2"),
    (["loss", "latency"], ["min", "low"], "mode\\[1\\] \\(for metric 'latency'\\) must be 'min' or 'max'"),
    (["loss", ""], ["min", "min"], "metric\\[1\\] must be the name"),
    (["loss", 3], ["min", "min"], "metric\\[1\\] must be the name"),
    (["loss", "loss"], ["min", "min"], "metric\\[1\\]: 'loss' is listed twice"),
    ([], [], "metric: expected a metric name or a non-empty list"),
    ("loss", ["min"], "mode must be 'min' or 'max'"),
    (None, ["min"], "mode=\\['min'\\] was given without a metric"),
])
def test_bad_metric_and_mode_lists_are_refused_before_any_trial(results_dir: Any, metric: Any, mode: Any,
                                                               match: str) -> None:
    with pytest.raises(ts.ConfigError, match=match):
        ts.run(two_costs, space=SPACE, metric=metric, mode=mode, num_samples=2, name="mo-bad", verbose=0)
    assert not os.path.exists(os.path.join(str(results_dir), "mo-bad"))


def test_single_objective_searchers_refuse_several_metrics(results_dir: Any) -> None:
    from tunesmith.searchers.bohb import BOHB

    with pytest.raises(ts.ConfigError, match="metric: BOHB"):
        ts.run(two_costs, space=SPACE, metric=["loss", "latency"], mode=["min", "min"], num_samples=2,
               searcher=BOHB(seed=0), name="mo-bohb", verbose=0)
    with pytest.raises(ts.ConfigError, match="sampler: 'cmaes' optimises a single metric"):
        ts.run(two_costs, space=SPACE, metric=("loss", "latency"), mode=("min", "min"), num_samples=2,
               searcher=OptunaSearch("cmaes", seed=0), name="mo-cma", verbose=0)


def sim_two_costs(config: dict[str, Any]) -> Any:
    for step in range(1, 4):
        yield {"loss": config["x"] + 1 / step, "latency": 2 - config["x"]}


class Render(ts.Callback):
    """Renders the live progress table with several metrics at each tick once a result came in."""

    def __init__(self) -> None:
        from tunesmith.callbacks.progress import Progress

        self.progress = Progress(verbose=1)
        self.texts: list[str] = []

    def on_tick(self, experiment: Any) -> None:
        import io

        from rich.console import Console

        if experiment.num_results and len(self.texts) < 3:
            console = Console(record=True, width=160, file=io.StringIO())
            console.print(self.progress.render(experiment))
            self.texts.append(console.export_text())


def test_the_live_progress_table_shows_every_metric(results_dir: Any) -> None:
    from tunesmith.executors.simulated import SimulatedBackend

    render = Render()
    ts.run(sim_two_costs, space={"x": ts.grid([0.25, 0.5])}, metric=["loss", "latency"], mode=["min", "min"],
           backend=SimulatedBackend({"cpu": 2}), callbacks=[render], name="mo-live", verbose=0)
    assert render.texts
    header = next(line for line in render.texts[-1].splitlines() if "trial" in line and "iter" in line)
    assert "loss" in header and "latency" in header
