"""An error that ends the driver's loop (a searcher's or scheduler's bug, a ``sample_from`` function that raises
mid-run) fails the experiment: it is stored as "failed" with the error, its running trials are paused (their pauses
stored), nothing stored is lost, and it resumes them from their checkpoints. (Before, the error left it "running" with a
released lock: ``crashed``, as if the driver had died, its running trials stored RUNNING.)"""

from __future__ import annotations

import time

import pytest

import tunesmith as ts
from tunesmith.executors.local import LocalBackend
from tunesmith.searchers._base import FINISHED, Searcher

pytestmark = pytest.mark.timeout(120)

TERMINATED, PAUSED = ts.TrialStatus.TERMINATED, ts.TrialStatus.PAUSED


def train(config):
    """A "short" trial reports twice; a "long" one reports, a checkpoint with each result, until the driver stops
    it (the sleep only paces its results; nothing waits on it), and restarted from a checkpoint twice more. Each
    result says where its start restored from (``start``)."""
    if config["kind"] == "short":
        for i in range(2):
            ts.report({"loss": 1.0 / (i + 1)})
        return
    ckpt = ts.get_checkpoint()
    start = ckpt.load() if ckpt else 0
    for i in range(start, start + 2 if start else 5000):
        ts.report({"loss": 1.0 / (i + 1), "start": start}, checkpoint=ts.Checkpoint.from_state(i + 1))
        if not start:
            time.sleep(0.005)


class Buggy(Searcher):
    """Trial 1 is long, the rest short; ``suggest`` raises for trial ``broken_at`` (a searcher's bug), once the
    trial before it ended (until then it has nothing to suggest)."""

    def __init__(self, broken_at: int = 0) -> None:
        self.broken_at = broken_at
        self.ended: set[int] = set()

    def suggest(self, trial_id):
        if trial_id > self.num_samples:
            return FINISHED
        if trial_id == self.broken_at:
            if trial_id - 1 not in self.ended:
                return None
            raise RuntimeError(f"searcher bug at trial {trial_id}")
        return {"kind": "long" if trial_id == 1 else "short"}

    def observe(self, trial_id, result, final):
        if final:
            self.ended.add(trial_id)


def _two_at_once():
    return LocalBackend(total_resources={"cpu": 2})


def _assert_nothing_lost(rs):
    for t in rs.trials:
        assert len(rs.history(t.id)) == t.iteration, t


def test_a_searcher_that_raises_mid_run_fails_the_experiment_and_it_resumes(results_dir):
    # trial 2 ends while trial 1 runs; the suggestion for trial 3 raises
    with pytest.raises(RuntimeError, match="searcher bug at trial 3"):
        ts.run(train, searcher=Buggy(broken_at=3), num_samples=4, metric="loss", mode="min", verbose=0,
               name="buggy", backend=_two_at_once())
    rs = ts.load("buggy")
    assert rs.status == "failed"  # not "crashed": the driver did not die
    assert "RuntimeError: searcher bug at trial 3" in rs.meta["error"]
    from click.testing import CliRunner

    from tunesmith.cli import cli

    shown = CliRunner().invoke(cli, ["show", "buggy"]).output
    assert "(failed)" in shown and "failed: RuntimeError: searcher bug at trial 3" in shown  # why, in `show`
    # the trial still running was paused cleanly (not left RUNNING for a dead driver, nor ended: the failure was
    # not its own), with its checkpoint
    assert {t.id: t.status for t in rs.trials} == {1: PAUSED, 2: TERMINATED}
    assert [e[4]["by"] for e in rs._store.events() if e[2] == "pause" and e[3] == 1] == ["failed"]
    assert rs.trial(2).iteration == 2
    _assert_nothing_lost(rs)
    long_ran = rs.trial(1).iteration
    assert long_ran >= 1 and rs.trial(1).checkpoint is not None

    resumed = ts.run(train, searcher=Buggy(), num_samples=4, metric="loss", mode="min", verbose=0, name="buggy",
                     resume=True, backend=_two_at_once())
    assert resumed.status == "finished" and "error" not in {k for k, v in resumed.meta.items() if v is not None}
    assert sorted(t.id for t in resumed.trials) == [1, 2, 3, 4]
    assert all(t.status is TERMINATED for t in resumed.trials)
    assert resumed.trial(2).iteration == 2  # a finished trial is not run again
    # the paused one continued from its last checkpoint: two results more, not a restart from zero
    assert resumed.trial(1).iteration == long_ran + 2
    assert [h["start"] for h in resumed.history(1)] == [0] * long_ran + [long_ran] * 2
    _assert_nothing_lost(resumed)


def test_a_sample_from_function_that_raises_mid_run_fails_the_experiment(results_dir):
    calls = []

    def b(config):  # called once by run's check of the space, then once per trial: raises for the second trial
        calls.append(config)
        return 1 // 0 if len(calls) == 3 else 1

    space = {"kind": "long", "b": ts.sample_from(b)}
    with pytest.raises(ts.ConfigError, match="sample_from function .* raised ZeroDivisionError"):
        ts.run(train, space, metric="loss", mode="min", num_samples=3, verbose=0, name="sampled",
               backend=_two_at_once())
    rs = ts.load("sampled")
    assert rs.status == "failed"
    assert "ZeroDivisionError" in rs.meta["error"]
    assert [t.status for t in rs.trials] == [PAUSED]  # trial 1 ran while trial 2's draw raised: paused
    _assert_nothing_lost(rs)


class BuggyScheduler(ts.FIFO):
    """Raises deciding trial 1's third result, and at every trial's end (so errors come while trials stop too)."""

    def on_result(self, trial, result, view):
        if trial.id == 1 and result.iteration == 3:
            raise RuntimeError("scheduler bug in on_result")
        return super().on_result(trial, result, view)

    def on_complete(self, trial, result, view):
        raise RuntimeError("scheduler bug in on_complete")


def test_a_scheduler_that_raises_fails_the_experiment_and_running_trials_are_stopped_cleanly(results_dir):
    with pytest.raises(RuntimeError, match="scheduler bug in on_result"):
        ts.run(train, {"kind": "long", "n": ts.grid([1, 2])}, metric="loss", mode="min", verbose=0, name="sched",
               scheduler=BuggyScheduler(), backend=_two_at_once())
    rs = ts.load("sched")
    assert rs.status == "failed"
    assert "scheduler bug in on_result" in rs.meta["error"]
    assert [t.status for t in rs.trials] == [PAUSED, PAUSED]  # both paused, their pauses stored
    assert rs.trial(1).iteration >= 3
    _assert_nothing_lost(rs)


class ObserveBug(Searcher):
    """Three short trials; with ``broken``, ``observe`` raises at trial 1's first result (a searcher's bug), when
    the trials after it are made but not all started (one slot)."""

    def __init__(self, broken: bool) -> None:
        self.broken = broken

    def suggest(self, trial_id):
        return FINISHED if trial_id > self.num_samples else {"kind": "short"}

    def observe(self, trial_id, result, final):
        if self.broken and trial_id == 1:
            raise RuntimeError("searcher bug in observe")


def test_trials_made_but_not_run_when_the_experiment_fails_run_on_its_resume(results_dir):
    """A failed experiment resumes (its error fixed): the trials it had made but not started were closed
    TERMINATED with no result, so the resume never ran them (a trial of the experiment lost for good)."""
    one_slot = LocalBackend(total_resources={"cpu": 1})
    with pytest.raises(RuntimeError, match="searcher bug in observe"):
        ts.run(train, searcher=ObserveBug(broken=True), num_samples=3, metric="loss", mode="min", verbose=0,
               name="unrun", backend=one_slot)
    rs = ts.load("unrun")
    assert rs.status == "failed"
    unrun = [t.id for t in rs.trials if t.iteration == 0]
    assert unrun, "every trial made had started: the case is not here"
    assert [t.status for t in rs.trials if t.iteration == 0] == [ts.TrialStatus.PENDING] * len(unrun)
    resumed = ts.run(train, searcher=ObserveBug(broken=False), num_samples=3, metric="loss", mode="min",
                     verbose=0, name="unrun", resume=True, backend=LocalBackend(total_resources={"cpu": 1}))
    assert resumed.status == "finished"
    assert [(t.id, t.status, t.iteration) for t in resumed.trials] == [(i, TERMINATED, 2) for i in (1, 2, 3)]
    _assert_nothing_lost(resumed)
