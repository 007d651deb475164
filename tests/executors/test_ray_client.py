"""The Ray executor through Ray Client (``RayBackend(address="ray://host:port")``): the driver runs outside
the cluster, on no node of it. A real Ray head with its client server is started by
``ray.cluster_utils.Cluster`` (which removes every process it started and its address file at the end, so
no later ``ray.init`` finds it).

Through Ray Client the driver has no node, so every trial writes its checkpoints in a node-local folder
and sends them to the driver's experiment folder, and a retried trial gets its checkpoint back from there.
"""

from __future__ import annotations

import os

import pytest
from proc_helpers import free_port

import tunesmith as ts
from tunesmith.checkpoint import Checkpoint, verify

ray = pytest.importorskip("ray")
from ray._private import ray_constants  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from tunesmith.executors.ray import RayBackend  # noqa: E402

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def client_address():
    port = free_port()
    # The client server forks a process per client connection while its gRPC threads run; with gRPC's fork
    # handlers on, that child crashed now and then (a segfault in gRPC's event_engine thread, in dmesg;
    # "Starting Ray client server failed" here, about 1 run in 5). The child execs at once and needs none.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("GRPC_ENABLE_FORK_SUPPORT", "false")
        c = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 2, "object_store_memory": 80 * 2**20, "include_dashboard": False,
            "ray_client_server_port": port})
    c.wait_for_nodes()
    yield f"ray://127.0.0.1:{port}"
    if ray.is_initialized():
        ray.shutdown()
    # The client server starts a "specific server" process per client connection; the Cluster does not
    # know it, and it lives on for about a minute after the driver disconnects. End those too.
    import psutil

    proxy = c.head_node.all_processes[ray_constants.PROCESS_TYPE_RAY_CLIENT_SERVER][0].process.pid
    spawned = psutil.Process(proxy).children(recursive=True)
    c.shutdown()
    for p in spawned:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(spawned, timeout=10)


def fails_once(config):
    """Reports 4 iterations with a checkpoint each; the first attempt raises after iteration 2 (a marker file
    in a folder the test owns says whether it already did)."""
    ck = ts.get_checkpoint()
    start = ck.load()["i"] if ck else 0
    for i in range(start, 4):
        ts.report({"i": i + 1, "start": start, "dir": ts.get_trial_dir()},
                  checkpoint=Checkpoint.from_state({"i": i + 1, "x": config["x"]}))
        marker = os.path.join(config["marks"], f"failed-{config['x']}")
        if i + 1 == 2 and not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("first attempt dies after iteration 2")


def test_through_ray_client_checkpoints_reach_the_driver_and_a_retry_restores_from_them(
        client_address, results_dir, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    backend = RayBackend(address=client_address)
    result = ts.run(fails_once, space={"x": ts.grid([1, 2]), "marks": str(marks)}, max_failures=1,
                    backend=backend, verbose=0, name="client")
    from ray.util.client import ray as client_ray

    assert not client_ray.is_connected()  # run() closed the client connection it opened
    assert sorted(os.listdir(marks)) == ["failed-1", "failed-2"]  # each trial failed once
    for t in result.trials:
        assert t.status is ts.TrialStatus.TERMINATED, t.error
        assert t.num_failures == 1
        hist = result.history(t.id)
        assert [r["i"] for r in hist] == [1, 2, 3, 4]  # no gap, no duplicate
        # the retry started from the checkpoint of iteration 2, which came back from the driver's folder
        assert [r["start"] for r in hist] == [0, 0, 2, 2]
        # the trial wrote in a node-local folder, not in the driver's experiment folder...
        assert {r["dir"] for r in hist} != {t.path}
        # ...and every checkpoint arrived in the driver's folder, whole
        assert os.path.dirname(t.checkpoint.path) == os.path.join(t.path, "checkpoints")
        assert verify(t.checkpoint.path)["iteration"] == 4
        assert t.checkpoint.load() == {"i": 4, "x": t.config["x"]}
