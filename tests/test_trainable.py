"""ts.Trainable: a class trainable (setup/step/save_checkpoint/load_checkpoint/reset_config), run like a function."""

from __future__ import annotations

import json
import os
import sys

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


class NumpyDone(Counter):
    def step(self):
        import numpy as np

        metrics = super().step()
        metrics["done"] = np.float64(self.iteration + 1) >= 4  # a numpy bool, as a computed flag usually is
        return metrics


def test_a_numpy_true_done_flag_ends_the_trial(results_dir):
    result = ts.run(NumpyDone, {"lr": 1.0}, verbose=0, time_budget_s=20)  # (the budget ends it if done is missed)
    assert [t.iteration for t in result.trials] == [4]


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


def _note(obj, name, value):
    """One line of JSON in ``<trial_dir>/<name>.rank<rank>.json`` (each rank its own file)."""
    with open(os.path.join(obj.trial_dir, f"{name}.rank{ts.get_rank()}.json"), "a") as f:
        f.write(json.dumps(value) + "\n")


def _notes(trial_dir, name, rank):
    with open(os.path.join(trial_dir, f"{name}.rank{rank}.json")) as f:
        return [json.loads(line) for line in f]


class SeesItsPlace(Counter):
    """Records what ``setup`` sees; its first attempt fails at its fourth step, after a checkpoint at 3."""

    def setup(self, config):
        super().setup(config)
        _note(self, "setup", {"iteration": self.iteration, "trial_dir": self.trial_dir})
        self.fresh = ts.get_checkpoint() is None

    def step(self):
        if self.fresh and self.iteration == 3:
            raise ValueError("first attempt fails")
        return super().step()


def test_setup_sees_the_trial_dir_and_the_iteration_it_starts_from(results_dir):
    result = ts.run(SeesItsPlace, {"lr": 1.0, "steps": 5}, metric="value", mode="max", max_failures=1, verbose=0)
    trial = result.trials[0]
    assert trial.status == ts.TrialStatus.TERMINATED, trial.error
    folder = os.path.join(result.path, "trials", f"trial_{trial.id:05d}")
    # set before setup: 0 on the first start, the checkpoint's iteration (3) on the retry that restores it
    assert [n["iteration"] for n in _notes(folder, "setup", 0)] == [0, 3]
    assert all(os.path.samefile(n["trial_dir"], folder) for n in _notes(folder, "setup", 0))
    assert [h["value"] for h in result.history(trial.id)] == [1.0, 2.0, 3.0, 4.0, 5.0]


class OnRanks(ts.Trainable):
    """Each rank records ``self.iteration`` at setup and at each step; done after 5 results. The first attempt's
    rank 0 fails at its fourth step (after the checkpoint at 2), so the retry restores every rank from it."""

    checkpoint_frequency = 2

    def setup(self, config):
        _note(self, "steps", {"setup": self.iteration})
        self.fresh = ts.get_checkpoint() is None

    def step(self):
        _note(self, "steps", self.iteration)
        if self.fresh and self.iteration == 3 and ts.get_rank() == 0:
            raise ValueError("rank 0 fails once")
        return {"loss": 1.0, "done": self.iteration + 1 >= 5}

    def save_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "it.json"), "w") as f:
            json.dump(self.iteration, f)


def _attempts(records):
    """A rank's records split at each setup: [(the iteration setup saw, the iterations its steps saw)...]."""
    out = []
    for r in records:
        if isinstance(r, dict):
            out.append((r["setup"], []))
        else:
            out[-1][1].append(r)
    return out


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="rank supervision is tested on Linux")
def test_every_rank_counts_the_iterations_and_ends_at_done(results_dir):
    """Ranks above 0 store no result: their ``self.iteration`` still counts the results reported so far (from
    the restored iteration after a restore), so ``done`` ends them when it ends rank 0."""
    result = ts.run(OnRanks, metric="loss", mode="min", ranks=2, resources={"cpu": 2}, max_failures=1, verbose=0)
    trial = result.trials[0]
    assert trial.status == ts.TrialStatus.TERMINATED, trial.error
    assert [h["training_iteration"] for h in result.history(trial.id)] == [1, 2, 3, 4, 5]
    folder = os.path.join(result.path, "trials", f"trial_{trial.id:05d}")
    rank0 = _attempts(_notes(folder, "steps", 0))
    rank1 = _attempts(_notes(folder, "steps", 1))
    assert rank0 == [(0, [0, 1, 2, 3]), (2, [2, 3, 4])]
    assert rank1[-1] == (2, [2, 3, 4])  # restored at 2, ended by done at 5 as rank 0 (not killed after a grace)
    # the first attempt (if rank 1 got to its setup before rank 0's failure ended it): counting from 0
    assert all(at == 0 and steps == [0, 1, 2, 3, 4][:len(steps)] for at, steps in rank1[:-1]) and len(rank1) <= 2


class BlocksInSave(ts.Trainable):
    """Its first checkpoint never ends: ``save_checkpoint`` writes where it was asked to save into the file
    ``config["saving"]``, then opens the FIFO ``config["fifo"]`` for reading, which blocks until a writer opens it
    (the test opens none)."""

    checkpoint_frequency = 1

    def step(self):
        return {"x": 1}

    def save_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "partial.bin"), "wb") as f:
            f.write(b"half a model")
        with open(self.config["saving"] + ".tmp", "w") as f:
            f.write(checkpoint_dir)
        os.replace(self.config["saving"] + ".tmp", self.config["saving"])  # whole when the test sees it
        with open(self.config["fifo"]):
            pass


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a FIFO and SIGKILL")
@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
def test_a_worker_killed_in_save_checkpoint_leaves_nothing_in_the_temp_folder(tmp_path, monkeypatch, start_method):
    """save_checkpoint writes into a folder in the trial's checkpoints/ (``.tmp_trainable_*``, deleted after the
    report; one a killed worker leaves is deleted on resume, as a cut-short checkpoint write is), not in the system
    temp folder, where the folder of a worker killed there (a stop or time limit past the grace period) stayed."""
    import time

    from tunesmith.executors._base import Done, Launch
    from tunesmith.executors.local import LocalBackend
    from tunesmith.trainable import as_function

    temp = tmp_path / "system_tmp"
    temp.mkdir()
    monkeypatch.setenv("TMPDIR", str(temp))
    fifo, saving, trial_dir = tmp_path / "fifo", tmp_path / "saving", tmp_path / "trials" / "t1"
    os.mkfifo(fifo)
    b = LocalBackend(total_resources={"cpu": 1}, grace_period_s=0, start_method=start_method)
    b.setup(as_function(BlocksInSave), str(tmp_path))
    try:
        assert b.try_start(Launch(trial_id=1, config={"fifo": str(fifo), "saving": str(saving)},
                                  trial_dir=str(trial_dir), resources={"cpu": 1.0}))
        deadline = time.monotonic() + 60
        done: list[Done] = []
        while not saving.exists():  # the worker is in save_checkpoint, blocked
            assert time.monotonic() < deadline, "save_checkpoint was not reached in 60 s"
            done += [ev for ev in b.poll(0.05) if isinstance(ev, Done)]
            assert not done, done
        folder = saving.read_text()
        b.stop(1)
        while not done:  # it reads no stop: its worker is killed
            assert time.monotonic() < deadline, "the stopped trial did not end in 60 s"
            done += [ev for ev in b.poll(0.05) if isinstance(ev, Done)]
        assert done[0].status == "stopped"
    finally:
        b.shutdown()
    assert os.listdir(temp) == [], folder
    assert os.path.dirname(folder) == str(trial_dir / "checkpoints") and os.path.basename(folder).startswith(
        ".tmp_trainable_"), folder


class DiesInFirstSave(ts.Trainable):
    """Its worker is killed (SIGKILL) inside its first ``save_checkpoint``, after writing half a checkpoint there
    and planting, beside it, a link named as such a folder to ``config["outside"]``; the retry (``max_failures``)
    saves normally and records what its trial's ``checkpoints/`` held when it first saved."""

    checkpoint_frequency = 1

    def step(self):
        return {"x": 1.0, "done": self.iteration + 1 >= 3}

    def save_checkpoint(self, checkpoint_dir):
        import signal

        checkpoints = os.path.dirname(checkpoint_dir)
        marker = self.config["marker"]
        if not os.path.exists(marker):
            with open(marker, "w") as f:
                f.write(checkpoint_dir)
            with open(os.path.join(checkpoint_dir, "partial.bin"), "wb") as f:
                f.write(b"half a model")
            os.symlink(self.config["outside"], os.path.join(checkpoints, ".tmp_trainable_link"))
            os.kill(os.getpid(), signal.SIGKILL)
        seen = self.config["seen"]
        if not os.path.exists(seen):
            with open(seen, "w") as f:
                json.dump(sorted(n for n in os.listdir(checkpoints) if n != os.path.basename(checkpoint_dir)), f)
        with open(os.path.join(checkpoint_dir, "state.json"), "w") as f:
            json.dump({"i": self.iteration}, f)

    def load_checkpoint(self, checkpoint_dir):
        pass


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SIGKILL")
def test_a_retry_deletes_what_a_worker_killed_in_save_checkpoint_left_in_its_trial(results_dir, tmp_path):
    """A trial whose worker was killed in ``save_checkpoint`` is retried in the same run (``max_failures``): the
    ``.tmp_trainable_*`` folder it left in its ``checkpoints/`` is deleted before the retry starts, not kept until a
    resume; a link there is only unlinked (its target outside the trial is kept)."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("not the trial's")
    config = {"marker": str(tmp_path / "marker"), "seen": str(tmp_path / "seen.json"), "outside": str(outside)}
    result = ts.run(DiesInFirstSave, config, max_failures=1, name="dies", storage_path=str(results_dir), verbose=0)
    trial = result.trials[0]
    assert trial.status is ts.TrialStatus.TERMINATED and trial.num_failures == 1 and trial.iteration == 3
    left = (tmp_path / "marker").read_text()
    assert os.path.basename(left).startswith(".tmp_trainable_") and os.path.dirname(left).endswith(
        os.path.join("trial_00001", "checkpoints")), left
    assert json.loads((tmp_path / "seen.json").read_text()) == []  # gone when the retry saved
    assert not os.path.lexists(left) and not os.path.lexists(os.path.join(os.path.dirname(left),
                                                                         ".tmp_trainable_link"))
    assert (outside / "keep.txt").read_text() == "not the trial's"
