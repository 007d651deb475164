"""Median stopping rule (Golovin et al., "Google Vizier", KDD 2017).

At a result with ``time_attr == t`` (``t >= grace_period``), the trial is stopped if its best result
so far is strictly worse than the median, over the *other* trials that have reached ``t``, of their
running averages up to ``t`` (the mean of their results with ``time_attr <= t``). Nothing is decided
until at least ``min_samples`` other trials have reached ``t``. Ended trials keep counting.

NaN is the worst value: a NaN result makes that trial's running average NaN from then on, a trial with
only NaN results has no best, and a NaN median stops nobody (nothing real is worse than it). Ties
(best == median) continue. A trial restored from a checkpoint at iteration ``k`` replaces its results
after ``k``: a result whose ``time_attr`` is not beyond the trial's latest one truncates its history
there first.

A result without the metric (absent or ``None``: a trial that validates every few steps) is nothing to decide on:
it continues, and is no step of the trial's running average (its history holds the results with the metric), so
the medians at a step count the trials that reported the metric there.

With ``time_attr="training_iteration"`` every trial reports every step, so the other trials' running
averages at step ``t`` are kept in one sorted list per step: a decision costs O(log n) plus a list
insert. With any other ``time_attr`` (e.g. ``time_total_s``) steps do not line up across trials and
each decision scans the other trials (O(n log r)).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

from tunesmith._objective import Objective
from tunesmith.schedulers._base import CONTINUE, STOP, Decision, Scheduler, SchedulerView
from tunesmith.schedulers._milestones import (
    _check_number,
    _check_time_attr,
    _reached,
    _time,
)
from tunesmith.trial import ITERATION, Result, TrialView


@dataclass
class _History:
    times: list[float] = field(default_factory=list)  # ascending
    sums: list[float] = field(default_factory=list)  # prefix sums of the real scores
    nans: list[int] = field(default_factory=list)  # prefix counts of NaN scores
    bests: list[float] = field(default_factory=list)  # prefix maxima of the real scores (-inf: none)
    stopped: bool = False

    def truncate_from(self, t: float) -> int:
        """Drop the results at ``time >= t``; return how many were kept."""
        keep = bisect.bisect_left(self.times, t)
        del self.times[keep:], self.sums[keep:], self.nans[keep:], self.bests[keep:]
        return keep

    def append(self, t: float, score: float) -> None:
        nan = math.isnan(score)
        self.times.append(t)
        self.sums.append((self.sums[-1] if self.sums else 0.0) + (0.0 if nan else score))
        self.nans.append((self.nans[-1] if self.nans else 0) + nan)
        self.bests.append(max(self.bests[-1] if self.bests else -math.inf, -math.inf if nan else score))

    def mean_upto(self, count: int) -> float:
        """Running average of the first ``count`` results, ``-inf`` if any of them is NaN (worst)."""
        if self.nans[count - 1]:
            return -math.inf
        return self.sums[count - 1] / count


def _median(ascending: list[float]) -> float:
    n = len(ascending)
    middle = n // 2
    if n % 2:
        return ascending[middle]
    low, high = ascending[middle - 1], ascending[middle]
    if low == -math.inf:
        return -math.inf  # avoids inf - inf; a worst value in the middle makes the median worst
    return (low + high) / 2


class MedianStopping(Scheduler):
    """Stop trials whose best result is worse than the median running average of the others.

    Args:
        grace_period: no trial is judged before its ``time_attr`` reaches this.
        min_samples: how many *other* trials must have reached the same step before judging.
        time_attr: the progress counter steps are measured in.
        metric: the metric to compare; defaults to the experiment's.
        mode: ``"min"`` or ``"max"``; defaults to the experiment's.
    """

    # never reads finished trials from the view; its own running averages of every trial grow with the trials
    needs_finished_trials = False
    # a new trial's empty history counts in no median: adding it before the results that arrive meanwhile are
    # decided changes no decision (a short trial's worker may be handed its next trial ahead)
    new_trials_may_wait = True

    def __init__(self, grace_period: float = 1, min_samples: int = 3, time_attr: str = ITERATION,
                 metric: str | None = None, mode: str | None = None) -> None:
        self.grace_period = grace_period
        self.min_samples = min_samples
        self.time_attr = time_attr
        self.metric = metric
        self.mode = mode

    def setup(self, metric: str | list[str] | None, mode: str | list[str] | None) -> None:
        """Validate the arguments and reset all state.

        Raises:
            ConfigError: naming the bad argument.
        """
        name = "MedianStopping"
        self._objective = Objective.for_scheduler(name, self.metric, self.mode, metric, mode)
        _check_time_attr(name, self.time_attr)
        self._grace = _check_number(name, "grace_period", self.grace_period, low=0)
        _check_number(name, "min_samples", self.min_samples, low=1, integer=True)
        self._trials: dict[int, _History] = {}
        # Step -> running averages of the trials at that step (ascending); training_iteration only.
        self._by_step: dict[float, list[float]] = {}

    def on_trial_add(self, trial: TrialView, view: SchedulerView) -> None:
        self._trials.setdefault(trial.id, _History())

    def on_result(self, trial: TrialView, result: Result, view: SchedulerView) -> Decision:
        history = self._trials.setdefault(trial.id, _History())
        if history.stopped:
            return STOP
        t = _time(result, self.time_attr)
        if history.times and t <= history.times[-1]:
            self._forget(history, t)
        score = self._objective.reported_score(result)
        if score is None:  # no metric (a trial that validates every few steps): no step of its average, no decision
            return CONTINUE
        if not _reached(t, self._grace):
            self._append(history, t, score)
            return CONTINUE
        median, samples = self._median_of_others(trial.id, t)
        self._append(history, t, score)
        if samples < self.min_samples:
            return CONTINUE
        best = history.bests[-1]
        if best < median:  # a NaN median (never produced) or ties would continue
            history.stopped = True
            return STOP
        return CONTINUE

    def on_complete(self, trial: TrialView, result: Result | None, view: SchedulerView) -> None:
        """Ended trials keep their history: they still count as 'other trials'."""

    # -- internals

    def _bucketed(self) -> bool:
        return self.time_attr == ITERATION

    def _append(self, history: _History, t: float, score: float) -> None:
        history.append(t, score)
        if self._bucketed():
            bisect.insort(self._by_step.setdefault(t, []), history.mean_upto(len(history.times)))

    def _forget(self, history: _History, t: float) -> None:
        """Drop this trial's results from ``t`` on (a restore replaced them)."""
        if self._bucketed():
            start = bisect.bisect_left(history.times, t)
            for i in range(start, len(history.times)):
                bucket = self._by_step[history.times[i]]
                bucket.pop(bisect.bisect_left(bucket, history.mean_upto(i + 1)))
        history.truncate_from(t)

    def _median_of_others(self, trial_id: int, t: float) -> tuple[float, int]:
        """The median running average at ``t`` over the other trials that reached ``t``, and how many.

        The caller has not yet added this trial's result at ``t``, and a trial's own earlier entries
        are only at steps before ``t``, so the bucket holds other trials only.
        """
        if self._bucketed():
            bucket = self._by_step.get(t, [])
            return (_median(bucket) if bucket else math.nan), len(bucket)
        means = []
        for other_id, other in self._trials.items():
            if other_id == trial_id or not other.times or not _reached(other.times[-1], t):
                continue
            count = bisect.bisect_right(other.times, t)
            if count:
                means.append(other.mean_upto(count))
        means.sort()
        return (_median(means) if means else math.nan), len(means)
