"""Resuming an experiment whose scheduler had paused trials: the scheduler, not the resume, decides when they run.

An uninterrupted run and the same seeded run interrupted (Ctrl-C: SIGINT to the driver, as a user's key press)
then resumed, with one slot, must train the same iterations per trial and clone the same lineage: the trials
the scheduler had paused wait paused until it chooses them, as they would have, while the trial interrupted
mid-run restarts from its checkpoint.
"""

from __future__ import annotations

import pytest
from algorithm_helpers import CtrlCAfter

import tunesmith as ts


class Reported(ts.Callback):
    """Every result the driver receives, in order: (trial, iteration)."""

    def __init__(self):
        self.seen = []

    def on_trial_results(self, trial, results):
        self.seen += [(trial.id, result.iteration) for result in results]


def _interrupted_then_resumed(run, after, whole, folder):
    """Interrupt ``run`` after ``after`` results, resume it: the results of both parts, in order, are the
    uninterrupted run's (``whole``: its ``Reported``), no result trained twice or skipped, nothing run early."""
    before, rest = Reported(), Reported()
    with pytest.raises(KeyboardInterrupt):
        run("cut", callbacks=[CtrlCAfter(after), before])
    assert any(t.status is ts.TrialStatus.PAUSED for t in ts.load(str(folder / "cut")).trials)
    resumed = run("cut", resume=True, callbacks=[rest])
    assert before.seen + rest.seen == whole.seen
    return resumed


def _hb_train(config):
    ckpt = ts.get_checkpoint()
    start = ckpt.load()["it"] if ckpt else 0
    for it in range(start + 1, 9):
        ts.report({"loss": config["x"] + 1.0 / it}, checkpoint=ts.Checkpoint.from_state({"it": it}))


def _hb_run(name, resume=False, callbacks=()):
    return ts.run(_hb_train, {"x": ts.grid([0.8, 0.1, 0.7, 0.2, 0.6, 0.3, 0.5, 0.4])}, metric="loss", mode="min",
                  scheduler=ts.HyperBand(max_t=8, reduction_factor=2), max_concurrent=1, name=name, verbose=0,
                  resume=resume, callbacks=list(callbacks))


# Each cut right after a result the scheduler paused its trial at (the only trial running): the worker reports
# nothing more before the run stops. 6 results: every trial so far paused at the first rung; 10: the first rung
# decided, a winner resumed and paused at the second while the others wait to be chosen; 14: the second decided,
# a winner paused at the third. (A cut while a trial streams, its next result arriving as the run stops: that
# result is stored undecided and the resume decides it, tests/test_resume_edges.py.)
@pytest.mark.parametrize("after", [6, 10, 14])
def test_hyperband_resume_lets_the_scheduler_resume_its_paused_trials(after, results_dir):
    seen = Reported()
    whole = _hb_run("whole", callbacks=[seen])
    assert [(t.id, t.iteration) for t in whole.trials] == [(1, 1), (2, 8), (3, 1), (4, 4), (5, 1), (6, 2), (7, 1),
                                                          (8, 2)]
    resumed = _interrupted_then_resumed(_hb_run, after, seen, results_dir)
    assert [(t.id, t.iteration) for t in resumed.trials] == [(t.id, t.iteration) for t in whole.trials]
    assert all(t.status is ts.TrialStatus.TERMINATED for t in resumed.trials)


def _pbt_train(config):
    ckpt = ts.get_checkpoint()
    state = ckpt.load() if ckpt else {"it": 0, "w": 0.0}
    for it in range(state["it"] + 1, 9):
        state = {"it": it, "w": state["w"] + config["lr"]}
        ts.report({"score": state["w"]}, checkpoint=ts.Checkpoint.from_state(state))


def _pbt_run(name, resume=False, callbacks=()):
    return ts.run(_pbt_train, {"lr": ts.grid([0.9, 0.1, 0.5, 0.3])}, metric="score", mode="max", max_concurrent=1,
                  scheduler=ts.PBT(perturbation_interval=2, hyperparam_mutations={"lr": ts.uniform(0, 1)}, seed=0),
                  name=name, verbose=0, resume=resume, callbacks=list(callbacks))


def _lineage(results):
    return [(e["trial_id"], e["source"], e["source_iteration"], e["iteration"]) for e in results.lineage()]


# each cut right after a perturbation point's result, where PBT paused or exploited its trial: 2, the first
# trial paused to wait for newcomers; 6, three paused at their first point; 10, the first exploit decided
@pytest.mark.parametrize("after", [2, 6, 10])
def test_pbt_resume_lets_the_scheduler_resume_its_paused_trials(after, results_dir):
    seen = Reported()
    whole = _pbt_run("whole", callbacks=[seen])
    resumed = _interrupted_then_resumed(_pbt_run, after, seen, results_dir)
    assert _lineage(resumed) == _lineage(whole)
    assert [(t.id, t.iteration, t.config) for t in resumed.trials] == [(t.id, t.iteration, t.config)
                                                                     for t in whole.trials]
