"""A trial-side probe for tests of shared data (tunesmith.put/get) on every backend."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

import tunesmith as ts


def anon_kb() -> int:
    """This process's private anonymous memory (RssAnon), in kB: a copy of shared data would land here."""
    with open(f"/proc/{os.getpid()}/status") as f:
        return int(re.search(r"RssAnon:\s+(\d+)", f.read()).group(1))  # type: ignore[union-attr]


def report_reading(read: Callable[[], Any]) -> None:
    """In a trial: read shared data with ``read()``, touch every page, report the sum, the growth of private
    memory it cost and whether the array is writeable."""
    before = anon_kb()
    arr = read()
    total = float(arr.sum())
    ts.report({"sum": total, "anon_growth_kb": anon_kb() - before, "writeable": bool(arr.flags.writeable)})
