"""ResultSet at its edges: what ``ts.load`` resolves a name to, the status of an experiment whose driver was killed,
``get_best``/``top`` over every result of a constrained experiment, and the arguments ``top``/``history``/``lineage``
refuse."""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import re
import select
import signal
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from click.testing import CliRunner
from reader_helpers import brute_best_all
from test_readers import drop_indexes, write_store

import tunesmith as ts
from tunesmith.cli import cli
from tunesmith.results import ResultSet, feasible_result, load

pytestmark = pytest.mark.timeout(120)


def invoke(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def report_x(config: dict[str, Any]) -> None:
    ts.report({"loss": config["x"]})


def tiny(name: str, **kwargs: Any) -> ResultSet:
    return ts.run(report_x, {"x": ts.grid([0.5, 0.25])}, metric="loss", mode="min", name=name, verbose=0, **kwargs)


# -- ts.load(name) --------------------------------------------------------------------------------------------------


def test_load_by_name_is_not_shadowed_by_a_folder_of_that_name_without_a_store(tmp_path: Any, monkeypatch: Any
                                                                               ) -> None:
    """A data set folder named like the experiment, in the current folder, is no experiment: the name is the one
    under ./tunesmith_results, as `tunesmith show NAME` finds it."""
    monkeypatch.delenv("TUNESMITH_RESULTS")
    monkeypatch.chdir(tmp_path)
    stored = tiny("cifar10")
    (tmp_path / "cifar10").mkdir()
    (tmp_path / "cifar10" / "data_batch_1").write_bytes(b"\0" * 16)
    assert stored.path == str(tmp_path / "tunesmith_results" / "cifar10")
    assert ts.load("cifar10").path == stored.path
    assert json.loads(invoke("show", "cifar10", "--json").output)["path"] == stored.path
    assert len(ts.load("cifar10").trials) == 2


def test_load_resolves_a_name_or_path_as_the_cli_does(tmp_path: Any, results_dir: Any, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    elsewhere = tiny("moved", storage_path=str(tmp_path / "archive"))
    tiny("named")
    # explicit paths to experiment folders, relative or absolute, elsewhere than the storage path
    assert ts.load(os.path.join("archive", "moved")).path == elsewhere.path
    assert ts.load(elsewhere.path).path == elsewhere.path
    assert ts.load(str(results_dir / "named")).path == str(results_dir / "named")
    assert ts.load("named").path == str(results_dir / "named")
    # a folder without a store where neither holds one: both places named
    (tmp_path / "data").mkdir()
    with pytest.raises(ts.ConfigError) as e:
        ts.load("data")
    message = str(e.value)
    assert str(results_dir / "data") in message and str(tmp_path / "data") in message and "experiment.db" in message
    with pytest.raises(ts.ConfigError, match="nowhere") as e:
        ts.load("nowhere")
    assert str(results_dir / "nowhere") in str(e.value) and str(tmp_path / "nowhere") in str(e.value)


# -- status of a killed driver's experiment -------------------------------------------------------------------------


def _killed_driver(tmp_path: Any) -> tuple[subprocess.Popen[bytes], ResultSet]:
    """A real driver in a subprocess, running its experiment "killed" (trial 1 running, its first result stored;
    trial 2 waiting: one at a time), and a result set of it read while it runs; the caller kills the driver."""
    started = tmp_path / "started"
    os.mkfifo(started)
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(f"""
        import time
        import tunesmith as ts

        class Asked(ts.Stopper):  # asked in the driver: report() returns once its result is stored
            def __call__(self, trial_id, result):
                return False

            def stop_all(self):
                return False

        def train(config):
            ts.report({{"loss": config["x"]}})
            with open({str(started)!r}, "w") as f:  # the test reads it: the trial runs, stored RUNNING
                f.write("started\\n")
            time.sleep(600)  # until the driver is killed (its trials die with it)

        if __name__ == "__main__":
            ts.run(train, {{"x": ts.grid([1.0, 2.0])}}, metric="loss", mode="min", name="killed", verbose=0,
                   max_concurrent=1, stop=Asked())
    """))
    driver = subprocess.Popen([sys.executable, str(script)], cwd=tmp_path, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        fd = os.open(started, os.O_RDONLY | os.O_NONBLOCK)  # no writer yet: never readable until the trial writes
        try:
            got = b""
            while not got:
                ready, _, _ = select.select([fd], [], [], 5.0)
                if ready:
                    got = os.read(fd, 64)
                    assert got, "the trial closed the pipe without writing"
                assert driver.poll() is None, f"the driver ended (rc {driver.returncode}) before its trial started"
        finally:
            os.close(fd)
        return driver, ts.load("killed")
    except BaseException:
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=60)
        raise


def test_a_killed_drivers_experiment_is_crashed_for_the_result_set_as_for_the_cli(tmp_path: Any, results_dir: Any
                                                                                  ) -> None:
    """The driver's lock decides "running" everywhere: SIGKILL of the driver makes the experiment "crashed" for
    ``ResultSet.status`` as for `ls` and `show`, even with a ``.driver.pid`` naming a live process."""
    driver, live = _killed_driver(tmp_path)
    try:
        assert live.status == "running"  # the driver holds its lock
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=60)
    assert live.meta["status"] == "running"  # what the killed driver last recorded
    folder = str(results_dir / "killed")
    (results_dir / "killed" / ".driver.pid").write_text(str(os.getpid()))  # a live process: not the truth
    rs = ts.load("killed")
    listed = json.loads(invoke("ls", "--json").output)
    shown = json.loads(invoke("show", "killed", "--json").output)
    assert [e["status"] for e in listed] == ["crashed"] and shown["status"] == "crashed"
    assert rs.status == "crashed" and live.refresh().status == "crashed" and "status='crashed'" in repr(rs)
    # trials keep the status last recorded, in the result set as in `show`
    assert [t.status.value for t in rs.trials] == [t["status"] for t in shown["trials"]]
    assert rs.path == folder



def _folder_state(folder: Any) -> dict[str, tuple[int, int]]:
    return {os.path.join(d, f): (os.stat(os.path.join(d, f)).st_size, os.stat(os.path.join(d, f)).st_mtime_ns)
            for d, _, files in os.walk(folder) for f in files}


def test_the_trials_a_killed_driver_was_running_are_shown_paused_as_a_resume_continues_them(
        tmp_path: Any, results_dir: Any) -> None:
    """A crashed experiment's trials stored RUNNING run no more: every reader shows them PAUSED (as Ctrl-C or a
    failure leaves them, and as a resume continues them from their last checkpoint), writing nothing in the folder;
    the store keeps RUNNING, as recorded."""
    from tunesmith.dashboard._data import Experiments

    driver, live = _killed_driver(tmp_path)
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=60)
    folder = results_dir / "killed"
    before = _folder_state(folder)
    rs = ts.load("killed")
    assert rs.status == "crashed"
    assert rs.trial(1).status is ts.TrialStatus.PAUSED  # one row read
    statuses = [t.status.value for t in rs.trials]
    assert statuses[0] == "PAUSED" and "RUNNING" not in statuses, statuses
    assert live.refresh().trials[0].status is ts.TrialStatus.PAUSED  # a result set read while it ran, re-read
    assert rs.filter(status="RUNNING") == [] and [t.id for t in rs.filter(status="PAUSED")] == [1]
    assert rs.dataframe()["status"].tolist() == statuses
    shown = json.loads(invoke("show", "killed", "--json").output)
    assert [t["status"] for t in shown["trials"]] == statuses
    for args in ([], ["--limit", "1"]):  # every trial read whole, or ranked from the light rows
        text = invoke("show", "killed", *args).output
        assert "paused" in text and "running" not in text, text
    report = tmp_path / "report.html"
    assert invoke("report", "killed", "-o", str(report)).exit_code == 0
    assert "1 paused" in report.read_text() and "running" not in report.read_text().lower().split("<script")[0]
    dashboard = Experiments(str(results_dir))
    summary = dashboard.summary("killed")
    assert summary["status"] == "crashed" and "RUNNING" not in summary["counts"] and summary["counts"]["PAUSED"] == 1
    assert [t["status"] for t in dashboard.trials("killed")["rows"]] == statuses
    assert [t["id"] for t in dashboard.trials("killed", status="PAUSED")["rows"]] == [1]
    assert dashboard.trials("killed", status="RUNNING")["rows"] == []
    assert dashboard.trial("killed", 1)["status"] == "PAUSED"
    curves = dashboard.curves("killed", "loss", {1: None, 2: None})["trials"]
    assert [c["status"] for c in curves.values()] == statuses  # the live learning curves' line style
    again = dashboard.curves("killed", "loss", {1: tuple(curves["1"]["cursor"])})["trials"]["1"]
    assert again == {"mode": "same", "status": "PAUSED"}  # a crashed run's curve is not sent again
    assert _folder_state(folder) == before  # readers write nothing
    import sqlite3

    with contextlib.closing(sqlite3.connect(f"file:{folder / 'experiment.db'}?mode=ro", uri=True)) as db:
        assert db.execute("SELECT status FROM trials WHERE id = 1").fetchone() == ("RUNNING",)  # as recorded


# -- get_best / top over every result of a constrained experiment ---------------------------------------------------

SEQ = {"A": [(0.01, 10.0), (0.5, 4.0)], "B": [(0.3, 4.0), (0.2, 4.0)], "C": [(0.05, 20.0), (0.04, 20.0)],
       "D": [(0.1, 4.0), (0.03, 20.0)]}


def constrained_train(config: dict[str, Any]) -> None:
    for loss, mem in SEQ[config["t"]]:
        ts.report({"loss": loss, "mem": mem})


def test_best_over_all_results_of_a_constrained_run_ranks_only_feasible_results(tmp_path: Any) -> None:
    """Trial A reported its lowest loss while infeasible (mem > 8): that result is not its best; D's feasible first
    result is its best although its last is infeasible; C was never feasible."""
    result = ts.run(constrained_train, {"t": ts.grid(list(SEQ))}, metric="loss", mode="min", name="cons",
                    verbose=0, constraints=lambda r: [r["mem"] - 8])
    by_t = {t.config["t"]: t.id for t in result.trials}
    want = [(by_t["D"], 0.1, 1), (by_t["B"], 0.2, 2), (by_t["A"], 0.5, 2)]
    for rs in (result, load(result.path)):  # trials read, and a fresh load (only the ranked trials read)
        best = rs.get_best(scope="all")
        assert (best.id, best.metrics["loss"], best.metrics["training_iteration"]) == want[0]
        got = rs.top(4, scope="all")
        assert [(t.id, t.metrics["loss"], t.metrics["training_iteration"]) for t in got] == want
        assert all(feasible_result(t.metrics) for t in got)
    drop_indexes(result.path)  # a running experiment's store, or an older one: SQLite scans
    rs = load(result.path)
    assert [(t.id, t.metrics["loss"], t.metrics["training_iteration"]) for t in rs.top(4, scope="all")] == want
    # by the last result, as before: feasible last results only (B 0.2, A 0.5)
    assert [t.id for t in rs.top(4)] == [by_t["B"], by_t["A"]]
    # the HTML report's summary says the same best result
    from tunesmith.plots.report import summary

    assert dict(summary(rs))["best result (any iteration)"] == f"trial_{by_t['D']:05d} at iteration 1: loss=0.1"


def brute_feasible_best_all(rs: ResultSet, metric: str, mode: str) -> list[tuple[int, float, int]]:
    """(trial, value, iteration) of every trial by its best feasible result, best first; by its best result when no
    trial has a feasible one (scanning every result in Python)."""
    return (brute_best_all(rs, len(rs.trials), metric, mode, only_feasible=True)
            or brute_best_all(rs, len(rs.trials), metric, mode))


def constrained_trials(seed: int, feasible_share: float) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    trials = []
    for i in range(1, 31):
        results = []
        for _ in range(rng.randint(0, 6)):
            loss: Any = round(rng.uniform(-5, 5), 1)  # ties across and within trials
            if rng.random() < 0.05:
                loss = math.nan
            elif rng.random() < 0.05:
                loss = "high"
            c0: Any = -1.0 if rng.random() < feasible_share else 2.0
            if rng.random() < 0.05:
                c0 = math.nan  # not feasible; SQLite cannot read the row
            elif rng.random() < 0.05:
                c0 = True  # not a number: not feasible
            c1 = -0.5 if rng.random() < 0.8 else rng.choice([0.0, 1.5])
            results.append({"loss": loss, "constraint/0": c0, "constraint/1": c1})
        trials.append({"id": i, "config": {"x": i}, "results": results})
    return trials


@pytest.mark.parametrize("indexed", [True, False])
@pytest.mark.parametrize("mode", ["min", "max"])
@pytest.mark.parametrize("feasible_share", [0.5, 0.0])  # 0.0: no result feasible, every result ranks
def test_best_over_all_results_of_a_constrained_store_equals_a_scan(tmp_path: Any, mode: str, indexed: bool,
                                                                    feasible_share: float) -> None:
    folder = write_store(str(tmp_path / "cons"), constrained_trials(5, feasible_share), mode=mode)
    if not indexed:
        drop_indexes(folder)
    rs = load(folder)
    want = brute_feasible_best_all(rs, "loss", mode)
    assert want
    for fresh in (True, False):
        got = (load(folder) if fresh else rs).top(30, scope="all")
        assert [(t.id, t.metrics["loss"], t.metrics["training_iteration"]) for t in got] == want
        best = (load(folder) if fresh else rs).get_best(scope="all")
        assert (best.id, best.metrics["loss"], best.metrics["training_iteration"]) == want[0]
    assert [t.id for t in load(folder).top(3, scope="all")] == [w[0] for w in want[:3]]


# -- arguments ------------------------------------------------------------------------------------------------------


@pytest.fixture
def two(results_dir: Any) -> ResultSet:
    return tiny("two")


@pytest.mark.parametrize("k", [-1, 0, "2", 2.0, True, None])
@pytest.mark.parametrize("scope", ["last", "all"])
def test_top_refuses_a_k_that_is_not_a_positive_int(two: ResultSet, k: Any, scope: str) -> None:
    with pytest.raises(ts.ConfigError, match=r"^k: expected a positive int.*got " + re.escape(repr(k))):
        two.top(k, scope=scope)


def test_top_takes_positive_ints(two: ResultSet) -> None:
    assert len(two.top(1)) == 1 and len(two.top(5, scope="all")) == 2
    np = pytest.importorskip("numpy")
    assert len(two.top(np.int64(1))) == 1


@pytest.mark.parametrize("unknown", [99, "99", "trial_00099"])
def test_history_and_lineage_of_an_unknown_trial_raise_as_trial_does(two: ResultSet, unknown: Any) -> None:
    with pytest.raises(KeyError) as by_trial:
        two.trial(unknown)
    for read in (lambda: two.history(unknown), lambda: two.history(unknown, all_generations=True),
                 lambda: two.lineage(unknown), lambda: load(two.path).history(unknown),
                 lambda: load(two.path).lineage(unknown)):
        with pytest.raises(KeyError) as e:
            read()
        assert str(e.value) == str(by_trial.value)
    assert [len(two.history(t.id)) for t in two.trials] == [1, 1] and two.lineage(1) == []


def test_history_of_a_trial_without_results_is_empty(tmp_path: Any) -> None:
    folder = write_store(str(tmp_path / "empty"), [{"id": 1, "config": {}, "status": "PENDING", "results": []}])
    rs = load(folder)
    assert rs.history(1) == [] and rs.lineage(1) == [] and load(folder).history("trial_00001") == []
