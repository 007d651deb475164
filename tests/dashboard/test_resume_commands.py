"""What the dashboard's control commands leave for a resume: a time budget extended from the page is kept (and is the
budget the summary and the schedulers see), a trial stopped from the page stays stopped when its driver dies before
the trial's next report, and an experiment stopped from the page stays stopped. The commands go through the page's
control endpoint (``_post_from_page``); the drivers are real runs, one killed with SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import pytest
from test_add_samples import _post_from_page, _wait, held_train  # noqa: E402  (tests have no packages)

import tunesmith as ts
from tunesmith.dashboard import make_app
from tunesmith.store.sqlite import Store
from tunesmith.trial import TrialStatus

pytestmark = pytest.mark.timeout(180)


def gated(config: dict[str, Any]) -> None:
    """Reports iteration 1 (with a checkpoint), then waits for ``config["release"]`` (bounded: 30 s) and reports up to
    iteration 5; a restart goes on from its checkpoint. ``x == 0`` fails at once."""
    if config["x"] == 0:
        raise RuntimeError("x=0 fails")
    checkpoint = ts.get_checkpoint()
    start = checkpoint.load()["i"] if checkpoint is not None else 0
    for i in range(start, 5):
        if i >= 1:
            for _ in range(3000):
                if os.path.exists(config["release"]):
                    break
                time.sleep(0.01)
        ts.report({"loss": config["x"] / (i + 1)}, checkpoint=ts.Checkpoint.from_state({"i": i + 1}))


class SeesDeadline(ts.FIFO):
    """FIFO that records the ``view.deadline_s`` and ``view.now`` each result was decided with."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[float | None, float]] = []

    def on_result(self, trial: Any, result: Any, view: Any) -> Any:
        self.seen.append((view.deadline_s, view.now))
        return super().on_result(trial, result, view)


def _commands(store: Store) -> list[tuple[int | None, dict[str, Any]]]:
    return [(tid, data) for _s, _t, kind, tid, data in store.events() if kind == "command"]


def _until(cond: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.02)


def test_a_time_budget_extended_from_the_page_is_kept_over_a_resume(results_dir: Any, tmp_path: Any) -> None:
    """time_budget_s=3, extended by 600 s from the page: the schedulers' ``view.deadline_s`` and the summary say 603;
    Ctrl-C once the original 3 s are spent, then a resume with the run's own time_budget_s=3 still has the 600 s: it
    runs the rest of the trials (and says 603 again)."""
    root, name = str(results_dir), "extended"
    exp = os.path.join(root, name)
    db = os.path.join(exp, "experiment.db")
    release = str(tmp_path / "release")
    space = {"x": ts.grid([1.0, 2.0, 3.0]), "release": release}
    scheduler = SeesDeadline()
    failure: list[BaseException] = []

    def steps() -> None:
        try:
            _wait(db, lambda s: any(t["iteration"] >= 1 for t in s.trials()))
            _post_from_page(root, name, {"action": "extend_time", "seconds": 600})
            _wait(db, _commands)
            _until(lambda: scheduler.seen and scheduler.seen[-1][1] > 3.5, "the original budget spent")
        except BaseException as e:  # noqa: BLE001 - raised in the test's thread
            failure.append(e)
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C

    helper = threading.Thread(target=steps, daemon=True)
    helper.start()
    with pytest.raises(KeyboardInterrupt):
        ts.run(held_train, space=space, metric="loss", mode="min", verbose=0, name=name, max_concurrent=1,
               time_budget_s=3, scheduler=scheduler)
    helper.join(10)
    if failure:
        raise failure[0]
    store = Store(db, readonly=True)
    try:
        ((_tid, command),) = _commands(store)
        before = len(store.trials())
    finally:
        store.close()
    assert command["applied"] and command["detail"] == "time budget now 603 s", command
    assert scheduler.seen[-1][0] == 603, scheduler.seen[-3:]  # the schedulers see the budget in force
    assert make_app(root).experiments.summary(name)["time_budget_s"] == 603
    assert before == 1
    open(release, "w").close()
    resumed_scheduler = SeesDeadline()
    resumed = ts.run(held_train, space=space, metric="loss", mode="min", verbose=0, name=name, max_concurrent=1,
                     time_budget_s=3, scheduler=resumed_scheduler, resume=True)
    assert [t.status for t in resumed.trials] == [TrialStatus.TERMINATED] * 3
    assert {deadline for deadline, _now in resumed_scheduler.seen} == {603}
    assert resumed._store.meta()["spec"]["time_budget_s"] == 3  # the run's own: a second resume adds 600 again
    assert make_app(root).experiments.summary(name)["time_budget_s"] == 603


_DRIVER = """
import sys
sys.path.insert(0, {tests!r})
import tunesmith as ts
from test_resume_commands import gated

ts.run(gated, space={{"x": 1.0, "release": {release!r}}}, metric="loss", mode="min", verbose=0, name={name!r},
       storage_path={root!r}, num_samples=1)
"""


def test_a_trial_stopped_from_the_page_stays_stopped_when_its_driver_dies(results_dir: Any, tmp_path: Any) -> None:
    """stop_trial applied (its event says so), then the driver is killed (SIGKILL) before the trial's next report: the
    resume does not run the trial again; it ends TERMINATED at the iteration it was stopped at, with a ``stop`` event
    from the dashboard, and the page's "why" says so."""
    root, name = str(results_dir), "killed"
    exp = os.path.join(root, name)
    db = os.path.join(exp, "experiment.db")
    release = str(tmp_path / "release")
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(_DRIVER.format(tests=os.path.dirname(__file__), release=release, name=name,
                                                     root=root)))
    driver = subprocess.Popen([sys.executable, str(script)], start_new_session=True)
    try:
        _wait(db, lambda s: (t := s.trial(1)) is not None and t["iteration"] >= 1)
        _post_from_page(root, name, {"action": "stop_trial", "trial_id": 1})
        ((_tid, command),) = _wait(db, _commands)
        assert command["applied"] and command["detail"] == "stopping trial_00001 at iteration 1", command
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver, its workers and the trial: nothing more is reported
        driver.wait(30)
    open(release, "w").close()  # were the trial run again, it would go on to iteration 5
    resumed = ts.run(gated, space={"x": 1.0, "release": release}, metric="loss", mode="min", verbose=0, name=name,
                     num_samples=1, resume=True)
    ((trial),) = resumed.trials
    assert (trial.status, trial.iteration) == (TrialStatus.TERMINATED, 1)
    assert [r.iteration for r in resumed._store.results(1)] == [1]
    stops = [(tid, data) for _s, _t, kind, tid, data in resumed._store.events() if kind == "stop"]
    assert stops == [(1, {"reason": "dashboard", "iteration": 1})]
    (why,) = make_app(root).experiments.events(name)["why"]
    assert why["reason"] == "stopped from the dashboard at iteration 1", why


def test_the_why_panel_takes_a_trials_end_from_its_stop_event_not_from_a_command(results_dir: Any,
                                                                                  tmp_path: Any) -> None:
    """A store where an applied stop_trial was lost (written by a driver killed before the trial's next report, whose
    resume ran the trial to its end): the panel says it ran to its end, not that the dashboard stopped it."""
    root = str(results_dir)
    release = tmp_path / "release"
    release.touch()
    result = ts.run(gated, space={"x": 1.0, "release": str(release)}, metric="loss", mode="min", verbose=0,
                    name="lost", num_samples=1)
    result._store.close()
    store = Store(os.path.join(result.path, "experiment.db"))
    try:
        with store.transaction() as db:
            store.log_event(db, "command", 1, {"action": "stop_trial", "trial_id": 1, "applied": True,
                                               "detail": "stopping trial_00001 at iteration 1"})
    finally:
        store.close()
    (why,) = make_app(root).experiments.events("lost")["why"]
    assert why["reason"] == "ran to its end (iteration 5)", why


def test_an_experiment_stopped_from_the_page_stays_stopped_on_resume(results_dir: Any, tmp_path: Any) -> None:
    """num_samples=4: trial 1 fails, trial 2 runs when the page stops the experiment. A resume (even asked to rerun
    the failed trials, as after a Stopper's stop_all) ends at once: no new trial, nothing rerun, trial 1 stays ERROR;
    the page's "why" says the dashboard stopped it."""
    root, name = str(results_dir), "halted"
    exp = os.path.join(root, name)
    db = os.path.join(exp, "experiment.db")
    release = str(tmp_path / "release")
    space = {"x": ts.grid([0.0, 1.0, 2.0, 3.0]), "release": release}

    def steps() -> None:
        _wait(db, lambda s: (t := s.trial(2)) is not None and t["iteration"] >= 1)
        _post_from_page(root, name, {"action": "stop_experiment"})
        _wait(db, _commands)

    helper = threading.Thread(target=steps, daemon=True)
    helper.start()
    first = ts.run(gated, space=space, metric="loss", mode="min", verbose=0, name=name, max_concurrent=1)
    helper.join(10)
    assert [(t.status, t.iteration) for t in first.trials] == [(TrialStatus.ERROR, 0), (TrialStatus.TERMINATED, 1)]
    first._store.close()
    open(release, "w").close()
    resumed = ts.run(gated, space=space, metric="loss", mode="min", verbose=0, name=name, max_concurrent=1,
                     resume=True, restart_errored="restart")
    assert [(t.status, t.iteration) for t in resumed.trials] == [(TrialStatus.ERROR, 0), (TrialStatus.TERMINATED, 1)]
    assert resumed.status == "finished"
    why = {w["trial"]: w["reason"] for w in make_app(root).experiments.events(name)["why"]}
    assert why[2] == "stopped from the dashboard with the experiment at iteration 1", why
