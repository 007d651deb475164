"""Nothing lost: retries, heartbeats, resume after a driver crash."""

from __future__ import annotations

import os
import random
import signal
import time

import pytest
from algorithm_helpers import InterruptAfter
from chaos_helpers import kill_and_resume

import tunesmith as ts

pytestmark = pytest.mark.timeout(180)


def flaky(config):
    ck = ts.get_checkpoint()
    start = ck.load() if ck else 0
    rng = random.Random(config["seed"] * 1000 + start + 7 * (ts.get_trial_id()))
    for i in range(start, 10):
        if rng.random() < 0.2:
            raise RuntimeError(f"flaky failure at iteration {i + 1}")
        ts.report({"i": i + 1}, checkpoint=ts.Checkpoint.from_state(i + 1))


def test_retries_restart_from_the_last_checkpoint_and_count_failures_exactly(results_dir):
    result = ts.run(flaky, space={"seed": ts.grid(list(range(6)))}, max_failures=3, verbose=0, name="flaky")
    events = result._store.events()
    for t in result.trials:
        errors = [e for e in events if e[2] == "error" and e[3] == t.id]
        assert t.num_failures == len(errors)
        history = result.history(t.id)
        # results are never duplicated and, after each restart, continue from the checkpointed iteration
        assert [h["training_iteration"] for h in history] == list(range(1, t.iteration + 1))
        assert all(h["i"] == h["training_iteration"] for h in history)
        for e in errors:
            assert "flaky failure" in e[4]["traceback"]
        if t.num_failures <= 3:
            assert t.status is ts.TrialStatus.TERMINATED and t.iteration == 10
        else:
            assert t.status is ts.TrialStatus.ERROR and t.num_failures == 4
    assert sum(t.num_failures for t in result.trials) > 0  # the seeds above do fail sometimes


def slow_reporter(config):
    for i in range(3):
        time.sleep(config["gap"])  # longer than trial_timeout_s, but the heartbeat says it is alive
        ts.report({"i": i})


def test_slow_but_alive_trial_is_never_declared_dead(results_dir):
    result = ts.run(slow_reporter, space={"gap": 3.0}, trial_timeout_s=2.0, verbose=0)
    t = result.trials[0]
    assert t.status is ts.TrialStatus.TERMINATED and t.num_failures == 0 and t.iteration == 3


def stops_itself(config):
    ck = ts.get_checkpoint()
    if ck is None:
        ts.report({"phase": 1}, checkpoint=ts.Checkpoint.from_state(1))
        os.kill(os.getpid(), signal.SIGSTOP)  # frozen: no results, no heartbeat
    ts.report({"phase": 2})


def test_stopped_worker_is_declared_dead_and_retried(results_dir):
    t0 = time.monotonic()
    result = ts.run(stops_itself, num_samples=1, trial_timeout_s=2.0, max_failures=1, verbose=0)
    elapsed = time.monotonic() - t0
    t = result.trials[0]
    assert t.status is ts.TrialStatus.TERMINATED and t.num_failures == 1
    assert "no heartbeat" in t.error
    assert [h["phase"] for h in result.history(t.id)] == [1, 2]
    assert elapsed < 2.0 + 3.0 + 5.0  # declared dead within trial_timeout_s + 3 s (plus start-up)


def test_driver_sigkill_then_resume_loses_nothing(tmp_path):
    final, starts = kill_and_resume(tmp_path, "crashy", kills=2, rng=random.Random(1))
    assert starts >= 2
    assert sorted(final) == [(t, i) for t in range(1, 9) for i in range(1, 11)]
    result = ts.load(str(tmp_path / "store" / "crashy"))
    assert result.status == "finished" and len(result.trials) == 8
    assert all(t.status is ts.TrialStatus.TERMINATED and t.iteration == 10 for t in result.trials)
    # the resumed searcher continued the same sequence: configs equal an uninterrupted run's
    clean = ts.run(lambda c: None, space={"x": ts.uniform(0, 1)}, num_samples=8, seed=0, verbose=0)
    assert [t.config for t in result.trials] == [t.config for t in clean.trials]


def test_resume_refuses_unknown_or_mismatched_experiments(results_dir):
    with pytest.raises(ts.ConfigError, match="no experiment 'nope'"):
        ts.run(flaky, name="nope", resume=True, verbose=0)
    ts.run(lambda c: ts.report({"loss": 1}), name="done", metric="loss", mode="min", verbose=0)
    with pytest.raises(ts.ConfigError, match="was run with mode='min'"):
        ts.run(lambda c: ts.report({"loss": 1}), name="done", metric="loss", mode="max", resume=True, verbose=0)
    with pytest.raises(ts.ConfigError, match="needs the name"):
        ts.run(flaky, resume=True, verbose=0)


def _lr_trial(config):
    ts.report({"loss": config["lr"]})


def test_resume_refuses_another_space_searcher_or_scheduler(results_dir):
    # A resume replays the stored trials through the searcher and scheduler: with another space (grid points
    # 5 and 6 were skipped silently, and the stored spec rewritten as if trials 1 and 2 had run from it), another
    # searcher or scheduler, what it continues is not the experiment it resumes
    space = {"lr": ts.grid([1, 2]), "f": ts.sample_from(lambda c: c["lr"] * 2)}
    ts.run(_lr_trial, space, name="same", metric="loss", mode="min", verbose=0)
    again = {"lr": ts.grid([1, 2]), "f": ts.sample_from(lambda c: c["lr"] * 2)}  # another lambda: the same space
    assert len(ts.run(_lr_trial, again, name="same", metric="loss", mode="min", resume=True, verbose=0).trials) == 2
    for changed, match in [({"space": {"lr": ts.grid([5, 6, 7])}}, "space"),
                           ({"space": {"lr": ts.grid([1, 2]), "g": 1}}, "space"),
                           # the same keys in another order: grid points and draws follow the order (a resume
                           # with a reordered YAML file ran some grid points twice and others never)
                           ({"space": {"f": again["f"], "lr": ts.grid([1, 2])}}, r"space \(its keys in another "
                                                                                  r"order: \['lr', 'f'\]"),
                           ({"searcher": ts.QuasiRandom(seed=0)}, "searcher"),
                           ({"scheduler": ts.ASHA(max_t=4)}, "scheduler")]:
        kwargs = {"space": again, **changed}
        with pytest.raises(ts.ConfigError, match=f"was run with another {match}"):
            ts.run(_lr_trial, name="same", metric="loss", mode="min", resume=True, verbose=0, **kwargs)
    stored = ts.load(str(results_dir / "same")).meta["spec"]["space"]
    assert stored["lr"] == {"__domain__": "grid", "values": [1, 2]}  # the stored spec is untouched


def test_resume_accepts_the_same_space_holding_nan(results_dir):
    """NaN is not equal to itself: the stored space is compared as JSON text, so the same space is the same."""
    def space():
        return {"pad_value": float("nan"), "c": ts.choice([1.0, float("nan")]), "lr": ts.grid([1, 2])}

    ts.run(_lr_trial, space(), name="nan", metric="loss", mode="min", verbose=0)
    assert len(ts.run(_lr_trial, space(), name="nan", metric="loss", mode="min", resume=True, verbose=0).trials) == 2
    for changed in ({**space(), "pad_value": 0.0}, {**space(), "c": ts.choice([1, float("nan")])},
                    {**space(), "c": ts.choice([True, float("nan")])}):
        with pytest.raises(ts.ConfigError, match="was run with another space"):
            ts.run(_lr_trial, changed, name="nan", metric="loss", mode="min", resume=True, verbose=0)


def _sleepy(config):
    time.sleep(0.05)
    ts.report({"loss": config["x"]})


def test_a_time_budget_is_the_experiments_not_each_runs(results_dir):
    """time_budget_s counts the time earlier drivers ran: resuming an experiment whose budget ran out runs no new
    trial (it ran a whole new budget of them, as if the experiment had just started)."""
    space = {"x": ts.uniform(0, 1)}
    first = ts.run(_sleepy, space, name="budget", num_samples=-1, time_budget_s=1.0, max_concurrent=1, verbose=0)
    assert first.status == "finished" and len(first.trials) >= 3
    again = ts.run(_sleepy, space, name="budget", num_samples=-1, time_budget_s=1.0, max_concurrent=1, verbose=0,
                   resume=True)
    assert len(again.trials) == len(first.trials)


def test_resume_of_a_finished_experiment_reruns_nothing_and_can_restart_errors(results_dir):
    calls = results_dir.parent / "calls"
    calls.mkdir()

    def train(config):
        (calls / f"{ts.get_trial_id()}-{time.monotonic_ns()}").touch()
        if config["x"] == 1:
            raise ValueError("bad x")
        ts.report({"loss": config["x"]})

    ts.run(train, space={"x": ts.grid([0, 1, 2])}, name="fin", metric="loss", mode="min", verbose=0)
    assert len(os.listdir(calls)) == 3
    r = ts.run(train, space={"x": ts.grid([0, 1, 2])}, name="fin", metric="loss", mode="min", verbose=0,
               resume=True)
    assert len(os.listdir(calls)) == 3 and len(r.trials) == 3
    r = ts.run(train, space={"x": ts.grid([0, 1, 2])}, name="fin", metric="loss", mode="min", verbose=0,
               resume=True, restart_errored="restart")
    assert len(os.listdir(calls)) == 4 and len(r.trials) == 3
    assert r.trial(2).status is ts.TrialStatus.ERROR and r.trial(2).num_failures == 2


TERM_DRIVER = """
    import sys, time
    import tunesmith as ts

    def train(config):
        ck = ts.get_checkpoint()
        start = ck.load() if ck else 0
        for i in range(start, 40):
            time.sleep(0.05)
            ts.report({"i": i + 1}, checkpoint=ts.Checkpoint.from_state(i + 1))

    ts.run(train, num_samples=2, name="term", storage_path=sys.argv[1], verbose=0,
           resume=len(sys.argv) > 2)
"""


def test_sigterm_stops_trials_cleanly_and_says_how_to_resume(tmp_path):
    import sqlite3
    import subprocess
    import sys
    import textwrap

    script = tmp_path / "term.py"
    script.write_text(textwrap.dedent(TERM_DRIVER))
    storage = tmp_path / "store"
    db_path = storage / "term" / "experiment.db"
    proc = subprocess.Popen([sys.executable, str(script), str(storage)], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait until results are stored (bounded)
        if db_path.exists():
            try:
                with sqlite3.connect(db_path) as db:
                    if db.execute("SELECT COUNT(*) FROM results").fetchone()[0] >= 4:
                        break
            except sqlite3.OperationalError:
                pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=30)[1]
    assert proc.returncode == 143, err
    assert "tunesmith resume term" in err
    interrupted = ts.load(str(storage / "term"))
    assert interrupted.status == "interrupted"
    assert all(t.status is not ts.TrialStatus.RUNNING for t in interrupted.trials)
    out = subprocess.run([sys.executable, str(script), str(storage), "resume"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    done = ts.load(str(storage / "term"))
    assert done.status == "finished" and all(t.iteration == 40 for t in done.trials)
    for t in done.trials:
        assert [h["i"] for h in done.history(t.id)] == list(range(1, 41))


# -- a folder is self-contained: moved, copied or renamed, it resumes from its own checkpoints ----------


def stops_at_three(config):
    """Checkpoints every iteration; fails at iteration 3 until the file ``go`` exists. Logs what it
    restored from."""
    ck = ts.get_checkpoint()
    start = ck.load() if ck else 0
    with open(config["log"], "a") as f:
        f.write(f"{ck.path if ck else None}\n")
    for i in range(start, 6):
        ts.report({"i": i + 1}, checkpoint=ts.Checkpoint.from_state(i + 1))
        if i + 1 == 3 and not os.path.exists(config["go"]):
            raise RuntimeError("stopped at 3")


def _failed_at_three(results_dir, name, keep=None):
    """An experiment whose trial failed at iteration 3 with its checkpoints (resumable from the 3rd)."""
    base = results_dir.parent
    space = {"log": str(base / f"{name}.log"), "go": str(base / "go")}
    rs = ts.run(stops_at_three, space=space, name=name, keep=keep, verbose=0)
    assert rs.trials[0].status is ts.TrialStatus.ERROR and rs.trials[0].iteration == 3
    (base / f"{name}.log").write_text("")
    return space


def _snapshot(folder):
    """Every file under ``folder`` with its bytes (to prove a folder was not touched)."""
    out = {}
    for dirpath, _dirs, files in os.walk(folder):
        for f in files:
            path = os.path.join(dirpath, f)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, folder)] = fh.read()
    return out


def _assert_resumed_from_own_checkpoint(rs, folder, log):
    t = rs.trials[0]
    assert t.status is ts.TrialStatus.TERMINATED and t.iteration == 6
    assert [h["i"] for h in rs.history(t.id)] == [1, 2, 3, 4, 5, 6]  # continued, not restarted from scratch
    restored = open(log).read().split()
    assert restored == [os.path.join(str(folder), "trials", "trial_00001", "checkpoints", "checkpoint_000003")]
    assert t.checkpoint.path.startswith(str(folder) + os.sep) and t.checkpoint.load() == 6


def test_a_moved_experiment_resumes_from_its_checkpoints(results_dir, tmp_path, caplog):
    import logging
    import shutil

    space = _failed_at_three(results_dir, "moved")
    (tmp_path / "go").touch()
    elsewhere = tmp_path / "archive"
    elsewhere.mkdir()
    shutil.move(str(results_dir / "moved"), str(elsewhere / "moved"))
    caplog.set_level(logging.WARNING, logger="tunesmith")
    rs = ts.run(stops_at_three, space=space, name="moved", storage_path=str(elsewhere), resume=True,
                restart_errored="resume", verbose=0)
    assert not any("damaged" in r.getMessage() for r in caplog.records)
    _assert_resumed_from_own_checkpoint(rs, elsewhere / "moved", space["log"])
    assert ts.load(str(elsewhere / "moved")).trials[0].checkpoint.load() == 6  # read back from the new place


def test_a_copied_experiment_with_keep_never_reads_or_deletes_the_originals_checkpoints(results_dir, tmp_path):
    import shutil

    space = _failed_at_three(results_dir, "orig", keep=1)
    (tmp_path / "go").touch()
    copies = tmp_path / "copies"
    shutil.copytree(results_dir / "orig", copies / "orig")
    before = _snapshot(results_dir / "orig")
    assert "trials/trial_00001/checkpoints/checkpoint_000003/state.pkl" in before
    rs = ts.run(stops_at_three, space=space, name="orig", storage_path=str(copies), resume=True,
                restart_errored="resume", keep=1, verbose=0)
    _assert_resumed_from_own_checkpoint(rs, copies / "orig", space["log"])
    assert _snapshot(results_dir / "orig") == before  # the original: every file byte-identical, none deleted
    ckpts = copies / "orig" / "trials" / "trial_00001" / "checkpoints"
    assert sorted(os.listdir(ckpts)) == ["checkpoint_000006"]  # keep=1 applied to the copy's own
    assert ts.load(str(results_dir / "orig")).trials[0].checkpoint.load() == 3


def test_resume_of_a_renamed_folder_works_on_that_folder(results_dir, tmp_path):
    """`tunesmith resume NEW` on a folder copied or renamed from OLD resumes NEW; OLD is left as it is."""
    import shutil

    from click.testing import CliRunner

    from tunesmith.cli import cli

    space = _failed_at_three(results_dir, "old")
    (tmp_path / "go").touch()
    shutil.copytree(results_dir / "old", results_dir / "new")  # the stored name in "new" is still "old"
    before = _snapshot(results_dir / "old")
    res = CliRunner().invoke(cli, ["resume", "new", f"{__name__}:stops_at_three", "--restart-errored", "resume",
                                   "--verbose", "0"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "experiment new:" in res.output
    _assert_resumed_from_own_checkpoint(ts.load("new"), results_dir / "new", space["log"])
    assert _snapshot(results_dir / "old") == before
    assert ts.load("old").trials[0].status is ts.TrialStatus.ERROR
    # renamed away (no folder of the old name left): resumed under its new name, by the CLI and from Python
    (results_dir / "new").rename(results_dir / "newer")
    res = CliRunner().invoke(cli, ["resume", "newer", f"{__name__}:stops_at_three", "--verbose", "0"],
                             catch_exceptions=False)
    assert res.exit_code == 0 and "experiment newer:" in res.output, res.output
    assert ts.load("newer").name == "newer"


def test_the_driver_pid_file_never_follows_a_planted_symlink(results_dir, tmp_path):
    """A shared folder with .driver.pid linked to another file: the driver replaces the link, never writes
    through it."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    folder = results_dir / "planted"
    folder.mkdir(parents=True)
    os.symlink(victim, folder / ".driver.pid")
    seen = tmp_path / "seen.txt"

    def train(config):
        pid_file = os.path.join(os.path.dirname(os.path.dirname(ts.get_trial_dir())), ".driver.pid")
        with open(seen, "w") as f:
            f.write(f"{os.path.islink(pid_file)} {open(pid_file).read()}")
        ts.report({"loss": 1.0})

    ts.run(train, name="planted", verbose=0)
    assert victim.read_text() == "precious"
    assert seen.read_text() == f"False {os.getpid()}"  # while it ran: a plain file naming the driver
    assert not os.path.lexists(folder / ".driver.pid")


@pytest.mark.parametrize("planted", ["trials", "trials/trial_00001", "trials/trial_00001/checkpoints"])
def test_resume_writes_nothing_through_a_folder_planted_as_a_symlink(results_dir, tmp_path, planted):
    """A shared folder whose trials/, trial or checkpoints folder is a link to a folder of the user's: the
    resumed driver removes the link (not its target) and writes its logs and checkpoints in a real folder."""
    space = _failed_at_three(results_dir, "linked")
    (results_dir.parent / "go").write_text("")
    folder = results_dir / "linked"
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("precious")
    os.rename(folder / planted, tmp_path / "moved_away")
    os.symlink(victim, folder / planted)
    before = _snapshot(victim)
    rs = ts.run(stops_at_three, space=space, name="linked", resume=True, restart_errored="restart", verbose=0)
    assert _snapshot(victim) == before
    assert rs.trials[0].status is ts.TrialStatus.TERMINATED and rs.trials[0].iteration == 6
    assert not os.path.islink(folder / planted) and os.path.isdir(folder / planted)
    assert rs.trials[0].checkpoint.load() == 6


def _one_report(config):
    ts.report({"x": config["x"]})


def test_resume_from_python_with_an_unseeded_searcher_continues_the_stored_stream(results_dir):
    """The default searcher draws its seed; an interrupted experiment resumed with a fresh unseeded searcher
    (what ts.run(..., resume=True) builds) suggests what the uninterrupted experiment would have: the seed
    drawn first, recorded in the store, is adopted."""
    space = {"x": ts.uniform(0, 1)}
    with pytest.raises(KeyboardInterrupt):
        ts.run(_one_report, space, name="drawn", num_samples=6, max_concurrent=1, verbose=0,
               callbacks=[InterruptAfter(2)])
    seed = ts.load("drawn").meta["spec"]["searcher"]["seed"]
    assert isinstance(seed, int)
    resumed = ts.run(_one_report, space, name="drawn", num_samples=6, max_concurrent=1, verbose=0, resume=True)
    same = ts.run(_one_report, space, name="same", num_samples=6, max_concurrent=1, verbose=0,
                  searcher=ts.Random(seed=seed))
    assert [t.config for t in resumed.trials] == [t.config for t in same.trials]
    assert resumed.meta["spec"]["searcher"]["seed"] == seed


@pytest.mark.parametrize("wrap", [lambda s: ts.ConcurrencyLimiter(s, 1), lambda s: ts.Repeat(s, 2)],
                         ids=["limiter", "repeat"])
def test_resume_of_an_unseeded_searcher_inside_a_wrapper_continues_the_stored_stream(results_dir, wrap):
    """ConcurrencyLimiter(QuasiRandom()) resumed drew a new seed for the wrapped searcher: the configs after the
    interruption differed from the uninterrupted run's, and the recorded seed was overwritten."""
    space = {"x": ts.uniform(0, 1), "y": ts.uniform(0, 1)}
    with pytest.raises(KeyboardInterrupt):
        ts.run(_one_report, space, name="wrapped", num_samples=6, max_concurrent=1, verbose=0,
               searcher=wrap(ts.QuasiRandom()), callbacks=[InterruptAfter(2)])
    seed = ts.load("wrapped").meta["spec"]["searcher"]["searcher"]["seed"]
    assert isinstance(seed, int)
    resumed = ts.run(_one_report, space, name="wrapped", num_samples=6, max_concurrent=1, verbose=0, resume=True,
                     searcher=wrap(ts.QuasiRandom()))
    same = ts.run(_one_report, space, name="same", num_samples=6, max_concurrent=1, verbose=0,
                  searcher=wrap(ts.QuasiRandom(seed=seed)))
    assert [t.config for t in resumed.trials] == [t.config for t in same.trials]
    assert resumed.meta["spec"]["searcher"]["searcher"]["seed"] == seed


def test_a_resume_refused_for_another_space_names_the_first_key_that_differs_and_stays_short(results_dir):
    """A 20 KB prompt in the space: the refusal names the key that changed (here one inside a nested dict) and
    shows long values cut, not both whole spaces (41 KB before)."""
    prompt = "You are a helpful assistant. " * 700
    space = {"system": prompt, "opt": {"lr": ts.grid([1, 2]), "wd": 0.1}}
    ts.run(_lr_trial, {**space, "lr": ts.grid([1])}, name="long", metric="loss", mode="min", verbose=0)
    changed = {**space, "opt": {"lr": ts.grid([1, 2]), "wd": 0.2}, "lr": ts.grid([1])}
    with pytest.raises(ts.ConfigError, match=r"was run with another space: it differs at space\['opt'\]\['wd'\]: "
                                             r"0\.1 there, 0\.2 here") as info:
        ts.run(_lr_trial, changed, name="long", metric="loss", mode="min", resume=True, verbose=0)
    assert len(str(info.value)) < 3000, len(str(info.value))
