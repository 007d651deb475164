"""Scheduler edge cases found in testing: a Trainable's ``done`` result under schedulers that pause, results that
lack the metric (validation every few steps), and ``keep`` given as a numpy integer."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest
from scheduler_harness import Harness

import tunesmith as ts
from tunesmith._errors import ConfigError
from tunesmith._retention import Retention
from tunesmith.executors.simulated import SimulatedBackend
from tunesmith.schedulers._base import CONTINUE, PAUSE, STOP, Exploit
from tunesmith.trial import ITERATION, TrialStatus

# ------------------------------------------------------------------- a Trainable's done under pausing schedulers


class DoneAt(ts.Trainable):
    """Says done at step ``config["done_at"]``; a step past it would be a result after the trial ended."""

    def setup(self, config):
        self.steps = 0

    def step(self):
        self.steps += 1
        return {"loss": self.config["lr"] / self.steps, "done": self.steps >= self.config["done_at"]}

    def save_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "steps.json"), "w") as f:
            json.dump(self.steps, f)

    def load_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "steps.json")) as f:
            self.steps = json.load(f)


def assert_each_trial_ends_at_its_done_result(result):
    """A trial's done result is its last: none comes after it (resumed, the trial stored another step, done
    again). Only trials that a scheduler stopped before their done have no done result."""
    for t in result.trials:
        history = result.history(t.id)
        dones = [h[ITERATION] for h in history if h["done"]]
        assert dones in ([], [t.iteration]), (t.id, [(h[ITERATION], h["done"]) for h in history])
        assert t.status is TrialStatus.TERMINATED


def test_a_trainable_done_result_ends_it_under_pbt_time_sharing(results_dir):
    """PBT pauses a trial at its perturbation point while others are behind; at iteration 4 that result says done:
    the trial ends there instead of being resumed to train on (it stored iteration 5 before)."""
    pbt = ts.PBT(perturbation_interval=2, hyperparam_mutations={"lr": ts.uniform(0, 1)}, seed=0)
    result = ts.run(DoneAt, space={"lr": ts.uniform(0, 1), "done_at": 4}, metric="loss", mode="min", num_samples=4,
                    scheduler=pbt, max_concurrent=2, seed=0, verbose=0)
    assert_each_trial_ends_at_its_done_result(result)
    # PBT stops nobody: every trial reaches a done (a trial exploited from a source's checkpoint at the source's
    # done, decided in the batch that ended the source, steps once more to its own done)
    assert all(result.history(t.id)[-1]["done"] for t in result.trials)


def test_a_trainable_done_result_ends_it_under_hyperband(results_dir):
    """HyperBand pauses trials at the rung at iteration 2 until the rung is complete; the winners paused there had
    said done: they end rather than being resumed for iteration 3."""
    hb = ts.HyperBand(max_t=16, reduction_factor=2)
    result = ts.run(DoneAt, space={"lr": ts.uniform(0, 1), "done_at": 2}, metric="loss", mode="min", num_samples=8,
                    scheduler=hb, max_concurrent=2, seed=0, verbose=0)
    assert_each_trial_ends_at_its_done_result(result)
    assert sum(t.iteration == 2 for t in result.trials) >= 2  # the rung at 1 promoted some to their done


class NeverDone(DoneAt):
    def step(self):
        return {"loss": super().step()["loss"]}  # no "done" key at all


def test_a_trainable_without_done_keys_gets_no_stop_rule_warning(results_dir, caplog):
    """The rule that ends a Trainable at its done result is implicit: results without "done" are not warned about
    as a stop rule on a key never reported, and it is not stored as the user's stop rule."""
    with caplog.at_level(logging.WARNING, logger="tunesmith"):
        result = ts.run(NeverDone, space={"lr": 0.5, "done_at": 0}, metric="loss", mode="min",
                        stop={"training_iteration": 3}, verbose=0)
    assert [t.iteration for t in result.trials] == [3]
    assert not [r for r in caplog.records if "done" in r.getMessage()]
    assert result._store.meta()["spec"]["stop"] == {ITERATION: 3}


# ------------------------------------------------------------------------- results without the metric


def validation_every_4(config, ctx):
    """``val_loss`` only at iteration 1 and every 4th: the common "validate every k steps" loop (1 s per step)."""
    state = ctx.checkpoint or {"i": 0}
    while state["i"] < 12:
        state["i"] += 1
        i = state["i"]
        metrics = {"train_loss": config["x"] / i}
        if i == 1 or i % 4 == 0:
            metrics["val_loss"] = config["x"] / i + 0.01
        yield metrics, 1.0, dict(state)


SCHEDULERS = {
    "asha": lambda: ts.ASHA(max_t=12, grace_period=2, reduction_factor=2),
    "hyperband": lambda: ts.HyperBand(max_t=9, reduction_factor=3),
    "median": lambda: ts.MedianStopping(grace_period=1, min_samples=2),
    "pbt": lambda: ts.PBT(perturbation_interval=3, hyperparam_mutations={"x": ts.uniform(0, 1)}, seed=0),
    "pb2": lambda: ts.PB2(perturbation_interval=3, hyperparam_bounds={"x": [0, 1]}, seed=0),
}


@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_results_without_the_metric_later_in_a_run_do_not_end_the_experiment(results_dir, name):
    """Only the first result must hold the metric (strict_metric_checking): a later one without it is nothing for
    the scheduler to decide on. It used to end the experiment with "metric 'val_loss' is missing from the result
    of trial_0000N at iteration 2"."""
    result = ts.run(validation_every_4, space={"x": ts.uniform(0, 1)}, metric="val_loss", mode="min",
                    num_samples=6, scheduler=SCHEDULERS[name](), backend=SimulatedBackend({"cpu": 2}), seed=1,
                    verbose=0)
    assert result.status == "finished"
    assert not result.errors
    assert all(t.status is TrialStatus.TERMINATED for t in result.trials)
    if name in ("asha", "hyperband"):  # trials wait for the decision at a rung: a stop comes at a result with
        stopped = [t for t in result.trials if t.iteration < SCHEDULERS[name]().max_t]  # the metric
        assert stopped, "the scheduler still stops trials"
        assert all("val_loss" in result.history(t.id)[-1] for t in stopped)


def test_asha_judges_a_rung_at_the_first_result_at_or_after_it_that_has_the_metric():
    """Rungs at 2, 4, 8: a result at 2 without the metric records nothing; the one at 4 with it is recorded at
    the rungs at 2 and at 4 (a trial that jumps past rungs passes each), and judged there."""
    h = Harness(ts.ASHA(max_t=16, grace_period=2, reduction_factor=2))
    h.add(1)
    assert h.report(1, 1, 0.5) is CONTINUE
    assert h.report(1, 2, None) is CONTINUE  # reported as None: no value either
    h.scheduler.on_result(h.trial(1), _without(h, 1, 3), h.view)
    assert [c[1] for c in h.scheduler.rung_counts()] == [0, 0, 0]
    assert h.scheduler.rungs_passed(1) == 0
    assert h.scheduler.decision_iteration(h.trial(1)) == 4  # still waits for a decision at each result
    assert h.report(1, 4, 0.3) is CONTINUE
    assert [c[1] for c in h.scheduler.rung_counts()] == [1, 1, 0]
    # a second trial, worse at its first result with the metric (past the rung at 2): stopped at that rung
    h.add(2)
    h.scheduler.on_result(h.trial(2), _without(h, 2, 2), h.view)
    assert h.report(2, 4, 0.9) is STOP
    assert [c[1] for c in h.scheduler.rung_counts()] == [2, 1, 0]


def test_asha_stops_at_max_t_even_without_the_metric():
    h = Harness(ts.ASHA(max_t=4, grace_period=2, reduction_factor=2))
    assert h.report(1, 1, 0.5) is CONTINUE
    assert h.scheduler.on_result(h.trial(1), _without(h, 1, 4), h.view) is STOP


def test_hyperband_waits_at_a_rung_for_a_result_with_the_metric():
    """A rung result without the metric continues (no pause, nothing recorded); the next result with it arrives
    at the rung and pauses there as usual."""
    h = Harness(ts.HyperBand(max_t=4, reduction_factor=2))  # bracket s=2: 4 trials, rungs at 1, 2, 4
    for tid in (1, 2, 3, 4):
        h.add(tid)
    assert h.scheduler.on_result(h.trial(1), _without(h, 1, 1), h.view) is CONTINUE
    assert h.report(1, 2, 0.1) is PAUSE  # arrived at the rung at 1 with the value from iteration 2
    assert h.report(2, 1, 0.5) is PAUSE
    assert h.report(3, 1, 0.9) is PAUSE
    assert h.report(4, 1, 0.7) is STOP  # rung complete: 4 // 2 = 2 winners, trials 1 and 2
    assert h.choose_all() == [1, 2]


def test_median_stopping_counts_only_results_with_the_metric():
    h = Harness(ts.MedianStopping(grace_period=1, min_samples=1))
    assert h.report(1, 1, 0.1) is CONTINUE
    assert h.scheduler.on_result(h.trial(1), _without(h, 1, 2), h.view) is CONTINUE
    assert h.report(2, 1, 0.5) is STOP  # worse than trial 1's median at 1
    h.add(3)
    # trial 3 at 2 without the metric: nothing to compare; trial 1 has no value at 2 either (not counted as NaN)
    assert h.scheduler.on_result(h.trial(3), _without(h, 3, 2), h.view) is CONTINUE
    assert h.report(3, 3, 0.05) is CONTINUE


@pytest.mark.parametrize("make", [
    lambda: ts.PBT(perturbation_interval=2, hyperparam_mutations={"x": [0.1, 0.9]}, quantile_fraction=0.5, seed=0),
    lambda: ts.PB2(perturbation_interval=2, hyperparam_bounds={"x": [0.0, 1.0]}, quantile_fraction=0.5, seed=0),
], ids=["pbt", "pb2"])
def test_pbt_perturbs_at_the_first_result_with_the_metric_at_or_after_the_point(make):
    scheduler = make()
    h = Harness(scheduler)
    h.add(1, {"x": 0.1})
    h.add(2, {"x": 0.9})
    scheduler.on_no_more_trials(h.view)
    assert h.report(1, 1, 0.1, checkpoint=True) is CONTINUE
    assert h.report(2, 1, 0.9, checkpoint=True) is CONTINUE
    assert scheduler.on_result(h.trial(1), _without(h, 1, 2), h.view) is CONTINUE
    assert h.report(1, 3, 0.05, checkpoint=True) is CONTINUE  # its point, the top: it trains on
    # trial 2's point at 2 comes without the metric: no decision, and it is asked again at 3
    assert scheduler.on_result(h.trial(2), _without(h, 2, 2), h.view) is CONTINUE
    assert scheduler.decision_iteration(h.trial(2)) == 3
    decision = h.report(2, 3, 0.8, checkpoint=True)
    assert isinstance(decision, Exploit) and decision.source_trial == 1


def test_a_metric_that_is_not_a_number_is_still_a_config_error():
    h = Harness(ts.ASHA(max_t=8, grace_period=1, reduction_factor=2))
    with pytest.raises(ConfigError, match="'loss' of trial_00001 must be a number; got 'low'"):
        h.report(1, 1, "low")


def _without(h, trial_id, iteration):
    """A result of ``trial_id`` at ``iteration`` that lacks the metric (the trial's view updated as the harness
    does)."""
    from tunesmith.trial import TIME_TOTAL, Result

    trial = h.view.trials.get(trial_id) or h.add(trial_id)
    trial.status, trial.iteration = TrialStatus.RUNNING, iteration
    return Result(trial_id=trial_id, iteration=iteration,
                  metrics={"train_loss": 1.0, ITERATION: iteration, TIME_TOTAL: float(iteration)})


# ------------------------------------------------------------------------------------------- keep as numpy


def test_keep_takes_a_numpy_integer(results_dir):
    def train(config):
        for i in range(1, 6):
            ts.report({"loss": 1.0 / i}, checkpoint=ts.Checkpoint.from_state({"i": i}))

    result = ts.run(train, metric="loss", mode="min", keep=np.int64(2), verbose=0)
    trial = result.trials[0]
    kept = sorted(os.listdir(os.path.join(trial.path, "checkpoints")))
    assert len(kept) == 2 and trial.checkpoint.iteration == 5
    assert result._store.meta()["spec"]["keep"] == 2


@pytest.mark.parametrize("keep", [np.int64(3), np.uint8(3), 3])
def test_retention_stores_keep_as_an_int(keep):
    retention = Retention(keep, None, None)
    assert retention.keep == 3 and type(retention.keep) is int


@pytest.mark.parametrize("keep", [True, np.bool_(True), 2.0, np.float64(2), 0, np.int64(0), -1, "2"])
def test_keep_that_is_not_a_positive_integer_is_refused(keep):
    with pytest.raises(ConfigError, match="keep must be a positive integer"):
        Retention(keep, None, None)


def _reports_a_and_b(config, ctx):
    for i in range(1, 10):
        yield {"a": config["x"] * i, "b": 1.0 / i + config["x"]}, 1.0, None


@pytest.mark.parametrize("name", ["asha", "hyperband", "median", "pbt", "pb2"])
@pytest.mark.parametrize("objective", [{"metric": "a", "mode": "max"},
                                       {"metric": ["a", "b"], "mode": ["max", "min"]}, {}])
def test_a_scheduler_metric_no_trial_reports_is_a_config_error_at_the_first_result(results_dir, name, objective):
    """A scheduler's own ``metric=`` that the trials never report (a typo: "acc") ran every trial to its end as
    FIFO, with no error and no warning: the first result must hold it, as it must the experiment's metric."""
    scheduler = {"asha": ts.ASHA(max_t=9, grace_period=1, metric="acc", mode="max"),
                 "hyperband": ts.HyperBand(max_t=9, metric="acc", mode="max"),
                 "median": ts.MedianStopping(grace_period=1, metric="acc", mode="max"),
                 "pbt": ts.PBT(perturbation_interval=3, hyperparam_mutations={"x": ts.uniform(0, 1)}, seed=0,
                               metric="acc", mode="max"),
                 "pb2": ts.PB2(perturbation_interval=3, hyperparam_bounds={"x": [0, 1]}, seed=0, metric="acc",
                               mode="max")}[name]
    owner = type(scheduler).__name__
    with pytest.raises(ConfigError, match=rf"metric 'acc' \({owner}'s metric=\) is not in the results of "
                                          r"trial_0000\d \(it reported: a, b, training_iteration\)"):
        ts.run(_reports_a_and_b, space={"x": ts.uniform(0, 1)}, num_samples=4, scheduler=scheduler,
               backend=SimulatedBackend({"cpu": 2}), seed=1, verbose=0, **objective)


def test_a_scheduler_metric_missing_is_not_checked_without_strict_metric_checking(results_dir):
    result = ts.run(_reports_a_and_b, space={"x": ts.uniform(0, 1)}, num_samples=2, metric="a", mode="max",
                    scheduler=ts.ASHA(max_t=9, grace_period=1, metric="acc", mode="max"), seed=1, verbose=0,
                    backend=SimulatedBackend({"cpu": 2}), strict_metric_checking=False)
    assert result.status == "finished" and [t.iteration for t in result.trials] == [9, 9]
