"""How a trial run as several ranks (``run(..., ranks=N)``) ends after rank 0 returned, on the local backend: real
workers, real rank processes. No torch here: a rank imports this module, and starts in a fraction of a second."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

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



GRACE_S = 1.0  # the driver's grace period in the test below: the window rank 1 returns after


class Rank1ReturnsAfterTheGracePeriod(ts.Trainable):
    """Done at its first result: the driver stops it on that result (its ``done``), and every rank returns. Rank 0's
    ``cleanup`` marks when it ends, after that stop came (``config["stop_first"]``) or at once (the stop then comes
    while its worker waits for rank 1); rank 1's returns ``2 * GRACE_S`` after that mark (a DDP loop's last
    all-reduce, a save: within the others' END_GRACE_S after rank 0, beyond the driver's grace period)."""

    def step(self):
        return {"loss": 1.0, "done": True}

    def cleanup(self):
        if ts.get_rank() == 0:
            if self.config["stop_first"]:
                until(ts.should_stop, "the driver's stop at done")
            _mark("rank0 ends", repr(time.monotonic()))  # the system's clock: the same in every process
            return
        until(lambda: os.path.exists("rank0 ends"), "rank 0's end")
        with open("rank0 ends") as f:
            ends_at = float(f.read())
        # the window under test (rank 1 outlasting the driver's grace period), not a synchronisation
        time.sleep(max(0.0, ends_at + 2 * GRACE_S - time.monotonic()))
        _mark("rank1 returned")


@pytest.mark.parametrize("stop_first", [True, False], ids=["stop-before-rank-0-returns", "stop-while-it-waits"])
def test_the_others_have_their_time_to_return_after_a_stop_at_rank_0s_last_result(results_dir, stop_first):
    """The driver's stop at ``done`` (decided on rank 0's last result) ended rank 1 before its time to return
    (END_GRACE_S, 10 s): at once when it reached rank 0 before it returned (as a stop from outside), or, when it came
    while rank 0's worker waited for rank 1, by the kill of that worker after the grace period (1 s)."""
    assert _ranks.END_GRACE_S > 2 * GRACE_S + 1  # rank 1 returns within the others' time to return
    result = ts.run(Rank1ReturnsAfterTheGracePeriod, {"stop_first": stop_first}, metric="loss", mode="min", ranks=2,
                    resources={"cpu": 2}, backend=LocalBackend(grace_period_s=GRACE_S), verbose=0,
                    raise_on_failed_trial=False)
    trial = result.trials[0]
    assert os.path.exists(_trial_file(result, "rank1 returned")), "rank 1 was ended before it returned"
    assert trial.status == ts.TrialStatus.TERMINATED, (trial.status, trial.error)
    assert [r["loss"] for r in result.history(trial.id)] == [1.0]


def stopped_at_rank_0s_report(config):
    """Rank 0's report is stopped at its result (a stop rule judged in its worker, the driver's answer at a decision
    point, a STOP the scheduler's plan promised): it raises StopTrial, and rank 0 marks it and when it ended; rank 1
    returns ``2 * GRACE_S`` after that mark (the rest of its step: a save, a last all-reduce)."""
    if ts.get_rank() == 1:
        until(lambda: os.path.exists("rank0 ends"), "rank 0's end")
        with open("rank0 ends") as f:
            ends_at = float(f.read())
        # the window under test (rank 1 outlasting the driver's grace period), not a synchronisation
        time.sleep(max(0.0, ends_at + 2 * GRACE_S - time.monotonic()))
        _mark("rank1 returned")
        return
    try:
        ts.report({"loss": 1.0})
    except BaseException:
        _mark("rank0 stopped at its report")
        raise
    finally:
        _mark("rank0 ends", repr(time.monotonic()))


class NotesItsDecisions(LocalBackend):
    """The local backend, noting the decisions it sends to a trial waiting at a decision point and the stops it is
    asked for (whether each was decided on a result): which way the driver ended the trial below."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.sent = []

    def decide(self, trial_id, cont, next_decision, plan=None):
        self.sent.append(("decide", cont))
        super().decide(trial_id, cont, next_decision, plan)

    def stop(self, trial_id):
        self.sent.append(("stop", self.stopping_on_result))
        super().stop(trial_id)


@pytest.mark.parametrize(("how", "sent"), [
    ({"stop": {"loss": 1.0}}, [("stop", True)]),  # judged in the worker, at rank 0's report
    ({"stop": {"training_iteration": 1}}, [("stop", True)]),  # the driver's answer at the decision point
    ({"scheduler": ts.ASHA(max_t=1, grace_period=1)}, [("stop", True)]),  # the STOP its plan promised, in the worker
], ids=["stop-rule-in-the-worker", "training_iteration-at-the-decision-point", "asha-plan-stop-in-the-worker"])
def test_the_others_have_their_time_to_return_after_a_stop_on_rank_0s_result_at_its_report(results_dir, how, sent):
    """A stop decided on the result rank 0 reports, at that report (StopTrial), ends rank 0 there as the driver's stop
    on that result would after rank 0 returned: a stop rule judged in the worker, the driver's STOP answering the
    report at a decision point (``training_iteration``, an ASHA rung without a plan), a STOP the scheduler's plan
    promised for that result. The others had no time to return, they were killed at once (at a decision point the
    worker took the driver's stop for a pause, and the driver killed the trial after its grace period alone)."""
    assert _ranks.END_GRACE_S > 2 * GRACE_S + 1  # rank 1 returns within the others' time to return
    backend = NotesItsDecisions(grace_period_s=GRACE_S)
    result = ts.run(stopped_at_rank_0s_report, {}, metric="loss", mode="min", ranks=2,
                    resources={"cpu": 2}, backend=backend, verbose=0, raise_on_failed_trial=False, **how)
    trial = result.trials[0]
    assert os.path.exists(_trial_file(result, "rank0 stopped at its report")), "the rule did not stop rank 0"
    assert os.path.exists(_trial_file(result, "rank1 returned")), "rank 1 was ended before it returned"
    assert trial.status == ts.TrialStatus.TERMINATED, (trial.status, trial.error)
    assert [r["loss"] for r in result.history(trial.id)] == [1.0]
    assert backend.sent == sent, backend.sent  # a stop on a result, also where the trial waited for the answer


class NotesItsStops(LocalBackend):
    """The local backend, noting each stop it is asked for and whether it was decided on a result (the order tells
    whether the test below met the case it is about)."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.stops = []

    def stop(self, trial_id):
        self.stops.append(self.stopping_on_result)
        super().stop(trial_id)


class DoneWhileRank1Blocks(ts.Trainable):
    """Done at its first result, on rank 0 once rank 1 runs; rank 1 blocks for good (it would outlast the others'
    time to return)."""

    def step(self):
        if ts.get_rank() == 1:
            _mark("rank1.pid", str(os.getpid()))
            threading.Event().wait()
        until(lambda: os.path.exists("rank1.pid"), "rank 1")
        return {"loss": 1.0, "done": True}


def test_a_stop_from_outside_after_a_stop_on_rank_0s_last_result_still_ends_the_others_at_once(results_dir, caplog):
    """The driver's stop at ``done`` leaves the other ranks their time to return (END_GRACE_S, 10 s); the time limit's
    stop coming meanwhile was not sent (a stop was already pending) nor even decided (a trial being stopped was not
    checked against its limit): rank 1 ran out the 10 s plus the grace period, and the driver killed the worker. Now
    the worker ends rank 1 at the limit's stop and reports the trial's end itself; the trial stays TERMINATED (the
    driver had stopped it at ``done``: its end is that stop's)."""
    assert _ranks.END_GRACE_S > 4 + 1  # the limit comes within the others' time to return
    caplog.set_level(logging.WARNING, logger="tunesmith")
    backend = NotesItsStops(grace_period_s=1)
    result = ts.run(DoneWhileRank1Blocks, {}, metric="loss", mode="min", ranks=2, resources={"cpu": 2},
                    trial_time_limit_s=4, backend=backend, verbose=0, raise_on_failed_trial=False)
    trial = result.trials[0]
    if backend.stops[:1] != [True]:
        pytest.skip(f"the time limit came before the stop at done (stops: {backend.stops})")
    assert backend.stops == [True, False], backend.stops  # at done, then the time limit's
    assert "did not stop within" not in caplog.text  # the worker ended rank 1 and said so, no kill of it
    assert trial.status == ts.TrialStatus.TERMINATED, (trial.status, trial.error)
    assert [r["loss"] for r in result.history(trial.id)] == [1.0]
    with open(_trial_file(result, "rank1.pid")) as f:
        pid = int(f.read())
    assert not pid_alive(pid), "rank 1 outlived its trial"
