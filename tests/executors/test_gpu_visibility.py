"""GPUs on the local backend, faked with ``CUDA_VISIBLE_DEVICES`` in the driver's environment (tunesmith's own
detection path: it reads that variable before asking nvidia-smi). Real runs, real workers.

- The machine's GPUs are known however the trials' requests come: a GPU trial created while a GPU-free one runs
  starts (it once failed the experiment with "GPU detection after trials started"), and a GPU request on a
  machine without GPUs is the clear "no GPU was found" in either order.
- A trial that asks for no GPU sees none (``CUDA_VISIBLE_DEVICES=""``, as Ray does for a 0-GPU actor): it can
  not land on a device another trial holds. ``LocalBackend(gpu_ids=[])`` leaves the GPUs to the user.
"""

from __future__ import annotations

import os
import sys
import time

import pytest

import tunesmith as ts
from tunesmith.executors.local import LocalBackend

pytestmark = pytest.mark.timeout(120)


def _cuda():
    return os.environ.get("CUDA_VISIBLE_DEVICES", "unset")


def _gpu_then_cpu_waits(config):
    """The GPU trial (big) marks that it started; the GPU-free one runs until it has (or it is stopped), so the GPU
    trial is created and started while the GPU-free one holds its resources."""
    if config["big"]:
        with open(config["flag"], "w"):
            pass
    else:
        deadline = time.monotonic() + 60
        while not os.path.exists(config["flag"]) and not ts.should_stop() and time.monotonic() < deadline:
            time.sleep(0.01)  # polls the condition; the order does not depend on how long this takes
        assert os.path.exists(config["flag"]), "the GPU trial never started beside this one"
    ts.report({"loss": 0.0, "cuda": _cuda()})


def _mixed(config):
    return {"cpu": 1, "gpu": 1 if config["big"] else 0}


@pytest.mark.parametrize("order", [[False, True], [True, False]], ids=["cpu-first", "gpu-first"])
def test_a_gpu_trial_created_while_a_gpu_free_one_runs_starts(results_dir, monkeypatch, tmp_path, order):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    result = ts.run(_gpu_then_cpu_waits, {"big": ts.grid(order), "flag": str(tmp_path / "gpu_started")},
                    metric="loss", mode="min", resources=_mixed, backend=LocalBackend(total_resources={"cpu": 2}),
                    verbose=0)
    assert [t.status for t in result.trials] == [ts.TrialStatus.TERMINATED] * 2, [t.error for t in result.trials]
    by_big = {t.config["big"]: t.last_result["cuda"] for t in result.trials}
    assert by_big[True] == "0"


@pytest.mark.parametrize("order", [[False, True], [True, False]], ids=["cpu-first", "gpu-first"])
def test_a_gpu_request_without_gpus_says_so_in_either_order(results_dir, monkeypatch, tmp_path, order):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU, whatever nvidia-smi would list
    with pytest.raises(ts.ConfigError, match=r"resources\(config\) for trial \d \(config \{'big': True.*"
                                             r"no GPU was found"):
        ts.run(_gpu_then_cpu_waits, {"big": ts.grid(order), "flag": str(tmp_path / "never")}, metric="loss",
               mode="min", resources=_mixed, backend=LocalBackend(total_resources={"cpu": 2}), verbose=0)


def test_the_machines_gpus_are_in_its_total_before_any_gpu_request(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    backend = LocalBackend(total_resources={"cpu": 2})
    assert backend.total_resources() == {"cpu": 2.0, "gpu": 2.0}  # what the scheduler's view and the dashboard get
    backend.check_resources({"cpu": 1.0, "gpu": 2.0})
    with pytest.raises(ts.ConfigError, match="more than this machine has"):
        backend.check_resources({"cpu": 1.0, "gpu": 3.0})


def _sees(config):
    ts.report({"loss": 0.0, "cuda": _cuda(), "pid": os.getpid()})


def test_a_trial_that_asks_for_no_gpu_sees_none(results_dir, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    result = ts.run(_sees, {"i": ts.grid([0, 1, 2])}, metric="loss", mode="min", resources={"cpu": 1},
                    backend=LocalBackend(total_resources={"cpu": 2}), verbose=0)
    assert [t.last_result["cuda"] for t in result.trials] == ["", "", ""]


def test_trials_left_at_the_default_resources_are_told_once_that_they_see_no_gpu(results_dir, monkeypatch, caplog):
    """Default resources (one CPU, no GPU) on a machine with GPUs: the trials see none, as in Ray Tune, which would
    otherwise train on the CPU without a word; asked for explicitly, no warning."""
    import logging

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    with caplog.at_level(logging.WARNING, logger="tunesmith"):
        result = ts.run(_sees, {"i": ts.grid([0, 1, 2])}, metric="loss", mode="min", verbose=0,
                        backend=LocalBackend(total_resources={"cpu": 2}))
    assert [t.last_result["cuda"] for t in result.trials] == ["", "", ""]
    told = [r.getMessage() for r in caplog.records if "they see none" in r.getMessage()]
    assert len(told) == 1 and "2 GPU(s)" in told[0] and "gpu_ids=[]" in told[0], told
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="tunesmith"):
        ts.run(_sees, {"i": ts.grid([0])}, metric="loss", mode="min", verbose=0, resources={"cpu": 1},
               backend=LocalBackend(total_resources={"cpu": 2}))
    assert "they see none" not in caplog.text


def test_gpu_and_gpu_free_trials_never_share_a_worker(results_dir, monkeypatch):
    """CUDA reads CUDA_VISIBLE_DEVICES once per process: a worker that ran a GPU-free trial (no device visible) is
    not reused for a GPU trial, nor the other way round."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    result = ts.run(_sees, {"i": ts.grid([0, 1, 2])}, metric="loss", mode="min", max_concurrent=1,
                    resources=lambda config: {"cpu": 1, "gpu": 1 if config["i"] == 1 else 0},
                    backend=LocalBackend(total_resources={"cpu": 2}), verbose=0)
    seen = {t.config["i"]: t.last_result for t in result.trials}
    assert [seen[i]["cuda"] for i in range(3)] == ["", "0", ""]
    assert seen[1]["pid"] != seen[0]["pid"] and seen[2]["pid"] != seen[1]["pid"]


def test_gpu_ids_empty_leaves_the_devices_to_the_user(results_dir, monkeypatch):
    """Placing work on devices oneself: the backend told it has no GPUs to hand out leaves CUDA_VISIBLE_DEVICES as
    the driver has it, in every trial."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    backend = LocalBackend(total_resources={"cpu": 2}, gpu_ids=[])
    result = ts.run(_sees, {"i": ts.grid([0, 1])}, metric="loss", mode="min", backend=backend, verbose=0)
    assert [t.last_result["cuda"] for t in result.trials] == ["0,1", "0,1"]
    with pytest.raises(ts.ConfigError, match=r"no GPU to hand out: LocalBackend\(gpu_ids=\[\]\)"):
        ts.run(_sees, resources={"gpu": 1}, backend=LocalBackend(gpu_ids=[]), verbose=0)


def _rank_sees(config):
    with open(f"cuda.rank{ts.get_rank()}", "w") as f:
        f.write(_cuda())
    ts.report({"loss": 0.0})


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="rank supervision is tested on Linux")
@pytest.mark.parametrize("gpu, expected", [(0, ["", ""]), (2, ["0", "1"])])
def test_each_rank_sees_its_own_devices_or_none(results_dir, monkeypatch, gpu, expected):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")
    result = ts.run(_rank_sees, metric="loss", mode="min", ranks=2, resources={"cpu": 2, "gpu": gpu},
                    backend=LocalBackend(total_resources={"cpu": 2}), verbose=0)
    trial = result.trials[0]
    assert trial.status is ts.TrialStatus.TERMINATED, trial.error
    seen = []
    for rank in range(2):
        with open(os.path.join(trial.path, f"cuda.rank{rank}")) as f:
            seen.append(f.read())
    assert seen == expected
