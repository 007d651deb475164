"""The driver's memory follows the running trials: a finished trial leaves the controller when it ends (the store
has it), unless the scheduler reads finished trials. Counted in objects, not bytes (no timing, no thresholds):
``.venv/bin/python benchmarks/loggers.py --memory`` measures the bytes."""

from __future__ import annotations

import gc
import io
import weakref
from typing import Any

import pytest
from rich.console import Console

import tunesmith as ts
from tunesmith.callbacks.csv_json import CSVLogger, JSONLLogger
from tunesmith.callbacks.progress import Progress
from tunesmith.trial import TrialStatus

pytestmark = pytest.mark.timeout(120)
N = 24


def train(config):
    ts.report({"loss": config["x"]})


class Watch(ts.Callback):
    """Weak references to every trial that ended, and what the experiment held and counted at its end."""

    def __init__(self) -> None:
        self.ended: list[weakref.ref[Any]] = []
        self.alive_at_end: int | None = None
        self.held_at_start: int | None = None
        self.at_end: dict[str, Any] = {}

    def on_experiment_start(self, experiment: Any) -> None:
        self.controller = experiment._c  # a user's callback gets copies of trials: watch the controller's own
        self.loggers = [cb for cb in experiment._c.callbacks if isinstance(cb, (CSVLogger, JSONLLogger))]
        self.held_at_start = len(experiment.trials)
        self.counts_at_start = dict(experiment.counts)

    def on_trial_complete(self, trial: Any) -> None:
        self.ended.append(weakref.ref(self.controller.trials[trial.id]))  # forgotten only after this notification

    on_trial_error = on_trial_complete

    def on_experiment_end(self, experiment: Any) -> None:
        gc.collect()  # the controller is still alive here: anything it keeps is reachable
        self.alive_at_end = sum(ref() is not None for ref in self.ended)
        self.at_end = {"held": len(experiment.trials), "counts": dict(experiment.counts),
                       "num_trials": experiment.num_trials, "total": experiment.total_trials}


@pytest.mark.parametrize("file_loggers", [False, True])
def test_finished_trials_leave_the_controller_and_are_still_counted(file_loggers: bool) -> None:
    watch = Watch()
    rs = ts.run(train, {"x": ts.uniform(0, 1)}, metric="loss", mode="min", num_samples=N, verbose=0, seed=1,
                max_concurrent=2, callbacks=[watch], name="mem", file_loggers=file_loggers)
    assert len(watch.ended) == N
    assert watch.alive_at_end == 0  # no finished TrialView is kept by anything (the controller, a file logger)
    for logger in watch.loggers:  # nor any per-trial state of the live file loggers
        assert (logger._params, logger._last_iteration, getattr(logger, "_header", {})) == ({}, {}, {})
    assert len(watch.loggers) == (2 if file_loggers else 0)
    assert watch.at_end == {"held": 0, "counts": {TrialStatus.TERMINATED: N}, "num_trials": N, "total": N}
    assert len(rs.trials) == N and rs.best is not None  # the store has them all


def test_a_resumed_experiment_counts_its_stored_trials_without_holding_them() -> None:
    space = {"x": ts.uniform(0, 1)}
    ts.run(train, space, metric="loss", mode="min", num_samples=5, verbose=0, seed=1, name="again")
    watch = Watch()
    rs = ts.run(train, space, metric="loss", mode="min", num_samples=8, verbose=0, seed=1, name="again",
                resume=True, callbacks=[watch])
    assert watch.held_at_start == 0 and watch.counts_at_start == {TrialStatus.TERMINATED: 5}
    assert watch.at_end["counts"] == {TrialStatus.TERMINATED: 8} and watch.at_end["num_trials"] == 8
    assert len(rs.trials) == 8


class Remembers(ts.Scheduler):
    """A scheduler of one's own: by default it may read finished trials, so the controller keeps them."""

    def __init__(self) -> None:
        self.finished_seen = 0

    def on_trial_add(self, trial: Any, view: Any) -> None:
        self.finished_seen = max(self.finished_seen, sum(t.status.is_finished for t in view.trials.values()))


def test_a_scheduler_that_reads_finished_trials_keeps_them_in_its_view() -> None:
    sched = Remembers()
    watch = Watch()
    ts.run(train, {"x": ts.uniform(0, 1)}, metric="loss", mode="min", num_samples=8, verbose=0, seed=1,
           max_concurrent=1, scheduler=sched, callbacks=[watch], name="keeps")
    assert Remembers.needs_finished_trials and not ts.FIFO.needs_finished_trials and not ts.ASHA.needs_finished_trials
    assert sched.finished_seen == 7  # the 8th trial was added with the 7 before it finished and in view
    assert watch.alive_at_end == 8 and watch.at_end["held"] == 8


class RemembersLikeFIFO(ts.FIFO):
    """A subclass of a built-in that forgets: it inherits ``needs_finished_trials = False`` but reads
    ``view.trials`` all the same, so the promise is not inherited."""

    def __init__(self) -> None:
        self.finished_seen = 0

    def on_trial_add(self, trial: Any, view: Any) -> None:
        self.finished_seen = max(self.finished_seen, sum(t.status.is_finished for t in view.trials.values()))


def test_a_subclass_of_a_forgetting_scheduler_keeps_finished_trials_unless_it_says_so_itself() -> None:
    sched = RemembersLikeFIFO()
    ts.run(train, {"x": ts.uniform(0, 1)}, metric="loss", mode="min", num_samples=8, verbose=0, seed=1,
           max_concurrent=1, scheduler=sched, name="subclass")
    assert sched.finished_seen == 7


def test_the_progress_table_still_shows_the_best_finished_trials_and_counts_the_rest() -> None:
    progress = Progress(verbose=1, max_rows=4, console=Console(record=True, width=160, file=io.StringIO()))
    watch = Watch()
    rs = ts.run(train, {"x": ts.grid([i / 100 for i in range(N)])}, metric="loss", mode="min", verbose=0,
                max_concurrent=2, callbacks=[progress, watch], name="table")
    console = Console(record=True, width=160, file=io.StringIO())
    assert progress._experiment is not None
    console.print(progress.render(progress._experiment))  # the table as it was drawn at the end
    text = console.export_text()
    assert "trial_00001 *" in text  # the best (x=0), though the controller forgot it
    shown = [line.split()[0] for line in text.splitlines() if line.strip().startswith("trial_")]
    assert shown == ["trial_00001", "trial_00002", "trial_00003", "trial_00004"]  # the best four, in order
    assert f"+{N - 4} more" in text and f"{N} terminated" in text
    assert len(progress._done) <= 4 and watch.alive_at_end <= 4  # the table keeps no more than it shows
    assert rs.best.config["x"] == 0
