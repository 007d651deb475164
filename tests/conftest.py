from __future__ import annotations

import os
import signal
import subprocess

import pytest
from hypothesis import settings
from xdist_helpers import XDIST_GROUPS

# Property tests have no per-example deadline: a shared 2-core runner (and pytest-xdist's second worker beside
# them) can make one example slower than Hypothesis's 200 ms default, which fails a test for the machine's load.
settings.register_profile("tunesmith", deadline=None)
settings.load_profile("tunesmith")

# Every Ray that the tests start runs its workers (trial actors, rank actors) at the same priority as the rest:
# Ray's default is nice 15, and on a busy 2-core machine (a shared CI runner) a worker importing torch then gets
# a thirtieth of a core. Measured: the 2-node DDP test (tests/executors/test_ray_ranks.py) beside two CPU
# burners took 75 s for its trial at nice 15 and 5.3 s at nice 0 (3.4 s on a quiet machine); a CI run hit its
# 180 s timeout. The raylets read this when they start (docs/ray.md, "A busy machine").
os.environ.setdefault("RAY_worker_niceness", "0")

# The tests that stand for a user's Ctrl-C send this process a real SIGINT. A suite started in the background of a
# shell without job control (`make test &`, `nohup ... &`) has SIGINT ignored from its start, and Python then
# installs no KeyboardInterrupt for it: those tests would see no Ctrl-C (eleven failed so). The suite is a
# foreground program whatever started it: Python's own handler.
signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _results_dir(tmp_path, monkeypatch):
    """Every test writes its experiments under its own temporary folder."""
    path = tmp_path / "results"
    monkeypatch.setenv("TUNESMITH_RESULTS", str(path))
    return path


@pytest.fixture
def results_dir(_results_dir):
    return _results_dir


@pytest.fixture(autouse=True)
def _signing_key(tmp_path_factory, monkeypatch):
    """Checkpoints are signed with a key of the test session (never the user's ~/.config/tunesmith/key)."""
    monkeypatch.delenv("TUNESMITH_KEY", raising=False)
    path = tmp_path_factory.getbasetemp() / "tunesmith-key"
    monkeypatch.setenv("TUNESMITH_KEY_FILE", str(path))
    return path


@pytest.fixture
def tiny_disk(tmp_path):
    """A 3 MB tmpfs: room for the store and two 1 MB checkpoints (mounting needs root, as in CI)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


# `make test` runs the suite on two pytest-xdist workers (`-n 2 --dist loadgroup`): the groups are in xdist_helpers.
_GROUP_OF = {path: group for group, paths in XDIST_GROUPS.items() for path in paths}


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the marks
def pytest_collection_modifyitems(config, items):
    root = str(config.rootpath)
    for item in items:
        path = os.path.relpath(str(item.path), root)
        item.add_marker(pytest.mark.xdist_group(_GROUP_OF.get(path, path)))
