"""Ray node placement on the dashboard: a real two-node Ray cluster (``ray.cluster_utils.Cluster``, a head
without CPUs and two worker nodes of 1 CPU each), a real run on it; each trial's node and actor pid reach the
store as a ``placement`` event and the dashboard's trial table, trial page and per-node view."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest

import tunesmith as ts
from tunesmith.dashboard import make_app

ray = pytest.importorskip("ray")
from ray_helpers import start_cluster  # noqa: E402

from tunesmith.executors.ray import RayBackend  # noqa: E402

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def cluster() -> Any:
    c = start_cluster({"num_cpus": 0, "object_store_memory": 80 * 2**20, "include_dashboard": False},
                      [{"num_cpus": 1, "object_store_memory": 80 * 2**20}] * 2)
    ray.init(address=c.address, log_to_driver=False)
    yield c
    ray.shutdown()
    c.shutdown()


def where(config: dict[str, Any]) -> None:
    import ray as _ray

    for i in range(3):
        time.sleep(0.1)  # both trials run at once: one per node
        ts.report({"loss": config["x"] + i, "node": _ray.get_runtime_context().get_node_id(), "pid": os.getpid()})


def _get(app: Any, path: str) -> Any:
    import io

    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": "", "HTTP_HOST": "127.0.0.1:8788",
               "wsgi.input": io.BytesIO(b""), "CONTENT_LENGTH": "0", "wsgi.url_scheme": "http"}
    got: dict[str, Any] = {}
    body = b"".join(app(environ, lambda status, headers: got.update(status=int(status.split()[0]))))
    assert got["status"] == 200, body
    return json.loads(body)


def test_each_trials_node_and_pid_reach_the_table_the_trial_page_and_the_node_view(cluster: Any,
                                                                                  results_dir: Any) -> None:
    workers = {n.node_id for n in cluster.worker_nodes}
    result = ts.run(where, space={"x": ts.grid([1.0, 2.0])}, metric="loss", mode="min", backend=RayBackend(),
                    verbose=0, name="placed")
    assert all(t.status is ts.TrialStatus.TERMINATED for t in result.trials), [t.error for t in result.trials]
    ran_on = {t.id: (t.last_result["node"], t.last_result["pid"]) for t in result.trials}
    assert {node for node, _pid in ran_on.values()} == workers  # one trial per worker node
    app = make_app(str(results_dir))
    rows = _get(app, "/api/e/placed/trials")["rows"]
    assert {r["id"]: (r["placement"]["node"], r["placement"]["pid"]) for r in rows} == ran_on
    assert all(r["placement"]["address"] for r in rows)  # the node's IP, from Ray
    for tid, (node, pid) in ran_on.items():
        trial = _get(app, f"/api/e/placed/t/{tid}")
        assert (trial["placement"]["node"], trial["placement"]["pid"]) == (node, pid)
        assert any(e["kind"] == "placement" and e["node"] == node for e in trial["events"])
    nodes = _get(app, "/api/e/placed/events")["nodes"]
    assert {n["node"]: n["trials"] for n in nodes} == {node: [tid] for tid, (node, _pid) in ran_on.items()}
    assert all(n["counts"] == {"TERMINATED": 1} for n in nodes)


def test_the_local_backend_records_no_placement(results_dir: Any) -> None:
    def train(config: dict[str, Any]) -> None:
        ts.report({"loss": config["x"]})

    ts.run(train, space={"x": ts.grid([1.0, 2.0])}, metric="loss", mode="min", verbose=0, name="local")
    app = make_app(str(results_dir))
    assert all(r["placement"] is None for r in _get(app, "/api/e/local/trials")["rows"])
    assert _get(app, "/api/e/local/events")["nodes"] == []
