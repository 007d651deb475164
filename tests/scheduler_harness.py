"""A tiny stand-in for the controller: drives a scheduler through (trial, iteration, value) events.

Used by tests/schedulers (as the session fixture ``Harness``, in their conftest) and by the scheduler
conformance suite.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tunesmith.schedulers._base import Continue, Decision, Exploit, Pause, Scheduler, SchedulerView, Stop
from tunesmith.trial import ITERATION, TIME_TOTAL, Result, TrialStatus, TrialView

METRIC = "loss"


class Harness:
    """Feeds hand-made results to a scheduler and applies its decisions the way the controller will.

    ``report`` builds a ``Result`` (metric ``loss`` unless told otherwise, ``training_iteration``,
    ``time_total_s = iteration * seconds_per_iter``), updates the ``TrialView`` and calls
    ``on_result``. With ``apply=True`` (default) decisions take effect: STOP -> TERMINATED and
    ``on_complete``; Pause -> PAUSED (new resources kept for ``resume``); Exploit -> the trial takes the
    new config and restarts at the source's checkpoint iteration.
    """

    def __init__(self, scheduler: Scheduler, mode: str = "min", metric: str = METRIC,
                 total_resources: dict[str, float] | None = None, seconds_per_iter: float = 1.0) -> None:
        self.scheduler = scheduler
        self.metric = metric
        self.seconds_per_iter = seconds_per_iter
        self.view = SchedulerView(trials={}, total_resources=dict(total_resources or {}))
        self.pending_resources: dict[int, dict[str, float]] = {}
        self.log: list[tuple[int, int, Decision]] = []
        scheduler.setup(metric, mode)

    # -- trials

    def add(self, trial_id: int, config: dict[str, Any] | None = None,
            resources: dict[str, float] | None = None) -> TrialView:
        trial = TrialView(id=trial_id, config=dict(config or {}), resources=dict(resources or {"cpu": 1}))
        self.view.trials[trial_id] = trial
        self.scheduler.on_trial_add(trial, self.view)
        return trial

    def trial(self, trial_id: int) -> TrialView:
        return self.view.trials[trial_id]

    def report(self, trial_id: int, iteration: int, value: float, *, apply: bool = True,
               checkpoint: bool = False, extra: dict[str, Any] | None = None,
               now: float | None = None) -> Decision:
        if trial_id not in self.view.trials:
            self.add(trial_id)
        if now is not None:
            self.view.now = now
        trial = self.view.trials[trial_id]
        metrics = {self.metric: value, ITERATION: iteration, TIME_TOTAL: iteration * self.seconds_per_iter}
        metrics.update(extra or {})
        ckpt = f"ckpt/{trial_id}/{iteration}" if checkpoint else None
        result = Result(trial_id=trial_id, iteration=iteration, metrics=metrics, checkpoint_path=ckpt)
        if not trial.status.is_finished:
            trial.status = TrialStatus.RUNNING
        trial.iteration = iteration
        trial.last_result = result
        if ckpt:
            trial.checkpoint_path, trial.checkpoint_iteration = ckpt, iteration
        decision = self.scheduler.on_result(trial, result, self.view)
        self.log.append((trial_id, iteration, decision))
        if apply:
            self.apply(trial, decision)
        return decision

    def run(self, events: Iterable[tuple[int, int, float]], **kwargs: Any) -> list[Decision]:
        """Report each ``(trial, iteration, value)`` in order; returns the decisions."""
        return [self.report(t, i, v, **kwargs) for t, i, v in events]

    def apply(self, trial: TrialView, decision: Decision) -> None:
        if isinstance(decision, Continue) or trial.status.is_finished:
            return
        if isinstance(decision, Stop):
            self.end(trial.id)
        elif isinstance(decision, Pause):
            trial.status = TrialStatus.PAUSED
            if decision.resources is not None:
                self.pending_resources[trial.id] = dict(decision.resources)
        elif isinstance(decision, Exploit):
            trial.config = dict(decision.config)
            trial.parent_id, trial.parent_iteration = decision.source_trial, decision.source_iteration
            trial.checkpoint_path = decision.source_checkpoint
            trial.checkpoint_iteration = trial.iteration = decision.source_iteration or 0
            trial.status = TrialStatus.PAUSED if decision.pause else TrialStatus.PENDING

    def end(self, trial_id: int, status: TrialStatus = TrialStatus.TERMINATED) -> None:
        """The trial ended (returned, was stopped or failed): mark it and call ``on_complete``."""
        trial = self.view.trials[trial_id]
        trial.status = status
        self.scheduler.on_complete(trial, trial.last_result, self.view)

    def resume(self, trial_id: int) -> None:
        """The controller resumed a paused trial (with the resources its Pause asked for)."""
        trial = self.view.trials[trial_id]
        assert trial.status == TrialStatus.PAUSED, trial.status
        trial.status = TrialStatus.RUNNING
        if trial_id in self.pending_resources:
            trial.resources = self.pending_resources.pop(trial_id)

    def choose_all(self) -> list[int]:
        """Call ``choose_trial_to_run`` until it returns None, resuming each trial it names."""
        chosen = []
        while (trial_id := self.scheduler.choose_trial_to_run(self.view)) is not None:
            assert trial_id not in chosen, f"{trial_id} offered twice"
            chosen.append(trial_id)
            self.resume(trial_id)
        return chosen
