"""The test suite's pytest-xdist groups (applied by tests/conftest.py)."""

from __future__ import annotations

# `make test` runs the suite on two pytest-xdist workers (`-n 2 --dist loadgroup`). Each test file stays whole on one
# worker (its module fixtures are started once), and the files that must not run beside each other share a group:
# - every test that starts a Ray: a `ray.cluster_utils.Cluster` writes and removes the machine's
#   /tmp/ray/ray_current_cluster, and two Rays on two cores are slower than one after the other;
# - the boosting bridges: a test asserts that no `tunesmith_booster_*` folder is left in the machine's /tmp, which
#   the other's checkpoints make for a moment.
XDIST_GROUPS = {
    "ray": ("tests/executors/test_ray.py", "tests/executors/test_ray_algorithms.py",
            "tests/executors/test_ray_client.py", "tests/executors/test_ray_cluster.py",
            "tests/executors/test_ray_connect.py", "tests/executors/test_ray_findings.py",
            "tests/executors/test_ray_ranks.py", "tests/executors/test_ray_refused.py",
            "tests/executors/test_ray_untrusted_folder.py", "tests/dashboard/test_ray_placement.py",
            "tests/conformance/test_executor_conformance.py"),
    "boosting": ("tests/integrations/test_xgboost.py", "tests/integrations/test_lightgbm.py"),
}
