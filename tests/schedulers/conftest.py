"""The ``Harness`` fixture: a tiny stand-in for the controller (tests/scheduler_harness.py)."""

from __future__ import annotations

import pytest
from scheduler_harness import Harness


@pytest.fixture(scope="session", name="Harness")
def harness_class() -> type[Harness]:
    """The ``Harness`` class itself (session scope, so hypothesis tests may use it)."""
    return Harness
