"""Debian's headless Chromium for the browser tests (``make test`` installs it; Playwright's own browser
download is not used)."""

from __future__ import annotations

import os

import pytest

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]


def require_chromium() -> None:
    """Skip without Chromium, except in CI, where the browser tests must run."""
    if not os.path.exists(CHROMIUM):
        message = f"{CHROMIUM} missing: apt-get install -y chromium (Debian's package)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
