"""A trial's thread-pool variables (``OMP_NUM_THREADS`` and its family) on the local backend: a count the user set
is every library's, torch's included, from a worker's first trial on; a trial run as several ranks sizes each
rank's pools from its share of the trial's CPUs. Real workers, real rank processes, real torch."""

from __future__ import annotations

import json
import os
import sys

import pytest

import tunesmith as ts
from tunesmith.executors.local import LocalBackend
from tunesmith.executors.resources import THREAD_VARS, detect_cpus, thread_env

pytestmark = [pytest.mark.timeout(180),
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fork server is Linux-only")]


def _clear(monkeypatch):
    for var in THREAD_VARS:
        monkeypatch.delenv(var, raising=False)


# -- thread_env itself --------------------------------------------------------------------------------------------
def test_with_nothing_set_every_variable_is_the_trials_cpus():
    assert thread_env({"cpu": 2.5}, (), environ={}) == {var: "3" for var in THREAD_VARS}
    assert thread_env({"cpu": 0.5}, (), environ={}) == {var: "1" for var in THREAD_VARS}


def test_the_variables_the_user_did_not_set_follow_the_one_they_set():
    others = [var for var in THREAD_VARS if var != "OMP_NUM_THREADS"]
    assert thread_env({"cpu": 1}, {"OMP_NUM_THREADS"}, environ={"OMP_NUM_THREADS": "6"}) == {v: "6" for v in others}
    # OMP_NUM_THREADS first, then the family's order; what the user set is never in the answer
    got = thread_env({"cpu": 1}, {"MKL_NUM_THREADS", "OMP_NUM_THREADS"},
                     environ={"MKL_NUM_THREADS": "4", "OMP_NUM_THREADS": "3"})
    assert got == {v: "3" for v in THREAD_VARS if v not in ("MKL_NUM_THREADS", "OMP_NUM_THREADS")}
    only_mkl = thread_env({"cpu": 1}, {"MKL_NUM_THREADS"}, environ={"MKL_NUM_THREADS": " 5 "})
    assert only_mkl == {v: "5" for v in THREAD_VARS if v != "MKL_NUM_THREADS"}


def test_a_user_value_that_is_not_a_count_leaves_the_others_unset():
    # OpenMP's nested form, a typo, a value we cannot read: never a CPU count that would override the user's
    assert thread_env({"cpu": 1}, {"OMP_NUM_THREADS"}, environ={"OMP_NUM_THREADS": "4,2"}) == {}
    assert thread_env({"cpu": 1}, {"OMP_NUM_THREADS"}, environ={"OMP_NUM_THREADS": "0"}) == {}
    assert thread_env({"cpu": 1}, {"OMP_NUM_THREADS"}, environ={}) == {}


# -- the user's count, torch's too, from a worker's first trial ----------------------------------------------------
def _threads_and_torch(config):
    import torch

    ts.report({"pid": os.getpid(), "torch": torch.get_num_threads(),
               **{var: os.environ.get(var, "") for var in THREAD_VARS}})


@pytest.mark.parametrize("user", [{"OMP_NUM_THREADS": "2"}, {"MKL_NUM_THREADS": "2"}, {"OMP_NUM_THREADS": "1"}])
def test_the_users_count_is_torchs_in_every_trial_of_a_worker(results_dir, monkeypatch, user):
    pytest.importorskip("torch")
    if detect_cpus() < 2:
        pytest.skip("needs 2 CPUs: torch caps its count at the machine's cores")
    _clear(monkeypatch)
    for var, value in user.items():
        monkeypatch.setenv(var, value)
    count = next(iter(user.values()))
    other = 1 if count == "2" else 2  # a CPU count that is not the user's: it must not win anywhere
    result = ts.run(_threads_and_torch, {"k": ts.grid([0, 1, 2])}, verbose=0, max_concurrent=1,
                    backend=LocalBackend(total_resources={"cpu": 2}), resources={"cpu": other})
    rows = [t.last_result for t in sorted(result.trials, key=lambda t: t.config["k"])]
    assert len({row["pid"] for row in rows}) == 1  # one worker: torch imported by the first trial, reused after
    for row in rows:
        assert {var: row[var] for var in THREAD_VARS} == {var: count for var in THREAD_VARS}, row
        assert row["torch"] == int(count), row


# -- ranks: each rank's pools from its share -------------------------------------------------------------------------
def _rank_threads(config):
    import torch

    record = {"rank": ts.get_rank(), "torch": torch.get_num_threads(), "share": ts.get_resources()["cpu"],
              **{var: os.environ.get(var, "") for var in THREAD_VARS}}
    with open(os.path.join(ts.get_trial_dir(), f"threads.rank{ts.get_rank()}.json"), "w") as f:
        json.dump(record, f)
    ts.report({"loss": 1.0})


def _rank_records(trial, world):
    out = []
    for rank in range(world):
        with open(os.path.join(trial.path, f"threads.rank{rank}.json")) as f:
            out.append(json.load(f))
    return out


@pytest.mark.parametrize("user_omp, cpus, share", [
    (None, 2, 1.0),  # 2 ranks of 1 thread on 2 CPUs, not 2 of 2
    ("1", 4, 2.0),  # the user's count: neither the trial's 4 CPUs nor a rank's share of 2
], ids=["sized-from-share", "users-count"])
def test_each_ranks_pools_follow_its_share_or_the_users_count(results_dir, monkeypatch, user_omp, cpus, share):
    pytest.importorskip("torch")
    if user_omp is not None and detect_cpus() < 2:
        pytest.skip("needs 2 CPUs: torch caps its count at the machine's cores")
    _clear(monkeypatch)
    if user_omp is not None:
        monkeypatch.setenv("OMP_NUM_THREADS", user_omp)
    result = ts.run(_rank_threads, metric="loss", mode="min", ranks=2, resources={"cpu": cpus}, verbose=0,
                    backend=LocalBackend(total_resources={"cpu": cpus}))
    trial = result.trials[0]
    assert trial.status == ts.TrialStatus.TERMINATED, trial.error
    for record in _rank_records(trial, 2):
        assert record["share"] == share
        assert {var: record[var] for var in THREAD_VARS} == {var: "1" for var in THREAD_VARS}, record
        assert record["torch"] == 1, record
