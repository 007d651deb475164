"""The local executor's fork server: real processes, forked on Linux."""

from __future__ import annotations

import os
import signal
import sys
import threading

import pytest

import tunesmith as ts
from tunesmith.executors import _forkserver
from tunesmith.executors.local import LocalBackend

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fork server is Linux-only")]


def where(config):
    with open(f"/proc/{os.getppid()}/stat") as f:
        grandparent = int(f.read().rsplit(")", 1)[1].split()[1])
    with open(f"/proc/{os.getppid()}/cmdline", "rb") as f:
        parent_cmd = f.read().decode(errors="replace")
    ts.report({"ppid": os.getppid(), "pid": os.getpid(), "env": os.environ.get("TS_TEST_VAR", ""),
               "cwd": os.getcwd(), "orig": os.environ["TUNESMITH_ORIG_WORKING_DIR"],
               "path": os.pathsep.join(sys.path), "grandparent": grandparent, "parent_cmd": parent_cmd})


def test_workers_are_forks_of_one_server_kept_across_runs_with_the_drivers_env_and_cwd_of_now(
        tmp_path, monkeypatch, results_dir):
    if _forkserver._SERVER is not None:
        _forkserver._SERVER.close()  # started below, in the first run's working directory
    seen = []
    for i in range(2):
        here = tmp_path / f"cwd{i}"
        here.mkdir()
        monkeypatch.chdir(here)  # after the server started (in this test's first run, or an earlier test)
        monkeypatch.setenv("TS_TEST_VAR", f"run{i}")
        result = ts.run(where, num_samples=3, verbose=0, storage_path=str(results_dir))
        server = _forkserver._SERVER
        assert server is not None and not server.dead
        for trial in result.trials:
            assert trial.last_result["ppid"] == server.proc.pid  # forked by the server, not spawned
            assert trial.last_result["pid"] != server.proc.pid
            assert trial.last_result["env"] == f"run{i}"
            assert trial.last_result["orig"] == str(here)  # the driver's; the trial runs in its own folder
            assert trial.last_result["cwd"] == trial.path
            # the server's own start directory on sys.path is replaced by the driver's (python -m puts the
            # working directory first), so a module there cannot shadow the user's
            path = trial.last_result["path"].split(os.pathsep)
            assert str(here) in path
            if i == 1:
                assert str(tmp_path / "cwd0") not in path
        seen.append(server.proc.pid)
    assert seen[0] == seen[1]  # one server for both runs


def test_the_server_outlives_the_thread_that_started_it(results_dir):
    """Its parent-death signal is tied to a thread that lives as long as the process, not to the thread
    that called run(): a run from a short-lived thread must not take the server (and a later run's
    workers) down with the thread."""
    if _forkserver._SERVER is not None:
        _forkserver._SERVER.close()  # so that the thread below starts it
    pids = []

    def one_run():
        result = ts.run(where, num_samples=2, verbose=0, storage_path=str(results_dir))
        pids.append({t.last_result["ppid"] for t in result.trials})

    for _ in range(2):
        t = threading.Thread(target=one_run)
        t.start()
        t.join()
    assert len(pids) == 2 and len(pids[0]) == 1
    assert pids[0] == pids[1]
    assert _forkserver._SERVER.proc.poll() is None


def kill_the_server_once(config):
    marker = os.path.join(config["dir"], "killed")
    for i in range(3):
        if i == 1 and not os.path.exists(marker):
            with open(marker, "w") as f:
                f.write("1")
            os.kill(os.getppid(), signal.SIGKILL)  # the fork server; our parent-death signal follows
            # wait for it (it is asynchronous: without this the trial could end first); bounded
            threading.Event().wait(60)
            raise RuntimeError("the worker outlived its fork server by 60 s")
        ts.report({"i": i, "ppid": os.getppid()})


def test_a_fork_server_killed_mid_run_fails_its_trials_and_the_retries_run_on_a_new_one(tmp_path, results_dir):
    ts.run(where, num_samples=1, verbose=0, storage_path=str(results_dir))  # a server is up
    first = _forkserver._SERVER.proc.pid
    result = ts.run(kill_the_server_once, space={"dir": str(tmp_path), "x": ts.grid([0, 1])}, max_failures=2,
                    max_concurrent=2, verbose=0, storage_path=str(results_dir))
    assert (tmp_path / "killed").exists()
    for trial in result.trials:
        assert trial.status is ts.TrialStatus.TERMINATED, trial.error
        assert [r["i"] for r in result.history(trial.id)] == [0, 1, 2]
    # a trial running when the server died failed once (its worker died with the server), and once only:
    # an idle worker that died with it is not handed a retry (the other trial may have ended before)
    failures = [t.num_failures for t in result.trials]
    assert max(failures) == 1 and min(failures) in (0, 1)
    now = _forkserver._SERVER.proc.pid
    assert now != first
    for trial in result.trials:
        if trial.num_failures:
            assert trial.last_result["ppid"] == now
    # and a later run uses that one
    again = ts.run(where, num_samples=1, verbose=0, storage_path=str(results_dir))
    assert again.trials[0].last_result["ppid"] == now


def test_spawn_start_method_starts_workers_from_the_driver(results_dir):
    """Each worker is a fork of a new interpreter the driver started, which keeps it (``_worker.keep``)."""
    result = ts.run(where, num_samples=2, verbose=0, storage_path=str(results_dir),
                    backend=LocalBackend(start_method="spawn"), max_concurrent=2)
    keepers = {t.last_result["ppid"] for t in result.trials}
    assert len(keepers) == 2 and os.getpid() not in keepers
    assert {t.last_result["grandparent"] for t in result.trials} == {os.getpid()}
    assert all("\0-m\0tunesmith.executors._worker\0" in t.last_result["parent_cmd"] for t in result.trials)


def dies(config):
    if config["how"] == "exit":
        os._exit(3)
    os.kill(os.getpid(), getattr(signal, config["how"]))


@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
def test_a_worker_that_dies_is_reported_with_how_it_ended(results_dir, start_method):
    """A worker started the plain way is a fork its keeper waits for (``_worker.keep``): the keeper ends as it did,
    so the driver names its exit code or signal as it does for a fork server's worker."""
    result = ts.run(dies, space={"how": ts.grid(["exit", "SIGKILL", "SIGSEGV", "SIGTERM"])}, verbose=0,
                    storage_path=str(results_dir), backend=LocalBackend(start_method=start_method))
    died = "the worker process running this trial died"
    assert {t.config["how"]: t.error for t in result.trials} == {
        "exit": f"{died} (exit code 3)", "SIGKILL": f"{died} (killed by signal SIGKILL)",
        "SIGSEGV": f"{died} (killed by signal SIGSEGV)", "SIGTERM": f"{died} (killed by signal SIGTERM)"}


def test_an_unknown_start_method_is_a_configerror():
    with pytest.raises(ts.ConfigError, match=r"start_method='fork'.*'forkserver', 'spawn'"):
        LocalBackend(start_method="fork")


@pytest.mark.parametrize("start_method", ["forkserver", "spawn"])
def test_a_driver_without_stdout_and_stderr_runs_its_trials(tmp_path, start_method):
    """A daemon's closed output: /dev/null for the workers (not a reason to give up the server), and the
    worker's socket never lands on descriptor 1 or 2, where the trial's output goes."""
    import json
    import subprocess
    import textwrap

    out = tmp_path / "out.json"
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(f"""
        import json, os, sys
        os.close(1)
        os.close(2)
        import tunesmith as ts
        from tunesmith.executors import _forkserver
        from tunesmith.executors.local import LocalBackend

        def where(config):
            print("to the trial's output.log")
            with open(f"/proc/{{os.getppid()}}/stat") as f:
                grandparent = int(f.read().rsplit(")", 1)[1].split()[1])
            ts.report({{"ppid": os.getppid(), "grandparent": grandparent}})

        result = ts.run(where, num_samples=2, verbose=0, storage_path={str(tmp_path / "results")!r},
                        backend=LocalBackend(start_method={start_method!r}))
        with open({str(out)!r}, "w") as f:
            json.dump({{"ppids": [t.last_result["ppid"] for t in result.trials],
                       "grandparents": [t.last_result["grandparent"] for t in result.trials],
                       "status": [t.status.value for t in result.trials],
                       "logs": [open(os.path.join(t.path, "output.log")).read() for t in result.trials],
                       "server": _forkserver._SERVER.proc.pid if _forkserver._SERVER else None,
                       "driver": os.getpid()}}, f)
    """))
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, timeout=60)
    assert done.returncode == 0
    got = json.loads(out.read_text())
    assert got["status"] == ["TERMINATED", "TERMINATED"]
    assert got["logs"] == ["to the trial's output.log\n"] * 2
    if start_method == "forkserver":
        assert set(got["ppids"]) == {got["server"]}
    else:  # a fork of a new interpreter the driver started (``_worker.keep``)
        assert got["driver"] not in got["ppids"] and set(got["grandparents"]) == {got["driver"]}


DRIVER_STATE = """
    import atexit, gc, json, logging, os, signal, sys, warnings
    {before}
    import tunesmith as ts

    OUT = sys.argv[1]
    held = open(os.path.join(OUT, "held.txt"), "w")  # a file the driver holds open while it runs
    logging.basicConfig(filename=os.path.join(OUT, "driver.log"), level=logging.INFO)
    atexit.register(lambda: open(os.path.join(OUT, "exits.txt"), "a").write("exit\\n"))
    signal.signal(signal.SIGUSR1, lambda *_: None)
    warnings.simplefilter("error")
    sys.excepthook = lambda *_: None
    DRIVER_ONLY = 1

    def facts(config):
        def links(pid):
            found = []
            for fd in os.listdir(f"/proc/{{pid}}/fd"):
                try:
                    found.append(os.readlink(f"/proc/{{pid}}/fd/{{fd}}"))
                except OSError:
                    pass
            return found

        import __main__
        server = os.getppid()
        logging.getLogger("user").warning("from the trial")
        warnings.warn("a warning is not an error here", UserWarning)
        with open(f"/proc/{{server}}/cmdline", "rb") as f:
            server_cmd = f.read().decode()
        with open(os.path.join(OUT, "facts.json"), "w") as f:
            json.dump({{"server_cmd": server_cmd, "argv0": sys.argv[0],
                       "held": [p for p in links("self") + links(server) if p.endswith("held.txt")],
                       "usr1_default": signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL,
                       "excepthook": sys.excepthook is sys.__excepthook__,
                       "main_has_driver_globals": hasattr(__main__, "DRIVER_ONLY"),
                       "root_handlers": len(logging.getLogger().handlers),
                       "collector_on": gc.isenabled()}}, f)
        ts.report({{"x": 1}})

    if __name__ == "__main__":
        result = ts.run(facts, num_samples=1, verbose=0, storage_path=os.path.join(OUT, "results"))
        assert result.trials[0].status.value == "TERMINATED", result.trials[0].error
"""


def _driver_state(tmp_path, before: str = "") -> dict:
    import json
    import subprocess
    import textwrap

    (tmp_path / "usermod.py").write_text("VALUE = 1\n")
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(DRIVER_STATE.format(before=before)))
    done = subprocess.run([sys.executable, str(script), str(tmp_path)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    got = json.loads((tmp_path / "facts.json").read_text())
    got["exits"] = (tmp_path / "exits.txt").read_text()
    got["driver_log"] = (tmp_path / "driver.log").read_text() if (tmp_path / "driver.log").exists() else ""
    return got


@pytest.mark.parametrize("before", ["", "import multiprocessing"])  # which names __main__ __mp_main__ too
def test_a_driver_holding_only_tunesmith_is_forked_into_a_server_as_a_new_interpreter_would_be(tmp_path, before):
    """The fork server of a driver that holds nothing but the standard library and tunesmith is a fork of it (no
    interpreter start, no imports: the first result comes ~40 ms sooner), reset to what a new interpreter would
    be: the driver's open files, exit handlers, signal handlers, logging handlers, warning filters, hooks and
    __main__ are not its workers'."""
    got = _driver_state(tmp_path, before)
    assert "driver.py" in got["server_cmd"] and "_forkserver" not in got["server_cmd"]  # a fork of the driver
    assert got["argv0"].endswith("_forkserver.py")
    assert got["held"] == []  # neither the worker nor the server holds the driver's file
    assert got["usr1_default"] and got["excepthook"]
    assert not got["main_has_driver_globals"]
    assert got["root_handlers"] == 0
    assert got["collector_on"]  # forked while the driver's run() had the garbage collector paused for its setup
    assert "from the trial" not in got["driver_log"]  # the trial's log is not written to the driver's file
    assert got["exits"] == "exit\n"  # the driver's exit handler ran in the driver only


@pytest.mark.parametrize("before", ["import usermod",  # a module a new interpreter would not hold
                                    "import threading, time; threading.Thread(target=time.sleep, args=(30,), "
                                    "daemon=True).start()"])  # a thread (a lock it holds would stay held)
def test_a_driver_holding_more_starts_its_server_as_a_new_interpreter(tmp_path, before):
    got = _driver_state(tmp_path, before)
    assert "-m\0tunesmith.executors._forkserver" in got["server_cmd"]
    assert got["held"] == [] and got["usr1_default"] and not got["main_has_driver_globals"]
    assert got["collector_on"]
    assert got["exits"] == "exit\n"


def test_workers_asked_for_together_each_get_their_own_answer_whichever_is_waited_for_first():
    """``ForkServer.ask`` returns before the fork (the local executor makes the store meanwhile); the server
    answers in the order it was asked, and each answer is filed to its own request, whoever reads it."""
    import socket
    from multiprocessing.connection import Connection

    server = _forkserver.get()
    assert server is not None
    pairs = [socket.socketpair() for _ in range(2)]
    asked = [server.ask(child.fileno(), _forkserver.worker_env(), os.getcwd()) for _, child in pairs]
    procs = [asked[1].wait(), asked[0].wait()][::-1]  # the second waited for first
    for (parent, child), proc in zip(pairs, procs):
        child.close()
        conn = Connection(parent.detach())
        assert conn.poll(30)
        kind, pid = conn.recv()  # the worker's first message names its process
        assert pid == proc.pid
        conn.close()  # the worker exits when the driver's end closes
        assert proc.wait(30) == 0
    assert procs[0].pid != procs[1].pid


def test_the_first_worker_is_forked_while_the_store_is_made_and_taken_when_first_needed(tmp_path, monkeypatch):
    from tunesmith.store.sqlite import Store

    order: list[str] = []
    real_ask, real_wait, real_publish = _forkserver.ForkServer.ask, _forkserver.Asked.wait, Store.publish
    monkeypatch.setattr(_forkserver.ForkServer, "ask", lambda self, *a: order.append("asked") or real_ask(self, *a))
    monkeypatch.setattr(_forkserver.Asked, "wait", lambda self: order.append("taken") or real_wait(self))
    monkeypatch.setattr(Store, "publish", lambda self: order.append("store") or real_publish(self))
    result = ts.run(where, num_samples=1, verbose=0, storage_path=str(tmp_path))
    assert order == ["asked", "store", "taken"]  # asked before the store is made, its answer read after
    assert result.trials[0].status.value == "TERMINATED"
