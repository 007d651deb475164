"""A real multi-node Ray on this machine for the tests (``ray.cluster_utils.Cluster``: a head and worker nodes, each
with its own raylet and object store).

Ray gives each node's raylet a fixed 30 s to register with the GCS while the node starts. On a loaded 2-core
machine (a shared CI runner) one can miss it, and the test module's fixture then fails before any test ran:
:func:`start_cluster` starts the cluster once more after ending every process of the half-started one. The
tests themselves are never retried."""

from __future__ import annotations

from typing import Any

STARTUP_TIMEOUT = "timed out during startup"  # Ray's message when a raylet did not register in time


def start_cluster(head_node_args: dict[str, Any], nodes: list[dict[str, Any]], *, attempts: int = 2) -> Any:
    """A started ``Cluster``: the head with ``head_node_args``, one worker node per entry of ``nodes``
    (``add_node``'s arguments), all registered; at most ``attempts`` tries when a node times out starting."""
    import psutil
    from ray.cluster_utils import Cluster

    for attempt in range(1, attempts + 1):
        before = {p.pid for p in psutil.Process().children(recursive=True)}
        cluster = Cluster(initialize_head=False)
        try:
            cluster.add_node(**head_node_args)
            for node in nodes:
                cluster.add_node(**node)
            cluster.wait_for_nodes()
            return cluster
        except Exception as e:
            cluster.shutdown()
            # a node whose start failed is not the cluster's: its processes are ended here
            for p in psutil.Process().children(recursive=True):
                if p.pid not in before:
                    try:
                        p.kill()
                    except psutil.NoSuchProcess:
                        pass
            if STARTUP_TIMEOUT not in str(e) or attempt == attempts:
                raise
    raise AssertionError("unreachable")
