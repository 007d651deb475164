"""Trials run as several ranks on the local backend, off the happy path (audit): real workers, real rank
processes."""

from __future__ import annotations

import os
import sys
import time

import pytest

import tunesmith as ts
from tests.proc_helpers import pid_alive, until

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="rank supervision is tested on Linux")



def rank_1_outlives_rank_0(config):
    """Rank 0 returns once rank 1 runs; rank 1 never returns (a straggler: the end's grace period is running)."""
    if ts.get_rank() == 1:
        with open("rank1.pid.tmp", "w") as f:
            f.write(str(os.getpid()))
        os.rename("rank1.pid.tmp", "rank1.pid")
        while True:
            time.sleep(0.05)
    until(lambda: os.path.exists("rank1.pid"), "rank 1")
    ts.report({"loss": 1.0})


def test_a_stop_while_rank_0_waits_for_the_others_to_return_ends_them_at_once(results_dir):
    """Rank 0 had returned and its worker waited up to 10 s for rank 1 to return too; a stop coming then (here the
    time limit) was not read: the driver killed the worker after its grace period, and the trial's error said
    '..., then killed: it did not end within the grace period (5s)' for a trial whose rank 0 had ended."""
    result = ts.run(rank_1_outlives_rank_0, {}, metric="loss", mode="min", ranks=2, resources={"cpu": 2},
                    trial_time_limit_s=1, verbose=0, raise_on_failed_trial=False)
    trial = result.trials[0]
    assert trial.error == "the trial ran longer than its limit (trial_time_limit_s=1); stopped", trial.error
    assert [r["loss"] for r in result.history(trial.id)] == [1.0]
    with open(os.path.join(result.path, "trials", "trial_00001", "rank1.pid")) as f:
        assert not pid_alive(int(f.read()))
