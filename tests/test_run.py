"""End to end: tunesmith.run on real worker processes with a real SQLite store."""

from __future__ import annotations

import logging
import math
import os
import signal
import sqlite3
import time

import pytest

import tunesmith as ts
from tunesmith.executors.local import LocalBackend
from tunesmith.store.sqlite import STORE_FILE

pytestmark = pytest.mark.timeout(120)


def quadratic(config):
    for step in range(20):
        ts.report({"loss": (config["lr"] - 0.01) ** 2 + 1 / (step + 1)})


def test_issue_example_runs_and_finds_best(results_dir):
    result = ts.run(quadratic, space={"lr": ts.loguniform(1e-4, 1e-1), "layers": ts.choice([1, 2, 3])},
                    metric="loss", mode="min", num_samples=16, verbose=0, seed=1)
    assert len(result.trials) == 16
    assert all(t.status is ts.TrialStatus.TERMINATED for t in result.trials)
    finals = {t.id: (t.config["lr"] - 0.01) ** 2 + 1 / 20 for t in result.trials}
    best_id = min(finals, key=finals.get)
    assert result.best.id == best_id
    assert result.best.metrics["loss"] == pytest.approx(finals[best_id])
    assert result.best.metrics["training_iteration"] == 20
    assert result.best.config["layers"] in (1, 2, 3)


def test_every_result_is_durable_in_sqlite(results_dir):
    result = ts.run(quadratic, space={"lr": ts.uniform(0.001, 0.1)}, num_samples=5, verbose=0, name="durable")
    db = sqlite3.connect(os.path.join(results_dir, "durable", STORE_FILE))
    rows = db.execute("SELECT trial_id, iteration, metrics FROM results ORDER BY trial_id, iteration").fetchall()
    assert len(rows) == 5 * 20
    assert sorted({r[0] for r in rows}) == [t.id for t in result.trials]
    for tid in range(1, 6):
        assert [r[1] for r in rows if r[0] == tid] == list(range(1, 21))
    with pytest.raises(sqlite3.IntegrityError):  # UNIQUE(trial, generation, iteration)
        db.execute("INSERT INTO results(trial_id, iteration, time_total, timestamp, metrics, generation) "
                   "VALUES (1, 1, 0, 0, '{}', 0)")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    history = result.history(3)
    assert [h["training_iteration"] for h in history] == list(range(1, 21))
    assert history[-1]["loss"] == pytest.approx((result.trial(3).config["lr"] - 0.01) ** 2 + 1 / 20)


def maybe_raise(config):
    for i in range(5):
        if config["x"] == 2 and i == 2:
            raise ValueError("boom from trial with x=2")
        ts.report({"v": i})


def test_a_raising_trial_is_error_with_traceback_and_others_go_on(results_dir):
    result = ts.run(maybe_raise, space={"x": ts.grid([0, 1, 2, 3])}, verbose=0)
    by_x = {t.config["x"]: t for t in result.trials}
    assert by_x[2].status is ts.TrialStatus.ERROR
    assert "boom from trial with x=2" in by_x[2].error
    assert "Traceback" in by_x[2].error
    assert by_x[2].iteration == 2  # its results before the failure are kept
    for x in (0, 1, 3):
        assert by_x[x].status is ts.TrialStatus.TERMINATED
        assert by_x[x].iteration == 5
    assert [t.id for t in result.errors] == [by_x[2].id]
    with pytest.raises(ts.TrialError, match="boom"):
        ts.run(maybe_raise, space={"x": ts.grid([2])}, verbose=0, raise_on_failed_trial=True)


def misconfigured_or_flaky(config):
    ts.report({"v": 0})
    if config["x"] == "typo":
        raise ts.ConfigError("ReportCallback(metrics=...): metric 'val_los' was not logged; it logged: val_loss")
    raise RuntimeError("flaky: may pass on a retry")


def test_a_config_error_in_a_trial_is_not_retried_and_says_so_once(results_dir, caplog):
    """A ConfigError (a bridge's metric typo, a bad report()) fails every attempt the same way: the trial ends
    ERROR at its first failure, whatever max_failures allows; another error is still retried."""
    with caplog.at_level(logging.WARNING, logger="tunesmith"):
        result = ts.run(misconfigured_or_flaky, space={"x": ts.grid(["typo", "flaky"])}, max_failures=2,
                        verbose=0)
    by_x = {t.config["x"]: t for t in result.trials}
    typo, flaky = by_x["typo"], by_x["flaky"]
    assert typo.status is ts.TrialStatus.ERROR and typo.num_failures == 1
    assert "ConfigError: ReportCallback(metrics=...): metric 'val_los' was not logged" in typo.error
    assert flaky.status is ts.TrialStatus.ERROR and flaky.num_failures == 3  # retried twice, as before
    said = [r.getMessage() for r in caplog.records if typo.name in r.getMessage()]
    assert said == [f"{typo.name} failed with a ConfigError: not retried (a retry would fail the same way; "
                    "fix the input its error names)"]


def kill_self(config):
    for i in range(5):
        # a result with a checkpoint is sent at once (others may wait a few ms to be batched)
        ts.report({"v": i}, checkpoint=ts.Checkpoint.from_state({"i": i}) if i == 2 else None)
        if config["x"] == 1 and i == 2:
            with open(os.path.join(ts.get_trial_dir(), "pid"), "w") as f:
                f.write(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)


def test_worker_killed_with_sigkill_mid_trial(results_dir):
    result = ts.run(kill_self, space={"x": ts.grid([0, 1, 2, 3, 4, 5])}, verbose=0, max_concurrent=2)
    by_x = {t.config["x"]: t for t in result.trials}
    assert by_x[1].status is ts.TrialStatus.ERROR
    assert "SIGKILL" in by_x[1].error
    assert by_x[1].iteration == 3
    assert by_x[1].checkpoint.load() == {"i": 2}
    for x in (0, 2, 3, 4, 5):  # later trials run in a replacement worker
        assert by_x[x].status is ts.TrialStatus.TERMINATED and by_x[x].iteration == 5


def long_trial(config):
    for i in range(10**7):  # ends only when stopped
        ts.report({"loss": 1.0 / (i + 1), "i": i})


def test_stop_rules_end_trials_at_the_right_iteration(results_dir):
    # training_iteration is a decision point: the trial never runs past it
    result = ts.run(long_trial, num_samples=3, stop={"training_iteration": 7}, verbose=0)
    for t in result.trials:
        assert t.status is ts.TrialStatus.TERMINATED
        assert t.iteration == 7
        assert len(result.history(t.id)) == 7
    # a metric threshold in the direction of mode; the trial stops within a few reports after reaching it
    result = ts.run(long_trial, num_samples=2, metric="loss", mode="min", stop={"loss": 0.05}, verbose=0)
    for t in result.trials:
        assert 20 <= t.iteration < 10**7
    # a callable
    result = ts.run(long_trial, num_samples=1, stop=lambda tid, r: r["i"] >= 9, verbose=0)
    assert 10 <= result.trials[0].iteration < 10**7


def sleeper(config):
    ts.report({"v": 1})
    with open(os.path.join(ts.get_trial_dir(), "pid"), "w") as f:
        f.write(str(os.getpid()))
    time.sleep(600)  # never reports again: only the grace-period kill can end it


def test_trial_that_ignores_stop_is_killed_after_grace_period(results_dir):
    from proc_helpers import pid_alive

    t0 = time.monotonic()
    result = ts.run(sleeper, num_samples=2, verbose=0, time_budget_s=1.0,
                    backend=LocalBackend(grace_period_s=0.5))
    assert time.monotonic() - t0 < 60
    for t in result.trials:
        assert t.status is ts.TrialStatus.TERMINATED
        assert t.iteration == 1
        with open(os.path.join(t.path, "pid")) as f:
            assert not pid_alive(int(f.read()))


def test_max_concurrent_one_runs_trials_one_after_another(results_dir):
    result = ts.run(quadratic, space={"lr": ts.uniform(0, 1)}, num_samples=4, max_concurrent=1, verbose=0)
    spans = sorted((result.history(t.id)[0]["timestamp"], result.history(t.id)[-1]["timestamp"])
                   for t in result.trials)
    for (_s1, e1), (s2, _e2) in zip(spans, spans[1:]):
        assert s2 >= e1


def test_time_budget_with_unlimited_samples(results_dir):
    def quick(config):
        ts.report({"x": config["x"]})

    result = ts.run(quick, space={"x": ts.uniform(0, 1)}, num_samples=-1, time_budget_s=1.0, verbose=0)
    assert len(result.trials) > 2
    assert all(t.status is ts.TrialStatus.TERMINATED for t in result.trials)


def test_missing_metric_is_a_clear_error_naming_trial_and_keys(results_dir):
    def reports_acc(config):
        ts.report({"acc": 0.5})

    with pytest.raises(ts.ConfigError, match=r"'loss' is not in the results of trial_0000\d .*acc"):
        ts.run(reports_acc, num_samples=2, metric="loss", mode="min", verbose=0)


def bad_metric(config):
    ts.report({"loss": [1, 2]})


def test_non_scalar_metric_fails_the_trial_with_a_clear_message(results_dir):
    result = ts.run(bad_metric, num_samples=1, verbose=0)
    assert result.trials[0].status is ts.TrialStatus.ERROR
    assert "metric 'loss' must be a number, string or bool, got list" in result.trials[0].error


def nan_inf(config):
    import numpy as np

    ts.report({"a": float("nan"), "b": float("inf"), "c": -float("inf"), "d": np.float32(1.5), "s": "x",
               "flag": True})


def test_nan_inf_and_numpy_scalars_are_stored_faithfully(results_dir):
    result = ts.run(nan_inf, num_samples=1, verbose=0)
    h = result.history(1)[0]
    assert math.isnan(h["a"]) and h["b"] == math.inf and h["c"] == -math.inf
    assert h["d"] == 1.5 and h["s"] == "x" and h["flag"] is True


def test_same_seed_same_configs(results_dir):
    space = {"lr": ts.loguniform(1e-4, 1e-1), "w": ts.choice([8, 16, 32]), "s": ts.grid([0, 1])}

    def configs(seed):
        r = ts.run(quadratic, space=space, num_samples=3, seed=seed, verbose=0)
        return [t.config for t in r.trials]

    a, b, c = configs(7), configs(7), configs(8)
    assert a == b
    assert a != c
    assert sorted(x["s"] for x in a) == [0, 0, 0, 1, 1, 1]


def test_closures_and_lambdas_are_shipped(results_dir):
    offset = 41.0

    def closure(config):
        ts.report({"v": offset + config["x"]})

    result = ts.run(closure, space={"x": ts.grid([1])}, verbose=0)
    assert result.trials[0].last_result["v"] == 42.0
    result = ts.run(lambda c: ts.report({"v": c["x"] * 2}), space={"x": ts.grid([3])}, verbose=0)
    assert result.trials[0].last_result["v"] == 6


def test_function_returning_a_dict_reports_it_and_no_arg_functions_work(results_dir):
    result = ts.run(lambda config: {"score": config["x"] + 1}, space={"x": ts.grid([1, 2])}, metric="score",
                    mode="max", verbose=0)
    assert result.best.metrics["score"] == 3
    result = ts.run(lambda: ts.report({"v": 1}), num_samples=2, verbose=0)
    assert [t.iteration for t in result.trials] == [1, 1]


def session_info(config):
    assert ts.get_config() == config
    assert ts.get_trial_id() >= 1
    assert os.path.isdir(ts.get_trial_dir())
    assert ts.get_checkpoint() is None
    print("hello from the trial")
    ts.report({"cpu": ts.get_resources()["cpu"]})


def test_session_api_and_trial_output_goes_to_its_log(results_dir):
    result = ts.run(session_info, space={"a": 1}, resources={"cpu": 2}, verbose=0)
    t = result.trials[0]
    assert t.status is ts.TrialStatus.TERMINATED, t.error
    assert t.last_result["cpu"] == 2.0
    with open(os.path.join(t.path, "output.log")) as f:
        assert "hello from the trial" in f.read()


def printer(config):
    import subprocess
    import sys

    if config["kind"] == "quiet":
        ts.report({"n": 0})
        return
    tag = f"trial-{ts.get_trial_id()}"
    print(f"{tag} python")
    os.write(2, f"{tag} fd2\n".encode())  # what C code writes
    subprocess.run([sys.executable, "-c", f"print('{tag} child')"], check=True)  # a subprocess's output
    sys.stdout.write((tag + "x" * 99 + "\n") * 1000)  # 100 kB: more than a pipe holds
    ts.report({"n": 1})


def test_a_trial_output_log_holds_what_it_printed_and_nothing_of_another_trial(results_dir):
    result = ts.run(printer, space={"kind": ts.grid(["loud", "loud", "quiet"])}, max_concurrent=1, verbose=0,
                    file_loggers=False)
    assert all(t.status is ts.TrialStatus.TERMINATED for t in result.trials), [t.error for t in result.trials]
    for t in result.trials:
        log = os.path.join(t.path, "output.log")
        if t.config["kind"] == "quiet":
            assert not os.path.exists(log)  # printed nothing: no file was made for it
            continue
        text = open(log).read()
        tag = f"trial-{t.id}"
        for line in (f"{tag} python", f"{tag} fd2", f"{tag} child"):
            assert line in text.splitlines()
        assert text.count(tag + "x" * 99 + "\n") == 1000
        others = {f"trial-{o.id}" for o in result.trials if o.id != t.id}
        assert not any(o in text for o in others)  # the same worker ran them one after the other


def fails_loudly(config):
    print("before the failure")
    raise ValueError("boom, as the log says")


def test_a_failed_trials_traceback_is_in_its_output_log_after_what_it_printed(results_dir):
    # as a script's would be on its terminal: the log (and the dashboard's tail of it) shows why it ended
    result = ts.run(fails_loudly, space={}, verbose=0)
    t = result.trials[0]
    assert t.status is ts.TrialStatus.ERROR
    with open(os.path.join(t.path, "output.log")) as f:
        lines = f.read().splitlines()
    assert lines[0] == "before the failure" and lines[1] == "Traceback (most recent call last):", lines
    assert lines[-1] == "ValueError: boom, as the log says" and lines[-1] in t.error


def gpu_trial(config):
    ts.report({"cuda": os.environ.get("CUDA_VISIBLE_DEVICES", "unset")})


def test_fractional_gpus_are_packed_and_exposed(results_dir):
    executor = LocalBackend(total_resources={"cpu": 8}, gpu_ids=["3", "5"])
    result = ts.run(gpu_trial, num_samples=8, resources={"cpu": 1, "gpu": 0.5}, backend=executor, verbose=0)
    seen = [t.last_result["cuda"] for t in result.trials]
    assert set(seen) <= {"3", "5"} and len(seen) == 8
    executor = LocalBackend(total_resources={"cpu": 8}, gpu_ids=["0", "1"])
    result = ts.run(gpu_trial, num_samples=2, resources={"cpu": 1, "gpu": 2}, backend=executor, verbose=0)
    assert [t.last_result["cuda"] for t in result.trials] == ["0,1", "0,1"]


def test_load_reads_the_same_experiment_back(results_dir):
    result = ts.run(quadratic, space={"lr": ts.uniform(0, 0.1)}, num_samples=3, metric="loss", mode="min",
                    name="again", verbose=0)
    loaded = ts.load("again")
    assert [t.config for t in loaded.trials] == [t.config for t in result.trials]
    assert loaded.best.id == result.best.id
    assert loaded.status == "finished"
    assert ts.load(result.path).best.id == result.best.id
    df = loaded.dataframe()
    assert list(df["trial_id"]) == [1, 2, 3]
    assert "config/lr" in df.columns and "loss" in df.columns
    assert len(loaded.dataframe(all_results=True)) == 60
    assert loaded.get_best(scope="all").metrics["training_iteration"] == 20
    assert [t.id for t in loaded.top(2)] == [t.id for t in sorted(
        loaded.trials, key=lambda t: t.last_result["loss"])][:2]


def test_second_driver_on_the_same_experiment_is_refused(results_dir):
    from filelock import FileLock

    path = os.path.join(results_dir, "busy")
    os.makedirs(path)
    with FileLock(os.path.join(path, ".driver.lock")):
        with open(os.path.join(path, ".driver.pid"), "w") as f:
            f.write("4242")
        with pytest.raises(ts.ConfigError, match="another driver.*4242"):
            ts.run(quadratic, name="busy", verbose=0)
    ts.run(quadratic, name="busy", verbose=0)  # free again
    with pytest.raises(ts.ConfigError, match="already exists"):
        ts.run(quadratic, name="busy", verbose=0)


def test_csv_and_jsonl_logs_are_written_when_asked_and_not_by_default(results_dir):
    import csv
    import json

    def train(config):
        for i in range(3):
            ts.report({"loss": config["x"] + i, "tag": "a"})

    result = ts.run(train, space={"x": ts.grid([1.0, 2.0])}, verbose=0, name="logs", file_loggers=True)
    for t in result.trials:
        folder = t.path
        with open(os.path.join(folder, "result.jsonl")) as f:
            lines = [json.loads(line) for line in f]
        assert [r["loss"] for r in lines] == [t.config["x"] + i for i in range(3)]
        with open(os.path.join(folder, "progress.csv")) as f:
            rows = list(csv.DictReader(f))
        assert [float(r["loss"]) for r in rows] == [t.config["x"] + i for i in range(3)]
        assert [int(r["training_iteration"]) for r in rows] == [1, 2, 3]
    quiet = ts.run(train, space={"x": ts.grid([1.0])}, verbose=0, name="nologs")  # the default: the store only
    folder = quiet.trials[0].path
    for name in ("result.jsonl", "progress.csv", "params.json"):
        assert not os.path.exists(os.path.join(folder, name))
    assert [r["loss"] for r in quiet.history(quiet.trials[0].id)] == [1.0, 2.0, 3.0]  # every result is in the store


def wait_on_fifo(config):
    with open(config["fifo"]) as f:  # blocks until the test opens the other end
        f.read()
    ts.report({"v": 1})


def test_a_running_trial_that_has_not_reported_is_in_the_store(tmp_path, results_dir):
    """Its row is written with the next batch of events or at the next quiet poll, not only once it
    reports: `tunesmith ls/show` and the dashboard see a trial that computes for hours before its first
    result."""
    import threading

    from tunesmith.store.sqlite import Store

    fifo = str(tmp_path / "go")
    os.mkfifo(fifo)
    out = {}
    runner = threading.Thread(target=lambda: out.update(r=ts.run(
        wait_on_fifo, space={"fifo": fifo}, name="quiet", verbose=0, storage_path=str(results_dir))))
    runner.start()
    path = results_dir / "quiet" / STORE_FILE
    deadline = time.monotonic() + 30
    rows = []
    while not rows and time.monotonic() < deadline:  # waiting for a condition (the row), bounded
        if path.exists():
            store = Store(str(path), readonly=True)
            try:
                rows = store.trials()
            except sqlite3.OperationalError:
                rows = []  # the schema is being created
            store.close()
        time.sleep(0.01)
    try:
        assert [(r["id"], r["status"]) for r in rows] == [(1, "RUNNING")]
        assert rows[0]["created"] <= rows[0]["start_time"] <= time.time()  # when it was made, and started
    finally:
        with open(fifo, "w") as f:
            f.write("go")
        runner.join(30)
    assert out["r"].trials[0].status is ts.TrialStatus.TERMINATED


# -- stop rules are enforced where the result is made (issue 14 §5) -------------------------------------
def count_forever(config):
    i = 0
    while True:
        i += 1
        ts.report({"m": i})


def _stopped_exactly_at(result, iteration):
    for t in result.trials:
        history = result.history(t.id)
        assert t.status is ts.TrialStatus.TERMINATED, t.error
        assert [h["training_iteration"] for h in history] == list(range(1, iteration + 1)), (
            f"{t.name} stored {len(history)} results; its stop rule was met at iteration {iteration}")
        assert history[-1]["m"] == iteration


def test_metric_stop_rule_stops_at_exactly_the_result_that_met_it(results_dir):
    """In a tight loop the driver's decision arrives thousands of results late: the worker evaluates the
    rule itself and ends the trial on the result that met it."""
    result = ts.run(count_forever, stop={"m": 50}, num_samples=2, verbose=0)
    _stopped_exactly_at(result, 50)


def test_callable_stop_rule_stops_at_exactly_the_result_that_met_it(results_dir):
    threshold = 40  # captured: the rule is shipped to the worker cloudpickled

    def stop(trial_id, result):
        return result["m"] >= threshold and result["training_iteration"] == result["m"]

    result = ts.run(count_forever, stop=stop, num_samples=2, verbose=0)
    _stopped_exactly_at(result, 40)


def catches_the_stop(config):
    for i in range(1, 3001):
        try:
            ts.report({"m": i})
        except BaseException:  # noqa: BLE001 - what a careless trial does
            pass


def reports_in_finally(config):
    try:
        for i in range(1, 3001):
            ts.report({"m": i})
    finally:
        ts.report({"m": -1})


@pytest.mark.parametrize("train", [catches_the_stop, reports_in_finally])
def test_reports_after_a_stop_decision_are_refused(results_dir, train):
    result = ts.run(train, stop={"training_iteration": 10}, verbose=0)
    _stopped_exactly_at(result, 10)


def spins_after_the_stop(config):
    try:
        for i in range(1, 100):
            ts.report({"m": i})
    except BaseException:  # noqa: BLE001 - ignores the stop and never reports again
        while True:
            time.sleep(0.01)


def test_a_trial_that_ignores_a_stop_at_a_decision_point_is_killed_after_the_grace_period(results_dir):
    start = time.monotonic()
    result = ts.run(spins_after_the_stop, stop={"training_iteration": 3}, verbose=0,
                    backend=LocalBackend(grace_period_s=0.5))
    assert time.monotonic() - start < 30
    _stopped_exactly_at(result, 3)


# -- each trial in its own working folder (issue 14 §5) --------------------------------------------------
def writes_a_relative_file(config):
    with open("model.txt", "w") as f:  # relative, as Ray Tune's PBT example saves into my_model/
        f.write(str(config["x"]))
    os.makedirs(config["meet"], exist_ok=True)
    open(os.path.join(config["meet"], str(config["x"])), "w").close()
    deadline = time.monotonic() + 20
    while len(os.listdir(config["meet"])) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)  # both trials have written before either reads back
    with open("model.txt") as f:
        mine = f.read()
    with open(os.path.join(os.environ["TUNESMITH_ORIG_WORKING_DIR"], "data.txt")) as f:
        data = f.read()  # a relative data path, resolved the documented way
    ts.report({"read": mine, "data": data, "cwd": os.getcwd(), "together": len(os.listdir(config["meet"]))})


def test_concurrent_trials_each_find_their_own_relative_file(tmp_path, monkeypatch, results_dir):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.txt").write_text("dataset")
    result = ts.run(writes_a_relative_file, space={"x": ts.grid([1, 2]), "meet": str(tmp_path / "meet")},
                    max_concurrent=2, verbose=0)
    for t in result.trials:
        assert t.last_result["together"] == 2  # they ran at the same time
        assert t.last_result["read"] == str(t.config["x"])
        assert t.last_result["data"] == "dataset"
        assert t.last_result["cwd"] == t.path
    assert not (tmp_path / "model.txt").exists()


def test_chdir_to_trial_dir_false_runs_trials_in_the_drivers_folder(tmp_path, monkeypatch, results_dir):
    monkeypatch.chdir(tmp_path)
    result = ts.run(lambda: ts.report({"cwd": os.getcwd()}), verbose=0, chdir_to_trial_dir=False)
    assert result.trials[0].last_result["cwd"] == str(tmp_path)


# -- trial_time_limit_s (issue 14 §5) -------------------------------------------------------------------
def hangs_alive(config):
    while True:  # its heartbeat thread keeps beating: trial_timeout_s cannot see it
        time.sleep(0.05)


def ignores_every_stop(config):
    i = 0
    while True:
        i += 1
        try:
            ts.report({"i": i})
        except BaseException:  # noqa: BLE001
            time.sleep(0.001)


@pytest.mark.parametrize("train", [hangs_alive, ignores_every_stop])
def test_a_trial_past_its_time_limit_is_killed_and_fails(results_dir, train):
    start = time.monotonic()
    result = ts.run(train, verbose=0, trial_time_limit_s=1, max_failures=1,
                    backend=LocalBackend(grace_period_s=0.5, trial_timeout_s=60))
    assert time.monotonic() - start < 30
    (t,) = result.trials
    assert t.status is ts.TrialStatus.ERROR
    assert t.num_failures == 2  # retried once per max_failures, then failed again
    assert "trial_time_limit_s=1" in t.error and "killed" in t.error


def reports_slowly(config):
    for i in range(1000):
        time.sleep(0.05)
        ts.report({"i": i})


def test_a_trial_that_stops_at_its_time_limit_fails_naming_the_limit(results_dir):
    result = ts.run(reports_slowly, verbose=0, trial_time_limit_s=0.5)
    (t,) = result.trials
    assert t.status is ts.TrialStatus.ERROR
    assert "trial_time_limit_s=0.5" in t.error and "killed" not in t.error
    assert 0 < t.iteration < 1000


def test_trial_time_limit_s_must_be_positive(results_dir):
    with pytest.raises(ts.ConfigError, match="trial_time_limit_s"):
        ts.run(reports_slowly, verbose=0, trial_time_limit_s=0)


class _StoredRows(ts.Callback):
    """At each trial's results, the store's row of every trial as the driver has just committed it."""

    def __init__(self, path_of):
        self.path_of = path_of
        self.seen: dict[int, dict[int, tuple[str, float | None]]] = {}

    def on_trial_results(self, trial, results):
        import sqlite3

        with sqlite3.connect(self.path_of()) as db:
            rows = db.execute("SELECT id, status, start_time FROM trials").fetchall()
        self.seen.setdefault(trial.id, {tid: (status, start) for tid, status, start in rows})


def _reports_twice(config):
    ts.report({"x": 1})
    time.sleep(0.2)  # the trial's work between its two results: the first reaches the driver on its own
    ts.report({"x": 2})


def test_a_trial_waiting_for_a_free_worker_is_stored_pending_until_it_starts(results_dir):
    """With one CPU, trial 2 is made while trial 1 runs and waits for the worker: committed with trial 1's
    results, it is PENDING with no start time, not RUNNING; once it runs, its row says so and when it began."""
    from tunesmith._layout import store_path

    rows = _StoredRows(lambda: store_path(str(results_dir / "pending")))
    ts.run(_reports_twice, num_samples=3, verbose=0, name="pending", callbacks=[rows],
           backend=ts.LocalBackend(total_resources={"cpu": 1}))
    assert rows.seen[1][2] == ("PENDING", None)
    status, start = rows.seen[2][2]
    assert start is not None and status in ("RUNNING", "TERMINATED")  # (TERMINATED: both results in one batch)


class _SignalAtFirstResult(ts.Callback):
    """Sends ``signum`` to this process (Ctrl-C: SIGINT) while the driver handles the first batch, and records
    which trials the driver then told the callbacks had ended."""

    def __init__(self, signum):
        self.signum = signum
        self.completed: list[int] = []

    def on_trial_results(self, trial, results):
        if trial.id == 1:
            os.kill(os.getpid(), self.signum)

    def on_trial_complete(self, trial):
        self.completed.append(trial.id)


@pytest.mark.parametrize(("signum", "raised"), [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, SystemExit)])
def test_ctrl_c_or_sigterm_while_a_batch_is_handled_takes_effect_once_the_batch_is_done(results_dir, signum, raised):
    """Before, KeyboardInterrupt surfaced wherever Ctrl-C (or SIGTERM) landed: in the middle of a batch, whose
    rest (here trial 1's end, committed in the same transaction) the driver never acted on."""
    seen = _SignalAtFirstResult(signum)
    before = signal.getsignal(signum)
    with pytest.raises(raised) as got:
        ts.run(_reports_once, num_samples=50, verbose=0, name="ctrlc", callbacks=[seen],
               backend=ts.LocalBackend(total_resources={"cpu": 1}))
    if raised is SystemExit:
        assert got.value.code == 128 + signal.SIGTERM
    stored = ts.load(str(results_dir / "ctrlc"))
    trial_1 = next(t for t in stored.trials if t.id == 1)
    if trial_1.status is ts.TrialStatus.TERMINATED:  # its result and its end came in one batch (as a rule)
        assert seen.completed[:1] == [1]  # that batch was handled to its end: the stored end was acted on
    else:  # a loaded machine: the worker sent the result alone (its flusher), the end would come in the next batch
        assert trial_1.status is ts.TrialStatus.PAUSED and seen.completed == [], (trial_1.status, seen.completed)
    assert stored.status == "interrupted"
    assert signal.getsignal(signum) is before  # the handler before the run is back


def _reports_once(config):
    ts.report({"x": 1})


class _CtrlCAgainAtTheWarning(logging.Handler):
    """A second Ctrl-C landing as the driver says it stops the running trials (a loaded machine's timing): raised
    from within that warning."""

    def emit(self, record):
        if record.getMessage().startswith("interrupted: stopping"):
            raise KeyboardInterrupt


def _reports_then_waits(config):
    ts.report({"x": 1})
    time.sleep(30)  # stopped before this ends


def test_a_second_ctrl_c_as_the_driver_starts_stopping_still_records_the_run_interrupted(results_dir):
    """CI (a loaded machine) once ended such a run 'crashed': the second Ctrl-C landed between the warning and the
    stop, outside what caught it, and the status was never written."""
    handler = _CtrlCAgainAtTheWarning()
    logger = logging.getLogger("tunesmith")
    logger.addHandler(handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            ts.run(_reports_then_waits, num_samples=1, verbose=0, name="again",
                   callbacks=[_SignalAtFirstResult(signal.SIGINT)])
    finally:
        logger.removeHandler(handler)
    assert ts.load(str(results_dir / "again")).status == "interrupted"


class _ExitAtFirstResult(ts.Callback):
    """``sys.exit(3)`` in a user's callback once the first result is in (a script that gives up from a hook)."""

    def on_trial_results(self, trial, results):
        raise SystemExit(3)


class _ExitingScheduler(ts.Scheduler):
    """``sys.exit(4)`` in a user's scheduler hook at the first result."""

    def on_result(self, trial, result, view):
        raise SystemExit(4)


def _reports_on(config):
    for i in range(100_000):  # stopped at a report long before its end
        ts.report({"x": i})


@pytest.mark.parametrize(("where", "code"), [("callback", 3), ("scheduler", 4)])
def test_sys_exit_in_a_users_hook_records_the_run_interrupted_and_keeps_its_code(results_dir, where, code):
    """It escaped the driver past what handles Ctrl-C: the store stayed "running" and read "crashed"."""
    extra = {"callbacks": [_ExitAtFirstResult()]} if where == "callback" else {"scheduler": _ExitingScheduler()}
    with pytest.raises(SystemExit) as got:
        ts.run(_reports_on, num_samples=1, verbose=0, name="exits", **extra)
    assert got.value.code == code
    stored = ts.load(str(results_dir / "exits"))
    assert stored.status == "interrupted"
    assert [t.status for t in stored.trials] == [ts.TrialStatus.PAUSED]


class _ExitAtTheEnd(ts.Callback):
    """``sys.exit(5)`` in a user's ``on_experiment_end`` (a script that exits with its own code once tuning ends), or
    the Ctrl-C that lands there (a logger's upload at the end that the user will not wait for)."""

    def __init__(self, error=None):
        self.error = error or SystemExit(5)

    def on_experiment_end(self, info):
        raise self.error


@pytest.mark.parametrize("error", [SystemExit(5), KeyboardInterrupt()], ids=["sys-exit", "ctrl-c"])
def test_sys_exit_in_on_experiment_end_still_records_the_run_finished_and_keeps_its_code(results_dir, caplog, error):
    """The status was written after that hook: the SystemExit (or a Ctrl-C in it) left a finished run "running"
    (read "crashed")."""
    with pytest.raises(type(error)) as got:
        ts.run(_reports_once, num_samples=2, verbose=0, name="ends", callbacks=[_ExitAtTheEnd(error)])
    assert got.value is error
    stored = ts.load(str(results_dir / "ends"))
    assert stored.status == "finished"
    assert [t.status for t in stored.trials] == [ts.TrialStatus.TERMINATED] * 2
    assert "interrupted" not in caplog.text  # nor is it told to resume a run that has ended
