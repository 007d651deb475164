"""Every stop of a trial on the local backend goes through ``LocalBackend.stop``, those the driver decides on one of the
trial's results (``Executor.stop_on_result``) too: a subclass that overrides ``stop`` alone sees them all. Real
workers, a real store."""

from __future__ import annotations

import threading

import pytest

import tunesmith as ts
from tunesmith.executors.local import LocalBackend

pytestmark = pytest.mark.timeout(120)


class SeesItsStops(LocalBackend):
    """The local backend, noting each stop it is asked for and whether it was decided on a result."""

    def __init__(self):
        super().__init__()
        self.stops = []

    def stop(self, trial_id):
        self.stops.append((trial_id, self.stopping_on_result))
        super().stop(trial_id)


def driver_only_rule():
    """A stop function holding a lock: it cannot be pickled, so the driver alone judges it (README, ``stop=``)."""
    lock = threading.Lock()

    def loss_reached(trial_id, result):
        with lock:
            return result["loss"] <= 1.0

    return loss_reached


def reports_until_stopped(config):
    while True:
        ts.report({"loss": 1.0})


def test_a_stop_decided_on_a_result_goes_through_stop(results_dir):
    """The driver's stop at a stop rule met by the trial's result (a stop function judged in the driver only) went
    to ``LocalBackend._stop`` directly: a subclass overriding ``stop`` (to log, to count, to act on the trial) never
    heard of it."""
    backend = SeesItsStops()
    result = ts.run(reports_until_stopped, {}, metric="loss", mode="min", stop=driver_only_rule(), backend=backend,
                    verbose=0)
    assert result.trials[0].status == ts.TrialStatus.TERMINATED
    assert backend.stops == [(result.trials[0].id, True)]
    assert backend.stopping_on_result is False  # only while that stop() runs
