"""Restarts and ends at the edges: a per-trial stop rule over a restart, the trials ``fail_fast`` cuts short, and
the results that come while Ctrl-C stops the trials.

Each case is compared with the uninterrupted run: a restarted trial (a retry, a scheduler's pause, a resume after
Ctrl-C) stops where it would have; a trial cut short by another's failure is resumed, not ended; a result that
came while the run stopped is decided by the resumed run, as it would have been."""

from __future__ import annotations

import os
import time

import pytest
from algorithm_helpers import CtrlCAfter, PauseOnce
from click.testing import CliRunner

import tunesmith as ts
from tunesmith.cli import cli
from tunesmith.executors.local import LocalBackend
from tunesmith.schedulers._base import CONTINUE, Pause, Stop

pytestmark = pytest.mark.timeout(120)

PAUSED, TERMINATED, ERROR = ts.TrialStatus.PAUSED, ts.TrialStatus.TERMINATED, ts.TrialStatus.ERROR


def _until_stopped():
    """Hold the trial until the driver stops it (a condition polled, as a training loop's own check would)."""
    while not ts.should_stop():
        time.sleep(0.005)


def _until_exists(path):
    while not os.path.exists(path):
        time.sleep(0.005)


def _events(rs, kind, trial_id):
    return [e[4] for e in rs._store.events() if e[2] == kind and e[3] == trial_id]


# -- a per-trial stop rule's state over a restart ----------------------------------------------------------------
def _plateau():
    """Flat results from the first: stops a trial at its 4th result (grace_period), the window of 3 full by then."""
    return ts.TrialPlateau("loss", std=0.01, num_results=3, grace_period=4)


def flat(config):
    """Reports a flat loss, a checkpoint with every result (``odd``: with odd iterations only). On its first start
    it is interrupted after iteration 2: ``event`` "fail" raises before reporting 3, "hold" waits there until the
    driver stops it (Ctrl-C); "pause" is the scheduler's (``PauseOnce`` pauses every trial at 2)."""
    ckpt = ts.get_checkpoint()
    start = ckpt.load() if ckpt else 0
    for it in range(start + 1, 13):
        if it == 3 and ckpt is None:
            if config["event"] == "fail":
                raise RuntimeError("fails once, before iteration 3")
            if config["event"] == "hold":
                _until_stopped()
                return
        keep = not config.get("odd") or it % 2
        ts.report({"loss": 1.0}, checkpoint=ts.Checkpoint.from_state(it) if keep else None)


@pytest.mark.parametrize("event", ["fail", "pause", "hold"])
def test_a_restarted_trial_stops_on_its_stop_rule_where_the_uninterrupted_one_does(event, results_dir):
    """The rule's state is rebuilt from the trial's stored results before the first new one: the trial restarted
    from its checkpoint at iteration 2 stops at its 4th result, as without the restart (it went on to the 6th,
    its rule counting from an empty window, when the worker's rule alone decided)."""
    kw = dict(metric="loss", mode="min", verbose=0)
    whole = ts.run(flat, {"event": "none"}, stop=_plateau(), name="whole", **kw)
    assert whole.trials[0].iteration == 4
    if event == "hold":
        with pytest.raises(KeyboardInterrupt):
            ts.run(flat, {"event": event}, stop=_plateau(), name="cut", callbacks=[CtrlCAfter(2)], **kw)
        assert [(t.status, t.iteration) for t in ts.load("cut").trials] == [(PAUSED, 2)]
        rs = ts.run(flat, {"event": event}, stop=_plateau(), name="cut", resume=True, **kw)
    else:
        rs = ts.run(flat, {"event": event}, stop=_plateau(), name="cut", max_failures=1,
                    scheduler=PauseOnce() if event == "pause" else None, **kw)
    trial = rs.trials[0]
    assert (trial.status, trial.iteration) == (TERMINATED, 4)
    assert [h["training_iteration"] for h in rs.history(trial.id)] == [1, 2, 3, 4]
    assert _events(rs, "stop", trial.id) == [{"reason": "stop_rule", "iteration": 4}]


class PauseOnceDecidingEach(PauseOnce):
    """``PauseOnce`` whose trials wait for the driver's decision at every result: the driver's copy of the stop
    rules decides first, so it is the one the test sees."""

    def decision_iteration(self, trial):
        return trial.iteration + 1


def test_the_drivers_copy_of_the_rules_is_rebuilt_for_a_restart_too(results_dir):
    """Paused at iteration 2 with its checkpoint at 1, the trial reports 2 again: the driver, which had counted
    the first 2 already, stopped it at 3 (its 4th result counted) instead of 4."""
    kw = dict(metric="loss", mode="min", verbose=0, stop=_plateau())
    rs = ts.run(flat, {"event": "pause", "odd": True}, scheduler=PauseOnceDecidingEach(), name="driver", **kw)
    trial = rs.trials[0]
    assert _events(rs, "pause", trial.id)[0]["iteration"] == 2
    assert (trial.status, trial.iteration) == (TERMINATED, 4)
    assert [h["training_iteration"] for h in rs.history(trial.id)] == [1, 2, 3, 4]


# -- fail_fast: the trials it cuts short resume -------------------------------------------------------------------
def fails_or_trains(config):
    """Trial "ok" reports once (a checkpoint) and, on its first start, holds until stopped; trial "bad" fails once
    "ok" has reported (a file says so)."""
    if config["kind"] == "bad":
        _until_exists(config["flag"])
        raise RuntimeError("boom")
    ckpt = ts.get_checkpoint()
    start = ckpt.load() if ckpt else 0
    for it in range(start + 1, 6):
        ts.report({"v": it}, checkpoint=ts.Checkpoint.from_state(it))
        if start == 0:
            open(config["flag"], "w").close()
            _until_stopped()
            return


def _two_at_once():
    return LocalBackend(total_resources={"cpu": 2})  # both trials run at once, whatever the machine's cores


@pytest.mark.parametrize("fail_fast", [True, "raise"])
def test_fail_fast_pauses_the_trials_it_cuts_short_and_a_resume_continues_them(fail_fast, results_dir, tmp_path):
    flag = str(tmp_path / "ok_reported")
    space = {"kind": ts.grid(["ok", "bad"]), "flag": flag}
    kw = dict(fail_fast=fail_fast, max_concurrent=2, verbose=0, name="ff")
    if fail_fast == "raise":
        with pytest.raises(ts.TrialError, match="fail_fast: trial_00002 failed"):
            ts.run(fails_or_trains, space, backend=_two_at_once(), **kw)
    else:
        ts.run(fails_or_trains, space, backend=_two_at_once(), **kw)
    rs = ts.load("ff")
    assert {t.id: (t.status, t.iteration) for t in rs.trials} == {1: (PAUSED, 1), 2: (ERROR, 0)}
    assert [(e["by"], e["iteration"], e["decided"]) for e in _events(rs, "pause", 1)] == [("fail_fast", 1, 1)]
    assert _events(rs, "stop", 1) == []  # not ended: cut short
    assert rs.status == "failed" and "fail_fast: trial_00002 failed" in rs.meta["error"]
    shown = CliRunner().invoke(cli, ["show", "ff"]).output
    assert "(failed)" in shown and "failed: TrialError: fail_fast: trial_00002 failed" in shown
    assert "paused" in shown and "1 error, 1 paused" in shown

    resumed = ts.run(fails_or_trains, space, backend=_two_at_once(), **{**kw, "fail_fast": True}, resume=True)
    assert {t.id: (t.status, t.iteration) for t in resumed.trials} == {1: (TERMINATED, 5), 2: (ERROR, 0)}
    assert [h["v"] for h in resumed.history(1)] == [1, 2, 3, 4, 5]
    assert resumed.status == "finished"


# -- a result that comes while Ctrl-C stops its trial ---------------------------------------------------------------
class WaitsAtOne(ts.Scheduler):
    """Continues every trial; a trial's first result waits for that decision, so the trial reads no stop at its
    first report (a stop sent right after it would end the trial there, before its second)."""

    def decision_iteration(self, trial):
        return 1 if trial.iteration < 1 else None


class StopsAtTwo(WaitsAtOne):
    """Decides at iterations 1 and 2: stop at 2."""

    def decision_iteration(self, trial):
        return trial.iteration + 1 if trial.iteration < 2 else None

    def on_result(self, trial, result, view):
        return Stop() if result.iteration == 2 else CONTINUE


class SaysWhenItStops(LocalBackend):
    """The local backend, creating ``flag`` once the driver has decided to stop a trial (its STOP is sent): a trial
    that waits for it reports its next result while the run stops."""

    def __init__(self, flag):
        super().__init__()
        self.flag = flag

    def stop(self, trial_id):
        super().stop(trial_id)
        open(self.flag, "w").close()


def reports_while_stopped(config):
    """Reports iteration 1 and (with ``flag``, on its first start) iteration 2 only once the driver is stopping it."""
    ckpt = ts.get_checkpoint()
    start = ckpt.load() if ckpt else 0
    for it in range(start + 1, 6):
        if it == 2 and start == 0 and config["flag"]:
            _until_exists(config["flag"])
        ts.report({"loss": [1.0, 0.4, 0.3, 0.2, 0.1][it - 1]}, checkpoint=ts.Checkpoint.from_state(it))


@pytest.mark.parametrize("rule", ["scheduler", "stop_rule"])
def test_a_result_stored_while_ctrl_c_stopped_its_trial_is_decided_by_the_resume(rule, results_dir, tmp_path):
    """Trial 1's result 2 comes after Ctrl-C decided to stop it: stored, never decided. The uninterrupted run
    stops the trial there (the scheduler's Stop at 2, or ``stop={"loss": 0.5}``); the resumed one must too, rather
    than take that result as decided and train the trial on from its checkpoint at 2."""
    flag = str(tmp_path / "stopping")
    kw = dict(metric="loss", mode="min", verbose=0)
    kw["scheduler"] = StopsAtTwo() if rule == "scheduler" else WaitsAtOne()
    if rule == "stop_rule":
        kw["stop"] = {"loss": 0.5}
    whole = ts.run(reports_while_stopped, {"flag": None}, name="whole", **kw)
    assert (whole.trials[0].status, whole.trials[0].iteration) == (TERMINATED, 2)

    with pytest.raises(KeyboardInterrupt):
        ts.run(reports_while_stopped, {"flag": flag}, name="cut", callbacks=[CtrlCAfter(1)],
               backend=SaysWhenItStops(flag), **kw)
    cut = ts.load("cut")
    assert [(t.status, t.iteration) for t in cut.trials] == [(PAUSED, 2)]

    resumed = ts.run(reports_while_stopped, {"flag": flag}, name="cut", resume=True, **kw)
    trial = resumed.trials[0]
    assert (trial.status, trial.iteration) == (TERMINATED, 2)
    assert [h["loss"] for h in resumed.history(1)] == [1.0, 0.4]
    assert _events(resumed, "stop", 1) == [{"reason": rule, "iteration": 2}]
    assert _events(resumed, "pause", 1)[0]["decided"] == 1  # result 2 came after the stop: not decided


class PausesAtTwo(StopsAtTwo):
    def on_result(self, trial, result, view):
        return Pause() if result.iteration == 2 else CONTINUE

    def choose_trial_to_run(self, view):
        return None  # never: the trial stays paused, the run ends


def test_a_pause_decided_by_the_resume_is_the_schedulers(results_dir, tmp_path):
    """The undecided result's decision is a Pause: the trial waits for the scheduler, as it would have (its pause
    event says so: a later resume leaves it to the scheduler, not restarted)."""
    flag = str(tmp_path / "stopping")
    kw = dict(metric="loss", mode="min", verbose=0)
    with pytest.raises(KeyboardInterrupt):
        ts.run(reports_while_stopped, {"flag": flag}, name="cut", callbacks=[CtrlCAfter(1)],
               backend=SaysWhenItStops(flag), scheduler=PausesAtTwo(), **kw)
    resumed = ts.run(reports_while_stopped, {"flag": flag}, name="cut", resume=True, scheduler=PausesAtTwo(), **kw)
    # the scheduler never resumes it: the run's end closes it, at iteration 2, never restarted
    assert [(t.status, t.iteration) for t in resumed.trials] == [(TERMINATED, 2)]
    assert [e["by"] for e in _events(resumed, "pause", 1)] == ["interrupt", "scheduler"]
