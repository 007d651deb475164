"""ts.Trainable: a class trainable (setup/step/save_checkpoint/load_checkpoint/reset_config), run like a function."""

from __future__ import annotations

import json
import os

import pytest
from algorithm_helpers import PauseOnce

import tunesmith as ts
from tunesmith.schedulers._base import CONTINUE, Exploit


class Counter(ts.Trainable):
    checkpoint_frequency = 3

    def setup(self, config):
        self.value = 0.0
        self.own_steps = 0  # steps this object made (a reused object goes on counting)

    def step(self):
        self.value += self.config["lr"]
        self.own_steps += 1
        return {"value": self.value, "lr": self.config["lr"], "own_steps": self.own_steps,
                "done": self.iteration + 1 >= self.config.get("steps", 1000)}

    def save_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "state.json"), "w") as f:
            json.dump({"value": self.value}, f)

    def load_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "state.json")) as f:
            self.value = json.load(f)["value"]


def test_a_trainable_class_runs_steps_reports_and_checkpoints(results_dir):
    result = ts.run(Counter, {"lr": ts.grid([1.0, 2.0]), "steps": 7}, metric="value", mode="max", verbose=0)
    assert [t.status for t in result.trials] == [ts.TrialStatus.TERMINATED] * 2
    assert sorted(t.iteration for t in result.trials) == [7, 7]
    assert result.best.config["lr"] == 2.0 and result.best.metrics["value"] == 14.0
    # checkpoint_frequency=3: iterations 3 and 6
    assert result.best.checkpoint.iteration == 6
    with open(os.path.join(result.best.checkpoint.path, "state.json")) as f:
        assert json.load(f) == {"value": 12.0}


class AtEnd(Counter):
    checkpoint_frequency = 0
    checkpoint_at_end = True


def test_checkpoint_at_end_with_an_iteration_stop(results_dir):
    result = ts.run(AtEnd, {"lr": 1.0}, stop={"training_iteration": 5}, verbose=0)
    assert result.trials[0].iteration == 5
    assert result.trials[0].checkpoint.iteration == 5


@pytest.mark.parametrize("stop", [{"value": 4.0}, lambda trial_id, result: result["value"] >= 4.0,
                                  ts.TrialPlateau("value", std=100.0, num_results=2, grace_period=4)],
                         ids=["threshold", "callable", "stopper"])
def test_checkpoint_at_end_when_a_stop_rule_in_the_trial_ends_it(results_dir, stop):
    """A rule evaluated in the trial's process (a metric threshold, a callable, a per-trial Stopper) ends it at
    iteration 4, a result the class did not plan to checkpoint: checkpoint_at_end still gives it its final
    checkpoint, with the state of that result, and the rule sees each result once (the plateau's count)."""
    result = ts.run(AtEnd, {"lr": 1.0}, metric="value", mode="max", stop=stop, verbose=0)
    trial = result.trials[0]
    assert trial.iteration == 4 and trial.checkpoint is not None and trial.checkpoint.iteration == 4
    with open(os.path.join(trial.checkpoint.path, "state.json")) as f:
        assert json.load(f) == {"value": 4.0}


def test_without_checkpoint_at_end_a_stop_rule_ends_the_trial_without_one(results_dir):
    result = ts.run(Counter, {"lr": 1.0}, metric="value", mode="max", stop={"value": 4.0}, verbose=0)
    assert result.trials[0].iteration == 4 and result.trials[0].checkpoint.iteration == 3


class ExploitOnce(ts.Scheduler):
    """Trial 2 exploits trial 1 at its iteration 3, with lr=10 (what PBT does, without its randomness)."""

    def decision_iteration(self, trial):
        return 3 if trial.id == 2 and trial.parent_id is None and trial.iteration < 3 else None

    def on_result(self, trial, result, view):
        if trial.id == 2 and trial.parent_id is None and result.iteration == 3:
            return Exploit(source_trial=1, config={**trial.config, "lr": 10.0, "steps": 9})
        return CONTINUE


class Resettable(Counter):
    def reset_config(self, new_config):
        return True


@pytest.mark.parametrize("cls, own_steps", [(Resettable, 6), (Counter, 3)])
def test_reset_config_takes_an_exploited_config_in_place(results_dir, cls, own_steps):
    space = {"lr": ts.grid([1.0, 2.0]), "steps": 6}
    result = ts.run(cls, space, scheduler=ExploitOnce(), max_concurrent=1, verbose=0)
    exploited = result.trial(2)
    assert exploited.parent_id == 1 and exploited.config["lr"] == 10.0
    last = result.history(2)[-1]
    # restored from trial 1's latest checkpoint (iteration 6, value 6), then 3 steps of lr 10
    assert last["training_iteration"] == 9 and last["value"] == 6.0 + 30.0
    # reset_config True: the object that made trial 2's first 3 steps made these too (no new object, no setup)
    assert last["own_steps"] == own_steps


class NotOurs:
    """What a Ray Tune Trainable looks like to us: a class that is not a tunesmith.Trainable."""

    def setup(self, config):
        pass

    def step(self):
        return {"x": 1}


def test_any_other_class_is_a_config_error_naming_it(results_dir):
    with pytest.raises(ts.ConfigError, match=r"'NotOurs' is a class .*tunesmith.Trainable"):
        ts.run(NotOurs, verbose=0)
    assert not os.path.exists(results_dir) or not os.listdir(results_dir)


class NoStep(ts.Trainable):
    pass


def test_a_trainable_without_step_is_refused():
    with pytest.raises(ts.ConfigError, match="does not define step"):
        ts.run(NoStep, verbose=0)


def test_a_paused_trainable_is_checkpointed_where_it_paused_and_resumes_there(results_dir):
    # no checkpoint_frequency: the checkpoint at iteration 2 is the one made because the scheduler decides there
    result = ts.run(AtEnd, {"lr": 1.0, "steps": 5}, scheduler=PauseOnce(), verbose=0)
    history = result.history(1)
    assert [h["training_iteration"] for h in history] == [1, 2, 3, 4, 5]
    assert [h["value"] for h in history] == [1.0, 2.0, 3.0, 4.0, 5.0]  # resumed at 2, not from scratch
    assert history[2]["own_steps"] == 1  # a new object after the pause, restored from the checkpoint
