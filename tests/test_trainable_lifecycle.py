"""ts.Trainable's object lifecycle: which object runs a restart (a retry, a pause, an exploit), when cleanup() runs and
whose trial its error lands in, ``done`` judged as the driver judges it, and save_checkpoint returning a dict."""

from __future__ import annotations

import json
import os

import pytest
from algorithm_helpers import PauseOnce

import tunesmith as ts
from tunesmith.schedulers._base import CONTINUE, STOP


def _note(folder, name, value):
    """One line of JSON in ``<folder>/<name>.json``."""
    with open(os.path.join(folder, f"{name}.json"), "a") as f:
        f.write(json.dumps(value) + "\n")


def _notes(folder, name):
    path = os.path.join(folder, f"{name}.json")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f]


def _folder(result, trial_id):
    return os.path.join(result.path, "trials", f"trial_{trial_id:05d}")


class Lifecycle(ts.Trainable):
    """Notes each setup (with its process), reset_config call and cleanup (with the steps its object made) in the
    trial's folder; ``reset_config`` answers ``config["reset"]``; done after ``config["steps"]`` results."""

    def setup(self, config):
        self.own_steps = 0
        _note(self.trial_dir, "setup", os.getpid())

    def step(self):
        self.own_steps += 1
        return {"loss": 1.0, "own_steps": self.own_steps, "done": self.iteration + 1 >= self.config["steps"]}

    def reset_config(self, new_config):
        _note(self.trial_dir, "reset_config", self.own_steps)
        return self.config["reset"]

    def cleanup(self):
        _note(self.trial_dir, "cleanup", self.own_steps)


class CrashesOnce(Lifecycle):
    """Its first object raises in its third step()."""

    def step(self):
        marker = os.path.join(self.trial_dir, "crashed")
        if self.own_steps == 2 and not os.path.exists(marker):
            open(marker, "w").close()
            self.own_steps += 1
            raise RuntimeError("crash in step 3")
        return super().step()


@pytest.mark.parametrize("reset", [True, False], ids=["reset_config_true", "reset_config_false"])
def test_a_retried_trainable_is_a_new_object_set_up_again(results_dir, reset):
    """An object whose step() raised is never reused (whatever reset_config would say): it is cleaned up, and the
    retry, which restarts from scratch (no checkpoint), builds a new object and calls setup()."""
    result = ts.run(CrashesOnce, {"reset": reset, "steps": 5}, metric="loss", mode="min", max_failures=1,
                    max_concurrent=1, verbose=0)
    trial = result.trials[0]
    assert trial.status == ts.TrialStatus.TERMINATED, trial.error
    folder = _folder(result, trial.id)
    setups = _notes(folder, "setup")
    assert len(set(setups)) == 1, "the retry ran in another worker process: this test needs the same one"
    assert [h["own_steps"] for h in result.history(trial.id)] == [1, 2, 3, 4, 5]
    assert len(setups) == 2
    assert _notes(folder, "reset_config") == []  # a failed object is not offered the restart
    assert _notes(folder, "cleanup") == [3, 5]  # the failed object (3 steps), then the last one at done


@pytest.mark.parametrize("reset, own_steps, setups, cleanups",
                         [(True, [1, 2, 3, 4, 5], 1, [5]), (False, [1, 2, 1, 2, 3], 2, [2, 3])],
                         ids=["reset_config_true", "reset_config_false"])
def test_a_paused_trainable_keeps_its_object_only_when_reset_config_says_so(results_dir, reset, own_steps, setups,
                                                                            cleanups):
    """A restart with the same config (a pause, then resume, in the same worker) asks reset_config too: True keeps
    the object (no setup), False cleans it up and builds a new one (restored from the pause's checkpoint)."""
    result = ts.run(Lifecycle, {"reset": reset, "steps": 5}, metric="loss", mode="min", scheduler=PauseOnce(),
                    max_concurrent=1, verbose=0)
    trial = result.trials[0]
    assert trial.status == ts.TrialStatus.TERMINATED, trial.error
    assert [h["training_iteration"] for h in result.history(trial.id)] == [1, 2, 3, 4, 5]
    folder = _folder(result, trial.id)
    assert len(set(_notes(folder, "setup"))) == 1, "resumed in another worker process: this test needs the same one"
    assert [h["own_steps"] for h in result.history(trial.id)] == own_steps
    assert len(_notes(folder, "setup")) == setups
    assert _notes(folder, "reset_config") == [2]  # asked once, at the restart, with the same config
    assert _notes(folder, "cleanup") == cleanups


class CleansUp(ts.Trainable):
    """reset_config True (its objects may be kept); cleanup() notes the trial and working folder into
    ``config["marks"]``, and raises when ``config["boom"]``."""

    def setup(self, config):
        self.tid = ts.get_trial_id()

    def step(self):
        return {"loss": 1.0, "done": self.iteration + 1 >= 3}

    def reset_config(self, new_config):
        return True

    def cleanup(self):
        try:
            session = ts.get_trial_id()
        except RuntimeError:  # outside any trial
            session = None
        _note(self.config["marks"], "cleanup", {"trial": self.tid, "cwd": os.getcwd(), "session": session})
        if self.config["boom"]:
            raise RuntimeError(f"cleanup of trial {self.tid} failed")


def _output(result, trial_id):
    path = os.path.join(_folder(result, trial_id), "output.log")
    if not os.path.exists(path):
        return ""
    with open(path) as f:
        return f.read()


def test_a_kept_trainables_cleanup_runs_at_its_own_trials_end_and_its_error_is_a_warning(results_dir, tmp_path):
    """Objects whose trial ended at done are cleaned up then, in their own trial (its folder), not by the next
    trial; an error there is a warning naming the trial in its output.log, never another trial's failure."""
    marks = str(tmp_path / "marks")
    os.makedirs(marks)
    result = ts.run(CleansUp, {"boom": ts.grid([True, False, False]), "marks": marks}, metric="loss", mode="min",
                    max_concurrent=1, verbose=0)
    assert [t.status for t in result.trials] == [ts.TrialStatus.TERMINATED] * 3, [t.error for t in result.trials]
    cleanups = _notes(marks, "cleanup")
    assert sorted(c["trial"] for c in cleanups) == [1, 2, 3]  # the last trial's too
    for c in cleanups:
        assert os.path.samefile(c["cwd"], _folder(result, c["trial"])) and c["session"] == c["trial"]
    assert "cleanup() of trial_00001" in _output(result, 1) and "cleanup of trial 1 failed" in _output(result, 1)
    assert "cleanup" not in _output(result, 2)


def test_a_trainable_at_its_iteration_limit_is_cleaned_up_in_its_trial(results_dir, tmp_path):
    """stop={"training_iteration": 2} ends the trial for good at 2: its object is not kept but cleaned up there,
    inside the trial (its session answers)."""
    marks = str(tmp_path / "marks")
    os.makedirs(marks)
    result = ts.run(CleansUp, {"boom": False, "marks": marks}, metric="loss", mode="min",
                    stop={"training_iteration": 2}, verbose=0)
    assert result.trials[0].iteration == 2
    assert [(c["trial"], c["session"]) for c in _notes(marks, "cleanup")] == [(1, 1)]


class StopFirstAtTwo(ts.Scheduler):
    """Stops trial 1 at its iteration 2 (a decision point: the trial cannot tell a stop from a pause there)."""

    def decision_iteration(self, trial):
        return 2 if trial.id == 1 and trial.iteration < 2 else None

    def on_result(self, trial, result, view):
        return STOP if trial.id == 1 and result.iteration == 2 else CONTINUE


class StopAllAtTwo(StopFirstAtTwo):
    def decision_iteration(self, trial):
        return 2 if trial.iteration < 2 else None

    def on_result(self, trial, result, view):
        return STOP if result.iteration == 2 else CONTINUE


def test_an_object_kept_after_a_stop_is_cleaned_up_outside_the_next_trial(results_dir, tmp_path):
    """Trial 1, stopped at a decision point, keeps its object (it could have been a pause); trial 2, next in the
    same worker, drops it before its own setup: the cleanup runs in trial 1's folder, without trial 2's session,
    and its error is a warning naming trial 1: trial 2 runs to its end."""
    marks = str(tmp_path / "marks")
    os.makedirs(marks)
    result = ts.run(CleansUp, {"boom": ts.grid([True, False]), "marks": marks}, metric="loss", mode="min",
                    scheduler=StopFirstAtTwo(), max_concurrent=1, verbose=0)
    assert [t.status for t in result.trials] == [ts.TrialStatus.TERMINATED] * 2, [t.error for t in result.trials]
    assert [t.iteration for t in result.trials] == [2, 3]
    cleanups = _notes(marks, "cleanup")
    assert [c["trial"] for c in cleanups] == [1, 2]
    assert os.path.samefile(cleanups[0]["cwd"], _folder(result, 1)) and cleanups[0]["session"] is None
    assert "cleanup() of trial_00001" in _output(result, 2) and "cleanup of trial 1 failed" in _output(result, 2)


def test_an_object_still_kept_when_the_worker_exits_is_cleaned_up(results_dir, tmp_path):
    """The last trial's kept object (stopped at a decision point) is cleaned up when its worker process exits at
    the end of the run."""
    marks = str(tmp_path / "marks")
    os.makedirs(marks)
    result = ts.run(CleansUp, {"boom": ts.grid([False, False]), "marks": marks}, metric="loss", mode="min",
                    scheduler=StopAllAtTwo(), max_concurrent=1, verbose=0)
    assert [t.iteration for t in result.trials] == [2, 2]
    cleanups = _notes(marks, "cleanup")
    assert [c["trial"] for c in cleanups] == [1, 2]
    assert all(os.path.samefile(c["cwd"], _folder(result, c["trial"])) for c in cleanups)


class DoneAsInt(ts.Trainable):
    """``done`` as Ray Tune users often write it: a truthy int."""

    checkpoint_at_end = True

    def step(self):
        return {"loss": 1.0, "done": int(self.iteration + 1 >= 3)}

    def save_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "it.json"), "w") as f:
            json.dump(self.iteration, f)


def test_a_truthy_done_ends_the_trial_with_its_end_checkpoint(results_dir):
    result = ts.run(DoneAsInt, metric="loss", mode="min", verbose=0, time_budget_s=20)
    trial = result.trials[0]
    assert [h["training_iteration"] for h in result.history(trial.id)] == [1, 2, 3]
    assert trial.checkpoint is not None and trial.checkpoint.iteration == 3
    with open(os.path.join(trial.checkpoint.path, "it.json")) as f:
        assert json.load(f) == 3


class DoneAsText(DoneAsInt):
    def step(self):
        return {"loss": 1.0, "done": "no"}  # a string never ends a trial, on either side (as a stop={"done": True})


def test_a_string_done_does_not_end_the_trial(results_dir):
    result = ts.run(DoneAsText, metric="loss", mode="min", stop={"training_iteration": 4}, verbose=0)
    assert result.trials[0].iteration == 4


class DictCheckpoint(ts.Trainable):
    """Ray Tune's dict form: save_checkpoint returns the state, load_checkpoint gets it back. Its first object
    fails in step 3, after the checkpoint at 2."""

    checkpoint_frequency = 2

    def setup(self, config):
        self.w = 0
        self.loaded = None

    def step(self):
        marker = os.path.join(self.trial_dir, "crashed")
        if self.iteration == 2 and not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("crash in step 3")
        self.w += 1
        return {"loss": 1.0, "w": self.w, "loaded": self.loaded or "", "done": self.iteration + 1 >= 4}

    def save_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "extra.txt"), "w") as f:
            f.write("kept beside the dict")
        return {"w": self.w}

    def load_checkpoint(self, checkpoint):
        self.loaded = json.dumps(checkpoint)
        self.w = checkpoint["w"]


def test_save_checkpoint_returning_a_dict_hands_it_back_to_load_checkpoint(results_dir):
    result = ts.run(DictCheckpoint, metric="loss", mode="min", max_failures=1, verbose=0)
    trial = result.trials[0]
    assert trial.status == ts.TrialStatus.TERMINATED, trial.error
    history = result.history(trial.id)
    assert [h["w"] for h in history] == [1, 2, 3, 4]  # restored at 2 from the dict
    assert history[2]["loaded"] == json.dumps({"w": 2})
    with open(os.path.join(trial.checkpoint.path, "extra.txt")) as f:  # the files it wrote are kept too
        assert f.read() == "kept beside the dict"


class ReturnsAList(DictCheckpoint):
    def save_checkpoint(self, checkpoint_dir):
        return [self.w]


class ReturnsItsFolder(DictCheckpoint):
    """Ray Tune's documented ``return checkpoint_dir``: the files are the checkpoint."""

    def save_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "w.json"), "w") as f:
            json.dump({"w": self.w}, f)
        return checkpoint_dir

    def load_checkpoint(self, checkpoint_dir):
        with open(os.path.join(checkpoint_dir, "w.json")) as f:
            super().load_checkpoint(json.load(f))


def test_save_checkpoint_returning_anything_else_fails_the_trial_naming_what_is_expected(results_dir):
    result = ts.run(ReturnsAList, metric="loss", mode="min", verbose=0)
    trial = result.trials[0]
    assert trial.status == ts.TrialStatus.ERROR
    assert "ConfigError: ReturnsAList.save_checkpoint() returned a list" in trial.error
    assert "None" in trial.error and "dict" in trial.error


def test_save_checkpoint_returning_its_folder_is_a_folder_checkpoint(results_dir):
    result = ts.run(ReturnsItsFolder, metric="loss", mode="min", max_failures=1, verbose=0)
    trial = result.trials[0]
    assert trial.status == ts.TrialStatus.TERMINATED, trial.error
    assert [h["w"] for h in result.history(trial.id)] == [1, 2, 3, 4]


def test_a_dict_file_added_to_a_checkpoint_after_it_was_written_is_not_unpickled(tmp_path):
    """The stored dict is unpickled only when the checkpoint's checked and signed manifest lists it."""
    from tunesmith import checkpoint as ckpt
    from tunesmith.trainable import DICT_FILE, _restored

    src = tmp_path / "src"
    src.mkdir()
    (src / "weights.bin").write_bytes(b"w")
    path = ckpt.write(ts.Checkpoint.from_dir(str(src)), str(tmp_path / "ckpts"), 2)
    assert _restored(ts.Checkpoint(path, iteration=2), "T.load_checkpoint") == path  # no dict: the folder
    with open(os.path.join(path, DICT_FILE), "wb") as f:
        f.write(b"not to be unpickled")
    with pytest.raises(ckpt.CheckpointError, match=f"refusing to unpickle {DICT_FILE}.*does not list it"):
        _restored(ts.Checkpoint(path, iteration=2), "T.load_checkpoint")
