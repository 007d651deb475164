from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _results_dir(tmp_path, monkeypatch):
    """Every test writes its experiments under its own temporary folder."""
    path = tmp_path / "results"
    monkeypatch.setenv("TUNESMITH_RESULTS", str(path))
    return path


@pytest.fixture
def results_dir(_results_dir):
    return _results_dir


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) counts as dead
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
