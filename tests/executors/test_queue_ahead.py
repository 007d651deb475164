"""A worker handed its next trial while its short trial runs (``LocalBackend(queue_ahead=True)``, issue 19 row 4).

Driven like the controller drives the executor (try_start / poll / stop), on real worker processes. The trial
that runs while another waits behind it holds until the test creates a file (it reports while it waits, so it
reads the driver's messages); the first trial on a worker is short, so that the worker counts as running short
trials."""

from __future__ import annotations

import os
import signal
import statistics
import time

import pytest

import tunesmith as ts
from tunesmith.executors._base import Done, Launch, Results
from tunesmith.executors._procs import wait_gone
from tunesmith.executors.local import LocalBackend

pytestmark = pytest.mark.timeout(120)


def trial(config):
    if config.get("hold"):
        while not os.path.exists(config["hold"]):  # the test's signal to end
            ts.report({"pid": os.getpid()})
            time.sleep(0.005)
    ts.report({"pid": os.getpid(), "started": time.time()})


class Events:
    def __init__(self, backend):
        self.backend = backend
        self.order: list[tuple[str, int]] = []
        self.done: dict[int, Done] = {}
        self.rows: dict[int, list[dict]] = {}

    def until(self, cond, timeout=60.0):
        import json

        deadline = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < deadline, f"not reached; events so far {self.order[-10:]}"
            for ev in self.backend.poll(0.05):
                self.order.append((type(ev).__name__, ev.trial_id))
                if isinstance(ev, Results):
                    assert ev.trial_id not in self.done, "a result after the trial's end"
                    self.rows.setdefault(ev.trial_id, []).extend(json.loads(r[3]) for r in ev.rows)
                else:
                    self.done[ev.trial_id] = ev


@pytest.fixture
def backend(tmp_path):
    made = []

    def make(cpus=1, **kw):
        b = LocalBackend(total_resources={"cpu": cpus}, **kw)
        b.ahead_ok = True  # what run() sets with FIFO and a searcher that does not learn
        b.setup(trial, str(tmp_path))
        made.append(b)
        return b

    yield make
    for b in made:
        b.shutdown()


def _launch(tmp_path, tid, **config):
    return Launch(trial_id=tid, config=config, trial_dir=str(tmp_path / "trials" / f"t{tid}"), resources={"cpu": 1.0})


def _busy_with_one_waiting(make, tmp_path, **kw):
    """A 1-CPU backend whose worker ran short trials (1 and 11), runs trial 2 until the file ``hold`` exists, and holds
    trial 3, handed to it ahead."""
    b = make(**kw)
    ev = Events(b)
    for tid in (1, 11):  # the first one on a new worker includes the worker's start: the second is short
        assert b.try_start(_launch(tmp_path, tid))
        ev.until(lambda tid=tid: tid in ev.done)
    hold = str(tmp_path / "hold")
    assert b.try_start(_launch(tmp_path, 2, hold=hold))
    ev.until(lambda: 2 in ev.rows)
    return b, ev, hold


def test_a_short_trials_worker_is_handed_the_next_one_and_starts_it_when_the_current_one_ends(backend, tmp_path):
    b, ev, hold = _busy_with_one_waiting(backend, tmp_path)
    assert b.try_start(_launch(tmp_path, 3))  # every CPU is taken, yet accepted: handed ahead
    assert not b.try_start(_launch(tmp_path, 4))  # one waits per worker, no more
    assert set(b.queued()) == {3} and b.running() == 2
    assert 3 not in ev.rows and not os.path.exists(tmp_path / "trials" / "t3")  # it has not started
    released = time.time()
    open(hold, "w").close()
    ev.until(lambda: 3 in ev.done)
    assert ev.done[2].status == ev.done[3].status == "ok"
    assert ev.order.index(("Done", 2)) < ev.order.index(("Results", 3))  # in order: it began after 2 ended
    assert ev.rows[3][0]["pid"] == ev.rows[2][0]["pid"]  # on the worker it was handed to
    assert not b.queued() and b.running() == 0
    assert b.late_start(3) >= released  # its start is when it began (after 2 ended), not when it was handed out


def test_a_waiting_trial_asked_to_stop_ends_without_ever_starting(backend, tmp_path):
    b, ev, hold = _busy_with_one_waiting(backend, tmp_path)
    assert b.try_start(_launch(tmp_path, 3))
    b.stop(3)
    ev.until(lambda: 3 in ev.done)  # the worker drops it while trial 2 still runs
    assert ev.done[3] == Done(3, "stopped", None)
    assert 2 not in ev.done and 3 not in ev.rows and not os.path.exists(tmp_path / "trials" / "t3")
    assert not b.queued()
    open(hold, "w").close()
    ev.until(lambda: 2 in ev.done)
    assert ev.done[2].status == "ok"
    assert b.try_start(_launch(tmp_path, 4))  # the worker goes on
    ev.until(lambda: 4 in ev.done)
    assert ev.done[4].status == "ok" and 3 not in ev.rows


def test_a_waiting_trial_whose_worker_dies_starts_on_another(backend, tmp_path):
    b, ev, _hold = _busy_with_one_waiting(backend, tmp_path)
    assert b.try_start(_launch(tmp_path, 3))
    dead = ev.rows[2][0]["pid"]
    killed = time.time()
    os.kill(dead, signal.SIGKILL)
    ev.until(lambda: 3 in ev.done)
    assert ev.done[2].status == "error" and "died" in ev.done[2].error
    assert ev.done[3].status == "ok" and ev.rows[3][0]["pid"] != dead  # not lost with its worker: run elsewhere
    assert b.late_start(3) >= killed  # and its start is when it began there
    assert b.running() == 0


def test_a_trial_stopped_while_it_waited_on_a_worker_that_then_died_ends_stopped(backend, tmp_path):
    b, ev, _hold = _busy_with_one_waiting(backend, tmp_path, grace_period_s=0.5)
    assert b.try_start(_launch(tmp_path, 3))
    os.kill(ev.rows[2][0]["pid"], signal.SIGSTOP)  # frozen: it reads nothing more
    b.stop(2)  # so it never stops, and is killed after the grace period
    b.stop(3)
    ev.until(lambda: 2 in ev.done and 3 in ev.done)
    assert ev.done[3] == Done(3, "stopped", None) and 3 not in ev.rows


@pytest.mark.parametrize("case", ["made", "trials too short", "not run in their folders"])
def test_the_driver_makes_the_folder_of_a_trial_handed_ahead_while_the_trial_before_still_runs(backend, tmp_path,
                                                                                               monkeypatch, case):
    from tunesmith.executors import local

    # trial 2 holds (reporting) for as long as the test wants: by its own clock it runs long enough, unless the
    # threshold is raised past any trial
    monkeypatch.setattr(local, "PREMAKE_S", float("inf") if case == "trials too short" else 0.0)
    b, ev, hold = _busy_with_one_waiting(backend, tmp_path)
    b.chdir_to_trial_dir = case != "not run in their folders"
    folder = tmp_path / "trials" / "t3"
    assert b.try_start(_launch(tmp_path, 3)) and set(b.queued()) == {3}
    assert not folder.exists()
    for _ in range(3):  # moments with nothing to read: trial 2 reports every few milliseconds, polls wait longer
        ev.until(lambda n=len(ev.rows[2]): len(ev.rows[2]) > n)
    assert 2 not in ev.done and 3 not in ev.rows  # trial 2 still runs, trial 3 has not started
    assert folder.is_dir() == (case == "made")
    open(hold, "w").close()
    ev.until(lambda: 3 in ev.done)
    assert ev.done[3].status == "ok" and folder.is_dir() == (case != "not run in their folders")


def test_a_trial_handed_ahead_and_stopped_before_it_began_gets_no_folder(backend, tmp_path, monkeypatch):
    from tunesmith.executors import local

    monkeypatch.setattr(local, "PREMAKE_S", 0.0)
    b, ev, hold = _busy_with_one_waiting(backend, tmp_path)
    assert b.try_start(_launch(tmp_path, 3))
    b.stop(3)  # before the driver's next idle moment
    ev.until(lambda: 3 in ev.done)
    assert ev.done[3] == Done(3, "stopped", None) and not (tmp_path / "trials" / "t3").exists()
    open(hold, "w").close()
    ev.until(lambda: 2 in ev.done)


@pytest.mark.parametrize("why", ["not allowed by the run", "turned off", "first trial not yet ended", "other shape"])
def test_nothing_is_handed_ahead_unless_allowed_and_the_worker_runs_short_trials_of_that_shape(backend, tmp_path, why):
    hold = str(tmp_path / "hold")
    if why in ("not allowed by the run", "turned off", "other shape"):
        b, ev, hold = _busy_with_one_waiting(backend, tmp_path, queue_ahead=why != "turned off")
        b.ahead_ok = why != "not allowed by the run"
    else:
        b = backend()
        ev = Events(b)
        assert b.try_start(_launch(tmp_path, 2, hold=hold))  # the worker's first trial: not known to be short
        ev.until(lambda: 2 in ev.rows)
    other = _launch(tmp_path, 3)
    if why == "other shape":
        other.resources = {"cpu": 0.5}  # the running trial has 1
    assert not b.try_start(other)
    assert not b.queued()
    open(hold, "w").close()


def test_a_long_trial_is_not_followed_by_one_handed_ahead(backend, tmp_path, monkeypatch):
    from tunesmith.executors import local

    monkeypatch.setattr(local, "AHEAD_S", 0.0)  # every trial counts as long
    b, _ev, hold = _busy_with_one_waiting(backend, tmp_path)
    assert not b.try_start(_launch(tmp_path, 3))
    open(hold, "w").close()


def test_queue_ahead_must_be_a_bool():
    with pytest.raises(ts.ConfigError, match=r"queue_ahead='yes'\): expected True or False"):
        LocalBackend(queue_ahead="yes")


# -- through run() ------------------------------------------------------------------------------------------------
def short(config):
    time.sleep(config["ms"] / 1000)
    ts.report({"pid": os.getpid(), "x": config["ms"]})


def _allowed(**kw):
    backend = LocalBackend(total_resources={"cpu": 2})
    ts.run(short, {"ms": 1}, num_samples=1, verbose=0, backend=backend, **kw)
    return backend.ahead_ok


class _MyASHA(ts.ASHA):
    """A user's ASHA that might pick trials its own way: it inherits the attribute, not the promise."""


def test_run_allows_it_only_with_fifo_or_asha_and_a_searcher_that_does_not_learn(results_dir):
    assert _allowed()  # the defaults: FIFO, random search
    assert _allowed(searcher=ts.QuasiRandom(seed=0))
    assert _allowed(searcher=ts.ConcurrencyLimiter(ts.Random(seed=0), 2))
    assert _allowed(scheduler=ts.ASHA(metric="x", mode="min"))
    assert not _allowed(scheduler=ts.ASHA(), searcher=ts.OptunaSearch(seed=0), metric="x", mode="min")
    assert not _allowed(scheduler=_MyASHA(metric="x", mode="min"))
    assert not _allowed(scheduler=ts.HyperBand(metric="x", mode="min", max_t=3))  # pauses and resumes trials
    assert _allowed(scheduler=ts.MedianStopping(metric="x", mode="min"))
    assert not _allowed(searcher=ts.ConcurrencyLimiter(ts.OptunaSearch(seed=0), 2), metric="x", mode="min")


def rungs(config):
    for i in range(1, 10):
        time.sleep(config["ms"] / 9000)
        ts.report({"loss": config["q"] / i, "pid": os.getpid()})


def test_asha_hands_short_trials_ahead_and_decides_as_without(results_dir, monkeypatch):
    """Under ASHA a worker of short trials is handed its next trial ahead; every trial still ends at a rung or
    max_t, the rungs still rank (a trial's loss at every rung is its ``q`` scaled: the best ``q`` runs to max_t,
    those promoted past the first rung have lower ``q`` than those stopped there), and each trial began after
    the one before it on its worker ended."""
    handed = []
    real = LocalBackend._hand_ahead

    def counted(self, launch):
        ok = real(self, launch)
        handed.append(ok)
        return ok

    monkeypatch.setattr(LocalBackend, "_hand_ahead", counted)
    result = ts.run(rungs, {"ms": ts.uniform(1, 3), "q": ts.uniform(0, 1)}, num_samples=150, verbose=0, seed=0,
                    metric="loss", mode="min", scheduler=ts.ASHA(max_t=9, grace_period=1, reduction_factor=3),
                    backend=LocalBackend(total_resources={"cpu": 2}))
    assert sum(handed) >= 20, f"{sum(handed)} of {len(handed)} trials handed ahead"
    assert {t.status.value for t in result.trials} == {"TERMINATED"}
    assert {t.iteration for t in result.trials} <= {1, 3, 9} and max(t.iteration for t in result.trials) == 9
    best = min(result.trials, key=lambda t: t.config["q"])
    assert best.iteration == 9  # the best result at each rung so far always continues
    promoted = [t.config["q"] for t in result.trials if t.iteration >= 3]
    stopped = [t.config["q"] for t in result.trials if t.iteration == 1]
    assert promoted and stopped and statistics.median(promoted) < statistics.median(stopped)
    assert _each_began_after_the_one_before(result) >= 140


def _store_rows(path):
    import sqlite3

    from tunesmith._layout import store_path

    with sqlite3.connect(store_path(path)) as db:
        rows = db.execute("SELECT id, start_time, status FROM trials")
        trials = {tid: (start, status) for tid, start, status in rows}
        last = dict(db.execute("SELECT trial_id, MAX(timestamp) FROM results GROUP BY trial_id"))
    return trials, last


def test_a_run_of_short_trials_records_when_each_began_on_its_worker(results_dir):
    """A trial handed to a worker ahead began when the worker's trial before it ended: its stored start is not
    before that trial's last result."""
    result = ts.run(short, {"ms": ts.uniform(1, 3)}, num_samples=300, verbose=0, seed=0,
                    backend=LocalBackend(total_resources={"cpu": 2}))
    trials, _last = _store_rows(result.path)
    assert len(trials) == 300 and {s for _start, s in trials.values()} == {"TERMINATED"}
    assert _each_began_after_the_one_before(result) >= 290


def _each_began_after_the_one_before(result):
    """Check that each trial's stored start is not before the last result of the trial before it on its worker
    (the trials report their worker's pid); the number of such pairs."""
    trials, last = _store_rows(result.path)
    by_worker: dict[int, list[int]] = {}
    for t in result.trials:
        by_worker.setdefault(t.last_result["pid"], []).append(t.id)
    followed = 0
    for ids in by_worker.values():
        for before, after in zip(sorted(ids), sorted(ids)[1:]):
            assert trials[after][0] >= last[before], f"trial {after} recorded as started before trial {before} ended"
            followed += 1
    return followed


def test_a_time_budget_leaves_no_trial_running_and_few_without_a_result(results_dir):
    """(That a trial still waiting is dropped unstarted is shown at the executor's level, above.)"""
    result = ts.run(short, {"ms": ts.uniform(1, 3)}, num_samples=-1, time_budget_s=1.0, verbose=0, seed=0,
                    backend=LocalBackend(total_resources={"cpu": 2}))
    trials, last = _store_rows(result.path)
    assert {s for _start, s in trials.values()} == {"TERMINATED"}  # none left RUNNING
    never = [tid for tid in trials if tid not in last]  # never started: no result
    assert len(never) <= 3  # one waiting on each worker, and the one the driver held for the next free worker
    assert len(last) >= 50


DRIVER = """
import sys, time
import tunesmith as ts

def short(config):
    time.sleep(config["ms"] / 1000)
    ts.report({"x": config["ms"]})

if __name__ == "__main__":
    ts.run(short, {"ms": ts.uniform(1, 3)}, num_samples=3000, verbose=0, seed=0, name="ahead",
           storage_path=sys.argv[1], backend=ts.LocalBackend(total_resources={"cpu": 2}))
"""


def test_ctrl_c_pauses_trials_still_waiting_and_resume_runs_every_trial_once(tmp_path):
    import signal
    import subprocess
    import sys

    (tmp_path / "driver.py").write_text(DRIVER)
    store = tmp_path / "results"
    driver = subprocess.Popen([sys.executable, "driver.py", str(store)], cwd=tmp_path, stderr=subprocess.PIPE,
                              text=True)
    try:
        def results():
            try:
                return _store_rows(str(store / "ahead"))[1]
            except Exception:  # noqa: BLE001 - the store is not made yet, or is being written
                return {}

        deadline = time.monotonic() + 60
        while len(results()) < 300:  # then Ctrl-C, mid-experiment
            assert driver.poll() is None and time.monotonic() < deadline, driver.communicate()
            time.sleep(0.05)
        driver.send_signal(signal.SIGINT)
        _out, err = driver.communicate(timeout=60)
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode != 0, err  # interrupted, not finished
    trials, last = _store_rows(str(store / "ahead"))
    assert len(last) < 3000
    # nothing is left RUNNING; a trial made but never started (the one the driver holds when every worker has
    # one waiting) is PENDING, with no result
    assert {s for _start, s in trials.values()} <= {"TERMINATED", "PAUSED", "PENDING"}
    assert all(tid not in last for tid, (_start, s) in trials.items() if s == "PENDING")
    waiting = [tid for tid, (_start, status) in trials.items() if status == "PAUSED" and tid not in last]

    ts.run(short, {"ms": ts.uniform(1, 3)}, num_samples=3000, verbose=0, seed=0, name="ahead", resume=True,
           storage_path=str(store), backend=LocalBackend(total_resources={"cpu": 2}))
    trials, last = _store_rows(str(store / "ahead"))
    assert len(trials) == 3000 and {s for _start, s in trials.values()} == {"TERMINATED"}
    assert set(last) == set(trials)  # every trial, those paused before they began included, ran to its result
    assert all(tid in last for tid in waiting)


def test_a_trial_handed_to_a_worker_found_dead_as_it_is_handed_starts_elsewhere_before_any_later_one(backend,
                                                                                                     tmp_path):
    # the worker died after the driver last polled: handing it a trial is what finds it dead. Its trial's CPU is free
    # again, and is the handed trial's: not a later trial's, which would leave that one no worker ("no other could
    # take it": an ERROR, counted against max_failures, for a trial that never ran)
    b, ev, _hold = _busy_with_one_waiting(backend, tmp_path)
    dead = ev.rows[2][0]["pid"]
    os.kill(dead, signal.SIGKILL)
    # woken (pidfd) once every thread of it has exited, so its socket is closed and the send below fails at once. Its
    # main thread a zombie ("Z" in /proc/PID/stat, what this test waited for before) is not enough: its other
    # threads (the flusher) may still hold the socket, and the send then succeeded, 1 run in 6
    assert not wait_gone([dead], 30.0), f"the worker {dead} was SIGKILLed and did not exit in 30 s"
    assert b.try_start(_launch(tmp_path, 3))
    assert not b.try_start(_launch(tmp_path, 4))  # the one CPU is trial 3's
    ev.until(lambda: 2 in ev.done and 3 in ev.done)
    assert ev.done[2].status == "error" and "died" in ev.done[2].error
    assert ev.done[3].status == "ok" and ev.rows[3][0]["pid"] != dead
    assert b.running() == 0
