"""A tester's findings on the Ray backend: a placement group that can never be placed, a process-local storage, sizing
arguments and addresses refused before Ray starts, a local Ray of the run's own where another is discoverable, and
`tunesmith resume` of a Ray experiment on Ray (its own file: the tests that start Ray start a local one, which must
not find another test's cluster)."""

from __future__ import annotations

import json
import os
import sys
import time
import uuid

import pytest
from click.testing import CliRunner
from proc_helpers import free_port

import tunesmith as ts

ray = pytest.importorskip("ray")
from tunesmith import _run  # noqa: E402
from tunesmith.cli import cli, resume_arguments  # noqa: E402
from tunesmith.executors.ray import RayBackend, group_fits  # noqa: E402

pytestmark = pytest.mark.timeout(120)


def quadratic(config):
    ts.report({"loss": config["x"] ** 2})


# -- 1. the placement group as a whole -------------------------------------------------------------------------------
def test_a_placement_group_fits_only_where_all_its_bundles_can_be_placed_together():
    two = [{"CPU": 2.0}, {"CPU": 2.0}]
    # the tester's case: resources {"cpu": 1} + bundles [{"cpu": 2}] on one 2-CPU node: each fits, the group not
    assert not group_fits([{"CPU": 1.0}, {"CPU": 2.0}], [{"CPU": 2.0}], "PACK")
    assert group_fits([{"CPU": 1.0}, {"CPU": 2.0}], [{"CPU": 4.0}], "PACK")
    # PACK/SPREAD may use several nodes; STRICT_PACK must find one node for all of them
    assert group_fits([{"CPU": 1.0}, {"CPU": 2.0}], two, "PACK")
    assert group_fits([{"CPU": 1.0}, {"CPU": 2.0}], two, "SPREAD")
    assert not group_fits([{"CPU": 1.0}, {"CPU": 2.0}], two, "STRICT_PACK")
    # the sum fits the cluster (4 CPUs) but no packing does: 1.5 + 1 > 2 on either node
    assert not group_fits([{"CPU": 1.5}, {"CPU": 1.5}, {"CPU": 1.0}], two, "PACK")
    assert group_fits([{"CPU": 1.5}, {"CPU": 0.5}, {"CPU": 1.0}, {"CPU": 1.0}], two, "PACK")
    # STRICT_SPREAD: a node per bundle
    assert not group_fits([{"CPU": 1.0}] * 3, [{"CPU": 4.0}, {"CPU": 4.0}], "STRICT_SPREAD")
    assert group_fits([{"CPU": 1.0}] * 2, [{"CPU": 4.0}, {"CPU": 4.0}], "STRICT_SPREAD")
    # every resource counts: the GPUs are on one node, the CPUs the bundles need with them on the other
    gpu_node, cpu_node = {"CPU": 1.0, "GPU": 2.0}, {"CPU": 8.0}
    assert not group_fits([{"CPU": 2.0, "GPU": 1.0}, {"CPU": 1.0}], [gpu_node, cpu_node], "PACK")
    assert group_fits([{"CPU": 1.0, "GPU": 1.0}, {"CPU": 4.0}], [gpu_node, cpu_node], "PACK")


# -- 3. a storage no other process sees ------------------------------------------------------------------------------
@pytest.mark.parametrize("url", ["memory://ckpts", "simplecache::memory://ckpts"])
def test_a_storage_that_lives_in_one_process_is_refused_when_the_backend_is_made(url):
    with pytest.raises(ts.ConfigError, match=r"storage=.*memory.*inside one process"):
        RayBackend(storage=url)
    assert RayBackend(storage="file:///tmp/shared-ckpts").storage == "file:///tmp/shared-ckpts"  # others are fine


# -- 6. sizing arguments ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad, match", [
    ({"num_cpus": "2"}, r"num_cpus=.*whole number.*'2'"),
    ({"num_cpus": -1}, r"num_cpus=.*-1"),
    ({"num_cpus": float("nan")}, r"num_cpus="),
    ({"num_gpus": 0.5}, r"num_gpus=.*whole number"),
    ({"resources": {"foo": -1}}, r"resources=.*'foo'.*non-negative"),
    ({"resources": {"foo": "1"}}, r"resources=.*'foo'"),
    ({"resources": ["foo"]}, r"resources=.*dict"),
    ({"resources": {"CPU": 2}}, r"resources=.*'CPU'.*num_cpus"),
    ({"resources": {"gpu": 1}}, r"resources=.*'gpu'.*num_gpus"),
    ({"object_store_memory": -5}, r"object_store_memory="),
])
def test_sizing_arguments_are_refused_when_the_backend_is_made_naming_the_argument(bad, match):
    with pytest.raises(ts.ConfigError, match=match):
        RayBackend(**bad)


def test_good_sizing_arguments_are_accepted():
    b = RayBackend(num_cpus=2, num_gpus=0, resources={"accel": 1.5}, object_store_memory=100 * 2**20)
    assert (b.num_cpus, b.num_gpus, b.resources) == (2, 0, {"accel": 1.5})


# -- 5. an address where nothing listens -----------------------------------------------------------------------------
@pytest.mark.timeout(30)
def test_a_host_port_address_where_nothing_listens_is_refused_at_once(results_dir):
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    t0 = time.monotonic()
    with pytest.raises(ts.ConfigError, match=rf"address='{address}'.*nothing answers"):
        ts.run(quadratic, space={"x": 1.0}, backend=RayBackend(address=address), verbose=0, name="nowhere")
    assert time.monotonic() - t0 < 10  # Ray retried for minutes ("Failed to connect to GCS")
    assert not ray.is_initialized()
    assert not (results_dir / "nowhere").exists()
    with pytest.raises(ts.ConfigError, match="host:port"):
        ts.run(quadratic, space={"x": 1.0}, backend=RayBackend(address="127.0.0.1:http"), verbose=0, name="bad")


# -- 2. the backend in the spec; `tunesmith resume` of a Ray experiment ----------------------------------------------
def test_the_spec_records_a_ray_backends_plain_arguments_and_resume_builds_it_again():
    b = RayBackend(address="auto", num_cpus=2, bundles=[{"cpu": 1}], placement_strategy="SPREAD",
                   storage="file:///mnt/shared/ckpts", grace_period_s=2, trial_timeout_s=60, reuse_actors=False)
    record = json.loads(json.dumps(_run._backend_record(b)))  # as the store keeps it
    assert record["kind"] == "ray" and "not_recorded" not in record
    again = resume_arguments({"space": {}, "backend": record})["backend"]
    assert isinstance(again, RayBackend)
    for name in RayBackend.RECORDED:
        assert getattr(again, name) == getattr(b, name), name
    # the local backend (and a store written before backends were recorded): resume runs locally, as before
    assert _run._backend_record(ts.LocalBackend()) == {"kind": "local"}
    assert "backend" not in resume_arguments({"space": {}, "backend": {"kind": "local"}})
    assert "backend" not in resume_arguments({"space": {}})


def test_a_ray_backend_whose_arguments_may_hold_secrets_is_not_recorded_and_resume_says_how_to_resume_it():
    b = RayBackend(address="ray://user:pa55word@head:10001",
                   init_kwargs={"runtime_env": {"env_vars": {"API_TOKEN": "s3cr3t"}}})
    record = _run._backend_record(b)
    text = json.dumps(record)
    assert "s3cr3t" not in text and "pa55word" not in text
    assert record["not_recorded"] == ["address", "init_kwargs"]
    with pytest.raises(ts.ConfigError, match=r"address and init_kwargs.*resume=True, backend=tunesmith.RayBackend"):
        resume_arguments({"space": {}, "backend": record})
    with pytest.raises(ts.ConfigError, match=r"'SimulatedBackend'.*from Python"):
        resume_arguments({"space": {}, "backend": {"kind": "SimulatedBackend"}})


TRAIN = """
import os
import tunesmith as ts

def train(config):
    import ray
    ck = ts.get_checkpoint()
    start = ck.load() + 1 if ck else 0
    for i in range(start, 3):
        ts.report({"i": i, "in_ray": ray.is_initialized()}, checkpoint=ts.Checkpoint.from_state(i))
        marker = os.path.join(config["marks"], "failed")
        if not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("the first run dies after its first checkpoint")
"""


@pytest.mark.timeout(180)
def test_tunesmith_resume_of_a_ray_experiment_runs_on_ray_with_its_storage(tmp_path, results_dir):
    module = f"resumable_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{module}.py").write_text(TRAIN)
    (tmp_path / "marks").mkdir()
    bucket = tmp_path / "bucket"
    sys.path.insert(0, str(tmp_path))
    try:
        train = __import__(module).train
        first = ts.run(train, space={"marks": str(tmp_path / "marks")}, name="on-ray", verbose=0,
                       backend=RayBackend(num_cpus=1, storage=f"file://{bucket}"))
        assert first.trials[0].status is ts.TrialStatus.ERROR
        assert not ray.is_initialized()
        args = ["resume", "on-ray", f"{tmp_path / module}.py:train", "--restart-errored", "resume", "--verbose", "0"]
        # the storage the store names is data: resumed there only once the user confirms (no terminal here)
        refused = CliRunner().invoke(cli, args, catch_exceptions=False)
        assert refused.exit_code == 2, refused.output
        assert f"ran on a RayBackend with storage='file://{bucket}' (named in its store)" in refused.output
        assert "--trust-stored-fn" in refused.output and not ray.is_initialized()
        res = CliRunner().invoke(cli, [*args, "--trust-stored-fn"], catch_exceptions=False)
        assert res.exit_code == 0, res.output
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.startswith(module)]:
            del sys.modules[name]
    assert not ray.is_initialized()  # the resume's own Ray was stopped at its end
    result = ts.load(str(results_dir / "on-ray"))
    (t,) = result.trials
    assert t.status is ts.TrialStatus.TERMINATED, t.error
    hist = result.history(t.id)
    assert [r["i"] for r in hist] == [0, 1, 2]  # resumed from its checkpoint
    assert [r["in_ray"] for r in hist] == [True, True, True]  # the resumed iterations ran in a Ray actor too
    assert t.checkpoint.path.startswith(f"file://{bucket}/"), t.checkpoint.path  # and went to storage=
    assert not os.path.exists(os.path.join(t.path, "checkpoints"))


# -- 4. address=None: a local Ray of the run's own -------------------------------------------------------------------
@pytest.mark.timeout(120)
def test_address_none_starts_a_local_ray_even_where_another_is_named(monkeypatch, results_dir):
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{free_port()}")  # another Ray, as ray.init() would find it
    result = ts.run(quadratic, space={"x": ts.grid([1.0, 2.0])}, backend=RayBackend(num_cpus=1), verbose=0,
                    name="own-ray")
    assert sorted(t.last_result["loss"] for t in result.trials) == [1.0, 4.0]
    assert not ray.is_initialized()  # it was this run's own Ray, stopped at its end
