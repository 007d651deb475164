"""The controller itself, driven with the simulated executor (virtual time, real checkpoints, a real store):
what it writes to the store and what it decides, for a fresh run, a pause and resume, a PBT-style exploit,
a failure and its retry, and a resume by replay after the driver died mid-run."""

from __future__ import annotations

import json

import pytest

import tunesmith as ts
from tunesmith._controller import Controller
from tunesmith._layout import STORE_FILE
from tunesmith._objective import Objective
from tunesmith._stop import StopRules
from tunesmith.executors.simulated import SimulatedBackend
from tunesmith.schedulers._base import CONTINUE, FIFO, PAUSE, Exploit, Scheduler
from tunesmith.searchers.random import Random
from tunesmith.store.sqlite import Store
from tunesmith.trial import TrialStatus

ITERS = 4


def train(config, ctx):
    """ITERS iterations of 1 virtual second, a checkpoint each; says whether it was restored."""
    state = ctx.checkpoint or {"step": 0}
    assert state["step"] == ctx.iteration  # a restart continues from its checkpoint
    while state["step"] < ITERS:
        state["step"] += 1
        yield ({"loss": config["i"] + 1 / state["step"], "restored": ctx.checkpoint is not None}, 1.0,
               dict(state))


def make(tmp_path, fn=train, *, scheduler=None, executor=None, n=3, max_failures=0, max_concurrent=None):
    exp = tmp_path / "exp"
    exp.mkdir(exist_ok=True)
    searcher = Random(seed=0)
    searcher.setup({"i": ts.grid(list(range(n)))}, "loss", "min", 1)
    scheduler = scheduler or FIFO()
    scheduler.setup("loss", "min")
    executor = executor or SimulatedBackend({"cpu": 2})
    stop = StopRules(None, Objective.from_args("loss", "min"))
    executor.stop_rules = stop
    executor.setup(fn, str(exp))
    return Controller(name="exp", exp_dir=str(exp), fn=fn, searcher=searcher, scheduler=scheduler,
                      executor=executor, store=Store(str(exp / STORE_FILE)), metric="loss", mode="min",
                      num_samples=1, stop=stop, time_budget_s=None, max_concurrent=max_concurrent,
                      resources={"cpu": 1.0}, callbacks=[], max_failures=max_failures)


def stored(ctl):
    """(trial rows by id, {trial: [(iteration, metrics)]}, [(kind, trial, data)]) as the store holds them; the
    events are the trials' (the driver's own "end" left out)."""
    rows = {rec["id"]: rec for rec in ctl.store.trials()}
    results = {tid: [(r.iteration, json.loads(r.metrics)) for r in ctl.store.results(tid)] for tid in rows}
    events = [(kind, tid, data) for _seq, _t, kind, tid, data in ctl.store.events() if kind != "end"]
    return rows, results, events


def test_a_fresh_experiment_stores_every_result_once_and_ends_finished(tmp_path):
    ctl = make(tmp_path)
    ctl.run()
    rows, results, events = stored(ctl)
    assert sorted(rows) == [1, 2, 3] and [rows[t]["config"] for t in (1, 2, 3)] == [{"i": 0}, {"i": 1}, {"i": 2}]
    for tid, rec in rows.items():
        assert rec["status"] == "TERMINATED" and rec["iteration"] == ITERS and rec["end_time"] is not None
        assert [it for it, _m in results[tid]] == list(range(1, ITERS + 1))
        assert rec["last_result"]["loss"] == results[tid][-1][1]["loss"]
        assert rec["checkpoint_iteration"] == ITERS and rec["checkpoint"].endswith(f"checkpoint_{ITERS:06d}")
    assert ctl.num_results == 3 * ITERS and ctl.store.count_results() == 3 * ITERS
    assert ctl.best_so_far == (1, 0 + 1 / ITERS)
    assert ctl.store.meta()["status"] == "finished" and events == []
    assert [(kind, data) for _s, _t, kind, _tid, data in ctl.store.events()] == [("end", {"status": "finished"})]


class PauseOnce(Scheduler):
    """Pauses trial 1 at iteration 2, and resumes it as soon as it is paused."""

    def __init__(self):
        self.paused = False

    def decision_iteration(self, trial):
        return 2 if trial.id == 1 and not self.paused and trial.iteration < 2 else None

    def on_result(self, trial, result, view):
        if trial.id == 1 and result.iteration == 2 and not self.paused:
            self.paused = True
            return PAUSE
        return CONTINUE

    def choose_trial_to_run(self, view):
        return 1 if view.trials[1].status is TrialStatus.PAUSED else None


def test_a_paused_trial_resumes_from_its_checkpoint_without_repeating_results(tmp_path):
    ctl = make(tmp_path, scheduler=PauseOnce(), max_concurrent=1)
    ctl.run()
    rows, results, events = stored(ctl)
    assert events[0][:2] == ("pause", 1) and events[0][2]["iteration"] == 2
    assert [it for it, _m in results[1]] == [1, 2, 3, 4]  # each iteration once
    assert [m["restored"] for _it, m in results[1]] == [False, False, True, True]  # went on from iteration 2
    assert all(rec["status"] == "TERMINATED" for rec in rows.values())


class ExploitOnce(Scheduler):
    """Trial 2, at iteration 3, restarts from trial 1's checkpoint of iteration 2 with config {"i": 9}."""

    def decision_iteration(self, trial):
        return 3 if trial.id == 2 and trial.parent_id is None and trial.iteration < 3 else None

    def on_result(self, trial, result, view):
        if trial.id == 2 and trial.parent_id is None and result.iteration == 3:
            return Exploit(1, {"i": 9}, source_iteration=2,
                           source_checkpoint=view.trials[1].checkpoint_path.replace(
                               f"checkpoint_{view.trials[1].checkpoint_iteration:06d}", "checkpoint_000002"))
        return CONTINUE


def test_an_exploit_restarts_the_trial_from_the_sources_checkpoint_with_the_new_config(tmp_path):
    ctl = make(tmp_path, scheduler=ExploitOnce(), n=2, max_concurrent=2)
    ctl.run()
    rows, results, events = stored(ctl)
    assert [(kind, tid, data["source"], data["iteration"], data["config"]) for kind, tid, data in events] == [
        ("exploit", 2, 1, 2, {"i": 9})]
    rec = rows[2]
    assert rec["config"] == {"i": 9} and rec["parent_id"] == 1 and rec["parent_iteration"] == 2
    assert rec["status"] == "TERMINATED" and rec["iteration"] == ITERS
    # its results after the restart point are the new run's: iteration 3 is stored once, from config 9
    assert [it for it, _m in results[2]] == [1, 2, 3, 4]
    assert [m["loss"] for _it, m in results[2][2:]] == [9 + 1 / 3, 9 + 1 / 4]
    assert [m["restored"] for _it, m in results[2]] == [False, False, True, True]


def test_a_failed_trial_is_retried_from_its_checkpoint_and_the_failure_is_logged(tmp_path):
    def flaky(config, ctx):
        state = ctx.checkpoint or {"step": 0}
        while state["step"] < ITERS:
            if config["i"] == 1 and state["step"] == 2 and ctx.checkpoint is None:
                raise RuntimeError("flaky failure")
            state["step"] += 1
            yield {"loss": 1.0 / state["step"], "restored": ctx.checkpoint is not None}, 1.0, dict(state)

    ctl = make(tmp_path, flaky, max_failures=1)
    ctl.run()
    rows, results, events = stored(ctl)
    assert [(kind, tid) for kind, tid, _d in events] == [("error", 2)]
    assert events[0][2]["failure"] == 1 and "flaky failure" in events[0][2]["traceback"]
    rec = rows[2]
    assert rec["status"] == "TERMINATED" and rec["num_failures"] == 1 and "flaky failure" in rec["error"]
    assert [it for it, _m in results[2]] == [1, 2, 3, 4]
    assert [m["restored"] for _it, m in results[2]] == [False, False, True, True]


def test_a_failure_beyond_max_failures_ends_the_trial_in_error(tmp_path):
    def broken(config, ctx):
        yield {"loss": 1.0}, 1.0, {"step": 1}
        if config["i"] == 0:
            raise RuntimeError("always fails")
        yield {"loss": 0.5}, 1.0, {"step": 2}

    ctl = make(tmp_path, broken, n=2, max_failures=1)
    ctl.run()
    rows, _results, events = stored(ctl)
    assert rows[1]["status"] == "ERROR" and rows[1]["num_failures"] == 2 and rows[1]["end_time"] is not None
    assert [(kind, tid, data["failure"]) for kind, tid, data in events] == [("error", 1, 1), ("error", 1, 2)]
    assert rows[2]["status"] == "TERMINATED"


def test_a_config_error_ends_the_trial_in_error_without_a_retry(tmp_path):
    def misconfigured(config, ctx):
        yield {"loss": 1.0}, 1.0, {"step": 1}
        if config["i"] == 0:
            raise ts.ConfigError("metric 'val_los' was not logged")
        yield {"loss": 0.5}, 1.0, {"step": 2}

    ctl = make(tmp_path, misconfigured, n=2, max_failures=3)
    ctl.run()
    rows, _results, events = stored(ctl)
    assert rows[1]["status"] == "ERROR" and rows[1]["num_failures"] == 1 and rows[1]["end_time"] is not None
    assert "ConfigError: metric 'val_los' was not logged" in rows[1]["error"]
    assert [(kind, tid, data["failure"]) for kind, tid, data in events] == [("error", 1, 1)]
    assert rows[2]["status"] == "TERMINATED"


class Crash(BaseException):
    """The driver dying: nothing after it runs, what was committed stays."""


class CrashingExecutor(SimulatedBackend):
    def __init__(self, polls):
        super().__init__({"cpu": 2})
        self.polls = polls

    def poll(self, timeout):
        self.polls -= 1
        if self.polls < 0:
            raise Crash()
        return super().poll(timeout)


def test_a_new_controller_replays_the_store_after_a_crash_and_finishes_without_repeats(tmp_path):
    first = make(tmp_path, executor=CrashingExecutor(polls=6))
    with pytest.raises(Crash):
        first.run()
    rows, before, _events = stored(first)
    assert first.store.meta().get("status") != "finished"
    assert any(0 < len(r) < ITERS for r in before.values())  # it died with trials half done
    first.store.close()

    second = make(tmp_path)
    second.replay()
    assert set(second.trials) == set(rows)  # every stored trial is known again
    assert second.num_results == sum(len(r) for r in before.values())
    second.run()
    rows, after, _events = stored(second)
    assert sorted(rows) == [1, 2, 3] and all(rec["status"] == "TERMINATED" for rec in rows.values())
    for tid, res in after.items():
        assert [it for it, _m in res] == list(range(1, ITERS + 1))  # each iteration stored once
        assert res[:len(before.get(tid, []))] == before.get(tid, [])  # what was stored before is kept
        if 0 < len(before.get(tid, [])) < ITERS:
            assert res[-1][1]["restored"]  # went on from its checkpoint, not from scratch
    assert second.store.meta()["status"] == "finished" and second.num_results == 3 * ITERS
