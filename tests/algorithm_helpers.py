"""Small algorithm pieces shared by the local and the Ray tests of the same feature (issue 18): a scheduler that
pauses each trial once, and a Ray-style stopper that ends the experiment; and the interruptions the resume tests
make (a Ctrl-C after so many trials or results)."""

from __future__ import annotations

import os
import signal

import tunesmith as ts
from tunesmith.schedulers._base import CONTINUE, Pause


class PauseOnce(ts.Scheduler):
    """Pauses each trial at its iteration 2, then resumes it."""

    def __init__(self):
        self.paused = set()

    def decision_iteration(self, trial):
        return 2 if trial.id not in self.paused and trial.iteration < 2 else None

    def on_result(self, trial, result, view):
        if result.iteration == 2 and trial.id not in self.paused:
            self.paused.add(trial.id)
            return Pause()
        return CONTINUE

    def choose_trial_to_run(self, view):
        return next((t.id for t in view.trials.values() if t.status is ts.TrialStatus.PAUSED), None)


class TotalResults(ts.Stopper):
    """A Ray-style stopper: ends the experiment after `n` results over all trials."""

    def __init__(self, n):
        self.n, self.seen = n, 0

    def __call__(self, trial_id, result):
        self.seen += 1
        return False

    def stop_all(self):
        return self.seen >= self.n


class InterruptAfter(ts.Callback):
    """Ctrl-C in the driver once ``n`` trials have completed (what a user's interrupt does)."""

    def __init__(self, n):
        self.n, self.done = n, 0

    def on_trial_complete(self, trial):
        self.done += 1
        if self.done == self.n:
            raise KeyboardInterrupt


class CtrlCAfter(ts.Callback):
    """SIGINT to the driver once ``n`` results are in (what a user's Ctrl-C does: the run stops at the top of
    its loop's next pass, with every decision on the results in hand applied)."""

    def __init__(self, n):
        self.n, self.seen = n, 0

    def on_trial_results(self, trial, results):
        self.seen += len(results)
        if self.n and self.seen >= self.n:
            self.n = 0
            os.kill(os.getpid(), signal.SIGINT)


def climb_to_4(config):
    """4 iterations of ``a * i``, a checkpoint each; each result says which ``a`` produced it."""
    checkpoint = ts.get_checkpoint()
    start = checkpoint.load()["i"] if checkpoint else 0
    for i in range(start, 4):
        ts.report({"score": float(config["a"] * (i + 1)), "a_used": config["a"]},
                  checkpoint=ts.Checkpoint.from_state({"i": i + 1}))


def exploited_at_its_last_result(**kw):
    """Real workers, one slot, PBT at iteration 4, ``climb_to_4``'s last: trial 1 (a=1) pauses there for trial 2
    (a=0), which is then the bottom and is exploited at its own last result; its clone (a=2 or 3) starts, has nothing
    left to train, and the exploit is undone: trial 2 ends with a=0 and its own score."""
    pbt = ts.PBT(perturbation_interval=4, hyperparam_mutations={"a": [2, 3]}, resample_probability=1.0, seed=0)
    return ts.run(climb_to_4, space={"a": ts.grid([1, 0])}, metric="score", mode="max", max_concurrent=1, verbose=0,
                  scheduler=pbt, **kw)
