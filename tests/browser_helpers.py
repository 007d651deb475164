"""Debian's headless Chromium for the browser tests (``make test`` installs it; Playwright's own browser
download is not used)."""

from __future__ import annotations

import os
from typing import Any

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


def watched_page(browser: Any, problems: list[str], requests: list[str] | None = None, **options: Any) -> Any:
    """A new page of a Playwright ``browser`` that adds its console errors, page errors and dialogs (dismissed)
    to ``problems``, loads ``file://`` URLs only (aborting the rest: a page must not need the network) and adds
    every URL it asks for to ``requests``."""
    page = browser.new_page(**options)
    page.on("console", lambda m: problems.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))

    def route(r: Any) -> None:
        if requests is not None:
            requests.append(r.request.url)
        if r.request.url.startswith("file://"):
            r.continue_()
        else:
            r.abort()

    page.route("**/*", route)
    return page
