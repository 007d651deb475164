"""A user's callback gets copies: what it edits never reaches the controller, the store or the loggers."""

from __future__ import annotations

import csv
import os
from typing import Any

import pytest

import tunesmith as ts
from tunesmith.callbacks._base import Callback, ExperimentInfo, Notifier
from tunesmith.trial import Result, TrialView

pytestmark = pytest.mark.timeout(120)


def train(config):
    for i in range(3):
        ts.report({"loss": config["lr"] * (i + 1)})


class Meddler(ts.Callback):
    def on_trial_start(self, trial):
        trial.config["lr"] = 999.0
        trial.config["injected"] = "x"
        trial.status = ts.TrialStatus.ERROR

    def on_trial_results(self, trial, results):
        for r in results:
            r.metrics["loss"] = -1.0
            r.metrics["extra"] = 5
        trial.last_result.metrics["loss"] = -2.0

    def on_trial_complete(self, trial):
        trial.status = ts.TrialStatus.ERROR


def test_a_users_callback_cannot_change_configs_results_or_files(results_dir: Any) -> None:
    rs = ts.run(train, {"lr": ts.grid([0.1, 0.2])}, metric="loss", mode="min", name="meddle", verbose=0,
                callbacks=[Meddler()], file_loggers=True)
    assert [t.config for t in rs.trials] == [{"lr": 0.1}, {"lr": 0.2}]
    assert [t.status for t in rs.trials] == [ts.TrialStatus.TERMINATED] * 2
    assert [h["loss"] for h in rs.history(1)] == pytest.approx([0.1, 0.2, 0.3])
    assert all("extra" not in h for h in rs.history(1))
    assert rs.best.config == {"lr": 0.1}
    loaded = ts.load(rs.path)
    assert [t.config for t in loaded.trials] == [{"lr": 0.1}, {"lr": 0.2}]
    with open(os.path.join(rs.path, "trials", "trial_00001", "progress.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["loss"]) for r in rows] == pytest.approx([0.1, 0.2, 0.3])
    assert "extra" not in rows[0]


class Own(Callback):  # pretends to be tunesmith's own: gets the objects themselves
    seen: list[Any]


Own.__module__ = "tunesmith.callbacks.fake"


class Users(Callback):
    pass


def test_the_notifier_copies_once_for_users_callbacks_and_never_for_its_own() -> None:
    seen: list[tuple[str, Any, Any]] = []

    def record(tag: str):
        def on_trial_results(trial, results):
            seen.append((tag, trial, results))
        return on_trial_results

    own, users, users2 = Own(), Users(), Users()
    own.on_trial_results = record("own")  # type: ignore[method-assign]
    users.on_trial_results = record("user")  # type: ignore[method-assign]
    users2.on_trial_results = record("user2")  # type: ignore[method-assign]
    trial = TrialView(id=1, config={"opt": {"lr": 0.1}}, resources={"cpu": 1.0})
    results = [Result(1, 1, {"loss": 1.0})]
    trial.last_result = results[0]
    Notifier([own, users, users2])("on_trial_results", trial, results)
    (_, t_own, r_own), (_, t_user, r_user), (_, t_user2, r_user2) = seen
    assert t_own is trial and r_own is results
    assert t_user is not trial and t_user == trial and t_user is t_user2 and r_user is r_user2  # one copy
    assert t_user.config["opt"] is not trial.config["opt"]
    assert r_user[0].metrics is not results[0].metrics and r_user == results
    assert t_user.resources is not trial.resources
    assert t_user.last_result.metrics is not results[0].metrics


def test_only_own_callbacks_means_no_copies() -> None:
    got: list[Any] = []
    own = Own()
    own.on_trial_start = got.append  # type: ignore[method-assign]
    trial = TrialView(id=1, config={"lr": 0.1})
    Notifier([own])("on_trial_start", trial)
    assert got == [trial] and got[0] is trial


def train_slow(config):
    import time
    for i in range(3):
        time.sleep(0.05)
        ts.report({"loss": float(i)})


class Popper(ts.Callback):
    def on_experiment_start(self, experiment):
        self.experiment = experiment

    def on_trial_results(self, trial, results):
        trials = self.experiment.trials
        with pytest.raises(AttributeError):  # no pop: a read-only mapping
            trials.pop(trial.id)  # type: ignore[attr-defined]
        with pytest.raises(TypeError):
            self.experiment.total_resources["cpu"] = 0.0  # type: ignore[index]
        trials[trial.id].config["x"] = 99  # a user's callback sees copies here too
        self.popped = True


def test_experiment_info_is_a_read_only_window(results_dir: Any) -> None:
    popper = Popper()
    rs = ts.run(train_slow, {"x": ts.grid([1, 2, 3])}, metric="loss", mode="min", verbose=0, callbacks=[popper])
    assert popper.popped
    assert [t.status for t in rs.trials] == [ts.TrialStatus.TERMINATED] * 3
    assert [len(rs.history(t.id)) for t in rs.trials] == [3, 3, 3]
    assert [t.config["x"] for t in rs.trials] == [1, 2, 3]


def test_experiment_info_gives_its_own_callbacks_the_live_trials() -> None:
    class C:
        trials = {1: TrialView(id=1, config={})}
        total_resources = {"cpu": 2.0}
    info = ExperimentInfo(C())
    assert info.trials[1] is C.trials[1]
    assert dict(info.total_resources) == {"cpu": 2.0}
