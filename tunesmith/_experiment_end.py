"""The experiment's end, recorded: trials still paused or waiting to start are closed (not after fail_fast or a
fatal error: a resume runs them), and the store's meta gets the status the run ended with (and when), then the
dashboard commands left are refused; a finished experiment's results are indexed for the readers."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

from tunesmith.dashboard._commands import end_commands
from tunesmith.trial import TrialStatus, TrialView

if TYPE_CHECKING:
    from tunesmith._exploit import UndoHost
    from tunesmith.dashboard._commands import CommandInbox
    from tunesmith.executors._base import Executor, Launch
    from tunesmith.store.sqlite import Store

log = logging.getLogger("tunesmith")


class EndHost(Protocol):
    """What the end reads and changes of the controller (``tunesmith._controller.Controller``)."""

    store: Store
    trials: dict[int, TrialView]
    _paused: set[int]
    _pending_launch: list[Launch]
    _inbox: CommandInbox
    executor: Executor
    # what undoing an exploit changes (``_exploit.UndoHost``)
    ledger: Any
    _ckpt_time: dict[int, float]
    _undone_generations: list[tuple[int, int, int]]

    def _write_pending(self, db: Any) -> None: ...

    def _write_generations(self, db: Any) -> None: ...


def close_paused(ctl: EndHost) -> None:
    """Trials still paused when the experiment ends are terminated (their checkpoints stay)."""
    if not ctl._paused and not ctl._pending_launch:
        return
    with ctl.store.transaction() as db:
        for launch in ctl._pending_launch:
            ctl._paused.add(launch.trial_id)
        ctl._pending_launch.clear()
        for tid in sorted(ctl._paused):
            trial = ctl.trials[tid]
            trial.status = TrialStatus.TERMINATED
            trial.end_time = ctl.executor.timestamp()  # on the results' clock, as the controller's ends (_replay)
            # a PBT clone that never ran its new config ends as it was before the exploit
            ctl.store.update_trial(db, tid, **undo_if_untrained(ctl, trial), status=trial.status.value,
                                   end_time=trial.end_time, start_time=trial.start_time)
        ctl._write_generations(db)
    ctl._paused.clear()


def undo_if_untrained(ctl: UndoHost, trial: TrialView) -> dict[str, Any]:
    """A trial that ends before the config a PBT exploit gave it reported anything ends as it was before the exploit
    (``_exploit.undo_untrained_exploit``); the trial row's changed fields, {} for every other trial (never
    exploited: ``_exploit`` is not even imported)."""
    if trial.parent_id is None or trial.last_result is not None:
        return {}
    from tunesmith._exploit import undo_untrained_exploit  # PBT's only

    return undo_untrained_exploit(ctl, trial)


def set_status(ctl: EndHost, status: str) -> None:
    """Record how the experiment ended ("finished", "failed", "interrupted") and when, with whatever the loop had
    not written yet; once finished, index the results for the readers."""
    try:
        with ctl.store.transaction() as db:
            ctl._write_pending(db)
            ctl.store.set_meta(db, "status", status)
            ctl.store.set_meta(db, "ended", time.time())
            # this driver's end among the events: a resume's time_budget_s counts the time it ran to here
            # (Store.time_spent), not only to its last stored result (a stopped trial's last report is not stored)
            ctl.store.log_event(db, "end", None, {"status": status})
    except Exception:  # noqa: BLE001
        log.exception("could not record the experiment's status")
        return
    # after the status: a command the page queued while it still saw the run going is in the folder by now, or
    # the page sees the end once it has written it and takes it back (dashboard._app.api_control)
    end_commands(ctl)
    if status == "finished":
        ctl.store.index_results()  # after everything is committed; readers scan without it
