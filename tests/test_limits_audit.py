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
    with pytest.raises(ts.ConfigError, match=r"resources\['tok'\] = 1: this machine has no resource named 'tok'"):
        ts.run(_noop, resources={"cpu": 1, "tok": 1}, verbose=0)


@pytest.mark.parametrize("resources", [{"cpu": 1e-12}, {"cpu": 0, "gpu": 1e-9}, {"cpu": 0.00001}])
def test_a_request_too_small_to_hold_anything_back_is_refused(results_dir, resources):
    """``{"cpu": 1e-12}`` passed the "must ask for something" check yet held nothing back: every trial could start
    at once (and a GPU share under the packing tolerance counts as none)."""
    with pytest.raises(ts.ConfigError, match=r"resources\['(cpu|gpu)'\] = .* is more than 0 but under 0.0001"):
        ts.run(_noop, resources=resources, verbose=0)


@pytest.mark.parametrize("resources, hint", [
    ({"cpu": 1, "gpus": 1}, r" \(did you mean 'gpu'\?\)"), ({"CPU": 2}, r" \(did you mean 'cpu'\?\)"),
    ({"cpu": 1, "memory": 2e9}, ""), ({"cpu": 1, "tpu": 1}, ""),
])
def test_a_resource_name_the_backend_does_not_have_is_named_as_unknown_not_as_too_much(results_dir, resources, hint):
    """``{"gpus": 1}`` (a typo) and ``{"tpu": 1}`` (a resource of the user's own, never declared) said "is more than
    this machine has (0)": as if the machine had none of a thing it knows, with no word of the typo or of where a
    resource of one's own is declared."""
    key = next(k for k in resources if k != "cpu")
    with pytest.raises(ConfigError, match=rf"resources\['{key}'\] = .*: this machine has no resource named '{key}'"
                                          rf"{hint}; it has 'cpu', 'gpu'.*LocalBackend\(total_resources=\)"):
        ts.run(_noop, resources=resources, verbose=0)


@pytest.mark.parametrize("resources", [{"cpu": 1, "memory": 2e9}, {"cpu": 1, "tpu": 1}])
def test_a_resource_of_ones_own_declared_in_total_resources_is_accounted(results_dir, resources):
    declared = ts.LocalBackend(total_resources={k: v for k, v in resources.items() if k != "cpu"})
    result = ts.run(_noop, {"i": ts.grid([0, 1])}, resources=resources, verbose=0, backend=declared)
    assert [t.status for t in result.trials] == [ts.TrialStatus.TERMINATED] * 2


@pytest.mark.parametrize("visible", ["", "-1"])
def test_a_gpu_request_where_cuda_visible_devices_hides_every_gpu_says_so(results_dir, monkeypatch, visible):
    """The error said "set CUDA_VISIBLE_DEVICES" to a user whose own CUDA_VISIBLE_DEVICES hid every GPU."""
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    with pytest.raises(ConfigError, match=rf"no GPU was found: CUDA_VISIBLE_DEVICES={visible!r} in this process's "
                                          rf"environment hides every GPU"):
        ts.run(_noop, resources={"cpu": 1, "gpu": 0.5}, verbose=0)


@pytest.mark.parametrize("backend", [ts.LocalBackend, ts.SimulatedBackend])
@pytest.mark.parametrize("name, known", [("cpus", "cpu"), ("CPU", "cpu"), ("gpus", "gpu"), ("GPU", "gpu")])
def test_a_total_named_like_cpu_or_gpu_is_refused_not_taken_for_a_resource_of_ones_own(backend, name, known):
    """``LocalBackend(total_resources={"cpus": 1})`` was taken for a resource of the user's own named "cpus": the run
    went on with every CPU of the machine, and as many trials at once as it has, where the user meant one."""
    with pytest.raises(ConfigError, match=rf"^{backend.__name__}: total_resources\['{name}'\]: did you mean "
                                          rf"'{known}'\?"):
        backend(total_resources={"cpu": 1, name: 1})
