"""The executor contract, checked against every real executor: the local worker pool and Ray.

Each test drives an executor the way the controller does (try_start / poll / decide / stop) and checks the
events: results in order and batched, the end after the last result, tracebacks, cooperative stop and the
kill after the grace period, decision points, checkpoints and restore, resource limits. The last tests go
through ``tunesmith.run`` (retry from a checkpoint, a scheduler that stops trials).

Ray runs as a real local Ray (``ray.init(num_cpus=2)``), started once for this module.

The simulated executor (``tunesmith.executors.simulated``) is not in ``EXECUTORS``: its trials are
generators that yield results in virtual time, not functions that call ``ts.report`` in a process, so
these trial functions cannot run on it; process concerns (grace-period kills, heartbeats and
``trial_timeout_s``, output files) do not exist there. It keeps the same event semantics (decision
points, cooperative stop, checkpoints and restore, resources), tested in tests/executors/test_simulated.py.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

import tunesmith as ts
from tunesmith.checkpoint import Checkpoint, verify
from tunesmith.executors._base import CONFIG_ERROR, Launch, Results

pytestmark = pytest.mark.timeout(120)

EXECUTORS = ["local", "ray"]


@pytest.fixture(scope="module")
def ray_session():
    ray = pytest.importorskip("ray")
    ray.init(address="local", num_cpus=2, object_store_memory=200 * 2**20, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(params=EXECUTORS)
def make_executor(request, tmp_path):
    """A factory: make_executor(fn) -> an executor set up with ``fn``, on a 2-CPU budget."""
    made = []

    def make(fn, grace_period_s=5.0):
        if request.param == "local":
            from tunesmith.executors.local import LocalBackend

            ex = LocalBackend(total_resources={"cpu": 2}, grace_period_s=grace_period_s)
        else:
            request.getfixturevalue("ray_session")
            from tunesmith.executors.ray import RayBackend

            ex = RayBackend(grace_period_s=grace_period_s)
        ex.setup(fn, str(tmp_path / "exp"))
        made.append(ex)
        return ex

    make.kind = request.param
    yield make
    for ex in made:
        ex.shutdown()


def launch(tid, tmp_path, config, **kw):
    return Launch(trial_id=tid, config=config, trial_dir=str(tmp_path / "exp" / "trials" / f"trial_{tid}"),
                  resources=kw.pop("resources", {"cpu": 1.0, "gpu": 0.0}), **kw)


class Log:
    """Everything an executor sent: rows per trial, Results events per trial, ends."""

    def __init__(self):
        self.rows: dict[int, list[tuple]] = {}
        self.batches: dict[int, int] = {}
        self.waiting: list[tuple[int, int]] = []  # (trial, iteration) sent with waiting=True
        self.done: dict[int, tuple[str, str | None]] = {}
        self.order: list[tuple[str, int]] = []

    def add(self, events):
        for ev in events:
            tid = ev.trial_id
            self.order.append((type(ev).__name__, tid))
            if isinstance(ev, Results):
                assert tid not in self.done, "a result came after the trial's end"
                self.batches[tid] = self.batches.get(tid, 0) + 1
                for it, _total, _stamp, text, ckpt in ev.rows:
                    self.rows.setdefault(tid, []).append((it, json.loads(text), ckpt))
                if ev.waiting:
                    self.waiting.append((tid, ev.rows[-1][0]))
            else:
                self.done[tid] = (ev.status, ev.error)

    def iterations(self, tid):
        return [r[0] for r in self.rows.get(tid, [])]


def poll_until(ex, log, cond, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"condition not reached; events so far: {log.order[-10:]}"
        log.add(ex.poll(0.05))


# -- trial functions (module level: workers import this module by name) ----------------------------------------
def trial(config):
    kind = config["kind"]
    ck = ts.get_checkpoint()
    start = ck.load()["i"] if ck is not None else 0
    if kind == "count":
        for i in range(start, config["n"]):
            metrics = {"i": i + 1, "start": start, "tid": ts.get_trial_id(), "x": ts.get_config()["x"]}
            ckpt = Checkpoint.from_state({"i": i + 1}) if config.get("ckpt") else None
            ts.report(metrics, checkpoint=ckpt)
            if config.get("sleep"):
                time.sleep(config["sleep"])
    elif kind == "raise":
        ts.report({"i": 1})
        _explode(config["x"])
    elif kind == "misconfigured":  # a ConfigError, as a bridge raises for a metric the framework never logged
        ts.report({"i": 1})
        raise ts.ConfigError("ReportCallback(metrics=...): metric 'val_los' was not logged")
    elif kind == "forever":
        i = 0
        while True:
            i += 1
            ts.report({"i": i})
            time.sleep(0.01)
    elif kind == "deaf":  # reports once, then never again: only the grace-period kill ends it
        ts.report({"i": 1})
        time.sleep(600)
    elif kind == "pid":  # reports its process id, then computes without reporting
        ts.report({"pid": os.getpid()})
        time.sleep(600)
    elif kind == "env":
        print("hello from trial", ts.get_trial_id(), flush=True)
        res = ts.get_resources()
        ts.report({"cpu": res["cpu"], "dir_ok": os.path.isdir(ts.get_trial_dir()), "i": 1})
        return {"i": 2, "cpu": res["cpu"], "dir_ok": True}  # a returned dict is the last result


def _explode(x):
    raise ValueError(f"boom {x}")


# -- the contract ------------------------------------------------------------------------------------------------
def test_total_and_impossible_resources(make_executor):
    ex = make_executor(trial)
    assert ex.total_resources()["cpu"] == 2
    with pytest.raises(ts.ConfigError, match="cpu"):
        ex.check_resources({"cpu": 3.0, "gpu": 0.0})
    ex.check_resources({"cpu": 2.0, "gpu": 0.0})


def test_results_stream_in_order_and_in_batches_then_end(make_executor, tmp_path):
    ex = make_executor(trial)
    n = 400
    for tid in (1, 2):
        assert ex.try_start(launch(tid, tmp_path, {"kind": "count", "n": n, "x": tid * 10}))
    assert ex.running() == 2
    log = Log()
    poll_until(ex, log, lambda: len(log.done) == 2)
    for tid in (1, 2):
        assert log.iterations(tid) == list(range(1, n + 1))
        assert all(m["tid"] == tid and m["x"] == tid * 10 and m["start"] == 0 for _it, m, _c in log.rows[tid])
        assert log.done[tid] == ("ok", None)
        assert log.batches[tid] < n / 4  # streamed in batches, not one message per result
        assert log.order.index(("Done", tid)) > max(i for i, e in enumerate(log.order) if e == ("Results", tid))
    assert ex.running() == 0


def test_exception_comes_back_with_its_traceback(make_executor, tmp_path):
    ex = make_executor(trial)
    assert ex.try_start(launch(5, tmp_path, {"kind": "raise", "x": 42}))
    log = Log()
    poll_until(ex, log, lambda: 5 in log.done)
    status, tb = log.done[5]
    assert status == "error"
    assert "ValueError: boom 42" in tb and "_explode" in tb and "Traceback" in tb
    assert log.iterations(5) == [1]  # the result before the failure arrived
    # the executor goes on: the next trial runs
    assert ex.try_start(launch(6, tmp_path, {"kind": "count", "n": 2, "x": 0}))
    poll_until(ex, log, lambda: 6 in log.done)
    assert log.done[6][0] == "ok"


def test_a_config_error_comes_back_as_config_error(make_executor, tmp_path):
    """A misconfiguration ends "config_error", which the driver does not retry (every retry would fail the same
    way); its traceback comes back as any error's."""
    ex = make_executor(trial)
    assert ex.try_start(launch(5, tmp_path, {"kind": "misconfigured", "x": 0}))
    log = Log()
    poll_until(ex, log, lambda: 5 in log.done)
    status, tb = log.done[5]
    assert status == CONFIG_ERROR
    assert "Traceback" in tb and "ConfigError: ReportCallback(metrics=...): metric 'val_los' was not logged" in tb
    assert log.iterations(5) == [1]


def test_stop_ends_a_trial_at_its_next_report(make_executor, tmp_path):
    ex = make_executor(trial)
    assert ex.try_start(launch(1, tmp_path, {"kind": "forever"}))
    log = Log()
    poll_until(ex, log, lambda: len(log.iterations(1)) >= 3)
    ex.stop(1)
    poll_until(ex, log, lambda: 1 in log.done, timeout=4.0)  # well within the 5 s grace period: cooperative
    assert log.done[1] == ("stopped", None)
    its = log.iterations(1)
    assert its == list(range(1, len(its) + 1))


def test_stop_kills_a_trial_that_never_reports_after_the_grace_period(make_executor, tmp_path):
    ex = make_executor(trial, grace_period_s=0.5)
    assert ex.try_start(launch(1, tmp_path, {"kind": "deaf"}))
    assert ex.try_start(launch(2, tmp_path, {"kind": "deaf"}))
    log = Log()
    poll_until(ex, log, lambda: log.iterations(1) == [1] and log.iterations(2) == [1])
    t0 = time.monotonic()
    ex.stop(1)
    poll_until(ex, log, lambda: 1 in log.done, timeout=20.0)
    assert log.done[1][0] == "stopped" and time.monotonic() - t0 >= 0.45
    assert 2 not in log.done  # the other trial is untouched
    # its CPU is free again: a new trial starts beside trial 2
    assert ex.try_start(launch(3, tmp_path, {"kind": "count", "n": 1, "x": 0}))
    poll_until(ex, log, lambda: 3 in log.done)
    assert log.done[3][0] == "ok"


def test_a_silent_worker_is_declared_dead_after_trial_timeout(make_executor, tmp_path):
    ex = make_executor(trial)
    ex.trial_timeout_s = 2.0
    assert ex.try_start(launch(1, tmp_path, {"kind": "pid"}))
    log = Log()
    poll_until(ex, log, lambda: 1 in log.rows)
    # computing without reporting is fine: the heartbeat keeps it alive past the timeout
    t_end = time.monotonic() + 2.5
    while time.monotonic() < t_end:
        log.add(ex.poll(0.05))
    assert 1 not in log.done
    pid = log.rows[1][0][1]["pid"]
    os.kill(pid, signal.SIGSTOP)  # hung: no heartbeat any more
    try:
        poll_until(ex, log, lambda: 1 in log.done, timeout=30.0)
    finally:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    status, message = log.done[1]
    assert status == "error" and "trial_timeout_s=2" in message


def test_a_decision_point_holds_the_trial_until_decided(make_executor, tmp_path):
    ex = make_executor(trial)
    assert ex.try_start(launch(1, tmp_path, {"kind": "count", "n": 50, "x": 0}, decision_iteration=3))
    log = Log()
    poll_until(ex, log, lambda: (1, 3) in log.waiting)
    # the trial cannot run past the decision point: while we do not answer, nothing more comes
    t_end = time.monotonic() + 0.5
    while time.monotonic() < t_end:
        log.add(ex.poll(0.05))
    assert log.iterations(1) == [1, 2, 3] and 1 not in log.done
    ex.decide(1, True, 6)
    poll_until(ex, log, lambda: (1, 6) in log.waiting)
    assert log.iterations(1) == [1, 2, 3, 4, 5, 6]
    ex.decide(1, False, None)
    poll_until(ex, log, lambda: 1 in log.done)
    assert log.done[1] == ("stopped", None)
    assert log.iterations(1) == [1, 2, 3, 4, 5, 6]


def test_checkpoints_are_written_and_a_restart_resumes_from_one(make_executor, tmp_path):
    ex = make_executor(trial)
    assert ex.try_start(launch(1, tmp_path, {"kind": "count", "n": 3, "x": 0, "ckpt": True}))
    log = Log()
    poll_until(ex, log, lambda: 1 in log.done)
    ckpts = [c for _it, _m, c in log.rows[1]]
    trial_dir = str(tmp_path / "exp" / "trials" / "trial_1")
    assert all(c is not None and os.path.dirname(c) == os.path.join(trial_dir, "checkpoints") for c in ckpts)
    for it, c in enumerate(ckpts, start=1):
        assert verify(c)["iteration"] == it
        assert Checkpoint(c).load() == {"i": it}
    # restarted from iteration 2's checkpoint (as after a failure or a pause)
    assert ex.try_start(launch(1, tmp_path, {"kind": "count", "n": 5, "x": 0, "ckpt": True}, restore=ckpts[1],
                               iteration=2, time_offset=10.0))
    log2 = Log()
    poll_until(ex, log2, lambda: 1 in log2.done)
    assert log2.iterations(1) == [3, 4, 5]
    assert {m["start"] for _it, m, _c in log2.rows[1]} == {2}


def test_resources_limit_what_runs_and_are_given_back(make_executor, tmp_path):
    ex = make_executor(trial)
    held = {"kind": "count", "n": 5, "x": 0}
    assert ex.try_start(launch(1, tmp_path, held, decision_iteration=1))
    assert ex.try_start(launch(2, tmp_path, held, decision_iteration=1))
    assert not ex.try_start(launch(3, tmp_path, held))  # both CPUs are taken
    log = Log()
    poll_until(ex, log, lambda: {(1, 1), (2, 1)} <= set(log.waiting))
    assert not ex.try_start(launch(3, tmp_path, held))
    ex.decide(1, False, None)
    poll_until(ex, log, lambda: 1 in log.done)
    assert ex.try_start(launch(3, tmp_path, held))
    ex.decide(2, True, None)
    poll_until(ex, log, lambda: {2, 3} <= set(log.done))
    assert [log.done[t][0] for t in (1, 2, 3)] == ["stopped", "ok", "ok"]
    # a trial taking both CPUs waits until both are free
    assert ex.try_start(launch(4, tmp_path, {"kind": "env"}, resources={"cpu": 2.0, "gpu": 0.0}))
    assert not ex.try_start(launch(5, tmp_path, held))
    poll_until(ex, log, lambda: 4 in log.done)
    assert [m["cpu"] for _i, m, _c in log.rows[4]] == [2.0, 2.0]


def test_trial_folder_output_and_returned_result(make_executor, tmp_path):
    ex = make_executor(trial)
    assert ex.try_start(launch(7, tmp_path, {"kind": "env"}))
    log = Log()
    poll_until(ex, log, lambda: 7 in log.done)
    assert log.done[7] == ("ok", None)
    assert [(it, m["dir_ok"]) for it, m, _c in log.rows[7]] == [(1, True), (2, True)]
    out = tmp_path / "exp" / "trials" / "trial_7" / "output.log"
    assert "hello from trial 7" in out.read_text()


# -- through tunesmith.run -----------------------------------------------------------------------------------------
def flaky(config):
    ck = ts.get_checkpoint()
    start = ck.load() if ck else 0
    for i in range(start, 6):
        ts.report({"loss": config["x"] + 1.0 / (i + 1), "start": start},
                  checkpoint=Checkpoint.from_state(i + 1))
        marker = os.path.join(ts.get_trial_dir(), "..", f"failed_{ts.get_trial_id()}")
        if i == 2 and not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("transient failure")


def test_run_retries_a_failed_trial_from_its_checkpoint(make_executor, results_dir):
    result = ts.run(flaky, space={"x": ts.grid([0.0, 1.0, 2.0])}, metric="loss", mode="min", max_failures=1,
                    backend=make_executor(flaky), verbose=0, name=f"flaky-{make_executor.kind}")
    assert len(result.trials) == 3
    for t in result.trials:
        assert t.status is ts.TrialStatus.TERMINATED, t.error
        hist = result.history(t.id)
        assert [r["training_iteration"] for r in hist] == [1, 2, 3, 4, 5, 6]  # no duplicate, no gap
        assert [r["start"] for r in hist] == [0, 0, 0, 3, 3, 3]  # resumed from iteration 3, not from zero
        assert t.checkpoint.load() == 6


def long_runner(config):
    for i in range(1000):
        ts.report({"loss": config["x"] + 1.0 / (i + 1)})
        time.sleep(0.002)


def test_run_with_a_scheduler_that_stops_trials(make_executor, results_dir):
    # ASHA stops the weak trials at its rungs (decision points) and stop= ends the rest at iteration 9
    result = ts.run(long_runner, space={"x": ts.grid([0.0, 1.0, 2.0, 3.0])}, metric="loss", mode="min",
                    scheduler=ts.ASHA(max_t=9, grace_period=1, reduction_factor=2), stop={"training_iteration": 9},
                    backend=make_executor(long_runner), verbose=0, name=f"asha-{make_executor.kind}")
    by_x = {t.config["x"]: t for t in result.trials}
    assert all(t.status is ts.TrialStatus.TERMINATED for t in result.trials)
    assert by_x[0.0].iteration == 9  # the best runs to the end
    assert by_x[3.0].iteration < 9  # the worst was stopped at a rung
    for t in result.trials:  # never past a decision point
        assert len(result.history(t.id)) == t.iteration


def resumable(config):
    ck = ts.get_checkpoint()
    start = ck.load() if ck else 0
    for i in range(start, 9):
        ts.report({"loss": config["x"] + 1.0 / (i + 1), "start": start}, checkpoint=Checkpoint.from_state(i + 1))


def test_run_pauses_and_resumes_trials_from_their_checkpoints(make_executor, results_dir):
    # HyperBand pauses each trial at its first rung (iteration 1) until the bracket caught up; one trial at a
    # time, so that every trial but the last one to arrive is paused there. Then the best is resumed.
    result = ts.run(resumable, space={"x": ts.grid([0.0, 1.0, 2.0, 3.0])}, metric="loss", mode="min",
                    scheduler=ts.HyperBand(max_t=9, reduction_factor=3), max_concurrent=1,
                    backend=make_executor(resumable), verbose=0, name=f"hb-{make_executor.kind}")
    assert all(t.status is ts.TrialStatus.TERMINATED for t in result.trials)
    for t in result.trials:
        its = [r["training_iteration"] for r in result.history(t.id)]
        assert its == list(range(1, t.iteration + 1))  # no gap, no duplicate across the pause
    best = next(t for t in result.trials if t.config["x"] == 0.0)
    assert best.iteration == 9
    starts = [r["start"] for r in result.history(best.id)]
    assert starts == [0] + [1] * 8  # paused at iteration 1, resumed from that checkpoint
