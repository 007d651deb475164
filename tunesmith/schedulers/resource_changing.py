"""Schedulers that move resources between trials: ``ResourceChanging`` (the generic wrapper) and the
machinery ``Deadline`` (``schedulers/deadline.py``) shares with it.

Both wrap another scheduler and pass every hook through to it (``decision_plan`` too: ``_Wrapper``).
Resources change through ``Pause(resources=new)``: the controller pauses the trial and, when
``choose_trial_to_run`` names it, resumes it from its latest checkpoint with ``new`` as its resources.

Hooks beyond ``Scheduler`` that the controller should call when a scheduler has them (both wrappers
have all three and forward them to the wrapped scheduler):

* ``trials_to_stop(view) -> list[int]``: paused trials to terminate (HyperBand's rung losers).
* ``on_no_more_trials(view) -> None``: the searcher is exhausted.
* ``accepting_new_trials(view) -> bool``: ask before taking a new config from the searcher; ``False``
  means start no new trial now (``Deadline`` under time pressure).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import Any

from tunesmith._errors import ConfigError
from tunesmith.schedulers._base import CONTINUE, Continue, Decision, DecisionPlan, Pause, Scheduler, SchedulerView
from tunesmith.trial import Result, TrialStatus, TrialView

AllocateFn = Callable[[TrialView, SchedulerView], "dict[str, float] | None"]


def _normalized(resources: dict[str, float] | None) -> dict[str, float]:
    """Resources without zero entries and float noise, for comparison."""
    return {k: round(float(v), 9) for k, v in (resources or {}).items() if v}


def _check_resources(owner: str, name: str, resources: Any) -> dict[str, float]:
    if not isinstance(resources, dict) or not all(
            isinstance(k, str) and isinstance(v, numbers.Real) and not isinstance(v, bool)
            and math.isfinite(float(v)) and float(v) >= 0 for k, v in resources.items()):
        raise ConfigError(f"{name}: {owner} expects a dict of resource name -> number >= 0 (or None); "
                          f"got {resources!r}")
    return {k: float(v) for k, v in resources.items()}


def _request(resources: Any, trial: TrialView) -> dict[str, float]:
    """``allocate_fn``'s request as ``run(resources=...)`` takes one (``executors.resources.normalize``: a CPU
    unless it says otherwise; ``{"cpu": 0}`` alone, which would hold nothing, is refused), keeping the keys it
    gave. The controller checks that it fits the executor (``Controller._resize``)."""
    from tunesmith.executors.resources import normalize

    checked = _check_resources("ResourceChanging", "allocate_fn", resources)
    try:
        request = normalize(checked)
    except ConfigError as e:
        raise ConfigError(f"allocate_fn: ResourceChanging's allocate_fn asked for {resources!r} for {trial.name}: "
                          f"{e}") from None
    return {k: v for k, v in request.items() if k in checked or v}


class _Wrapper(Scheduler):
    """Passes every hook, the extra ones included, to ``self._inner``."""

    _inner: Scheduler

    def compared_metrics(self) -> tuple[str, ...]:
        return self._inner.compared_metrics()

    def mutated_keys(self) -> list[tuple[tuple[str, ...], str]]:
        return self._inner.mutated_keys()

    def mutation_values(self) -> dict[tuple[str, ...], Any]:
        return self._inner.mutation_values()

    def on_trial_add(self, trial: TrialView, view: SchedulerView) -> None:
        self._inner.on_trial_add(trial, view)

    def on_result(self, trial: TrialView, result: Result, view: SchedulerView) -> Decision:
        return self._inner.on_result(trial, result, view)

    def on_complete(self, trial: TrialView, result: Result | None, view: SchedulerView) -> None:
        self._inner.on_complete(trial, result, view)

    def decision_iteration(self, trial: TrialView) -> int | None:
        return self._inner.decision_iteration(trial)

    def decision_plan(self, trial: TrialView) -> DecisionPlan | None:
        """The wrapped scheduler's plan: a wrapped ASHA's trial goes on past a rung whose cutoff it beats without
        waiting for the driver. What the plan promises stays true: the wrapper passes every decision but
        ``CONTINUE`` through, so a promised stop is one; a promised ``CONTINUE`` that it turns into a ``Pause``
        (``Deadline``: or a ``STOP``) lets the trial, gone on, pause or stop at its next step, as at any result it
        did not wait at (a resize or a deadline does not need the very iteration a rung is at)."""
        return self._inner.decision_plan(trial)

    def choose_trial_to_run(self, view: SchedulerView) -> int | None:
        return self._inner.choose_trial_to_run(view)

    def trials_to_stop(self, view: SchedulerView) -> list[int]:
        """The wrapped scheduler's ``trials_to_stop`` as it answered (the controller checks it and names the wrapped
        one, ``misanswered``), or ``[]``."""
        hook = getattr(self._inner, "trials_to_stop", None)
        return hook(view) if hook is not None else []

    def on_no_more_trials(self, view: SchedulerView) -> None:
        """Forwarded to the wrapped scheduler if it has the hook."""
        hook = getattr(self._inner, "on_no_more_trials", None)
        if hook is not None:
            hook(view)

    def accepting_new_trials(self, view: SchedulerView) -> bool:
        """The wrapped scheduler's ``accepting_new_trials`` as it answered (a forgotten ``return``'s None, taken for
        False, ended the run with no trial: the controller checks it), or ``True``."""
        hook = getattr(self._inner, "accepting_new_trials", None)
        return hook(view) if hook is not None else True


class ResourceChanging(_Wrapper):
    """Change a trial's resources whenever ``allocate_fn`` asks for a different share.

    At each of the wrapped scheduler's ``CONTINUE`` decisions, ``allocate_fn(trial, view)`` is called;
    if it returns resources that differ from ``trial.resources`` (zero entries ignored), the decision
    becomes ``Pause(resources=new)`` and ``choose_trial_to_run`` offers the trial back first, before
    the wrapped scheduler's own choice. Every other decision passes through unchanged.

    The wrapped scheduler's ``decision_plan`` is the trial's: a trial past a rung whose cutoff it beats goes on
    without waiting for the driver, as under a bare ASHA; a resize asked for at that result then pauses it at its
    next step (as at any result it did not wait at), from its latest checkpoint.

    Args:
        scheduler: the scheduler that decides continue/stop.
        allocate_fn: ``(trial, view) -> dict | None``; ``None`` keeps the trial's resources. A dict is a
            request as ``run(resources=...)`` takes one (``{"gpu": 1}`` holds a CPU too; ``{"cpu": 0}`` alone
            is refused with a ``ConfigError``), and one the executor could never meet (more CPUs than the
            machine has, a GPU where there is none) ends the experiment with a ``ConfigError`` naming
            ``allocate_fn``, the trial and the request. Must be pure (no I/O, no wall clock), like a scheduler.
    """

    def __init__(self, scheduler: Scheduler, allocate_fn: AllocateFn) -> None:
        self.scheduler = scheduler
        self.allocate_fn = allocate_fn

    def setup(self, metric: str | list[str] | None, mode: str | list[str] | None) -> None:
        """Validate the arguments, reset state and set up the wrapped scheduler.

        Raises:
            ConfigError: naming ``scheduler`` or ``allocate_fn``, or from the wrapped scheduler.
        """
        if not isinstance(self.scheduler, Scheduler):
            raise ConfigError(f"scheduler: ResourceChanging expects a tunesmith Scheduler; got {self.scheduler!r}")
        if not callable(self.allocate_fn):
            raise ConfigError(f"allocate_fn: ResourceChanging expects a callable (trial, view) -> dict | None; "
                              f"got {self.allocate_fn!r}")
        self._inner = self.scheduler
        self._inner.setup(metric, mode)
        self._resize: dict[int, dict[str, float]] = {}  # paused for a new share, in pause order

    def on_result(self, trial: TrialView, result: Result, view: SchedulerView) -> Decision:
        decision = self._inner.on_result(trial, result, view)
        if not isinstance(decision, Continue):
            self._resize.pop(trial.id, None)  # the wrapped scheduler owns what happens next
            return decision
        wanted = self.allocate_fn(trial, view)
        if wanted is None:
            return CONTINUE
        wanted = _request(wanted, trial)
        if _normalized(wanted) == _normalized(trial.resources):
            return CONTINUE
        self._resize[trial.id] = wanted
        return Pause(resources=dict(wanted))

    def on_complete(self, trial: TrialView, result: Result | None, view: SchedulerView) -> None:
        self._resize.pop(trial.id, None)
        self._inner.on_complete(trial, result, view)

    def choose_trial_to_run(self, view: SchedulerView) -> int | None:
        """A trial paused for new resources (each once, in pause order), else the wrapped choice."""
        picked = _pop_paused(self._resize, view)
        return picked if picked is not None else self._inner.choose_trial_to_run(view)


def _pop_paused(queue: dict[int, Any], view: SchedulerView) -> int | None:
    """Pop and return the first queued trial the view shows PAUSED; drop finished or unknown ones."""
    for trial_id in list(queue):
        trial = view.trials.get(trial_id)
        if trial is None or trial.status.is_finished:
            del queue[trial_id]
        elif trial.status == TrialStatus.PAUSED:
            del queue[trial_id]
            return trial_id
    return None
