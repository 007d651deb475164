"""The scheduler interface: what to do with a trial after each result. Pure decision objects.

A scheduler never starts a process or writes a file. Time, results and resources come in as
arguments (``SchedulerView.now`` is the controller's clock, virtual in the simulated executor);
decisions go out as values.
"""

from __future__ import annotations

import numbers
from typing import Any, ClassVar, NamedTuple

from tunesmith._errors import ConfigError
from tunesmith._record import FrozenRecord, Record
from tunesmith._spec import constructor_spec
from tunesmith.trial import Result, TrialView


class Continue(FrozenRecord):
    """Keep running."""


class Stop(FrozenRecord):
    """End the trial now (status TERMINATED)."""


class Pause(FrozenRecord):
    """Stop the trial and keep it PAUSED; it frees its resources and is resumed later from its latest
    checkpoint when ``choose_trial_to_run`` names it. ``resources``, if given, are the resources it gets
    when resumed (deadline-aware reallocation)."""

    resources: dict[str, float] | None
    _fields = ("resources",)

    def __init__(self, resources: dict[str, float] | None = None) -> None:
        self._set(resources=resources)


class Exploit(FrozenRecord):
    """Restart this trial from ``source_trial``'s checkpoint with ``config`` (PBT). With ``pause=True`` the
    trial takes the checkpoint and config now but waits PAUSED until ``choose_trial_to_run`` names it
    (time-sharing: others are behind it)."""

    source_trial: int
    config: dict[str, Any]
    source_checkpoint: str | None
    source_iteration: int | None
    pause: bool
    _fields = ("source_trial", "config", "source_checkpoint", "source_iteration", "pause")

    def __init__(self, source_trial: int, config: dict[str, Any], source_checkpoint: str | None = None,
                 source_iteration: int | None = None, pause: bool = False) -> None:
        self._set(source_trial=source_trial, config=config, source_checkpoint=source_checkpoint,
                  source_iteration=source_iteration, pause=pause)


CONTINUE = Continue()
STOP = Stop()
PAUSE = Pause()

Decision = Continue | Stop | Pause | Exploit


class DecisionPlan(NamedTuple):
    """A trial's decision points from its next one on, with the decision the scheduler already promises at each
    (``Scheduler.decision_plan``). At the point ``(iteration, cutoff)``, a result whose score (``metric``'s value,
    negated for ``mode="min"``: higher is better) is a real number continues if it is ``>= cutoff`` and stops if
    not: its trial goes on, or ends, without waiting for the driver (the result is still sent, and stored before
    the driver decides anything on it). ``math.inf``: the trial stops there whatever the result. A ``None``
    cutoff, or a missing or NaN metric: the trial waits for the decision as without a plan. Past the last point
    no decision is due (results stream)."""

    metric: str
    mode: str
    points: tuple[tuple[int, float | None], ...]


class SchedulerView(Record):
    """Read-only picture of the experiment handed to schedulers.

    Attributes:
        trials: every trial by id (the controller's own objects: do not mutate).
        now: seconds since the experiment started, on the controller's clock; after a resume the time earlier
            drivers ran counts too (as ``time_budget_s`` counts it), and the replay of the stored results is shown
            the time the resume starts at.
        total_resources: what the executor can run at once, e.g. ``{"cpu": 8, "gpu": 2}``.
        deadline_s: the experiment's ``time_budget_s`` if any, on the same clock (``deadline_s - now`` is what
            is left of it).
    """

    trials: dict[int, TrialView]
    now: float
    total_resources: dict[str, float]
    deadline_s: float | None
    _fields = ("trials", "now", "total_resources", "deadline_s")

    def __init__(self, trials: dict[int, TrialView], now: float = 0.0,
                 total_resources: dict[str, float] | None = None, deadline_s: float | None = None) -> None:
        self._set(trials=trials, now=now, total_resources={} if total_resources is None else total_resources,
                  deadline_s=deadline_s)

    def __setattr__(self, name: str, value: Any) -> None:
        """Only its fields: a misspelt one (``view.time_budget_s = ...``) would change nothing a scheduler reads."""
        if name not in self._fields:
            raise AttributeError(f"SchedulerView has no field {name!r}; it has {list(self._fields)}")
        self.__dict__[name] = value


class Scheduler:
    """Base class: FIFO behaviour (every trial runs to its end) with all hooks as no-ops.

    Subclasses store their constructor arguments as attributes and validate in ``setup``.
    """

    metric: str | list[str] | None = None
    mode: str | list[str] | None = None
    # the decisions ``on_result`` returns, reached from a scheduler of your own as ``self.STOP``, ``self.Exploit(...)``
    CONTINUE: ClassVar[Continue] = CONTINUE
    STOP: ClassVar[Stop] = STOP
    PAUSE: ClassVar[Pause] = PAUSE
    Pause: ClassVar[type[Pause]] = Pause
    Exploit: ClassVar[type[Exploit]] = Exploit
    # Whether the scheduler reads finished trials in ``view.trials``. While True (the safe default for a
    # scheduler of your own), the controller keeps every finished trial in memory (about 1.5 KB each); a
    # scheduler that sets it False sees only unfinished trials there, and the controller forgets a trial when
    # it ends (the store has it), so the driver's memory follows the running trials, not the trials so far.
    # Only the class that says False is taken at its word: a subclass of FIFO or ASHA that does not say so
    # itself may read them (``reads_finished_trials``).
    needs_finished_trials: bool = True
    # Whether a new trial may be created and handed to a busy worker before the results that arrive meanwhile
    # are decided (``LocalBackend(queue_ahead=True)``, with a searcher that does not learn): True where the
    # scheduler never pauses, resumes or picks the trial to run, and adding a trial does not turn on results
    # (FIFO, ASHA, MedianStopping: a new trial starts below the first rung whatever the rungs hold, or counts in
    # no median before its first result). Like ``needs_finished_trials``, only the class that says True is taken
    # at its word (``starts_trials_early``).
    new_trials_may_wait: bool = False

    def setup(self, metric: str | list[str] | None, mode: str | list[str] | None) -> None:
        """Called once before any trial starts; raise ``ConfigError`` naming a bad argument.

        ``metric``/``mode`` are the experiment's objective as ``run`` takes them: a name and ``"min"``/``"max"``,
        lists of them (multi-objective), or ``None``. A scheduler that compares trials by one metric resolves
        it with ``Objective.for_scheduler`` (its own ``metric=`` first) and ranks results by its ``score``.
        """
        self.metric = metric
        self.mode = mode

    def mutated_keys(self) -> list[tuple[tuple[str, ...], str]]:
        """The config keys this scheduler changes in a trial's config, once ``setup`` ran, each as (its path, how
        the argument that names it reads: ``hyperparam_mutations['lr']``); none by default. ``run`` refuses one
        its space does not have (a typo would go unexplored, silently)."""
        return []

    def mutation_values(self) -> dict[tuple[str, ...], Any]:
        """What this scheduler may set at the keys of ``mutated_keys`` whose values are known up front, once
        ``setup`` ran: path -> a list of values or a ``tunesmith.space`` domain (a function's are known only when
        it is called: left out); none by default. ``run`` refuses one whose values are of another kind (numbers,
        text, booleans) than the space's entry at that key."""
        return {}

    def compared_metrics(self) -> tuple[str, ...]:
        """The metrics this scheduler compares trials by, once ``setup`` ran (none for FIFO). A trial's first
        result must hold them, as it must the experiment's (``strict_metric_checking``): a scheduler's own
        ``metric=`` that no trial reports would otherwise decide nothing, silently. The built-in schedulers'
        ``Objective.for_scheduler``; a scheduler of your own says its own."""
        objective = getattr(self, "_objective", None)
        return tuple(objective.names) if objective is not None else ()

    def on_trial_add(self, trial: TrialView, view: SchedulerView) -> None:
        """A new trial was created (before it starts)."""

    def on_result(self, trial: TrialView, result: Result, view: SchedulerView) -> Decision:
        """Decide after a stored result. Must tolerate results of trials it already stopped."""
        return CONTINUE

    def on_complete(self, trial: TrialView, result: Result | None, view: SchedulerView) -> None:
        """The trial ended on its own (returned), was stopped, or failed for good."""

    def decision_iteration(self, trial: TrialView) -> int | None:
        """The next ``training_iteration`` (> ``trial.iteration``) at which the trial's ``report()`` must
        wait for this scheduler's decision, or ``None`` if results may stream freely."""
        return None

    def decision_plan(self, trial: TrialView) -> DecisionPlan | None:
        """The trial's decision points, the first one ``decision_iteration``'s, each with the score that decides
        there (see ``DecisionPlan``), or ``None`` (default: always wait for the decision).

        Calling it is a promise: until the trial's next ``decision_plan`` (the controller asks at each start and
        with each decision it sends), ``on_result`` decides a result of the trial at a point with a cutoff as the
        plan says (``CONTINUE`` iff its score reaches the cutoff), whatever other trials reported first, because
        the trial may already have gone on or ended. Give ``None`` at a point whose decision must wait for the
        result's arrival (one that may pause, exploit, or turn on results not in yet).
        """
        return None

    def choose_trial_to_run(self, view: SchedulerView) -> int | None:
        """Id of a PAUSED trial to resume now, or ``None`` to let the controller start new trials."""
        return None

    def trials_to_stop(self, view: SchedulerView) -> list[int]:
        """PAUSED trials that will never resume (e.g. HyperBand rung losers); polled after each batch of
        events. The controller terminates each and calls ``on_complete``."""
        return []

    def on_no_more_trials(self, view: SchedulerView) -> None:
        """No trial will be added until a paused one runs again: the searcher is exhausted, or it waits for
        trials to end (a ``ConcurrencyLimiter`` counts paused trials as unfinished) while nothing runs. The
        scheduler must then decide with the trials it has (HyperBand closes a bracket that cannot fill, PBT
        stops waiting for newcomers); otherwise the experiment would wait forever. May be called more than
        once, and trials may be added after it (a limiter's slot freed)."""

    def accepting_new_trials(self, view: SchedulerView) -> bool:
        """False to keep the controller from starting new trials now (e.g. close to a deadline). While nothing
        runs and nothing paused is chosen to resume, ``False`` ends the experiment (nothing could change)."""
        return True

    def to_spec(self) -> dict[str, Any]:
        return constructor_spec(self)


def reads_finished_trials(scheduler: Scheduler) -> bool:
    """Whether the controller must keep finished trials in ``view.trials`` for ``scheduler``: False only when
    the scheduler's own class says ``needs_finished_trials = False``. A user's subclass of a built-in that
    says so (``class StartsLate(ts.FIFO)`` reading ``view.trials``) inherits the attribute, not the promise:
    its finished trials are kept."""
    return type(scheduler).__dict__.get("needs_finished_trials", True) is not False


def starts_trials_early(scheduler: Scheduler) -> bool:
    """Whether ``run`` may let an executor hand a new trial to a busy worker ahead under ``scheduler``: only when
    the scheduler's own class says ``new_trials_may_wait = True`` (a user's subclass of ASHA that overrides
    ``on_trial_add`` or ``choose_trial_to_run`` inherits the attribute, not the promise)."""
    return type(scheduler).__dict__.get("new_trials_may_wait", False) is True


def misanswered(scheduler: Scheduler, method: str, answer: Any, expected: str, about: str = "") -> ConfigError:
    """The error for a hook of a scheduler of the user's own that answered what the controller cannot use (a
    forgotten ``return``, a string for a bool or an id): it names the class, the method, the answer (``about``: for
    what) and what was expected. The controller raises it where it receives the answer, failing the run. A built-in
    wrapper (``ResourceChanging``, ``Deadline``) passes the answers of the scheduler it wraps on: that one is named,
    inside its wrappers (theirs are never junk)."""
    import reprlib

    inner, wrappers = scheduler, []
    while type(inner).__module__.startswith("tunesmith.") and isinstance(getattr(inner, "_inner", None), Scheduler):
        wrappers.append(type(inner).__name__)
        inner = inner._inner  # type: ignore[attr-defined]
    inside = f" (inside {', '.join(wrappers)})" if wrappers else ""
    return ConfigError(f"{type(inner).__name__}.{method}{inside} returned {type(answer).__name__} "
                       f"{reprlib.repr(answer)}{about}; expected {expected}")


def is_trial_id(value: Any) -> bool:
    """Whether a hook's answer may be a trial id: an int (numpy's too), not a bool. Asked at every result
    (``decision_iteration``): an int is answered without the ABC's isinstance."""
    return type(value) is int or (isinstance(value, numbers.Integral) and not isinstance(value, bool))


class FIFO(Scheduler):
    """Run every trial until it returns or a stop rule ends it. The default scheduler."""

    needs_finished_trials = False
    new_trials_may_wait = True
