"""Start to first result (issue 19 row 11): a plain run imports only what it uses."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time

import pytest
from proc_helpers import pid_alive

import tunesmith as ts
from tunesmith.callbacks import Callback
from tunesmith.executors.local import LocalBackend

pytestmark = pytest.mark.timeout(120)


def test_a_plain_run_does_not_import_numpy_nor_filelock(tmp_path):
    # NumPy alone took 0.17 s of a 0.5 s start (the random searcher imported it to check a seed), filelock
    # 0.09-0.25 s (the driver's lock is a flock); the simulated backend was imported for an isinstance check
    code = textwrap.dedent("""
        import sys
        import tunesmith as ts

        def f(config):
            ts.report({"loss": config["x"]})

        ts.run(f, {"x": ts.uniform(0, 1)}, num_samples=2, metric="loss", mode="min", seed=3,
               storage_path=sys.argv[1], verbose=0)
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("numpy", "filelock")
                     or m == "tunesmith.executors.simulated"))
    """)
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=100)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def _one(config):
    import tunesmith as ts

    ts.report({"loss": 1.0})


def test_the_driver_lock_is_a_flock_that_follows_no_planted_link(tmp_path):
    """The lock is taken with flock directly (not the filelock package): a link planted as ``.driver.lock`` is
    refused with a ConfigError, and what it points to is left alone."""
    import tunesmith as ts

    ts.run(_one, name="exp", storage_path=str(tmp_path), verbose=0)
    lock = tmp_path / "exp" / ".driver.lock"
    assert lock.is_file()
    target = tmp_path / "elsewhere.txt"
    target.write_text("keep")
    lock.unlink()
    lock.symlink_to(target)
    with pytest.raises(ts.ConfigError, match=r"lock file .*\.driver\.lock.*a link is not followed"):
        ts.run(_one, name="exp", storage_path=str(tmp_path), verbose=0, resume=True)
    assert target.read_text() == "keep"
    lock.unlink()
    ts.run(_one, name="exp", storage_path=str(tmp_path), verbose=0, resume=True)  # a plain file again: it runs


def test_a_plain_run_with_a_space_and_the_default_scheduler_defers_what_it_does_not_use(tmp_path):
    # statistics (and the decimal/fractions it pulls) serve only normal()/q*() domains when sampled, and
    # reading FIFO's signature from object.__init__'s text compiled tokenize's regexes: ~6 ms of a 0.1 s start
    code = textwrap.dedent("""
        import sys
        import tunesmith as ts

        def f(config):
            ts.report({"x": config["a"]})

        ts.run(f, space={"a": ts.uniform(0, 1)}, num_samples=1, storage_path=sys.argv[1], verbose=0)
        print(sorted(m for m in ("statistics", "decimal", "fractions") if m in sys.modules))
        print(getattr(sys.modules.get("tokenize"), "_compile").cache_info().currsize
              if "tokenize" in sys.modules and hasattr(sys.modules["tokenize"]._compile, "cache_info") else 0)
    """)
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["[]", "0"], out.stdout


def test_a_plain_run_loads_no_hashing_nor_secrets_before_its_first_result(tmp_path):
    # hashlib (with hmac and secrets) loads OpenSSL's libcrypto: ~2-4 ms in each of the driver, the fork server
    # and the worker before a first result that needs none of it. Checkpoints, the signing key and the
    # end-of-run indexes import it when they are used
    code = textwrap.dedent("""
        import sys
        import tunesmith as ts

        HEAVY = ("hashlib", "_hashlib", "hmac", "secrets")
        seen = []

        class First(ts.Callback):
            def on_trial_results(self, trial, results):
                seen.append(",".join(m for m in HEAVY if m in sys.modules))

        def f(config):
            import sys
            ts.report({"x": 1.0, "loaded": ",".join(m for m in HEAVY if m in sys.modules)})

        res = ts.run(f, num_samples=1, storage_path=sys.argv[1], verbose=0, strict_metric_checking=False,
                     callbacks=[First()])
        print(repr(res.trials[0].last_result["loaded"]))
        print(repr(seen[0]))
    """)
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=100)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-2:] == ["''", "''"], out.stdout


def test_a_plain_run_imports_no_module_of_a_feature_it_does_not_use_before_its_first_result(tmp_path):
    # each module is a fraction of a millisecond at start (issue 19 row 11): the file loggers (off by default)
    # and the optional ones, resume's replay, PBT's exploit, warm starts, and the ResultSet run() returns at
    # its end. Each is imported when its feature is used (the file loggers' test below)
    code = textwrap.dedent("""
        import sys
        import tunesmith as ts

        UNUSED = ("tunesmith.callbacks.csv_json", "tunesmith.callbacks.mlflow", "tunesmith.callbacks.tensorboard",
                  "tunesmith.callbacks.wandb", "tunesmith._replay", "tunesmith._exploit", "tunesmith._warm_start",
                  "tunesmith.results")
        seen = []

        class First(ts.Callback):
            def on_trial_results(self, trial, results):
                seen.append([m for m in UNUSED if m in sys.modules])

        def f(config):
            ts.report({"x": config["a"]})

        ts.run(f, {"a": ts.uniform(0, 1)}, num_samples=1, storage_path=sys.argv[1], verbose=0, callbacks=[First()])
        print(seen[0])
        ts.run(f, {"a": ts.uniform(0, 1)}, num_samples=1, storage_path=sys.argv[1], verbose=0, file_loggers=True)
        print("tunesmith.callbacks.csv_json" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=100)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-2:] == ["[]", "True"], out.stdout
    second = sorted(tmp_path.glob("f_*"))[-1]
    assert {p.name for p in (second / "trials" / "trial_00001").iterdir()} >= {"params.json", "progress.csv",
                                                                                "result.jsonl"}


def test_the_garbage_collector_is_paused_while_a_run_sets_up_and_on_for_its_trials_and_after_it(tmp_path):
    # the setup's collections scan the long-lived objects it makes for nothing (issue 19 row 11); a run must not
    # leave it off, nor turn it on where the user turned it off
    code = textwrap.dedent("""
        import gc, json, sys
        import tunesmith as ts

        seen = {}

        class Searcher(ts.Random):
            def setup(self, *args, **kwargs):
                seen.setdefault("setup", gc.isenabled())
                super().setup(*args, **kwargs)

        class Watch(ts.Callback):
            def on_trial_results(self, trial, results):
                seen.setdefault("results", gc.isenabled())

        def f(config):
            import gc
            ts.report({"collector_on": int(gc.isenabled())})

        res = ts.run(f, num_samples=1, storage_path=sys.argv[1], verbose=0, searcher=Searcher(),
                     callbacks=[Watch()], metric="collector_on", mode="max")
        seen.update(trial=res.trials[0].last_result["collector_on"], after=gc.isenabled())
        try:
            ts.run(f, num_samples=1, storage_path=sys.argv[1], verbose=0, searcher=Searcher(), metric="m",
                   mode="sideways")
        except ts.ConfigError:
            seen["after_refused"] = gc.isenabled()
        class Nested(ts.Random):  # a run inside another run's setup
            def setup(self, *args, **kwargs):
                ts.run(f, num_samples=1, storage_path=sys.argv[1], verbose=0)
                seen.setdefault("nested_setup", gc.isenabled())
                super().setup(*args, **kwargs)

        ts.run(f, num_samples=1, storage_path=sys.argv[1], verbose=0, searcher=Nested())
        seen["after_nested"] = gc.isenabled()
        gc.disable()
        ts.run(f, num_samples=1, storage_path=sys.argv[1], verbose=0)
        seen["left_off"] = not gc.isenabled()
        print(json.dumps(seen, sort_keys=True))
    """)
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=100)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {
        "setup": False, "results": True, "trial": 1, "after": True, "after_refused": True, "nested_setup": False,
        "after_nested": True, "left_off": True}


class _AtStart(Callback):
    def __init__(self, backend):
        self.backend = backend
        self.workers: list[int] = []

    def on_experiment_start(self, info):
        self.workers = list(self.backend.worker_pids())


def _pid(config):
    import os

    ts.report({"pid": os.getpid()})


def test_the_first_worker_starts_while_the_driver_makes_the_store(tmp_path):
    """The local backend starts the first trial's worker before the store is made (its fsyncs), not when the
    first trial is launched: the controller finds it started, and the first trial runs on it."""
    backend = LocalBackend()
    seen = _AtStart(backend)
    result = ts.run(_pid, num_samples=1, storage_path=str(tmp_path), verbose=0, backend=backend, callbacks=[seen])
    assert len(seen.workers) == 1
    assert result.trials[0].last_result["pid"] == seen.workers[0]


def test_a_run_refused_after_its_first_worker_started_leaves_no_worker(tmp_path):
    ts.run(_pid, name="exp", num_samples=1, storage_path=str(tmp_path), verbose=0, metric="pid", mode="min")
    backend = LocalBackend()
    started: list[int] = []
    real_started = backend._started

    def noted(asking):  # the real start, noting the worker's pid
        worker = real_started(asking)
        started.append(worker.proc.pid)
        return worker

    backend._started = noted
    with pytest.raises(ts.ConfigError, match="resume"):  # refused once the store is open: another metric
        ts.run(_pid, name="exp", resume=True, storage_path=str(tmp_path), verbose=0, metric="other", mode="min",
               backend=backend)
    assert started and backend._workers == []
    deadline = time.monotonic() + 10
    while pid_alive(started[0]) and time.monotonic() < deadline:
        time.sleep(0.02)  # waiting for a condition (the killed worker is gone), bounded
    assert not pid_alive(started[0])


def test_a_first_worker_started_the_plain_way_starts_at_prestart_while_the_store_is_made():
    """With ``start_method="spawn"`` (a new interpreter per worker) the first worker is started by ``prestart``
    itself, so its interpreter's start overlaps the store's creation; only a fork server's answer is waited for
    later."""
    import subprocess

    backend = LocalBackend(start_method="spawn")
    backend.prestart()
    try:
        # the interpreter itself, already exec'd (Popen returns once it is), not a request to a fork server; its
        # pid, not its /proc entry (a psutil scan of this process's children missed it once in CI, under load)
        started = backend._asked[3] if backend._asked is not None else None
        assert isinstance(started, subprocess.Popen), started
        assert started.args[1:3] == ["-m", "tunesmith.executors._worker"] and started.pid > 0
    finally:
        backend.shutdown()
    assert backend.worker_pids() == []
