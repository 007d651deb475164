"""What one trial leaves behind on a local worker does not reach the next trial on it, and processes a trial forks
never speak for the worker: real worker processes, one at a time (``max_concurrent=1``: the trials share one)."""

from __future__ import annotations

import os
import sys
import threading
import time

import pytest

import tunesmith as ts

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fork server is Linux-only")]

DEADLINE_S = 30.0


def _wait_for(path: str) -> str:
    """The text of ``path`` once it exists (written with a rename: whole), or "" past the deadline."""
    deadline = time.monotonic() + DEADLINE_S
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return ""
        time.sleep(0.005)
    with open(path) as f:
        return f.read()


def _write(path: str, text: str) -> None:
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def forks_a_helper(config):
    ts.report({"x": 0, "pid": os.getpid()})
    pid = os.fork()
    if pid == 0:  # the helper ends as a script would: it must not end the trial, nor serve as a worker
        how = config["how"]
        if how == "exit":
            sys.exit(0)
        if how == "exit3":
            sys.exit(3)
        if how == "raise":
            raise ValueError("the helper failed")
        return None  # "return": the training function returns in the helper
    _, status = os.waitpid(pid, 0)
    ts.report({"x": 1, "code": os.waitstatus_to_exitcode(status)})


def test_a_process_forked_in_a_trial_ends_where_the_trial_function_ends(results_dir):
    hows = ["exit", "raise", "return", "exit3"]
    result = ts.run(forks_a_helper, {"how": ts.grid(hows)}, max_concurrent=1, verbose=0)
    by_how = {t.config["how"]: t for t in result.trials}
    for how in hows:
        trial = by_how[how]
        assert trial.status == ts.TrialStatus.TERMINATED, (how, trial.error)
        assert [r["x"] for r in result.history(trial.id)] == [0, 1], how
    assert {how: by_how[how].last_result["code"] for how in hows} == {"exit": 0, "raise": 1, "return": 0, "exit3": 1}
    # one worker ran them all: no helper served as another
    assert len({result.history(t.id)[0]["pid"] for t in result.trials}) == 1


def leaves_a_thread(config):
    folder = config["folder"]
    started, outcome = os.path.join(folder, "trial2-started"), os.path.join(folder, "outcome")
    if config["k"] == 0:
        def late():
            _wait_for(started)
            stop = ts.should_stop()  # its trial is over: True, whatever the next trial's state
            try:
                ts.report({"who": "leftover"})
                text = "stored"
            except RuntimeError as e:
                text = "refused: " + str(e)
            _write(outcome, f"should_stop={stop} {text}")

        threading.Thread(target=late, daemon=True).start()
        ts.report({"who": "t1", "pid": os.getpid()})
    else:
        _write(started, "")
        ts.report({"who": "t2", "outcome": _wait_for(outcome), "pid": os.getpid()})


def test_a_thread_a_finished_trial_left_running_cannot_report_into_the_next_and_is_told_to_stop(tmp_path, results_dir):
    result = ts.run(leaves_a_thread, {"k": ts.grid([0, 1]), "folder": str(tmp_path)}, max_concurrent=1, verbose=0)
    first, second = sorted(result.trials, key=lambda t: t.config["k"])
    assert first.last_result["pid"] == second.last_result["pid"]  # the same worker
    assert [r["who"] for r in result.history(second.id)] == ["t2"]
    outcome = second.last_result["outcome"]
    assert outcome.startswith("should_stop=True refused: ") and "a finished trial left running" in outcome, outcome


def two_threads_report(config):
    def many(name):
        for i in range(5000):
            ts.report({"who": name, "i": i})

    threads = [threading.Thread(target=many, args=(name,)) for name in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_threads_the_running_trial_started_still_report_after_an_earlier_trial(results_dir):
    result = ts.run(two_threads_report, num_samples=2, max_concurrent=1, verbose=0)
    for trial in result.trials:
        assert trial.status == ts.TrialStatus.TERMINATED, trial.error
        history = result.history(trial.id)
        assert len(history) == 10_000
        assert sorted(r["training_iteration"] for r in history) == list(range(1, 10_001))


def child_reports(config):
    ts.report({"who": "parent"})
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            ts.report({"who": "child"})
            text = "stored"
        except RuntimeError as e:
            text = str(e)
        os.write(w, text.encode())
        os._exit(0)
    os.close(w)
    os.waitpid(pid, 0)
    with os.fdopen(r) as f:
        text = f.read()
    ts.report({"who": "parent again", "child": text})


def test_a_process_forked_in_a_trial_cannot_report(results_dir):
    result = ts.run(child_reports, num_samples=1, verbose=0)
    trial = result.trials[0]
    assert trial.status == ts.TrialStatus.TERMINATED, trial.error
    history = result.history(trial.id)
    assert [(r["training_iteration"], r["who"]) for r in history] == [(1, "parent"), (2, "parent again")]
    assert "report() from a child process of the trial" in trial.last_result["child"], trial.last_result["child"]


def moves_away(config):
    ts.report({"cwd": os.getcwd(), "pid": os.getpid()})
    os.chdir(config["elsewhere"])


@pytest.mark.parametrize("chdir", [False, True])
def test_a_trial_that_changes_directory_does_not_move_the_next(tmp_path, monkeypatch, results_dir, chdir):
    here, elsewhere = tmp_path / "here", tmp_path / "elsewhere"
    here.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(here)
    result = ts.run(moves_away, {"k": ts.grid([0, 1, 2]), "elsewhere": str(elsewhere)}, max_concurrent=1,
                    verbose=0, chdir_to_trial_dir=chdir)
    assert len({t.last_result["pid"] for t in result.trials}) == 1
    for trial in result.trials:
        expected = trial.path if chdir else str(here)
        assert os.path.realpath(trial.last_result["cwd"]) == os.path.realpath(expected)


def _boom():
    raise RuntimeError("hook boom")


def _children():
    import psutil

    print(f"second hook ran, children {len(psutil.Process().children())}")


def _with_end_hooks(config):
    import subprocess

    from tunesmith import session

    session.at_trial_end(_boom)
    session.at_trial_end(_children)
    session.at_trial_end(_children)  # given twice: runs once
    subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    ts.report({"x": 1})


def test_trial_end_hooks_run_before_the_trials_children_are_ended_and_cannot_fail_it(results_dir):
    """session.at_trial_end (what integrations.wandb uses to shut W&B down): each hook runs once the function is
    over, while what the trial started still runs; one that raises is written to output.log, the trial's status
    stays."""
    result = ts.run(_with_end_hooks, {}, verbose=0)
    assert result.trials[0].status is ts.TrialStatus.TERMINATED
    log = (results_dir / result.name / "trials" / "trial_00001" / "output.log").read_text()
    assert "RuntimeError: hook boom" in log
    assert log.count("second hook ran, children 1") == 1
