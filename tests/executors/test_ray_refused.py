"""A run refused after its backend started a local Ray stops that Ray (its own file: the test starts a local Ray,
which must not find another test's cluster)."""

from __future__ import annotations

import pytest

import tunesmith as ts

ray = pytest.importorskip("ray")
from tunesmith.executors.ray import RayBackend  # noqa: E402

pytestmark = pytest.mark.timeout(120)


def quadratic(config):
    ts.report({"loss": config["x"] ** 2})


def test_a_run_refused_after_its_backend_started_ray_stops_that_ray(results_dir):
    """The resources check connects (starting a local Ray); a ConfigError from it, or from any check after it and
    before the run, left Ray running, and the next run then took that Ray with its own settings ignored."""
    with pytest.raises(ts.ConfigError, match="gpu"):
        ts.run(quadratic, space={"x": 1.0}, backend=RayBackend(num_cpus=1), resources={"gpu": 1}, verbose=0,
               name="no-gpu")
    assert not ray.is_initialized()
    with pytest.raises(ts.ConfigError, match="name"):
        ts.run(quadratic, space={"x": 1.0}, backend=RayBackend(num_cpus=1), verbose=0, name="../bad")
    assert not ray.is_initialized()


@pytest.mark.timeout(60)
def test_a_trial_whose_placement_group_can_never_be_placed_is_refused_before_the_experiment(results_dir):
    """resources {"cpu": 1} + bundles [{"cpu": 2}] on a 2-CPU Ray: each bundle fits the node, the group (3 CPUs) never
    does; the trial waited PENDING forever, silently (docs/ray.md: refused, naming the resource)."""
    with pytest.raises(ts.ConfigError, match=r"placement group.*'cpu' = 3 in all, and the whole Ray cluster has 2"):
        ts.run(quadratic, space={"x": 1.0}, backend=RayBackend(num_cpus=2, bundles=[{"cpu": 2}]),
               resources={"cpu": 1}, verbose=0, name="never-placed")
    assert not ray.is_initialized()
    assert not (results_dir / "never-placed").exists()
