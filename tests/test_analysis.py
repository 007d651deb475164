"""ResultSet: best and its checkpoint, the Pareto front of several metrics, filtering trials."""

from __future__ import annotations

import math
import os
import shutil
from typing import Any

import pytest

import tunesmith as ts
from tunesmith.checkpoint import Checkpoint
from tunesmith.checkpoint import write as write_checkpoint
from tunesmith.results import ResultSet
from tunesmith.space import space_to_json
from tunesmith.store.sqlite import STORE_FILE, Store, dumps
from tunesmith.trial import TrialStatus, trial_name

SPACE = {"lr": ts.loguniform(1e-4, 1e-1), "optim": ts.choice([{"name": "adam", "beta": ts.uniform(0.8, 0.99)},
                                                                {"name": "sgd"}]),
         "sizes": ts.choice([(16, 32), (64, 64)])}


def write_experiment(root: Any, name: str, trials: list[dict[str, Any]], metric: Any = "loss", mode: Any = "min",
                     space: dict[str, Any] | None = None) -> str:
    """An experiment store written by hand, as the controller writes it (real SQLite, real checkpoints).

    Each trial: ``id``, ``config``, ``status``, ``results`` (metric dicts, iterations 1, 2, ...), and
    optionally ``checkpoints``: ``{iteration: state}`` (the latest becomes the trial's checkpoint).
    """
    path = os.path.join(str(root), name)
    store = Store(os.path.join(path, STORE_FILE))
    with store.transaction() as db:
        store.set_meta(db, "spec", {"name": name, "metric": metric, "mode": mode,
                                    "space": space_to_json(SPACE if space is None else space)})
        store.set_meta(db, "status", "finished")
        for t in trials:
            store.insert_trial(db, t["id"], t["config"], {"cpu": 1.0}, t["status"])
            rows, last = [], None
            for it, metrics in enumerate(t["results"], start=1):
                rows.append((t["id"], it, float(it), 1000.0 + it, dumps(metrics)))
                last = {**metrics, "training_iteration": it}
            store.append_results(db, rows)
            fields: dict[str, Any] = {"iteration": len(t["results"]), "last_result": dumps(last) if last else None}
            ckpts = t.get("checkpoints", {})
            for it, state in sorted(ckpts.items()):
                folder = write_checkpoint(Checkpoint.from_state(state),
                                          os.path.join(path, "trials", trial_name(t["id"]), "checkpoints"), it)
                store.add_checkpoints(db, [(t["id"], it, folder, 1000.0 + it)])
                fields["checkpoint"], fields["checkpoint_iteration"] = folder, it
            store.update_trial(db, t["id"], **fields)
    store.close()
    return path


def trial(tid: int, status: str = "TERMINATED", config: dict[str, Any] | None = None, **last: Any) -> dict[str, Any]:
    return {"id": tid, "status": status, "config": config or {"lr": 0.01}, "results": [last] if last else []}


# -- Pareto front ---------------------------------------------------------------------------------------


def test_pareto_front_of_a_hand_made_set(tmp_path: Any) -> None:
    # loss (min) against latency (min):
    #   1 (1, 9) front   2 (2, 5) front   3 (3, 5) dominated by 2   4 (4, 1) front   5 (5, 1) dominated by 4
    #   6 (2, 5) a duplicate of 2: kept   7 (9, 9) dominated   8 no latency: out   9 NaN loss: out
    #  10 (0.5, 20) front (best loss)    11 ERROR but reported (3, 2): front (nothing is <= on both)
    points = {1: (1, 9), 2: (2, 5), 3: (3, 5), 4: (4, 1), 5: (5, 1), 6: (2, 5), 7: (9, 9), 10: (0.5, 20),
              11: (3, 2)}
    trials = [trial(i, "ERROR" if i == 11 else "TERMINATED", loss=a, latency=b) for i, (a, b) in points.items()]
    trials += [trial(8, loss=0.1), trial(9, loss=math.nan, latency=0.0), trial(12)]
    rs = ResultSet(write_experiment(tmp_path, "mo", sorted(trials, key=lambda t: t["id"]),
                                    metric=["loss", "latency"], mode=["min", "min"]))
    front = rs.pareto_front()
    assert [t.id for t in front] == [1, 2, 4, 6, 10, 11]
    assert all(isinstance(t, ts.TrialResult) for t in front)
    assert front[0].config == {"lr": 0.01} and front[0].metrics["latency"] == 9
    # other modes and other metrics than the experiment's
    assert [t.id for t in rs.pareto_front(modes=["max", "min"])] == [5, 7]  # 5 (5, 1) beats 4 (4, 1)
    assert [t.id for t in rs.pareto_front(["latency"], ["min"])] == [9]  # its NaN loss is not used here
    assert [t.id for t in rs.pareto_front(["latency"], ["max"])] == [10]
    assert [t.id for t in rs.pareto_front(["loss", "latency"], ["max", "max"])] == [7, 10]


def test_pareto_front_of_three_metrics(tmp_path: Any) -> None:
    pts = {1: (1, 1, 9), 2: (1, 1, 8), 3: (2, 0, 9), 4: (2, 2, 9), 5: (0, 5, 5)}
    rs = ResultSet(write_experiment(tmp_path, "mo3", [trial(i, a=a, b=b, c=c) for i, (a, b, c) in pts.items()],
                                    metric=["a", "b", "c"], mode=["min", "min", "min"]))
    assert [t.id for t in rs.pareto_front()] == [2, 3, 5]  # 1 is beaten by 2 (c), 4 by 1
    assert [t.id for t in rs.pareto_front(["a", "b"])] == [1, 2, 3, 5]  # modes from the experiment


def test_best_with_several_metrics_asks_for_one(tmp_path: Any) -> None:
    rs = ResultSet(write_experiment(tmp_path, "mo", [trial(1, loss=1.0, acc=0.5), trial(2, loss=2.0, acc=0.9)],
                                    metric=["loss", "acc"], mode=["min", "max"]))
    with pytest.raises(ts.ConfigError, match="several metrics.*pareto_front"):
        rs.best  # noqa: B018 - the property raises
    assert rs.get_best("loss").id == 1
    assert rs.get_best("acc").id == 2  # acc's mode (max) comes from the experiment
    assert rs.get_best("acc", "min").id == 1
    assert [t.id for t in rs.top(2, metric="acc")] == [2, 1]
    with pytest.raises(ts.ConfigError, match="mode .* for 'other'"):
        rs.get_best("other")  # not one of the experiment's metrics: its mode is unknown
    with pytest.raises(ts.ConfigError, match="one metric"):
        rs.get_best(["loss", "acc"])  # type: ignore[arg-type]
    assert rs.metrics == ["loss", "acc"] and rs.modes == ["min", "max"]
    one = ResultSet(rs.path, metric="acc")  # one metric of several: its own mode
    assert one.mode == "max" and one.best.id == 2
    assert ts.load(rs.path).metric == ["loss", "acc"]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"metrics": "loss"}, "metrics: expected a non-empty list"),
    ({"metrics": []}, "metrics: expected a non-empty list"),
    ({"metrics": ["loss", "loss"]}, r"metrics\[1\]"),
    ({"metrics": ["loss", 3]}, r"metrics\[1\]"),
    ({"metrics": ["loss", "other"]}, "modes: 'other' is not one of the experiment's metrics"),
    ({"metrics": ["loss", "latency"], "modes": ["min"]}, "modes: expected a list of 2"),
    ({"metrics": ["loss", "latency"], "modes": "min"}, "modes: expected a list of 2"),
    ({"modes": ["min", "up"]}, r"modes\[1\] \(for 'latency'\)"),
])
def test_pareto_front_bad_input_names_the_argument(tmp_path: Any, kwargs: dict[str, Any], match: str) -> None:
    rs = ResultSet(write_experiment(tmp_path, "mo", [trial(1, loss=1.0, latency=1.0)],
                                    metric=["loss", "latency"], mode=["min", "min"]))
    with pytest.raises(ts.ConfigError, match=match):
        rs.pareto_front(**kwargs)


def test_pareto_front_without_any_metric(tmp_path: Any) -> None:
    rs = ResultSet(write_experiment(tmp_path, "none", [trial(1, loss=1.0, latency=2.0)], metric=None, mode=None))
    with pytest.raises(ts.ConfigError, match="has no metric"):
        rs.pareto_front()
    assert [t.id for t in rs.pareto_front(["loss", "latency"], ["min", "min"])] == [1]


# -- filter ---------------------------------------------------------------------------------------------


@pytest.fixture
def mixed(tmp_path: Any) -> ResultSet:
    adam = {"lr": 0.01, "optim": {"name": "adam", "beta": 0.9}, "sizes": [16, 32]}
    sgd = {"lr": 0.001, "optim": {"name": "sgd"}, "sizes": [64, 64]}
    trials = [trial(1, "TERMINATED", adam, loss=0.5), trial(2, "ERROR", sgd, loss=0.9),
              trial(3, "TERMINATED", sgd, loss=0.2), trial(4, "PAUSED", {**adam, "lr": 0.05}, loss=0.7),
              trial(5, "TERMINATED", {**adam, "optim": {"name": "adam", "beta": 0.95}})]
    return ResultSet(write_experiment(tmp_path, "mixed", trials))


def ids(trials: list[Any]) -> list[int]:
    return [t.id for t in trials]


def test_filter_by_status(mixed: ResultSet) -> None:
    assert ids(mixed.filter(status="TERMINATED")) == [1, 3, 5]
    assert ids(mixed.filter(status="terminated")) == [1, 3, 5]
    assert ids(mixed.filter(status=TrialStatus.ERROR)) == [2]
    assert ids(mixed.filter(status=["ERROR", TrialStatus.PAUSED])) == [2, 4]
    assert ids(mixed.filter(status=[])) == []
    assert ids(mixed.filter()) == [1, 2, 3, 4, 5]


def test_filter_by_config(mixed: ResultSet) -> None:
    assert ids(mixed.filter(config={"optim": {"name": "adam"}})) == [1, 4, 5]  # nested, partial
    assert ids(mixed.filter(config={"optim": {"name": "adam", "beta": 0.9}})) == [1, 4]
    assert ids(mixed.filter(config={"optim": {"beta": 0.9}})) == [1, 4]  # sgd has no beta: no match
    assert ids(mixed.filter(config={"lr": lambda lr: lr < 0.02})) == [1, 2, 3, 5]
    assert ids(mixed.filter(config={"sizes": (64, 64)})) == [2, 3]  # a tuple matches the stored list
    assert ids(mixed.filter(config={"lr": 0.01, "optim": {"name": "adam"}}, status="TERMINATED")) == [1, 5]
    assert ids(mixed.filter(config={"optim": "sgd"})) == []  # a dict is not the string
    assert ids(mixed.filter(where=lambda t: t.last_result.get("loss", math.inf) < 0.6)) == [1, 3]
    assert ids(mixed.filter(status="TERMINATED", where=lambda t: "loss" in t.last_result)) == [1, 3]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"status": "FINISHED"}, "status: 'FINISHED' is not a trial status"),
    ({"status": [TrialStatus.ERROR, 3]}, "status: 3 is not a trial status"),
    ({"status": 3}, "status: expected a TrialStatus"),
    ({"config": {"learning_rate": 0.1}}, r"config\['learning_rate'\]: not a key of the experiment's space"),
    ({"config": [("lr", 0.1)]}, "config: expected a dict"),
    ({"where": "loss < 1"}, "where: expected a function"),
])
def test_filter_bad_input_names_the_argument(mixed: ResultSet, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ts.ConfigError, match=match):
        mixed.filter(**kwargs)


# -- the best trial's checkpoint ------------------------------------------------------------------------


def test_best_checkpoint_and_the_checkpoint_of_the_best_result(tmp_path: Any) -> None:
    # trial 1's loss is lowest at iteration 2; it has checkpoints at 1, 2 and 3 (the latest)
    t1 = {"id": 1, "status": "TERMINATED", "config": {"lr": 0.01},
          "results": [{"loss": 0.5}, {"loss": 0.1}, {"loss": 0.3}], "checkpoints": {1: "a", 2: "b", 3: "c"}}
    t2 = {"id": 2, "status": "TERMINATED", "config": {"lr": 0.02},
          "results": [{"loss": 0.4}, {"loss": 0.2}], "checkpoints": {1: "x"}}
    rs = ResultSet(write_experiment(tmp_path, "ck", [t1, t2]))
    assert rs.best.id == 2 and rs.best.checkpoint is not None
    assert rs.best.checkpoint.load() == "x" and rs.best.checkpoint.iteration == 1
    best_ever = rs.get_best(scope="all")
    assert best_ever.id == 1 and best_ever.metrics["loss"] == 0.1
    assert best_ever.checkpoint is not None and best_ever.checkpoint.iteration == 2
    assert best_ever.checkpoint.load() == "b"
    assert rs.trial(1).checkpoint is not None and rs.trial(1).checkpoint.load() == "c"  # latest
    # trial 2's best (iteration 2) has no checkpoint of its own: its latest is given
    assert rs.top(2, scope="all")[1].checkpoint.load() == "x"  # type: ignore[union-attr]


def save_each(config: dict[str, Any]) -> None:
    for step in range(1, 4):
        ts.report({"loss": abs(config["x"] - 0.3) + 1 / step},
                  checkpoint=ts.Checkpoint.from_state({"x": config["x"], "step": step}))


@pytest.mark.timeout(120)
def test_best_checkpoint_of_a_real_run_survives_moving_the_experiment(tmp_path: Any) -> None:
    result = ts.run(save_each, space={"x": ts.uniform(0, 1)}, metric="loss", mode="min", num_samples=4,
                    storage_path=str(tmp_path / "a"), name="moved", verbose=0, seed=3)
    best = result.best
    assert best.checkpoint is not None
    assert best.checkpoint.load() == {"x": best.config["x"], "step": 3}
    target = tmp_path / "b" / "moved-copy"
    shutil.move(result.path, str(target))
    moved = ts.load(str(target))
    assert moved.best.id == best.id and moved.best.checkpoint is not None
    assert moved.best.checkpoint.path.startswith(str(target))  # type: ignore[union-attr]
    assert moved.best.checkpoint.load() == {"x": best.config["x"], "step": 3}
    assert moved.get_best(scope="all").checkpoint.load()["step"] == 3  # type: ignore[union-attr]
