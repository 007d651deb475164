"""A callback that raises is logged once and the experiment goes on: callbacks observe, never decide."""

from __future__ import annotations

import logging

import pytest

import tunesmith as ts

pytestmark = pytest.mark.timeout(120)


class Broken(ts.Callback):
    def __init__(self) -> None:
        self.calls = 0

    def on_trial_results(self, trial, results):
        self.calls += 1
        raise RuntimeError("logger bug")

    def on_trial_complete(self, trial):
        raise ValueError("another bug")


def train(config):
    for i in range(5):
        ts.report({"loss": config["x"] + i})


def test_a_raising_callback_does_not_end_the_experiment(results_dir, caplog):
    caplog.set_level(logging.ERROR, logger="tunesmith")
    broken = Broken()
    result = ts.run(train, space={"x": ts.grid([1.0, 2.0, 3.0])}, verbose=0, callbacks=[broken])
    assert result.status == "finished"
    assert [t.status for t in result.trials] == [ts.TrialStatus.TERMINATED] * 3
    assert all(len(result.history(t.id)) == 5 for t in result.trials)
    assert broken.calls >= 3  # it was called again after failing
    failures = [r for r in caplog.records if "callback Broken." in r.getMessage()]
    assert sorted(r.getMessage().split()[1] for r in failures) == ["Broken.on_trial_complete",
                                                                     "Broken.on_trial_results"]  # once per hook
    assert all(r.exc_info is not None for r in failures)
