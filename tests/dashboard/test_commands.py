"""The dashboard's control commands at the driver's edges, in real runs with the commands written as the app writes
them: a command left when a run ends is refused and logged by that run, one written before a driver started is
refused by that driver (never applied by a later resume), ``stop_trial`` stops a paused or not yet started trial
too, and a refusal names a trial's real state."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from typing import Any

import pytest
from test_add_samples import _request, _wait  # noqa: E402  (tests have no packages)

import tunesmith as ts
from tunesmith._run import _acquire, _release
from tunesmith.dashboard import _commands as commands_module
from tunesmith.dashboard import make_app
from tunesmith.dashboard._commands import ENDED, STALE, commands_dir, write_command
from tunesmith.schedulers._base import CONTINUE, PAUSE, Scheduler
from tunesmith.searchers.random import Random
from tunesmith.store.sqlite import Store
from tunesmith.trial import TrialStatus

pytestmark = pytest.mark.timeout(180)


def held(config: dict[str, Any]) -> None:
    """Reports every 10 ms until the test creates ``<gate>/release_<x>`` (bounded: 30 s)."""
    release = os.path.join(config["gate"], f"release_{config['x']}")
    for i in range(3000):
        ts.report({"loss": config["x"] / (i + 1)})
        if os.path.exists(release):
            return
        time.sleep(0.01)


def short(config: dict[str, Any]) -> None:
    for i in range(3):
        ts.report({"loss": config["x"] / (i + 1)})


def _status(store: Store, tid: int) -> str | None:
    rec = store.trial(tid)
    return rec["status"] if rec else None


def _commands(store: Store) -> list[tuple[int | None, dict[str, Any]]]:
    return [(tid, data) for _s, _t, kind, tid, data in store.events() if kind == "command"]


class _Helper(threading.Thread):
    """Runs steps beside the driver of experiment ``name``; whatever happens, releases every held trial at the end (a
    failed wait ends the run at once instead of after the trials' 30 s), and keeps the error for the test to raise."""

    def __init__(self, results_dir: Any, tmp_path: Any, name: str) -> None:
        super().__init__(daemon=True)
        self.exp = os.path.join(str(results_dir), name)
        self.db = os.path.join(self.exp, "experiment.db")
        self.gate = tmp_path / "gate"
        self.gate.mkdir()
        self.steps: Any = None
        self.error: BaseException | None = None

    def start_with(self, steps: Any) -> None:
        self.steps = steps
        self.start()

    def run(self) -> None:
        try:
            self.steps()
        except BaseException as e:  # noqa: BLE001 - raised in the test's thread
            self.error = e
        finally:
            for x in (1, 2, 3):
                (self.gate / f"release_{x}").touch()

    def check(self) -> None:
        self.join(10)
        if self.error is not None:
            raise self.error


def test_stop_trial_stops_a_pending_trial_and_names_an_ended_or_unknown_ones_state(results_dir: Any,
                                                                                     tmp_path: Any) -> None:
    """One CPU: trial 1 runs, trial 2 waits PENDING. Stopping trial 2 ends it TERMINATED without ever starting (trial
    3 starts when trial 1 ends); stopping trial 1 once it ended (FIFO forgets finished trials) says so from the store;
    a trial id not made yet is "not yet"."""
    helper = _Helper(results_dir, tmp_path, "pending")
    exp, db, gate = helper.exp, helper.db, helper.gate

    def steps() -> None:
        _wait(db, lambda s: _status(s, 1) == "RUNNING" and _status(s, 2) == "PENDING")
        write_command(exp, {"action": "stop_trial", "trial_id": 2})
        write_command(exp, {"action": "stop_trial", "trial_id": 9})
        _wait(db, lambda s: len(_commands(s)) == 2)
        (gate / "release_1").touch()
        _wait(db, lambda s: _status(s, 1) == "TERMINATED" and _status(s, 3) == "RUNNING")
        write_command(exp, {"action": "stop_trial", "trial_id": 1})
        write_command(exp, {"action": "stop_trial", "trial_id": 3})
        _wait(db, lambda s: len(_commands(s)) == 4)

    helper.start_with(steps)
    result = ts.run(held, space={"x": ts.grid([1, 2, 3]), "gate": str(gate)}, metric="loss", mode="min", verbose=0,
                    name="pending", backend=ts.LocalBackend({"cpu": 1}, queue_ahead=False))
    helper.check()
    by_trial = {tid: data for tid, data in _commands(result._store)}
    assert by_trial[2]["applied"] and by_trial[2]["detail"] == "stopped trial_00002 (PENDING: not started)"
    assert not by_trial[9]["applied"] and by_trial[9]["detail"] == "no trial 9 yet"
    assert not by_trial[1]["applied"] and by_trial[1]["detail"] == "trial_00001 already ended (TERMINATED)"
    assert by_trial[3]["applied"] and by_trial[3]["detail"].startswith("stopping trial_00003 at iteration")
    trials = {t.id: t for t in result.trials}
    assert trials[2].status is TrialStatus.TERMINATED and trials[2].iteration == 0
    rec = result._store.trial(2)
    assert result._store.results(2) == [] and rec is not None and rec["start_time"] is None  # never started
    assert trials[3].status is TrialStatus.TERMINATED and trials[3].iteration < 3000
    stops = {tid: data["reason"] for _s, _t, kind, tid, data in result._store.events() if kind == "stop"}
    assert stops == {2: "dashboard", 3: "dashboard"}
    assert os.listdir(commands_dir(exp)) == []


class HoldPaused(Scheduler):
    """Pauses trial 1 at iteration 2 and resumes it only once trial 2 has ended; records whom it was told ended."""

    def __init__(self) -> None:
        self.paused = False
        self.completed: list[int] = []

    def decision_iteration(self, trial: Any) -> int | None:
        return 2 if trial.id == 1 and not self.paused and trial.iteration < 2 else None

    def on_result(self, trial: Any, result: Any, view: Any) -> Any:
        if trial.id == 1 and result.iteration == 2 and not self.paused:
            self.paused = True
            return PAUSE
        return CONTINUE

    def on_complete(self, trial: Any, result: Any, view: Any) -> None:
        self.completed.append(trial.id)

    def choose_trial_to_run(self, view: Any) -> int | None:
        first, second = view.trials.get(1), view.trials.get(2)
        if first is None or first.status is not TrialStatus.PAUSED or second is None:
            return None
        return 1 if second.status.is_finished else None


class Observed(Random):
    """Random search that records which trials it was told ended."""

    def __init__(self) -> None:
        super().__init__(seed=0)
        self.ended: list[int] = []

    def observe(self, trial_id: int, result: dict[str, Any], final: bool) -> None:
        if final:
            self.ended.append(trial_id)
        super().observe(trial_id, result, final)


def test_stop_trial_stops_a_paused_trial_for_good_and_tells_the_scheduler_and_searcher(results_dir: Any,
                                                                                         tmp_path: Any) -> None:
    """Trial 1 is paused (time-sharing) while trial 2 runs: stopping it ends it TERMINATED at the iteration it paused
    at, with a ``stop`` event by the dashboard; it never runs again, and the scheduler and searcher hear it ended."""
    helper = _Helper(results_dir, tmp_path, "paused")
    exp, db, gate = helper.exp, helper.db, helper.gate

    def steps() -> None:
        _wait(db, lambda s: _status(s, 1) == "PAUSED" and _status(s, 2) == "RUNNING")
        write_command(exp, {"action": "stop_trial", "trial_id": 1})
        _wait(db, lambda s: _commands(s))
        (gate / "release_2").touch()

    scheduler, searcher = HoldPaused(), Observed()
    helper.start_with(steps)
    result = ts.run(held, space={"x": ts.grid([1, 2]), "gate": str(gate)}, metric="loss", mode="min", verbose=0,
                    name="paused", scheduler=scheduler, searcher=searcher, max_concurrent=1)
    helper.check()
    ((tid, command),) = _commands(result._store)
    assert tid == 1 and command["applied"], command
    assert command["detail"] == "stopped trial_00001 (PAUSED at iteration 2)"
    first = result.trials[0]
    assert first.status is TrialStatus.TERMINATED and first.iteration == 2
    assert [r.iteration for r in result._store.results(1)] == [1, 2]  # never ran again
    stops = [(tid, data) for _s, _t, kind, tid, data in result._store.events() if kind == "stop"]
    assert stops == [(1, {"reason": "dashboard", "iteration": 2})]
    assert scheduler.completed == [1, 2] and searcher.ended == [1, 2]
    assert result.trials[1].status is TrialStatus.TERMINATED


class _LateCommand(ts.Callback):
    """Writes a command as the run ends: after the loop's last look at the inbox."""

    def on_experiment_end(self, experiment: Any) -> None:
        write_command(experiment.path, {"action": "stop_trial", "trial_id": 1})


def test_a_command_left_when_the_run_ends_is_refused_logged_and_removed(results_dir: Any) -> None:
    result = ts.run(short, space={"x": ts.grid([1.0, 2.0])}, metric="loss", mode="min", verbose=0, name="late",
                    callbacks=[_LateCommand()])
    ((tid, command),) = _commands(result._store)
    assert tid == 1 and not command["applied"]
    assert command["detail"] == ENDED == "the experiment ended before it was applied"
    assert os.listdir(commands_dir(result.path)) == []
    assert result.status == "finished"


def _fs_clock_passed(folder: str, stamp: float) -> bool:
    """Whether the filesystem now stamps files later than ``stamp`` (its clock may be coarse: a jiffy)."""
    probe = os.path.join(folder, "probe")
    with open(probe, "w"):
        pass
    try:
        return os.stat(probe).st_mtime > stamp
    finally:
        os.remove(probe)


@pytest.mark.parametrize("how", ["resumed copy", "fresh run"])
def test_a_command_written_before_the_driver_started_is_refused_not_applied(results_dir: Any, how: str) -> None:
    """A command queued for a driver that died (or carried by a copied folder) is not the new driver's to apply: the
    next run refuses it with an event and removes it, and runs its trials to the end."""
    root = str(results_dir)
    exp = os.path.join(root, "exp")
    space = {"x": ts.grid([1.0, 2.0])}
    if how == "resumed copy":
        ts.run(short, space=space, metric="loss", mode="min", verbose=0, name="orig")
        write_command(os.path.join(root, "orig"), {"action": "stop_experiment"})  # left by a killed driver
        shutil.copytree(os.path.join(root, "orig"), exp)  # keeps the command file's time
    else:
        os.makedirs(exp)
        write_command(exp, {"action": "stop_experiment"})
    (stale,) = os.listdir(commands_dir(exp))
    stamp = os.stat(os.path.join(commands_dir(exp), stale)).st_mtime
    deadline = time.monotonic() + 5
    while not _fs_clock_passed(root, stamp):
        assert time.monotonic() < deadline
    result = ts.run(short, space=space, metric="loss", mode="min", verbose=0, name="exp", num_samples=2,
                    resume=how == "resumed copy")
    ((tid, command),) = _commands(result._store)
    assert tid is None and not command["applied"] and command["id"] == stale[:-5], command
    assert STALE.startswith("sent before this driver started")
    assert command["detail"] == STALE
    assert os.listdir(commands_dir(exp)) == []
    assert result.status == "finished" and len(result.trials) == 4
    assert all(t.status is TrialStatus.TERMINATED and t.iteration == 3 for t in result.trials)


def test_every_command_the_page_queued_gets_an_event_however_close_to_the_end(results_dir: Any) -> None:
    """The page sends ``stop_trial`` every few ms while short runs end: each request answered "queued" has its
    ``command`` event in the store (applied or refused), one answered 409 leaves no file, and none is left."""
    root = str(results_dir)
    app = make_app(root, allow_control=True)
    body = json.dumps({"action": "stop_trial", "trial_id": 1}).encode()
    for run in range(3):
        name = f"end{run}"
        answers: list[tuple[int, bytes]] = []
        done = threading.Event()

        def send(name: str = name, answers: list[tuple[int, bytes]] = answers, done: threading.Event = done) -> None:
            while not os.path.exists(os.path.join(root, name, "experiment.db")):
                time.sleep(0.005)
            _status_code, headers, page = _request(app, f"/e/{name}")
            csrf = page.decode().split('data-csrf="')[1].split('"')[0]
            ok = {"Content-Type": "application/json", "Cookie": headers["set-cookie"].split(";")[0],
                  "X-Tunesmith-CSRF": csrf}
            while True:
                last = done.is_set()
                status, _h, out = _request(app, f"/api/e/{name}/control", "POST", body, ok)
                answers.append((status, out))
                if last:
                    return
                time.sleep(0.02)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        result = ts.run(short, space={"x": ts.grid([1.0, 2.0])}, metric="loss", mode="min", verbose=0, name=name)
        done.set()
        sender.join(30)
        queued = {json.loads(out)["queued"] for status, out in answers if status == 200}
        assert {status for status, _out in answers} <= {200, 409}, answers
        assert answers[-1][0] == 409  # after the run
        logged = {data["id"] for _tid, data in _commands(result._store)}
        assert queued <= logged, (run, queued - logged)
        folder = commands_dir(result.path)
        assert not os.path.exists(folder) or os.listdir(folder) == []


def test_a_command_racing_the_drivers_end_is_taken_back_or_left_to_the_driver(results_dir: Any,
                                                                               monkeypatch: Any) -> None:
    """``api_control`` saw the experiment running, then the driver ended before the command file landed: the app
    sees it ended once the file is written and takes it back (409, nothing left); where the driver's last look took
    it first, the answer is "queued" (the driver logged it)."""
    root = str(results_dir)
    rs = ts.run(short, space={"x": 1.0}, metric="loss", mode="min", verbose=0, name="race")
    real_write = commands_module.write_command
    app = make_app(root, allow_control=True)
    _code, headers, page = _request(app, "/e/race")
    csrf = page.decode().split('data-csrf="')[1].split('"')[0]
    ok = {"Content-Type": "application/json", "Cookie": headers["set-cookie"].split(";")[0], "X-Tunesmith-CSRF": csrf}
    body = json.dumps({"action": "stop_experiment"}).encode()

    def running() -> Any:
        store = Store(os.path.join(rs.path, "experiment.db"))
        with store.transaction() as db:
            store.set_meta(db, "status", "running")
        store.close()
        return _acquire(rs.path, "race")

    def ended(lock: Any) -> None:
        store = Store(os.path.join(rs.path, "experiment.db"))
        with store.transaction() as db:
            store.set_meta(db, "status", "finished")
        store.close()
        _release(lock, rs.path)

    for driver_took_it in (False, True):
        lock = running()

        def write_late(exp_dir: str, command: dict[str, Any], lock: Any = lock,
                       took: bool = driver_took_it, key: str | None = None) -> str:
            if not took:
                ended(lock)  # the driver ends between the app's check and its write
            command_id = real_write(exp_dir, command, key=key)
            if took:  # the driver's last look takes the file, then the driver ends
                os.remove(os.path.join(commands_dir(exp_dir), command_id + ".json"))
                ended(lock)
            return command_id

        monkeypatch.setattr(commands_module, "write_command", write_late)
        status, _h, out = _request(app, "/api/e/race/control", "POST", body, ok)
        assert status == (200 if driver_took_it else 409), out
        assert os.listdir(commands_dir(rs.path)) == []
