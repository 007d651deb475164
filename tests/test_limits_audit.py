"""Resources, concurrency and time limits off the happy path (an audit's findings)."""

from __future__ import annotations

import pytest

import tunesmith as ts
from tunesmith import ConfigError

pytestmark = pytest.mark.timeout(120)


def reports(config):
    ts.report({"x": 1})


def needs_a_gpu(config):  # forgot its return: every trial would run on the default, one CPU and no GPU
    wanted = {"cpu": 1, "gpu": 1}
    del wanted


def test_a_resources_function_that_returns_nothing_is_named_not_taken_as_the_default(results_dir):
    with pytest.raises(ConfigError, match=r"resources\(config\) for trial 1 .* returned None; expected a dict"):
        ts.run(reports, {"a": ts.grid([1, 2])}, resources=needs_a_gpu, name="nothing", verbose=0)
    assert ts.load("nothing").trials == []  # no trial ran on resources it did not ask for


def _noop(config):
    ts.report({"x": 1})


def test_more_than_total_resources_gives_is_named_as_such_not_as_the_machine(results_dir):
    """The error said "more than this machine has (1)" on a machine of 2 CPUs, where the 1 came from
    ``LocalBackend(total_resources={"cpu": 1})``."""
    with pytest.raises(ts.ConfigError, match=r"resources\['cpu'\] = 2 is more than LocalBackend\(total_resources=\) "
                                             r"gives \(1\)"):
        ts.run(_noop, resources={"cpu": 2}, verbose=0, backend=ts.LocalBackend(total_resources={"cpu": 1}))
    with pytest.raises(ts.ConfigError, match=r"resources\['tok'\] = 1 is more than this machine has \(0\)"):
        ts.run(_noop, resources={"cpu": 1, "tok": 1}, verbose=0)


@pytest.mark.parametrize("resources", [{"cpu": 1e-12}, {"cpu": 0, "gpu": 1e-9}, {"cpu": 0.00001}])
def test_a_request_too_small_to_hold_anything_back_is_refused(results_dir, resources):
    """``{"cpu": 1e-12}`` passed the "must ask for something" check yet held nothing back: every trial could start
    at once (and a GPU share under the packing tolerance counts as none)."""
    with pytest.raises(ts.ConfigError, match=r"resources\['(cpu|gpu)'\] = .* is more than 0 but under 0.0001"):
        ts.run(_noop, resources=resources, verbose=0)
