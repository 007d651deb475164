"""Asynchronous successive halving (ASHA; Li et al., "A System for Massively Parallel Hyperparameter
Tuning", MLSys 2020), the early-stopping variant that Ray Tune calls ``AsyncHyperBandScheduler``.

Each bracket ``s`` has rungs at ``grace_period * reduction_factor ** (k + s)`` (``k = 0, 1, ...``, every
rung strictly below ``max_t``). A trial reaching a rung records its metric there and continues only if
it is within the top ``1 / reduction_factor`` of everything recorded at that rung so far, itself
included. Decisions are immediate (asynchronous): no trial waits for others.

The promotion rule, exactly: with ``n`` results recorded at the rung (the new one included) and
``better`` of them strictly better than the new one, the trial continues iff
``reduction_factor * better < n`` (equivalently: its 0-based rank is below ``n / reduction_factor``;
this is the rank form of Ray's quantile cutoff, with the trial itself counted). So the first trial at a
rung always continues, and until ``reduction_factor`` results are in, only a new best continues.
Ties never count against a trial (equal values are not "better"), so an uninformative constant metric
stops nobody. A NaN metric is worse than every number: a trial whose metric is NaN at a rung is
stopped, and its NaN still counts in ``n`` (it is a recorded result).

What this rule guarantees, and what it does not (the "rung invariant"):

* Every promotion is justified when it is made: ``reduction_factor * better < n`` over the results
  recorded at that moment. The best result recorded at a rung so far always belongs to a promoted
  trial.
* The *number* of promotions is not bounded by ``n // reduction_factor`` plus any constant: a decision
  made early cannot be revised, so a stream in which every new trial beats all earlier ones promotes
  all of them (the paper's "mispromotions"; Ray's rule behaves the same). Over a uniformly random
  arrival order of ``n`` distinct values the expected number promoted is exactly
  ``sum(ceil(i / rf) / i for i in 1..n)``, at most ``n / rf + (1 - 1 / rf) * H(n)``: the asynchronous
  slack is logarithmic on average, not constant.

Decision plans (``decision_plan``): with each start and each decision the controller asks ASHA for the
cutoffs of the trial's remaining rungs, the score the rule above requires of a result recorded there now
(``_Rung.cutoff``), and a worker that takes plans decides at the rung itself: on (result reaches the cutoff)
or off, no round trip. ASHA keeps that promise: the result is recorded at the rung as every result is, and
its decision is the plan's even when results recorded there in between would have changed the rule's. So a
promotion (or stop) is justified over the rung as it was when the plan was given rather than when the result
came: the rung invariant above holds with "when it is made" read as "when it was promised". Asynchronous
promotion is order-dependent anyway; the rung's recorded values stay the same function of the results. A rung
too empty to rank against (every number would pass) is left to the rule (no cutoff), which also keeps the
first trials of a run from all being promoted on stale cutoffs.

A result without the metric (absent or ``None``: a trial that validates every few steps) is nothing to decide on:
it continues, is recorded at no rung, and the rung it reached is judged at the trial's first later result that has
the metric (recorded there with that value, at each rung it has reached by then). Until then the trial waits for
the decision at each result. ``max_t`` stops a trial whatever its result holds.

The helpers ASHA shares with the other schedulers (progress counters, milestones, ranks, argument checks)
live in ``schedulers/_milestones.py``; the metric a scheduler compares by, and its score, is an
``Objective`` (``Objective.for_scheduler``: the scheduler's own ``metric``/``mode``, else the experiment's).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass

from tunesmith._errors import ConfigError
from tunesmith._objective import Objective
from tunesmith.schedulers._base import CONTINUE, STOP, Decision, DecisionPlan, Scheduler, SchedulerView
from tunesmith.schedulers._milestones import (
    _MAX_RUNGS,
    _as_iteration,
    _check_number,
    _check_time_attr,
    _reached,
    _time,
)
from tunesmith.trial import ITERATION, Result, TrialView


class _Rung:
    """The results recorded at one rung: sorted real scores (higher is better) and a count of all."""

    __slots__ = ("milestone", "promoted", "recorded", "scores")

    def __init__(self, milestone: float) -> None:
        self.milestone = milestone
        self.scores: list[float] = []  # ascending, NaN excluded
        self.recorded = 0  # NaN included
        self.promoted = 0

    def record(self, score: float, rf: float, promised: float | None = None) -> bool:
        """Record ``score`` and say whether its trial continues past this rung. ``promised``: the cutoff its
        trial was promised here (``ASHA.decision_plan``): a score continues iff it reaches it, whatever came since."""
        self.recorded += 1
        if math.isnan(score):
            return False
        better = len(self.scores) - bisect.bisect_right(self.scores, score)
        bisect.insort(self.scores, score)
        promoted = rf * better < self.recorded if promised is None else score >= promised
        self.promoted += promoted
        return promoted

    def cutoff(self, rf: float) -> float | None:
        """The least score that continues if it is the next one recorded here: ``record``'s rule with the rung as
        it is now. None when every real number would (fewer results than the rule lets be better)."""
        n = self.recorded + 1
        most = math.ceil(n / rf) - 1  # the most results that may be better than a promoted one: rf * most < n
        while rf * (most + 1) < n:  # (float rounding in the division, either way)
            most += 1
        while most > 0 and not rf * most < n:
            most -= 1
        if len(self.scores) <= most:
            return None
        return self.scores[len(self.scores) - 1 - most]


@dataclass
class _AshaTrial:
    bracket: int
    next_rung: int = 0  # index of the first rung this trial has not passed yet
    stopped: bool = False  # STOP returned (rung or max_t): later results get STOP
    ended: bool = False  # on_complete seen
    promises: dict[int, float] | None = None  # rung index -> the cutoff its last decision_plan promised there


class ASHA(Scheduler):
    """Asynchronous successive halving: stop trials that fall out of the top ``1/reduction_factor`` at
    a rung (see the module docstring for the exact rule and what it guarantees).

    Args:
        max_t: the most ``time_attr`` a trial may reach; it is stopped there.
        grace_period: the first rung; no trial is stopped before it.
        reduction_factor: ``rf``; rungs are ``rf`` times apart and the top ``1/rf`` continue.
        brackets: number of brackets; bracket ``s`` starts its rungs at ``grace_period * rf ** s``.
            New trials are assigned round-robin in the order they are added.
        time_attr: the progress counter rungs are measured in. With ``training_iteration`` (the
            default) ``decision_iteration`` makes trials wait at each rung; with anything else results
            stream freely and a trial is judged at the first result past each rung.
        metric: the metric to compare; defaults to the experiment's.
        mode: ``"min"`` or ``"max"``; defaults to the experiment's.
    """

    # never reads finished trials from the view; its own record of each trial's rung values grows with the trials
    needs_finished_trials = False
    # a new trial is assigned its bracket in the order trials are added and starts below the first rung: adding it
    # before the results that arrive meanwhile are decided changes no decision (a short trial's worker may be handed
    # its next trial ahead)
    new_trials_may_wait = True

    def __init__(self, max_t: float = 100, grace_period: float = 1, reduction_factor: float = 3,
                 brackets: int = 1, time_attr: str = ITERATION, metric: str | None = None,
                 mode: str | None = None) -> None:
        self.max_t = max_t
        self.grace_period = grace_period
        self.reduction_factor = reduction_factor
        self.brackets = brackets
        self.time_attr = time_attr
        self.metric = metric
        self.mode = mode

    def setup(self, metric: str | list[str] | None, mode: str | list[str] | None) -> None:
        """Validate the arguments and reset all state.

        Raises:
            ConfigError: naming the bad argument (e.g. ``reduction_factor`` <= 1, ``grace_period`` >
                ``max_t``, a ``brackets`` count whose last bracket would have no rung).
        """
        name = "ASHA"
        self._objective = Objective.for_scheduler(name, self.metric, self.mode, metric, mode)
        _check_time_attr(name, self.time_attr)
        max_t = _check_number(name, "max_t", self.max_t, low=0, low_open=True)
        grace = _check_number(name, "grace_period", self.grace_period, low=0, low_open=True)
        rf = _check_number(name, "reduction_factor", self.reduction_factor, low=1, low_open=True)
        n_brackets = int(_check_number(name, "brackets", self.brackets, low=1, integer=True))
        if grace > max_t:
            raise ConfigError(f"grace_period: ASHA expects grace_period <= max_t ({self.max_t!r}); "
                              f"got {self.grace_period!r}")
        if math.log(max_t / grace) / math.log(rf) > _MAX_RUNGS:
            raise ConfigError(f"reduction_factor: ASHA would need more than {_MAX_RUNGS} rungs between "
                              f"grace_period and max_t; got {self.reduction_factor!r}")
        self._rf = rf
        self._max_t = max_t
        self._rungs: list[list[_Rung]] = []
        for s in range(n_brackets):
            milestones = []
            k = s
            while True:
                milestone = self.grace_period * self.reduction_factor ** k  # exact for integers
                if _reached(milestone, max_t):
                    break
                milestones.append(milestone)
                k += 1
            if s > 0 and not milestones:
                raise ConfigError(
                    f"brackets: with max_t={self.max_t!r}, grace_period={self.grace_period!r} and "
                    f"reduction_factor={self.reduction_factor!r} at most {s} bracket(s) have a rung; "
                    f"got {self.brackets!r}")
            self._rungs.append([_Rung(m) for m in milestones])
        self._trials: dict[int, _AshaTrial] = {}
        self._added = 0

    # -- hooks

    def on_trial_add(self, trial: TrialView, view: SchedulerView) -> None:
        self._state(trial.id)

    def on_result(self, trial: TrialView, result: Result, view: SchedulerView) -> Decision:
        state = self._state(trial.id)
        if state.stopped or state.ended:
            return STOP
        t = _time(result, self.time_attr)
        rungs = self._rungs[state.bracket]
        due = state.next_rung < len(rungs) and _reached(t, rungs[state.next_rung].milestone)
        # None without the metric: the rung waits for the trial's next result that has it
        score = self._objective.reported_score(result) if due else None
        # Ascending, so a trial that jumps past several rungs in one result must pass each of them.
        while score is not None and state.next_rung < len(rungs) and _reached(t, rungs[state.next_rung].milestone):
            promised = state.promises.pop(state.next_rung, None) if state.promises else None
            if not rungs[state.next_rung].record(score, self._rf, promised):
                state.stopped = True
                return STOP
            state.next_rung += 1
        if _reached(t, self._max_t):
            state.stopped = True
            return STOP
        return CONTINUE

    def on_complete(self, trial: TrialView, result: Result | None, view: SchedulerView) -> None:
        self._state(trial.id).ended = True

    def decision_iteration(self, trial: TrialView) -> int | None:
        """The iteration of the trial's next rung, or ``max_t``; ``None`` unless ``time_attr`` is
        ``training_iteration`` or once the trial was stopped."""
        if self.time_attr != ITERATION:
            return None
        state = self._state(trial.id)
        if state.stopped or state.ended:
            return None
        rungs = self._rungs[state.bracket]
        milestone = rungs[state.next_rung].milestone if state.next_rung < len(rungs) else self._max_t
        return max(_as_iteration(milestone), trial.iteration + 1)

    def decision_plan(self, trial: TrialView) -> DecisionPlan | None:
        """The trial's rungs from its next one, then ``max_t`` (``math.inf``: it stops there). At each rung the
        cutoff ``record``'s rule applies to a result recorded there now (``_Rung.cutoff``), promised until the next
        plan: the trial's result there continues iff it reaches the cutoff, decided by the trial without a round
        trip, and recorded at the rung when it comes whatever other trials recorded there in between. None (the
        rule decides when the result comes) at a rung too empty to rank against (any number would pass), and where
        one result would reach two rungs."""
        first = self.decision_iteration(trial)
        if first is None:
            return None
        state = self._state(trial.id)
        rungs = self._rungs[state.bracket]
        floor = trial.iteration + 1
        end = max(_as_iteration(self._max_t), floor)
        at: dict[int, list[int]] = {}  # iteration -> the rungs a result there reaches first
        for index in range(state.next_rung, len(rungs)):
            at.setdefault(max(_as_iteration(rungs[index].milestone), floor), []).append(index)
        points: list[tuple[int, float | None]] = []
        promises: dict[int, float] = {}
        for point, indexes in at.items():
            cutoff = rungs[indexes[0]].cutoff(self._rf) if len(indexes) == 1 and point < end else None
            if cutoff is not None:
                promises[indexes[0]] = cutoff
            points.append((point, cutoff))
        if end not in at:
            points.append((end, math.inf))  # every trial stops at max_t
        state.promises = promises
        return DecisionPlan(self._objective.primary, self._objective.primary_mode, tuple(points))

    # -- introspection (used by Deadline; handy in reports)

    def milestones(self, bracket: int = 0) -> list[float]:
        """The rung milestones of ``bracket`` in ``time_attr`` units (after ``setup``)."""
        return [rung.milestone for rung in self._rungs[bracket]]

    def rungs_passed(self, trial_id: int) -> int:
        """How many rungs the trial has passed (0 for an unknown trial)."""
        state = self._trials.get(trial_id)
        return 0 if state is None else state.next_rung

    def rung_counts(self, bracket: int = 0) -> list[tuple[float, int, int]]:
        """``(milestone, recorded, promoted)`` for each rung of ``bracket``."""
        return [(rung.milestone, rung.recorded, rung.promoted) for rung in self._rungs[bracket]]

    # -- internals

    def _state(self, trial_id: int) -> _AshaTrial:
        state = self._trials.get(trial_id)
        if state is None:
            # Also reached for a trial never announced through on_trial_add (e.g. replay on resume).
            state = _AshaTrial(bracket=self._added % len(self._rungs))
            self._added += 1
            self._trials[trial_id] = state
        return state
