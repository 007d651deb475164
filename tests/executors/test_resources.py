from __future__ import annotations

import os

import pytest

from tunesmith import ConfigError
from tunesmith.executors.resources import ResourcePool, cpu_quota, detect_cpus, detect_gpus, normalize


def test_fractional_gpus_pack_best_fit_and_keep_whole_devices_free():
    pool = ResourcePool({"cpu": 16, "gpu": 2}, ["0", "1"])
    a = pool.acquire(1, normalize({"cpu": 1, "gpu": 0.25}))
    b = pool.acquire(2, normalize({"cpu": 1, "gpu": 0.25}))
    assert a == {"0": 0.25} and b == {"0": 0.25}  # packed on one device
    assert pool.acquire(3, normalize({"cpu": 1, "gpu": 1})) == {"1": 1.0}  # the other stays whole
    assert pool.acquire(4, normalize({"cpu": 1, "gpu": 0.75})) is None  # 0.5 left on device 0
    assert pool.acquire(5, normalize({"cpu": 1, "gpu": 0.5})) == {"0": 0.5}
    pool.release(3)
    assert pool.acquire(6, normalize({"cpu": 1, "gpu": 0.75})) == {"1": 0.75}


def test_sixteen_sixteenths_fit_on_one_gpu_exactly():
    pool = ResourcePool({"cpu": 16, "gpu": 1}, ["0"])
    for i in range(16):
        assert pool.acquire(i, normalize({"cpu": 1, "gpu": 1 / 16})) == {"0": 1 / 16}
    assert pool.acquire(99, normalize({"cpu": 0, "gpu": 1 / 16})) is None
    for i in range(16):
        pool.release(i)
    assert pool.gpu_free["0"] == pytest.approx(1.0)
    assert pool.free["cpu"] == 16


def test_multi_gpu_and_cpu_limits():
    pool = ResourcePool({"cpu": 4, "gpu": 4}, ["a", "b", "c", "d"])
    assert pool.acquire(1, normalize({"cpu": 2, "gpu": 2})) == {"a": 1.0, "b": 1.0}
    assert pool.acquire(2, normalize({"cpu": 3, "gpu": 0})) is None  # only 2 CPUs left
    assert pool.acquire(3, normalize({"cpu": 2, "gpu": 3})) is None  # only 2 whole GPUs left
    assert pool.acquire(4, normalize({"cpu": 2, "gpu": 2})) == {"c": 1.0, "d": 1.0}
    with pytest.raises(ConfigError, match="more than this machine has"):
        pool.check(normalize({"cpu": 1, "gpu": 5}))


def test_custom_resources_are_accounted():
    pool = ResourcePool({"cpu": 4, "gpu": 0, "tpu": 1}, [])
    assert pool.acquire(1, normalize({"cpu": 1, "tpu": 1})) == {}
    assert pool.acquire(2, normalize({"cpu": 1, "tpu": 1})) is None


@pytest.mark.parametrize("env, expected", [
    ("0,1", ["0", "1"]), ("", []), ("-1", []), ("2, 5", ["2", "5"]), ("1,-1,2", ["1"]),
    ("GPU-abc", ["GPU-abc"]),
])
def test_gpus_from_cuda_visible_devices(env, expected):
    assert detect_gpus({"CUDA_VISIBLE_DEVICES": env}) == expected


@pytest.mark.parametrize("resources", [{"cpu": 0}, {"cpu": 0.0, "gpu": 0}, {"cpu": 0, "tpu": 0}])
def test_a_request_for_no_resource_at_all_is_refused(resources):
    """{"cpu": 0} used to start every trial at once: nothing held any back."""
    with pytest.raises(ConfigError, match=r"resources\['cpu'\] must be more than 0 .*every trial would start at once"):
        normalize(resources)


@pytest.mark.parametrize("resources", [{"cpu": 0.5}, {"cpu": 0.01}, {"cpu": 0, "gpu": 0.25}, {"cpu": 0, "tpu": 1}])
def test_a_fraction_of_a_cpu_or_cpu_0_beside_another_resource_stays_allowed(resources):
    assert normalize(resources)["cpu"] == resources["cpu"]


@pytest.mark.parametrize("files, expected", [
    ({"cpu.max": "200000 100000\n"}, 2.0),  # cgroup v2: docker --cpus=2, a Kubernetes limit of 2
    ({"cpu.max": "150000 100000\n"}, 1.5),
    ({"cpu.max": "max 100000\n"}, None),  # no limit
    ({"cpu/cpu.cfs_quota_us": "300000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 3.0),  # cgroup v1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({"cpu.max": "garbage\n"}, None), ({}, None),
])
def test_a_containers_cpu_quota_is_read_from_its_cgroup(tmp_path, files, expected):
    """In a container limited to 2 CPUs on a 16-core host (``docker --cpus=2``, a Kubernetes CPU limit) the CPUs this
    process may run on are all 16: the quota is only in the cgroup, and 16 one-CPU trials ran at once on 2 CPUs'
    time."""
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cpu_quota(str(tmp_path), "/") == expected


def test_the_cpus_found_are_no_more_than_this_process_may_run_on():
    assert 0 < detect_cpus() <= len(os.sched_getaffinity(0))
