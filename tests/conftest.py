from __future__ import annotations

import os
import signal
import subprocess

import pytest

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
