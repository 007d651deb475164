from __future__ import annotations

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
