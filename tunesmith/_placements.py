"""Where each trial runs, logged: executors that place trials on machines (Ray: node, address, pid) say so through
an optional ``placements()``; the driver logs a ``placement`` event when a trial is seen somewhere new, and the
dashboard shows it."""

from __future__ import annotations

from typing import Any

from tunesmith.executors._base import Executor
from tunesmith.store.sqlite import Store


def record_placements(executor: Executor, store: Store, placed: dict[int, Any]) -> None:
    """A ``placement`` event per trial started somewhere new (Ray: node, address, pid), for the dashboard.
    ``placed``: trial -> where it was last seen running, kept by the caller and updated here."""
    placements = getattr(executor, "placements", None)
    if placements is None:
        return
    new = [(tid, where) for tid, where in placements().items() if placed.get(tid) != where]
    if not new:
        return
    with store.transaction() as db:
        for tid, where in new:
            store.log_event(db, "placement", tid, where)
            placed[tid] = where
