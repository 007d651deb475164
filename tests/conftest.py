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


@pytest.fixture(autouse=True)
def _signing_key(tmp_path_factory, monkeypatch):
    """Checkpoints are signed with a key of the test session (never the user's ~/.config/tunesmith/key)."""
    monkeypatch.delenv("TUNESMITH_KEY", raising=False)
    path = tmp_path_factory.getbasetemp() / "tunesmith-key"
    monkeypatch.setenv("TUNESMITH_KEY_FILE", str(path))
    return path
