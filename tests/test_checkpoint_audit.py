"""An ML user's checkpoint and Trainable mistakes off the happy path: each is an error naming the bad input and what
was expected (not a deep traceback, not a retry of what every retry meets again), and nothing of theirs is lost."""

from __future__ import annotations

import json
import os
import threading

import pytest

import tunesmith as ts
from tunesmith import checkpoint as ck


def test_from_dir_names_a_manifest_json_of_the_users_never_drops_it(tmp_path):
    """A data set's manifest.json with a "files" table ({"files": {"train": [...]}}) is the user's file: refused
    by name as any manifest.json of theirs is, never dropped from the checkpoint without a word."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "manifest.json").write_text(json.dumps({"files": {"train": ["a.tar", "b.tar"]}, "version": 2}))
    (src / "w.bin").write_bytes(b"w")
    with pytest.raises(ck.CheckpointError, match="manifest.json is a file of yours"):
        ck.write(ts.Checkpoint.from_dir(str(src)), str(tmp_path / "ckpts"), 1)


def test_from_dir_still_rebuilds_the_manifest_of_a_restored_checkpoint(tmp_path):
    first = ck.write(ts.Checkpoint.from_state({"step": 3}), str(tmp_path / "a"), 3)
    again = ck.write(ts.Checkpoint.from_dir(first), str(tmp_path / "b"), 4)
    assert ck.verify(again)["iteration"] == 4
    assert ts.Checkpoint(again).load() == {"step": 3}


def huge_loss(config):
    for i in range(3):
        loss = 10 ** 400 if i == 1 else float(i)
        ts.report({"loss": loss}, checkpoint=ts.Checkpoint.from_state({"i": i}))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("keep", [None, {"keep": 2, "keep_by": "loss"}])
def test_an_integer_metric_beyond_float_range_fails_its_trial_naming_it_not_the_driver(results_dir, keep):
    # was: the driver died with OverflowError: int too large to convert to float (keep_by, or the objective)
    result = ts.run(huge_loss, metric="loss", mode="min", verbose=0, **(keep or {}))
    t = result.trials[0]
    assert t.status == ts.TrialStatus.ERROR and "ConfigError" in t.error, t.error
    assert "'loss'" in t.error and "float" in t.error, t.error
    assert [h["loss"] for h in result.history(t.id)] == [0.0]  # the good result and its checkpoint are kept
    assert t.checkpoint.load() == {"i": 0}


class _Note(ts.Trainable):
    """Notes each setup in its trial's folder (a retry sets up a new object)."""

    def setup(self, config):
        with open(os.path.join(self.trial_dir, "setups"), "a") as f:
            f.write("x")
        self.n = 0

    def step(self):
        self.n += 1
        return {"loss": 1.0 / self.n, "done": self.n >= 3}


class StepReturnsNone(_Note):
    def step(self):
        result = super().step()
        return None if self.n == 2 else result


class SavesALock(_Note):
    checkpoint_frequency = 1

    def save_checkpoint(self, checkpoint_dir):
        return {"n": self.n, "guard": threading.Lock()} if self.n == 2 else {"n": self.n}

    def load_checkpoint(self, checkpoint):
        self.n = checkpoint["n"]


def _setups(result, trial):
    with open(os.path.join(result.path, "trials", f"trial_{trial.id:05d}", "setups")) as f:
        return len(f.read())


@pytest.mark.timeout(120)
def test_a_step_returning_no_dict_is_a_config_error_not_retried(results_dir):
    # was: TypeError, retried max_failures times although every retry meets it again (report() of a non-dict is a
    # ConfigError, and so is save_checkpoint returning the wrong thing)
    result = ts.run(StepReturnsNone, metric="loss", mode="min", max_failures=2, verbose=0)
    t = result.trials[0]
    assert t.status == ts.TrialStatus.ERROR, t.error
    assert "ConfigError: StepReturnsNone.step() must return a dict of metrics, got NoneType" in t.error, t.error
    assert _setups(result, t) == 1


@pytest.mark.timeout(120)
def test_save_checkpoint_returning_a_dict_that_cannot_be_pickled_names_the_part(results_dir):
    # was: a raw TypeError: cannot pickle '_thread.lock' object from inside cloudpickle, naming neither
    # save_checkpoint nor the part
    result = ts.run(SavesALock, metric="loss", mode="min", verbose=0)
    t = result.trials[0]
    assert t.status == ts.TrialStatus.ERROR, t.error
    assert "CheckpointError" in t.error and "SavesALock.save_checkpoint()" in t.error, t.error
    assert "['guard'] (_thread.lock)" in t.error, t.error
    assert t.checkpoint.iteration == 1  # the last good checkpoint stays


@pytest.mark.parametrize("frequency", [0.5, -2, "5", True])
def test_a_checkpoint_frequency_that_is_not_a_count_is_refused_before_anything_runs(results_dir, frequency):
    # was: 0.5 and -2 ran with no checkpoint at all, "5" checkpointed every 5, True every iteration, silently
    class Every(_Note):
        checkpoint_frequency = frequency

    with pytest.raises(ts.ConfigError, match=r"Every\.checkpoint_frequency must be a whole number of iterations "
                                             r"\(0: none\), got " + repr(frequency).replace(".", r"\.")):
        ts.run(Every, metric="loss", mode="min", verbose=0)
    assert not results_dir.exists() or os.listdir(results_dir) == []  # refused before an experiment is made


class SetsItsFrequency(_Note):
    def setup(self, config):
        super().setup(config)
        self.checkpoint_frequency = config["every"]


@pytest.mark.timeout(120)
def test_a_checkpoint_frequency_set_in_setup_is_checked_in_the_trial(results_dir):
    result = ts.run(SetsItsFrequency, {"every": 1.5}, metric="loss", mode="min", max_failures=2, verbose=0)
    t = result.trials[0]
    assert t.status == ts.TrialStatus.ERROR, t.error
    assert "ConfigError: SetsItsFrequency.checkpoint_frequency must be a whole number" in t.error, t.error
    assert _setups(result, t) == 1  # not retried


class SavesADict(_Note):
    checkpoint_frequency = 1

    def save_checkpoint(self, checkpoint_dir):
        return {"n": self.n}


@pytest.mark.timeout(120)
def test_the_dict_a_trainable_saved_is_what_its_checkpoint_loads(results_dir):
    # was: CheckpointError '... holds no state.pkl: it was made with from_dir; use as_dir()' (the user never called
    # from_dir), leaving them to unpickle _dict_checkpoint.pkl by hand, unchecked
    result = ts.run(SavesADict, metric="loss", mode="min", verbose=0)
    assert result.best.checkpoint.load() == {"n": 3}
    assert result.trials[0].checkpoint.load() == {"n": 3}
    path = result.best.checkpoint.path
    with open(os.path.join(path, "_dict_checkpoint.pkl"), "r+b") as f:  # damaged since written: never unpickled
        f.write(b"X")
    with pytest.raises(ck.CheckpointError, match="does not match its checksum"):
        ts.Checkpoint(path).load()


def _accuracy_rises_then_falls(config):
    for i, acc in enumerate([0.5, 0.9, 0.8, 0.6, 0.3]):
        ts.report({"loss": 1.0 - acc, "accuracy": acc}, checkpoint=ts.Checkpoint.from_state(i))


def _kept_states(result):
    (trial,) = result.trials
    return sorted(c.load() for c in (ts.Checkpoint(p) for _it, p in result._store.checkpoints(trial.id)))


def test_keep_by_a_metric_the_run_does_not_optimise_needs_its_direction(results_dir):
    """``keep_by`` ranked checkpoints in the direction of ``run``'s ``mode``: with ``metric="loss", mode="min"``,
    ``keep_by="accuracy"`` kept the lowest accuracies and deleted the best checkpoints. Now a metric other than the
    run's must come with its direction, ``keep_by=("accuracy", "max")``; refused before anything is created."""
    with pytest.raises(ts.ConfigError, match=r"keep_by='accuracy' is not a metric the run optimises.*"
                                             r"keep_by=\('accuracy', 'max'\) or \('accuracy', 'min'\)"):
        ts.run(_accuracy_rises_then_falls, metric="loss", mode="min", keep=2, keep_by="accuracy", name="k0",
               verbose=0)
    assert not (results_dir / "k0").exists()
    result = ts.run(_accuracy_rises_then_falls, metric="loss", mode="min", keep=2, keep_by=("accuracy", "max"),
                    name="k1", verbose=0)
    assert _kept_states(result) == [1, 2, 4]  # the best two by accuracy (0.9, 0.8), and the latest
    result = ts.run(_accuracy_rises_then_falls, metric="loss", mode="min", keep=2, keep_by="loss", name="k2",
                    verbose=0)
    assert _kept_states(result) == [1, 2, 4]  # the run's own metric: its mode, as before
    with pytest.raises(ts.ConfigError, match=r"keep_by: expected a metric name or \(name, 'min'\|'max'\)"):
        ts.run(_accuracy_rises_then_falls, keep=2, keep_by=("accuracy", "up"), name="k3", verbose=0)


def _from_dir_then_chdir(config):
    os.makedirs("ckpt", exist_ok=True)
    with open(os.path.join("ckpt", "weights.txt"), "w") as f:
        f.write("w1")
    checkpoint = ts.Checkpoint.from_dir("ckpt")  # relative to the trial's folder, where the trial runs
    os.makedirs("elsewhere", exist_ok=True)
    os.chdir("elsewhere")  # a library changing the working folder between the two lines
    ts.report({"loss": 1.0}, checkpoint=checkpoint)


def test_from_dir_of_a_relative_path_means_the_folder_it_named_when_made(results_dir):
    """``from_dir("ckpt")`` kept the path relative: after a change of working folder, ``report()`` looked for
    ``ckpt`` in the new one (it said the folder was gone, or copied another folder of that name)."""
    result = ts.run(_from_dir_then_chdir, name="rel", verbose=0)
    (trial,) = result.trials
    assert trial.status is ts.TrialStatus.TERMINATED, trial.error
    with open(os.path.join(trial.checkpoint.as_dir(), "weights.txt")) as f:
        assert f.read() == "w1"
