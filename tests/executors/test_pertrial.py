"""Per-trial cost and environment on the local backend (issue 19): a trial's thread-pool variables follow its CPUs
unless the user set them (torch, already imported in a reused worker, is told the same count); a short trial's
results travel with its end."""

from __future__ import annotations

import os

import pytest

import tunesmith as ts
from tunesmith.executors.local import LocalBackend
from tunesmith.executors.resources import THREAD_VARS

pytestmark = pytest.mark.timeout(120)


def _threads(config):
    ts.report({f"env/{var}": int(os.environ.get(var, "0")) for var in THREAD_VARS})


def _by_cpu(result):
    return {t.config["cpu"]: t.metrics for t in result.trials}


def test_a_trial_sees_its_cpus_as_the_thread_count(results_dir, monkeypatch):
    for var in THREAD_VARS:
        monkeypatch.delenv(var, raising=False)
    result = ts.run(_threads, {"cpu": ts.grid([0.5, 1, 3])}, verbose=0, max_concurrent=1,
                    backend=LocalBackend(total_resources={"cpu": 4}),
                    resources=lambda config: {"cpu": config["cpu"]})
    got = _by_cpu(result)
    for cpu, want in ((0.5, 1), (1, 1), (3, 3)):  # ceil, at least 1; the same worker ran all three
        assert {var: got[cpu][f"env/{var}"] for var in THREAD_VARS} == {var: want for var in THREAD_VARS}


def test_a_value_the_user_set_wins(results_dir, monkeypatch):
    for var in THREAD_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    result = ts.run(_threads, {"cpu": ts.grid([1, 2])}, verbose=0, max_concurrent=1,
                    backend=LocalBackend(total_resources={"cpu": 4}),
                    resources=lambda config: {"cpu": config["cpu"]})
    got = _by_cpu(result)
    # the others follow the user's count, not the trial's CPUs: a CPU count in MKL_NUM_THREADS would be torch's
    # (it takes MKL's over OMP's at import), not the 7 the user asked for (tests/executors/test_thread_env.py)
    for var in THREAD_VARS:
        assert got[1][f"env/{var}"] == got[2][f"env/{var}"] == 7, var


def _torch_threads(config):
    import torch  # imported by the first trial; the second runs in the same worker with it imported

    ts.report({"torch_threads": torch.get_num_threads(), "pid": os.getpid()})


def test_torch_in_a_reused_worker_gets_the_trials_count(results_dir, monkeypatch):
    pytest.importorskip("torch")
    for var in THREAD_VARS:
        monkeypatch.delenv(var, raising=False)
    result = ts.run(_torch_threads, {"cpu": ts.grid([2, 1])}, verbose=0, max_concurrent=1,
                    backend=LocalBackend(total_resources={"cpu": 2}),
                    resources=lambda config: {"cpu": config["cpu"]})
    got = _by_cpu(result)
    assert got[1]["pid"] == got[2]["pid"]  # one worker: torch was imported before the 1-CPU trial began
    assert got[2]["torch_threads"] == 2
    assert got[1]["torch_threads"] == 1


# -- one message per short trial (issue 19 row 4) ------------------------------------------------------------
def _report_once():
    ts.report({"x": 1})


def test_a_short_trials_results_travel_with_its_end(tmp_path):
    """The worker's DONE carries the results it had not sent: a trial that reports and returns costs the driver
    one message (one store transaction), not a RESULTS then a DONE that could arrive in two batches."""
    from tunesmith.executors._base import Launch
    from tunesmith.executors._wire import DONE

    backend = LocalBackend(total_resources={"cpu": 1})
    backend.setup(_report_once, str(tmp_path))
    try:
        assert backend.try_start(Launch(trial_id=1, config={}, trial_dir=str(tmp_path / "t1"), resources={"cpu": 1}))
        conn = backend._by_trial[1].conn
        kinds = []
        while True:
            assert conn.poll(30)
            msg = conn.recv()
            kinds.append(msg[0])
            if msg[0] == DONE:
                break
        assert [k for k in kinds if k not in ("ready", "hb")] == [DONE]
        assert msg[1:4] == (1, "ok", None)
        assert [row[0] for row in msg[4]] == [1]  # its one result, iteration 1
    finally:
        backend.shutdown()


def _leaves_a_file_then_fails_once(config):
    first = not os.path.exists("mark")
    with open("mark", "a") as f:  # relative: in the trial's own folder
        f.write("x")
    if first:
        raise RuntimeError("first attempt")
    ts.report({"cwd": os.getcwd(), "marks": len(open("mark").read())})


def test_a_trial_runs_in_its_folder_whether_new_or_already_there(results_dir):
    """A new trial's folder is made before it starts; a retried trial's is there already (with what its first
    attempt left in it) and it runs there again."""
    result = ts.run(_leaves_a_file_then_fails_once, {"k": ts.grid([0, 1])}, verbose=0, max_failures=1,
                    max_concurrent=1)
    for trial in result.trials:
        assert trial.last_result["cwd"] == trial.path
        assert trial.last_result["marks"] == 2  # the retry found the first attempt's file
