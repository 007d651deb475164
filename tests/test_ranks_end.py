"""How a trial run as several ranks (``run(..., ranks=N)``) ends after rank 0 returned, on the local backend: real
workers, real rank processes. No torch here: a rank imports this module, and starts in a fraction of a second."""

from __future__ import annotations

import os
import sys
import threading

import pytest

import tunesmith as ts
from tests.proc_helpers import pid_alive, until
from tunesmith import _ranks
from tunesmith.executors.local import LocalBackend

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="rank supervision is tested on Linux")


def _trial_file(result, name):
    return os.path.join(result.path, "trials", "trial_00001", name)


def _mark(name, text=""):
    """A file in the trial's folder (every rank's working folder), written whole."""
    with open(name + ".tmp", "w") as f:
        f.write(text)
    os.rename(name + ".tmp", name)


def rank_1_outlives_rank_0(config):
    """Rank 0 reports once and returns once rank 1 runs; rank 1 blocks for good (a straggler: the others' time to
    return after rank 0 is running). Rank 0 marks a stop that came before rank 1 ran (a slow start)."""
    if ts.get_rank() == 1:
        _mark("rank1.pid", str(os.getpid()))
        threading.Event().wait()
    ts.report({"loss": 1.0})
    until(lambda: os.path.exists("rank1.pid") or ts.should_stop(), "rank 1")
    if ts.should_stop():
        _mark("stopped before rank 1 ran")


def test_a_stop_from_outside_while_rank_0_waits_for_the_others_to_return_ends_them_at_once(results_dir):
    """Rank 0 had returned and its worker waited up to END_GRACE_S (10 s) for rank 1 to return too; the time limit's
    stop coming then was not read: the driver killed the worker after its grace period, and the trial's error said
    '..., then killed: it did not end within the grace period (1s)' for a trial whose rank 0 had ended."""
    assert _ranks.END_GRACE_S > 4 + 1  # the limit and the grace period are over before the others' time to return
    result = ts.run(rank_1_outlives_rank_0, {}, metric="loss", mode="min", ranks=2, resources={"cpu": 2},
                    trial_time_limit_s=4, backend=LocalBackend(grace_period_s=1), verbose=0,
                    raise_on_failed_trial=False)
    trial = result.trials[0]
    if os.path.exists(_trial_file(result, "stopped before rank 1 ran")):
        pytest.skip("rank 1 started after the time limit: the stop came before rank 0 returned")
    assert trial.error == "the trial ran longer than its limit (trial_time_limit_s=4); stopped", trial.error
    assert [r["loss"] for r in result.history(trial.id)] == [1.0]
    with open(_trial_file(result, "rank1.pid")) as f:
        pid = int(f.read())
    assert not pid_alive(pid), "rank 1 outlived its trial"

