"""ts.should_stop(): a framework callback asks whether the driver stopped its trial, to end the framework's
loop gracefully (``trainer.should_stop = True``) instead of an exception flying through it."""

from __future__ import annotations

import json
import os
import time

import tunesmith as ts
from tunesmith.schedulers._base import CONTINUE, STOP, Scheduler
from tunesmith.session import StopTrial


def test_should_stop_outside_a_trial_is_false():
    """Nothing can stop a function run by hand (e.g. while debugging a callback): False, never an error."""
    assert ts.should_stop() is False


def _note(**kwargs):
    with open(os.path.join(os.environ["TUNESMITH_ORIG_WORKING_DIR"], "note.json"), "w") as f:
        json.dump(kwargs, f)


def stop_rule_trial(config):
    seen = []
    for i in range(10):
        seen.append(ts.should_stop())
        try:
            ts.report({"loss": 1.0 / (i + 1)})
        except StopTrial:  # what a bridge does: catch, and end the framework's loop through should_stop
            break
    after = ts.should_stop()
    try:
        ts.report({"loss": 0.0})  # refused: nothing after a stop is stored
        refused = False
    except StopTrial:
        refused = True
    _note(seen=seen, after=after, refused=refused)


def test_should_stop_after_a_decided_stop(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = ts.run(stop_rule_trial, stop={"training_iteration": 3}, metric="loss", mode="min", verbose=0)
    note = json.loads((tmp_path / "note.json").read_text())
    assert note == {"seen": [False, False, False], "after": True, "refused": True}
    trial = result.trials[0]
    assert trial.status == ts.TrialStatus.TERMINATED
    assert [r["training_iteration"] for r in result.history(trial.id)] == [1, 2, 3]


class StopAtThree(Scheduler):
    """Stops a trial at its third result without making it wait: the stop arrives asynchronously."""

    def on_result(self, trial, result, view):
        return STOP if result.metrics["training_iteration"] >= 3 else CONTINUE


def async_stop_trial(config):
    for i in range(3):
        try:
            ts.report({"loss": 1.0 / (i + 1)})
        except StopTrial:
            break
    deadline = time.monotonic() + 30
    while not ts.should_stop() and time.monotonic() < deadline:  # a framework's loop, training on
        pass
    stopped = ts.should_stop()
    try:
        ts.report({"loss": 0.0})
        refused = False
    except StopTrial:
        refused = True
    _note(stopped=stopped, refused=refused)


def test_should_stop_sees_a_stop_delivered_while_the_trial_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = ts.run(async_stop_trial, scheduler=StopAtThree(), metric="loss", mode="min", verbose=0)
    assert json.loads((tmp_path / "note.json").read_text()) == {"stopped": True, "refused": True}
    trial = result.trials[0]
    assert trial.status == ts.TrialStatus.TERMINATED
    assert [r["training_iteration"] for r in result.history(trial.id)] == [1, 2, 3]


def time_limited_trial(config):
    ts.report({"loss": 1.0})
    deadline = time.monotonic() + 30
    while not ts.should_stop() and time.monotonic() < deadline:
        pass
    _note(stopped=ts.should_stop())


def test_should_stop_sees_the_trial_time_limit(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    t0 = time.monotonic()
    ts.run(time_limited_trial, trial_time_limit_s=0.5, metric="loss", mode="min", verbose=0)
    assert json.loads((tmp_path / "note.json").read_text()) == {"stopped": True}
    assert time.monotonic() - t0 < 20  # it ended on the stop, not on the 30 s bound
