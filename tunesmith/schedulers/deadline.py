"""``Deadline`` (after HyperSched: Liaw et al., "HyperSched: Dynamic Resource Reallocation for Model
Development on a Deadline", SoCC 2019): a scheduler that moves resources between trials so that the best
reach the deadline, built on the resource-changing machinery of ``schedulers/resource_changing.py`` (the
wrapper that forwards every hook, ``Pause(resources=new)`` and the queue of trials paused for new shares).
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from tunesmith._errors import ConfigError
from tunesmith._objective import Objective
from tunesmith.schedulers._base import CONTINUE, STOP, Continue, Decision, DecisionPlan, Pause, Scheduler, SchedulerView
from tunesmith.schedulers._milestones import _check_number, _rank_key
from tunesmith.schedulers.asha import ASHA
from tunesmith.schedulers.resource_changing import _normalized, _pop_paused, _Wrapper
from tunesmith.trial import TIME_TOTAL, Result, TrialStatus, TrialView

# Deadline's default inner scheduler: ASHA whose rungs keep growing (1, 3, 9, ...) with no practical
# max_t: under a deadline the budget is time, and the deadline, not max_t, ends training.
_DEFAULT_MAX_T = 10**9


class Deadline(_Wrapper):
    """Deadline-aware scheduling after HyperSched: explore first, then focus the resources on the best.

    Before ``deadline_s * (1 - exploit_fraction)`` seconds (``view.now``) the wrapped scheduler (by
    default an ASHA with growing rungs 1, 3, 9, ... and no practical ``max_t``) decides alone. From
    then on (the *exploit phase*), and also as soon as a trial reports that it could not reach its
    next decision point before the deadline at its current speed (``time_total_s`` per iteration):

    * no new trials: ``accepting_new_trials(view)`` is ``False`` (it is also ``False`` earlier when
      the time left is shorter than a new trial needs to reach its first rung, as estimated from the
      trials seen so far);
    * at each result whose wrapped decision is ``CONTINUE``, the live, non-paused trials are ranked
      (rungs passed in the wrapped ASHA first, then the latest metric; NaN worst; ties to the lower
      id). A trial outside the best ``keep`` is paused with ``Pause(resources=share)``; a trial among
      them whose resources differ from its share is paused with ``Pause(resources=share)`` as soon as
      that share fits into what the running trials leave free; it is offered back first by
      ``choose_trial_to_run``.
    * ``share`` is the trial's original request times the largest whole number ``m`` such that
      ``keep`` such shares fit into ``view.total_resources`` (a GPU amount above 1 must be whole).
    * when a kept trial ends, ``choose_trial_to_run`` resumes the best paused one in its place.

    From ``deadline_s`` on every result is answered ``STOP``. Decisions of the wrapped scheduler other
    than ``CONTINUE`` (its rung stops, ``max_t``, pauses, exploits) always pass through.

    While exploring, the wrapped scheduler's ``decision_plan`` is the trial's: a trial past a rung whose cutoff it
    beats goes on without waiting for the driver, as under a bare ASHA. A plan given then still holds when the
    exploit phase begins: a promised stop is a stop, and a trial gone on past a promised ``CONTINUE`` that this
    wrapper pauses (or stops at ``deadline_s``) pauses at its next step, as at any result it did not wait at. From
    the exploit phase on no plan is given: the trials wait at their decision points again.

    Args:
        deadline_s: the time budget in seconds, on the controller's clock (``view.now``).
        scheduler: the wrapped scheduler; ``None`` for the default ASHA.
        metric: the metric to rank by; defaults to the experiment's.
        mode: ``"min"`` or ``"max"``; defaults to the experiment's.
        exploit_fraction: the last share of the budget spent exploiting, in [0, 1].
        keep: how many of the best trials keep training in the exploit phase.
    """

    def __init__(self, deadline_s: float, scheduler: Scheduler | None = None, metric: str | None = None,
                 mode: str | None = None, exploit_fraction: float = 0.5, keep: int = 1) -> None:
        self.deadline_s = deadline_s
        self.scheduler = scheduler
        self.metric = metric
        self.mode = mode
        self.exploit_fraction = exploit_fraction
        self.keep = keep

    def setup(self, metric: str | list[str] | None, mode: str | list[str] | None) -> None:
        """Validate the arguments, reset state and set up the wrapped scheduler.

        Raises:
            ConfigError: naming the bad argument, or from the wrapped scheduler.
        """
        name = "Deadline"
        self._objective = Objective.for_scheduler(name, self.metric, self.mode, metric, mode)
        self._deadline = _check_number(name, "deadline_s", self.deadline_s, low=0, low_open=True)
        fraction = _check_number(name, "exploit_fraction", self.exploit_fraction, low=0, high=1)
        self._keep = int(_check_number(name, "keep", self.keep, low=1, integer=True))
        if self.scheduler is not None and not isinstance(self.scheduler, Scheduler):
            raise ConfigError(f"scheduler: Deadline expects a tunesmith Scheduler or None; got {self.scheduler!r}")
        self._inner = self.scheduler if self.scheduler is not None else ASHA(max_t=_DEFAULT_MAX_T)
        self._inner.setup(self._objective.metric, self._objective.mode)
        self._exploit_from = self._deadline * (1.0 - fraction)
        self._exploiting = False
        self._base: dict[int, dict[str, float]] = {}  # each trial's original request
        self._scores: dict[int, float] = {}  # latest score per live trial
        self._speed: dict[int, float] = {}  # seconds per iteration, latest estimate per trial
        self._ended: set[int] = set()
        self._weak: dict[int, tuple[Any, ...]] = {}  # paused as weak -> rank key when paused
        self._resize: dict[int, dict[str, float]] = {}  # kept trials paused to get their share

    # -- hooks

    def compared_metrics(self) -> tuple[str, ...]:
        """Its own metric (it ranks trials by it) and the wrapped scheduler's, each once."""
        return tuple(dict.fromkeys((*self._objective.names, *self._inner.compared_metrics())))

    def on_trial_add(self, trial: TrialView, view: SchedulerView) -> None:
        self._base.setdefault(trial.id, dict(trial.resources))
        self._inner.on_trial_add(trial, view)

    def on_result(self, trial: TrialView, result: Result, view: SchedulerView) -> Decision:
        if trial.id in self._ended:
            return STOP
        self._base.setdefault(trial.id, dict(trial.resources))
        decision = self._inner.on_result(trial, result, view)
        score = self._objective.reported_score(result)
        if score is not None:  # without the metric its latest score stands
            self._scores[trial.id] = score
        elapsed = result.get(TIME_TOTAL)
        if isinstance(elapsed, numbers.Real) and result.iteration > 0 and math.isfinite(float(elapsed)):
            self._speed[trial.id] = float(elapsed) / result.iteration
        self._weak.pop(trial.id, None)  # reporting, so running again
        self._resize.pop(trial.id, None)
        if view.now >= self._deadline:
            return STOP
        if not isinstance(decision, Continue):
            return decision
        if not self._exploiting and (view.now >= self._exploit_from
                                     or self._short_of_time(trial, result.iteration, view)):
            self._exploiting = True
        if not self._exploiting:
            return CONTINUE
        share = self._share(trial.id, trial, view)
        if trial.id not in self._kept(view):
            self._weak[trial.id] = self._key(trial.id)
            return Pause(resources=share)
        if share is not None and _normalized(share) != _normalized(trial.resources) \
                and self._fits(trial, share, view):
            self._resize[trial.id] = share
            return Pause(resources=share)
        return CONTINUE

    def on_complete(self, trial: TrialView, result: Result | None, view: SchedulerView) -> None:
        self._ended.add(trial.id)
        self._scores.pop(trial.id, None)
        self._weak.pop(trial.id, None)
        self._resize.pop(trial.id, None)
        self._inner.on_complete(trial, result, view)

    def decision_plan(self, trial: TrialView) -> DecisionPlan | None:
        """The wrapped scheduler's plan while exploring (``_Wrapper.decision_plan``); none from the exploit phase
        on, where any result may pause its trial: it waits at its decision points, so a pause lands there."""
        return None if self._exploiting else super().decision_plan(trial)

    def choose_trial_to_run(self, view: SchedulerView) -> int | None:
        """First a kept trial paused for its share, then (exploit phase) the best weak paused trial if
        fewer than ``keep`` trials are active, then the wrapped scheduler's choice; ``None`` after the
        deadline."""
        if view.now >= self._deadline:
            return None
        picked = _pop_paused(self._resize, view)
        if picked is not None:
            return picked
        if self._exploiting and self._weak and self._active(view) < self._keep:
            for trial_id in sorted(self._weak, key=self._weak.__getitem__):
                trial = view.trials.get(trial_id)
                if trial is not None and trial.status == TrialStatus.PAUSED:
                    del self._weak[trial_id]
                    return trial_id
        return self._inner.choose_trial_to_run(view)

    def accepting_new_trials(self, view: SchedulerView) -> bool:
        """Whether the controller may start a trial from the searcher now.

        ``False`` from the exploit phase on, and earlier when the time left is shorter than a new
        trial needs to reach its first decision point (first rung), judged from the average speed
        of the trials seen so far. Also ``False`` if the wrapped scheduler says so.
        """
        remaining = self._deadline - view.now
        if self._exploiting or view.now >= self._exploit_from or remaining <= 0:
            return False
        if self._speed:
            first = getattr(self._inner, "grace_period", 1)
            first = float(first) if isinstance(first, numbers.Real) else 1.0
            if remaining < first * sum(self._speed.values()) / len(self._speed):
                return False
        return super().accepting_new_trials(view)

    # -- internals

    def _key(self, trial_id: int) -> tuple[Any, ...]:
        """Rank key, best first: more rungs passed, then better latest score, then lower id."""
        rungs = getattr(self._inner, "rungs_passed", None)
        passed = rungs(trial_id) if rungs is not None else 0
        return (-passed, *_rank_key(self._scores.get(trial_id, math.nan), trial_id))

    def _kept(self, view: SchedulerView) -> set[int]:
        """The best ``keep`` of the live trials that are not paused as weak."""
        live = [t for t in self._scores
                if t not in self._weak and t not in self._ended
                and (t not in view.trials or not view.trials[t].status.is_finished)]
        live.sort(key=self._key)
        return set(live[:self._keep])

    def _active(self, view: SchedulerView) -> int:
        """Trials that hold or will soon hold resources as kept trials."""
        count = 0
        for trial_id, trial in view.trials.items():
            if trial_id in self._ended or trial_id in self._weak:
                continue
            if trial.status in (TrialStatus.RUNNING, TrialStatus.PENDING) or trial_id in self._resize:
                count += 1
        return count

    def _short_of_time(self, trial: TrialView, iteration: int, view: SchedulerView) -> bool:
        """Whether ``trial`` could not reach its next decision point before the deadline."""
        speed = self._speed.get(trial.id)
        target = self._inner.decision_iteration(trial)
        if speed is None or target is None:
            return False
        return view.now + (target - max(trial.iteration, iteration)) * speed > self._deadline

    def _share(self, trial_id: int, trial: TrialView, view: SchedulerView) -> dict[str, float] | None:
        """The trial's original request scaled to a ``1/keep`` part of the total, or None."""
        base = {k: float(v) for k, v in (self._base.get(trial_id) or trial.resources).items()}
        total = view.total_resources
        needed = {k: v for k, v in base.items() if v > 0}
        if not needed or not total:
            return None
        most = min(math.floor(float(total.get(k, 0.0)) / (self._keep * v) + 1e-9) for k, v in needed.items())
        for m in range(most, 0, -1):
            gpu = base.get("gpu", 0.0) * m
            if gpu <= 1 + 1e-9 or abs(gpu - round(gpu)) < 1e-9:
                return {k: round(v * m, 9) for k, v in base.items()}
        return None

    def _fits(self, trial: TrialView, share: dict[str, float], view: SchedulerView) -> bool:
        """Whether ``share`` fits into what the other running (or about to run) trials leave free."""
        used: dict[str, float] = {}
        for other_id, other in view.trials.items():
            if other_id == trial.id:
                continue
            if other_id in self._resize:
                held = self._resize[other_id]
            elif other.status in (TrialStatus.RUNNING, TrialStatus.PENDING):
                held = other.resources
            else:
                continue
            for k, v in held.items():
                used[k] = used.get(k, 0.0) + float(v)
        return all(float(view.total_resources.get(k, 0.0)) - used.get(k, 0.0) >= v - 1e-9
                   for k, v in share.items() if v > 0)
