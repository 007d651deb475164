"""Synchronous HyperBand (Li et al., "Hyperband: A Novel Bandit-Based Approach to Hyperparameter
Optimization", JMLR 2017).

Brackets ``s = s_max, s_max - 1, ..., 0`` (then again from ``s_max``), ``s_max = floor(log_rf(max_t))``.
Bracket ``s`` takes ``n = ceil((s_max + 1) / (s + 1) * rf ** s)`` trials, in the order they are added,
and runs successive halving on them with rungs at ``r_i = max_t * rf ** (i - s)`` for ``i = 0 .. s``
(the last rung is ``max_t``, where trials stop).

At a rung each trial is *paused* (``Pause()``) until every live trial of its bracket has reached the
rung or ended. Then the best ``max(1, floor(m / rf))`` of the ``m`` trials that reached it alive
continue (NaN metrics never do; ties go to the lower trial id) and the others are stopped. The
trial whose result completed the rung gets its answer directly (``CONTINUE`` or ``STOP``); the paused
ones are handed to the controller through two polls:

* ``choose_trial_to_run(view)``: returns a paused winner to resume (each id once, best first).
* ``trials_to_stop(view)``: the paused losers the controller must terminate (status TERMINATED, then
  ``on_complete``). Idempotent: an id stays listed until ``on_complete`` is called for it or the view
  shows it finished.

A bracket stops taking trials when it is full. If the searcher runs dry first, or waits for trials to
end while every trial of the bracket is paused at a rung (a ``ConcurrencyLimiter`` counts paused trials
as unfinished), the controller calls ``on_no_more_trials(view)``: partly filled brackets are then processed
with what they have (as Ray Tune's HyperBandForBOHB does), otherwise their trials would wait at the first
rung forever; trials added later start a new bracket.

A result without the metric (absent or ``None``: a trial that validates every few steps) is nothing to decide on:
it continues, and a trial that reached its rung with such a result arrives there with its next result that has the
metric (ranked by that value). ``max_t`` stops a trial whatever its result holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from tunesmith._errors import ConfigError
from tunesmith._objective import Objective
from tunesmith.schedulers._base import CONTINUE, PAUSE, STOP, Decision, Scheduler, SchedulerView
from tunesmith.schedulers._milestones import (
    _MAX_RUNGS,
    _as_iteration,
    _check_number,
    _check_time_attr,
    _rank_key,
    _reached,
    _time,
)
from tunesmith.trial import ITERATION, Result, TrialStatus, TrialView


@dataclass
class _Bracket:
    s: int
    size: int  # nominal number of trials
    milestones: list[float]  # r_0 .. r_s; the last one is max_t
    members: list[int] = field(default_factory=list)
    level: int = 0  # the rung the live trials are working towards
    alive: set[int] = field(default_factory=set)  # live trials at ``level``
    arrived: dict[int, float] = field(default_factory=dict)  # trial -> score at ``level``
    closed: bool = False  # no more trials will join

    @property
    def filling(self) -> bool:
        return not self.closed and len(self.members) < self.size

    def rung_complete(self) -> bool:
        # ``arrived`` is always a subset of ``alive``, so equal sizes mean everyone arrived: O(1).
        return (not self.filling and self.level < len(self.milestones) - 1
                and bool(self.arrived) and len(self.arrived) == len(self.alive))


@dataclass
class _HbTrial:
    bracket: int
    waiting: bool = False  # reached its bracket's rung; paused until the rung completes
    stopped: bool = False
    ended: bool = False


class HyperBand(Scheduler):
    """Synchronous HyperBand: successive halving in brackets of decreasing aggressiveness.

    Extra hooks for the controller (see the module docstring): ``trials_to_stop(view)`` and
    ``on_no_more_trials(view)``.

    Args:
        max_t: the most ``time_attr`` a trial may reach (``R`` in the paper).
        reduction_factor: ``eta`` in the paper; the top ``1/eta`` of a rung continue.
        time_attr: the progress counter rungs are measured in; with ``training_iteration`` trials
            wait for the decision at each rung (``decision_iteration``).
        metric: the metric to compare; defaults to the experiment's.
        mode: ``"min"`` or ``"max"``; defaults to the experiment's.
    """

    def __init__(self, max_t: float = 81, reduction_factor: float = 3, time_attr: str = ITERATION,
                 metric: str | None = None, mode: str | None = None) -> None:
        self.max_t = max_t
        self.reduction_factor = reduction_factor
        self.time_attr = time_attr
        self.metric = metric
        self.mode = mode

    def setup(self, metric: str | list[str] | None, mode: str | list[str] | None) -> None:
        """Validate the arguments and reset all state.

        Raises:
            ConfigError: naming the bad argument.
        """
        name = "HyperBand"
        self._objective = Objective.for_scheduler(name, self.metric, self.mode, metric, mode)
        _check_time_attr(name, self.time_attr)
        max_t = _check_number(name, "max_t", self.max_t, low=1)
        rf = _check_number(name, "reduction_factor", self.reduction_factor, low=1, low_open=True)
        if math.log(max_t) / math.log(rf) > _MAX_RUNGS:
            raise ConfigError(f"reduction_factor: HyperBand would need more than {_MAX_RUNGS} rungs; "
                              f"got {self.reduction_factor!r}")
        s_max = 0
        while _reached(max_t, self.reduction_factor ** (s_max + 1)):
            s_max += 1
        self._rf = rf
        self._max_t = max_t
        self._s_max = s_max
        self._brackets: list[_Bracket] = []
        self._trials: dict[int, _HbTrial] = {}
        self._to_resume: list[int] = []
        self._to_stop: set[int] = set()

    def bracket_plan(self) -> list[tuple[int, int, list[float]]]:
        """``(s, n, milestones)`` for each bracket of one HyperBand round, in fill order (after setup)."""
        return [(s, *self._plan(s)) for s in range(self._s_max, -1, -1)]

    # -- hooks

    def on_trial_add(self, trial: TrialView, view: SchedulerView) -> None:
        self._state(trial.id)

    def on_result(self, trial: TrialView, result: Result, view: SchedulerView) -> Decision:
        state = self._state(trial.id)
        if state.stopped or state.ended:
            return STOP
        if state.waiting:
            return PAUSE  # a result that overtook its own pause (only with a free-streaming time_attr)
        bracket = self._brackets[state.bracket]
        t = _time(result, self.time_attr)
        if _reached(t, self._max_t):
            state.stopped = True
            self._leave(bracket, trial.id)
            if bracket.rung_complete():  # it may have been the last one the rung waited for
                self._halve(bracket, current=None)
            return STOP
        score = self._objective.reported_score(result) if _reached(t, bracket.milestones[bracket.level]) else None
        if score is None:  # short of the rung, or no metric: it arrives there with its next result that has it
            return CONTINUE
        bracket.arrived[trial.id] = score
        state.waiting = True
        if not bracket.rung_complete():
            return PAUSE
        winners = self._halve(bracket, current=trial.id)
        return CONTINUE if trial.id in winners else STOP

    def on_complete(self, trial: TrialView, result: Result | None, view: SchedulerView) -> None:
        state = self._state(trial.id)
        state.ended = True
        self._to_stop.discard(trial.id)
        if trial.id in self._to_resume:
            self._to_resume.remove(trial.id)
        bracket = self._brackets[state.bracket]
        self._leave(bracket, trial.id)
        if bracket.rung_complete():
            self._halve(bracket, current=None)

    def decision_iteration(self, trial: TrialView) -> int | None:
        """The iteration of the trial's bracket's current rung (``max_t`` at the last one)."""
        if self.time_attr != ITERATION:
            return None
        state = self._state(trial.id)
        if state.stopped or state.ended:
            return None
        bracket = self._brackets[state.bracket]
        return max(_as_iteration(bracket.milestones[bracket.level]), trial.iteration + 1)

    def choose_trial_to_run(self, view: SchedulerView) -> int | None:
        """A paused rung winner to resume now (each id is returned once), else ``None``."""
        for trial_id in list(self._to_resume):
            trial = view.trials.get(trial_id)
            if trial is None or trial.status.is_finished:
                self._to_resume.remove(trial_id)
            elif trial.status == TrialStatus.PAUSED:
                self._to_resume.remove(trial_id)
                return trial_id
            # Else the controller has not applied our Pause yet: offer it on a later call.
        return None

    def trials_to_stop(self, view: SchedulerView) -> list[int]:
        """Paused trials that lost at a rung and must be terminated by the controller.

        Poll after each event. An id stays listed until ``on_complete`` is called for it (or the view
        shows it finished), so polling twice is harmless.
        """
        return sorted(t for t in self._to_stop if t not in view.trials or not view.trials[t].status.is_finished)

    def on_no_more_trials(self, view: SchedulerView) -> None:
        """No more trials will be added (the searcher is exhausted): close partly filled brackets and
        decide every rung that was only waiting for more members."""
        for bracket in self._brackets:
            bracket.closed = True
            if bracket.rung_complete():
                self._halve(bracket, current=None)

    # -- internals

    def _plan(self, s: int) -> tuple[int, list[float]]:
        rf = self.reduction_factor
        n = math.ceil((self._s_max + 1) / (s + 1) * rf ** s - 1e-9)
        milestones = [self.max_t / rf ** (s - i) for i in range(s)] + [self.max_t]
        return n, milestones

    def _state(self, trial_id: int) -> _HbTrial:
        state = self._trials.get(trial_id)
        if state is None:
            # Also reached for a trial never announced through on_trial_add (e.g. replay on resume).
            if not self._brackets or not self._brackets[-1].filling:
                # Fill order s_max, ..., 0, then a new round from s_max.
                s = self._s_max - len(self._brackets) % (self._s_max + 1)
                self._brackets.append(_Bracket(s, *self._plan(s)))
            bracket = self._brackets[-1]
            bracket.members.append(trial_id)
            bracket.alive.add(trial_id)
            state = _HbTrial(bracket=len(self._brackets) - 1)
            self._trials[trial_id] = state
        return state

    def _leave(self, bracket: _Bracket, trial_id: int) -> None:
        bracket.alive.discard(trial_id)
        bracket.arrived.pop(trial_id, None)

    def _halve(self, bracket: _Bracket, current: int | None) -> set[int]:
        """Decide a complete rung: queue paused winners for resuming and paused losers for stopping.

        ``current`` is the trial whose result completed the rung: it is not paused, so it is neither
        queued; the caller answers it directly. Returns the winners.
        """
        ranked = sorted(bracket.arrived, key=lambda t: _rank_key(bracket.arrived[t], t))
        real = sum(1 for t in ranked if not math.isnan(bracket.arrived[t]))
        keep = min(max(1, math.floor(len(ranked) / self._rf + 1e-9)), real)
        winners = set(ranked[:keep])
        bracket.level += 1
        bracket.alive = set(winners)
        bracket.arrived = {}
        for trial_id in ranked:
            state = self._trials[trial_id]
            state.waiting = False
            if trial_id in winners:
                if trial_id != current:
                    self._to_resume.append(trial_id)
            else:
                state.stopped = True
                if trial_id != current:
                    self._to_stop.add(trial_id)
        return winners
