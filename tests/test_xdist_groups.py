"""The suite's pytest-xdist groups (tests/xdist_helpers.py): `make test` runs two workers, and the files that start
a Ray must share the "ray" group (two at once on one machine share /tmp/ray/ray_current_cluster, which a Cluster's
shutdown removes whoever wrote it)."""

from __future__ import annotations

import os
import re

from xdist_helpers import XDIST_GROUPS

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
# what starts a Ray in a test: ray.init, a cluster_utils Cluster (start_cluster), a run given a RayBackend
STARTS_RAY = re.compile(r"ray\.init\(|start_cluster\(|Cluster\(|backend=RayBackend\(")


def _test_files():
    for folder, _dirs, files in os.walk(TESTS):
        for name in files:
            if name.startswith("test_") and name.endswith(".py"):
                yield os.path.relpath(os.path.join(folder, name), ROOT)


def test_every_grouped_file_exists():
    """A file renamed or removed would drop out of its group without a word."""
    missing = [p for paths in XDIST_GROUPS.values() for p in paths if not os.path.isfile(os.path.join(ROOT, p))]
    assert missing == []


def test_every_file_that_starts_a_ray_is_in_the_ray_group():
    starting = []
    for path in _test_files():
        with open(os.path.join(ROOT, path)) as f:
            if STARTS_RAY.search(f.read()):
                starting.append(path)
    assert "tests/executors/test_ray_ranks.py" in starting  # the pattern finds what it is for
    assert sorted(set(starting) - set(XDIST_GROUPS["ray"])) == []


def test_each_test_carries_its_files_group(request):
    """tests/conftest.py marks every test with its file's group (the file itself where it is in none), which
    pytest-xdist's loadgroup reads: a test without it would be sent to either worker on its own."""
    marks = [m.args[0] for m in request.node.iter_markers("xdist_group")]
    assert marks == ["tests/test_xdist_groups.py"]
