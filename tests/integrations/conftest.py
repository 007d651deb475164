from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _in_a_temporary_folder(tmp_path, monkeypatch):
    """Frameworks write beside the caller (Transformers' ``output_dir``, the tests' own notes through
    ``TUNESMITH_ORIG_WORKING_DIR``): every bridge test runs in its own temporary folder, never the checkout."""
    monkeypatch.chdir(tmp_path)
    # Stable-Baselines3's logger makes a folder per learn() in the system's temporary folder unless told where
    monkeypatch.setenv("SB3_LOGDIR", str(tmp_path / "sb3-logs"))
