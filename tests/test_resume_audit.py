"""Resume off the happy path: what a user who continues experiments meets (restart_errored, the resume command)."""

from __future__ import annotations

import os
import signal
import time

import pytest

import tunesmith as ts

pytestmark = pytest.mark.timeout(120)


def _failing_until(marks, good_call, interrupt_at=None):
    """A trial function that fails on its calls before ``good_call`` (counted by files in ``marks``, across
    drivers), and on call ``interrupt_at`` reports, then Ctrl-C's this driver and waits to be stopped."""
    driver = os.getpid()

    def train(config):
        n = len(os.listdir(marks))
        (marks / str(n)).touch()
        if n == interrupt_at:
            ts.report({"loss": 2.0})
            os.kill(driver, signal.SIGINT)
            while True:  # a report after the stop decision raises: the trial ends PAUSED by the interruption
                time.sleep(0.05)
                ts.report({"loss": 2.0})
        if n < good_call:
            raise RuntimeError(f"transient failure on call {n}")
        ts.report({"loss": 1.0})

    return train


def test_restart_errored_gives_a_restarted_trial_its_max_failures_again(results_dir, tmp_path):
    # max_failures is the restarts allowed per trial: a trial restarted with restart_errored got none (its earlier
    # failures counted against it), so one more transient failure ended it ERROR at once
    marks = tmp_path / "marks"
    marks.mkdir()
    train = _failing_until(marks, good_call=4)
    kw = dict(metric="loss", mode="min", name="flaky", verbose=0, max_failures=1)
    first = ts.run(train, **kw)
    assert (first.trials[0].status, first.trials[0].num_failures) == (ts.TrialStatus.ERROR, 2)  # calls 0, 1
    again = ts.run(train, resume=True, restart_errored="restart", **kw)
    t = again.trials[0]
    # call 2 fails and is retried (1 of 1 allowed since the restart), call 3 fails: ERROR again
    assert (t.status, t.num_failures, len(os.listdir(marks))) == (ts.TrialStatus.ERROR, 4, 4)
    # every failure stays counted and stored; a second restart gets its retry again: call 4 succeeds
    last = ts.run(train, resume=True, restart_errored="resume", **kw)
    t = last.trials[0]
    assert (t.status, t.num_failures, len(os.listdir(marks))) == (ts.TrialStatus.TERMINATED, 4, 5)
    assert [e[4]["failure"] for e in last._store.events() if e[2] == "error"] == [1, 2, 3, 4]


def test_the_retries_a_restart_gave_last_through_an_interruption(results_dir, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    # calls 0-2 fail (ERROR); restarted: call 3 fails (1 of 2 since the restart), call 4 is interrupted; resumed
    # (no restart_errored): call 5 fails (2 of 2), call 6 succeeds
    train = _failing_until(marks, good_call=6, interrupt_at=4)
    kw = dict(metric="loss", mode="min", name="flaky", verbose=0, max_failures=2)
    assert ts.run(train, **kw).trials[0].status is ts.TrialStatus.ERROR
    with pytest.raises(KeyboardInterrupt):
        ts.run(train, resume=True, restart_errored="restart", **kw)
    stopped = ts.load(str(results_dir / "flaky")).trials[0]
    assert (stopped.status, stopped.num_failures) == (ts.TrialStatus.PAUSED, 4)
    t = ts.run(train, resume=True, **kw).trials[0]
    assert (t.status, t.num_failures, len(os.listdir(marks))) == (ts.TrialStatus.TERMINATED, 5, 7)


RUN_SETTINGS = """
import os, time
import tunesmith as ts

def train(config):
    open("cwd_marker_%d" % ts.get_trial_id(), "w").close()  # relative: the driver's folder, not the trial's
    ts.report({"loss": config["x"]})
    if config["x"] == 2:  # hangs alive past trial_time_limit_s (long enough to tell a limit from none)
        for _ in range(200):
            time.sleep(0.05)
"""


def test_the_resume_command_keeps_the_settings_the_run_was_given(results_dir, tmp_path, monkeypatch):
    # the interrupt message prints `tunesmith resume NAME --fn ...` for a Python run: it ran the rest without the
    # run's trial_time_limit_s (a hung trial hung), in the trials' folders though chdir_to_trial_dir=False, and
    # without file_loggers, trial_timeout_s and strict_metric_checking
    from algorithm_helpers import InterruptAfter
    from click.testing import CliRunner

    from tunesmith.cli import cli, load_target, resume_arguments

    (tmp_path / "settings_train.py").write_text(RUN_SETTINGS)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    train = load_target(f"{tmp_path / 'settings_train.py'}:train")
    settings = dict(trial_time_limit_s=1.0, chdir_to_trial_dir=False, file_loggers=True, trial_timeout_s=30.0,
                    strict_metric_checking=False)
    with pytest.raises(KeyboardInterrupt):
        ts.run(train, {"x": ts.grid([1, 2])}, metric="loss", mode="min", name="exp", max_concurrent=1, verbose=0,
               callbacks=[InterruptAfter(1)], **settings)
    spec = ts.load(str(results_dir / "exp")).meta["spec"]
    assert {k: v for k, v in resume_arguments(spec).items() if k in settings} == settings
    res = CliRunner().invoke(cli, ["resume", "exp", "--fn", f"{tmp_path / 'settings_train.py'}:train", "--verbose",
                                   "0"], catch_exceptions=False)
    assert res.exit_code == 1, res.output  # trial 2 failed on its time limit
    t = ts.load(str(results_dir / "exp")).trial(2)
    assert t.status is ts.TrialStatus.ERROR and "trial_time_limit_s" in t.error, t.error
    assert sorted(os.listdir(work)) == ["cwd_marker_1", "cwd_marker_2"]
    assert os.path.isfile(results_dir / "exp" / "trials" / "trial_00002" / "progress.csv")


def test_warm_start_naming_one_experiment_twice_is_refused(results_dir):
    # each of its trials was handed to the searcher twice (by its name and by its folder, or listed twice), so a
    # model-based searcher weighed them double
    ts.run(_reports_x, {"x": ts.uniform(0, 1)}, metric="loss", mode="min", num_samples=2, name="src", verbose=0)
    for twice in (["src", "src"], ["src", str(results_dir / "src")], ["src", str(results_dir / "." / "src")]):
        with pytest.raises(ts.ConfigError, match=r"warm_start: .*'src'.* name the same experiment"):
            ts.run(_reports_x, {"x": ts.uniform(0, 1)}, metric="loss", mode="min", name="new", verbose=0,
                   warm_start=twice)
        assert not os.path.exists(results_dir / "new")  # refused before anything is created


def _reports_x(config):
    ts.report({"loss": config["x"]})


def _one_report(config):
    ts.report({"loss": 1.0})


def test_the_command_line_resumes_on_the_local_backend_the_run_was_given(results_dir):
    """A run on ``LocalBackend(total_resources={"cpu": 1}, start_method="spawn", ...)`` stored only ``{"kind":
    "local"}``: `tunesmith resume` ran it on the default local backend (every core, the fork server, trials handed
    ahead). The spec now keeps the backend's arguments, and the command rebuilds it."""
    from tunesmith.cli import resume_arguments

    backend = ts.LocalBackend(total_resources={"cpu": 1}, start_method="spawn", queue_ahead=False,
                              grace_period_s=2.0, trial_timeout_s=30.0)
    result = ts.run(_one_report, name="lb", verbose=0, backend=backend)
    rebuilt = resume_arguments(result._store.meta()["spec"])["backend"]
    assert isinstance(rebuilt, ts.LocalBackend)
    assert (rebuilt.total_resources_arg, rebuilt.start_method, rebuilt.queue_ahead, rebuilt.grace_period_s,
            rebuilt.trial_timeout_s, rebuilt.gpu_ids) == ({"cpu": 1.0}, "spawn", False, 2.0, 30.0, None)
    default = ts.run(_one_report, name="plain", verbose=0)
    assert "backend" not in resume_arguments(default._store.meta()["spec"])  # the default, built by run()


def _draws(config, ctx):
    yield {"loss": config["x"]}, 1.0, None


def _simulated(tmp_path, **kw):
    from tunesmith.executors.simulated import SimulatedBackend

    kw.setdefault("space", {"x": ts.uniform(0.0, 1.0)})
    return ts.run(_draws, metric="loss", mode="min", name="seeded", storage_path=str(tmp_path),
                  backend=SimulatedBackend({"cpu": 1}), verbose=0, file_loggers=False, **kw)


def _store_bytes(tmp_path):
    with open(os.path.join(str(tmp_path), "seeded", "experiment.db"), "rb") as f:
        return f.read()


def test_a_resume_with_another_seed_is_refused_as_another_metric_is(tmp_path):
    """The resumed searcher goes on with the stream it replays: another seed would draw what the experiment never
    would have, so it is refused naming both (no seed, or the same, resumes)."""
    _simulated(tmp_path, num_samples=2, seed=1)
    before = _store_bytes(tmp_path)
    with pytest.raises(ts.ConfigError, match=r"experiment 'seeded' was run with seed=1 \(its Random searcher's\), "
                                             r"not 2; pass the same seed, or none"):
        _simulated(tmp_path, num_samples=3, seed=2, resume=True)
    with pytest.raises(ts.ConfigError, match=r"was run with seed=1 \(its Random searcher's\), not 5"):
        _simulated(tmp_path, num_samples=3, searcher=ts.Random(seed=5), resume=True)
    assert _store_bytes(tmp_path) == before
    same = [t.config for t in _simulated(tmp_path, num_samples=3, seed=1, resume=True).trials]
    first = [t.config for t in _simulated(tmp_path, num_samples=4, resume=True).trials]  # no seed: the stored one
    assert len(first) == 4 and first[:3] == same
    import shutil

    shutil.rmtree(os.path.join(str(tmp_path), "seeded"))
    assert [t.config for t in _simulated(tmp_path, num_samples=4, seed=1).trials] == first  # as uninterrupted


def test_a_resume_with_num_samples_below_its_trials_is_refused(tmp_path):
    """num_samples may grow or shrink on a resume, but not below the trials the experiment already has (they would
    be left as they are, without a word): the error names both counts."""
    _simulated(tmp_path, num_samples=3, seed=1)
    before = _store_bytes(tmp_path)
    with pytest.raises(ts.ConfigError, match=r"experiment 'seeded' already has 3 trials: num_samples=2 allows "
                                             r"2; pass num_samples=3 or more"):
        _simulated(tmp_path, num_samples=2, resume=True)
    assert _store_bytes(tmp_path) == before
    assert len(_simulated(tmp_path, num_samples=3, resume=True).trials) == 3


def test_num_samples_counts_per_grid_point_on_a_resume_too(tmp_path):
    """With a grid, Random's num_samples counts tries of each grid point: 2 points x 1 is 2 trials, resumable with
    num_samples=1."""
    space = {"x": ts.grid([0.1, 0.2])}
    _simulated(tmp_path, space=space, seed=1)
    assert len(_simulated(tmp_path, space=space, resume=True).trials) == 2
