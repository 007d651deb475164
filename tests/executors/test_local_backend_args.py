"""``LocalBackend(...)`` checks its arguments when it is made, as ``run()`` checks the same settings: one
ConfigError naming the argument and what it expects, not a TypeError in the middle of a run, an error blaming a
trial's request, or a setting that quietly kills every trial."""

from __future__ import annotations

import math
import os

import pytest

import tunesmith as ts
from tunesmith.executors.local import LocalBackend

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize("kwargs, match", [
    ({"total_resources": {"cpu": -1}}, r"total_resources\['cpu'\] must be a non-negative number, got -1"),
    ({"total_resources": {"cpu": "2"}}, r"total_resources\['cpu'\] must be a non-negative number, got '2'"),
    ({"total_resources": {"cpu": math.nan}}, r"total_resources\['cpu'\] must be a non-negative number"),
    ({"total_resources": {"cpu": math.inf}}, r"total_resources\['cpu'\] must be a non-negative number"),
    ({"total_resources": {"cpu": True}}, r"total_resources\['cpu'\] must be a non-negative number"),
    ({"total_resources": {"tpu": -2}}, r"total_resources\['tpu'\] must be a non-negative number"),
    ({"total_resources": {1: 2}}, r"total_resources: resource names must be strings, got 1"),
    ({"total_resources": "cpu=2"}, r"total_resources must be a dict like \{'cpu': 4, 'gpu': 2\}, got str"),
    ({"total_resources": {"gpu": 1.5}}, r"total_resources\['gpu'\] must be a whole number of GPUs, got 1.5"),
    ({"total_resources": {"gpu": 3}, "gpu_ids": ["0", "1"]},
     r"total_resources\['gpu'\] = 3 but gpu_ids names 2 devices"),
    ({"gpu_ids": "0,1"}, r"gpu_ids must be a list of device ids such as \['0', '1'\], got the string '0,1'"),
    ({"gpu_ids": 2}, r"gpu_ids must be a list of device ids such as \['0', '1'\], got int"),
    ({"gpu_ids": ["0,1"]}, r"gpu_ids\[0\] must be one device id .*got '0,1'"),
    ({"gpu_ids": [""]}, r"gpu_ids\[0\] must be one device id .*got ''"),
    ({"gpu_ids": ["0", "-1"]}, r"gpu_ids\[1\] must be one device id .*got '-1'"),
    ({"gpu_ids": [-1]}, r"gpu_ids\[0\] must be one device id .*got -1"),
    ({"gpu_ids": [True]}, r"gpu_ids\[0\] must be one device id .*got True"),
    ({"gpu_ids": [0.5]}, r"gpu_ids\[0\] must be one device id .*got 0.5"),
    ({"gpu_ids": ["0", 0]}, r"gpu_ids: device '0' is named twice"),
    ({"trial_timeout_s": 0}, r"trial_timeout_s must be a positive number of seconds, got 0"),
    ({"trial_timeout_s": -5}, r"trial_timeout_s must be a positive number of seconds, got -5"),
    ({"trial_timeout_s": "3"}, r"trial_timeout_s must be a positive number of seconds, got '3'"),
    ({"trial_timeout_s": math.nan}, r"trial_timeout_s must be a positive number of seconds"),
    ({"trial_timeout_s": True}, r"trial_timeout_s must be a positive number of seconds, got True"),
    ({"trial_timeout_s": 1.5}, r"trial_timeout_s must be at least 2 seconds \(workers send a heartbeat every 0.5 s\)"),
    ({"grace_period_s": -1}, r"grace_period_s must be a number of seconds >= 0, got -1"),
    ({"grace_period_s": "5"}, r"grace_period_s must be a number of seconds >= 0, got '5'"),
    ({"grace_period_s": None}, r"grace_period_s must be a number of seconds >= 0, got None"),
    ({"grace_period_s": math.nan}, r"grace_period_s must be a number of seconds >= 0, got nan"),
    ({"grace_period_s": True}, r"grace_period_s must be a number of seconds >= 0, got True"),
    ({"start_method": "fork"}, r"LocalBackend\(start_method='fork'\): expected one of"),
    ({"queue_ahead": 1}, r"LocalBackend\(queue_ahead=1\): expected True or False"),
])
def test_a_bad_argument_is_refused_when_the_backend_is_made(kwargs, match):
    with pytest.raises(ts.ConfigError, match=r"LocalBackend.*" + match if "LocalBackend" not in match else match):
        LocalBackend(**kwargs)


@pytest.mark.parametrize("kwargs", [
    {}, {"total_resources": {"cpu": 0.5, "gpu": 2, "tpu": 1}}, {"total_resources": {"gpu": 2.0}},
    {"gpu_ids": ("3", "5")}, {"gpu_ids": []}, {"gpu_ids": ["GPU-8f3a", "MIG-1c2d"]},
    {"total_resources": {"gpu": 2}, "gpu_ids": ["3", "5"]}, {"trial_timeout_s": 2}, {"trial_timeout_s": None},
    {"grace_period_s": 0}, {"grace_period_s": 2.5},
])
def test_good_arguments_are_taken(kwargs):
    LocalBackend(**kwargs)


def test_the_totals_the_backend_was_given_are_its_totals():
    backend = LocalBackend(total_resources={"cpu": 3, "tpu": 1}, gpu_ids=("3", "5"))
    assert backend.total_resources() == {"cpu": 3.0, "tpu": 1.0, "gpu": 2.0}


def _cuda(config):
    ts.report({"cuda": os.environ.get("CUDA_VISIBLE_DEVICES", "unset")})


def test_integer_gpu_ids_reach_the_trial_as_text(results_dir):
    """gpu_ids=[3] (integers, as device indices are often written) once failed in the middle of the run, joining
    them into CUDA_VISIBLE_DEVICES."""
    result = ts.run(_cuda, resources={"cpu": 1, "gpu": 1}, backend=LocalBackend(total_resources={"cpu": 1},
                                                                                   gpu_ids=[3]), verbose=0)
    assert result.trials[0].status is ts.TrialStatus.TERMINATED, result.trials[0].error
    assert result.trials[0].last_result["cuda"] == "3"
