"""Shared by the conformance suites: the guard that makes files, sockets and clocks raise."""

from __future__ import annotations

import builtins
import io
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest


@pytest.fixture
def no_io(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Files, sockets and clocks raise while the test runs (a guard: nothing here is mocked). Calls are also
    recorded, in case a broad ``except`` swallows the error."""
    calls: list[str] = []

    def refuse(name: str) -> Callable[..., Any]:
        def refused(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            raise AssertionError(f"a searcher or scheduler called {name}")
        return refused

    for target, attr in ((builtins, "open"), (io, "open"), (os, "open"), (socket, "socket"),
                         (socket, "create_connection"), (time, "time"), (time, "time_ns"), (time, "monotonic"),
                         (time, "perf_counter")):
        monkeypatch.setattr(target, attr, refuse(f"{target.__name__}.{attr}"))
    return calls
