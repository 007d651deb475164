"""What a trial does with ``sys.stdout``/``sys.stderr`` (closes them, replaces them, sets them to None) stays its own:
the worker puts its own streams back after every trial, the next trial on the same worker prints into its own
``output.log``, and no trial loses its result or its traceback because of its streams. Real workers, one at a time
(``max_concurrent=1``: the trials share one)."""

from __future__ import annotations

import os
import sys

import pytest

import tunesmith as ts

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fork server is Linux-only")]


def _log(trial) -> str:
    path = os.path.join(trial.path, "output.log")
    if not os.path.exists(path):
        return ""
    with open(path) as f:
        return f.read()


HOWS = ["closed_file", "none", "devnull", "close_own", "dunder", "none_then_raise", "back_to_dunder", "plain"]


def misuses_its_streams(config):
    k = config["k"]
    how = HOWS[k]
    print(f"hello {k}")  # not flushed: still in the worker's own sys.stdout when the trial replaces it
    print(f"err {k}", file=sys.stderr)
    ts.report({"step": 1, "pid": os.getpid()})
    if how == "closed_file":  # e.g. a `with open(...) as sys.stdout:` left behind
        sys.stdout = open("my_log.txt", "w")  # noqa: SIM115
        sys.stdout.close()
        sys.stderr = open("my_err.txt", "w")  # noqa: SIM115
        sys.stderr.close()
    elif how == "none":
        sys.stdout = None
        sys.stderr = None
    elif how == "devnull":
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115
    elif how == "close_own":  # the worker's own stream objects, closed, and their descriptors too
        sys.stdout.close()
        sys.stderr.close()
        os.close(1)
        os.close(2)
    elif how == "dunder":
        sys.__stdout__ = open(os.devnull, "w")  # noqa: SIM115
        sys.__stderr__ = None
    elif how == "none_then_raise":
        sys.stdout = None
        sys.stderr = None
        raise ValueError("boom in trial 5")
    elif how == "back_to_dunder":  # the usual way back after a redirection: sys.__stdout__ must be the worker's
        sys.stdout = open("mine.txt", "w")  # noqa: SIM115
        print("to my file")
        sys.stdout.close()
        sys.stdout = sys.__stdout__
        sys.stderr = sys.__stderr__
        print(f"back {k}")
        print(f"back err {k}", file=sys.stderr)
    ts.report({"step": 2, "pid": os.getpid()})


def test_what_a_trial_does_with_its_streams_stays_its_own(results_dir):
    result = ts.run(misuses_its_streams, {"k": ts.grid(list(range(len(HOWS))))}, max_concurrent=1, verbose=0)
    by_k = {t.config["k"]: t for t in result.trials}
    assert len(by_k) == len(HOWS)
    for k, how in enumerate(HOWS):
        trial = by_k[k]
        if how == "none_then_raise":
            assert trial.status == ts.TrialStatus.ERROR
            assert "boom in trial 5" in (trial.error or ""), trial.error  # its own error, not a dead worker
            assert "ValueError: boom in trial 5" in _log(trial)  # its traceback, on file descriptor 2
        else:  # its result stored, whatever it did to its streams after reporting
            assert trial.status == ts.TrialStatus.TERMINATED, (how, trial.error)
            assert [r["step"] for r in result.history(trial.id)] == [1, 2], how
        log = _log(trial)
        assert f"hello {k}\n" in log, (how, log)  # what it printed before replacing sys.stdout is in its file
        assert f"err {k}\n" in log, (how, log)
    assert "back 6\n" in _log(by_k[6]) and "back err 6\n" in _log(by_k[6])
    assert "to my file" not in _log(by_k[6])
    # one worker ran them all: nothing a trial did to its streams killed it
    assert len({result.history(t.id)[0]["pid"] for t in result.trials}) == 1


def rank_drops_its_streams(config):
    if ts.get_rank() == 1:
        print("rank 1 was here", flush=True)
        sys.stdout = None
        sys.stderr = None
        if config["raise"]:
            raise ValueError("rank 1 failed on purpose")
    ts.report({"loss": 1.0})


def test_a_rank_without_streams_ends_as_its_function_did(results_dir):
    result = ts.run(rank_drops_its_streams, {"raise": ts.grid([False, True])}, metric="loss", mode="min", ranks=2,
                    resources={"cpu": 2}, max_concurrent=1, verbose=0)
    by = {t.config["raise"]: t for t in result.trials}
    assert by[False].status == ts.TrialStatus.TERMINATED, by[False].error
    assert "rank 1 was here" in _log(by[False])
    assert by[True].status == ts.TrialStatus.ERROR
    assert "rank 1 failed on purpose" in (by[True].error or ""), by[True].error  # its traceback, not only its code


_OPENS_AFTER_THE_CLOSE = r"""
import json, os, sys, time
from tunesmith.executors._worker import _Output

log = sys.argv[1]
output = _Output()
base = [os.fstat(fd).st_ino for fd in output.base]
output.start(log)
with output.lock:  # the copying thread cannot open the trial's file before the trial closes 1 and 2
    os.write(2, b"err before closing\n")
    os.close(1)
    os.close(2)
deadline = time.monotonic() + 30
while output.fd is None and time.monotonic() < deadline:  # it opens the file on its own once the lock is free
    time.sleep(0.001)
opened_at = output.fd
output.end()
with open(log + ".result", "w") as f:
    json.dump([opened_at, [os.fstat(fd).st_ino for fd in (1, 2)] == base], f)
"""


def test_the_trial_file_opened_after_a_trial_closed_1_and_2_is_not_the_workers_stdout(tmp_path):
    # the trial closed descriptors 1 and 2 before the copying thread created its output.log: the file must not
    # take descriptor 1 (end() put the worker's stdout there, then closed "the file", i.e. the worker's stdout;
    # and while the thread opened it, end()'s dup2 onto that number failed with EBUSY and killed the worker)
    import json
    import subprocess

    log = tmp_path / "output.log"
    subprocess.run([sys.executable, "-c", _OPENS_AFTER_THE_CLOSE, str(log)], check=True, timeout=60)
    opened_at, own_streams_back = json.loads((tmp_path / "output.log.result").read_text())
    assert opened_at is not None and opened_at > 2, opened_at
    assert own_streams_back  # descriptors 1 and 2 are the worker's own again, both open
    assert log.read_text() == "err before closing\n"
