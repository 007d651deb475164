"""What the controller remembers of its trials: every unfinished one, and the finished ones only while the scheduler
reads them (``Scheduler.needs_finished_trials``). A finished trial otherwise leaves when it ends (the store has
it) and is counted by status, so the driver's memory follows the running trials rather than the trials so far."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from tunesmith.schedulers._base import reads_finished_trials
from tunesmith.trial import TrialStatus, TrialView

if TYPE_CHECKING:
    from tunesmith.schedulers._base import Scheduler


class MemoryHost(Protocol):
    """What forgetting a trial changes of the controller (``tunesmith._controller.Controller``)."""

    scheduler: Scheduler
    trials: dict[int, TrialView]
    _forgotten: dict[TrialStatus, int]
    _metric_seen: set[int]
    _ckpt_time: dict[int, float]
    _stop_reasons: dict[int, str]


def forget(ctl: MemoryHost, trial: TrialView) -> None:
    """A finished trial leaves the controller's memory, unless the scheduler reads finished trials: everything
    about it is in the store already (written before any decision), and nothing here acts on it again."""
    if reads_finished_trials(ctl.scheduler):
        return
    tid = trial.id
    ctl.trials.pop(tid, None)
    ctl._forgotten[trial.status] = ctl._forgotten.get(trial.status, 0) + 1
    ctl._metric_seen.discard(tid)
    ctl._ckpt_time.pop(tid, None)
    ctl._stop_reasons.pop(tid, None)
