"""Callbacks observe an experiment; they never decide. Users may write their own by subclassing."""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

from tunesmith.trial import Result, TrialStatus, TrialView

log = logging.getLogger("tunesmith")


class Callback:
    """Hooks called by the controller, in the driver process, after the events are in the store.

    Subclass it and override the hooks you need (each does nothing by default); pass instances in
    ``tunesmith.run(..., callbacks=[...])``. Callbacks observe: the ``TrialView`` and ``ExperimentInfo``
    they get are read-only views of the controller's state, valid during the call. Hooks run in the
    driver's loop, so a slow hook slows the experiment. An exception raised in a hook does not end the run:
    callbacks observe and never decide, so the controller logs it (with its traceback, the first time per
    callback and hook) and goes on, calling the hook again at the next event.

    ``on_trial_results`` gets the results of one trial in order, in batches (one call per batch, not per
    result), so a callback costs the loop one call per batch however fast trials report
    (``.venv/bin/python benchmarks/loggers.py`` measures the built-in ones).
    """

    def on_experiment_start(self, experiment: ExperimentInfo) -> None:
        """Before the first trial starts (also when an experiment is resumed)."""

    def on_trial_start(self, trial: TrialView) -> None:
        """A trial starts on a worker: first time, and again after a pause, a retry or a PBT exploit (then
        possibly with a new ``trial.config``)."""

    def on_trial_results(self, trial: TrialView, results: list[Result]) -> None:
        """New results of ``trial``, in iteration order; ``result.metrics`` holds what the trial reported
        plus ``training_iteration``, ``time_total_s`` and ``timestamp``. A trial restarted from a
        checkpoint at iteration k reports iterations after k again."""

    def on_trial_complete(self, trial: TrialView) -> None:
        """The trial ended (its function returned, or a stop rule or the scheduler stopped it)."""

    def on_trial_error(self, trial: TrialView) -> None:
        """The trial failed for good (``trial.error`` holds the traceback)."""

    def on_tick(self, experiment: ExperimentInfo) -> None:
        """Called every turn of the controller's loop (several times a second): keep it cheap."""

    def on_experiment_end(self, experiment: ExperimentInfo) -> None:
        """After the last trial, also when the run was interrupted or failed."""


class ExperimentInfo:
    """A read-only window on the running experiment for callbacks: its dicts are read-only views
    (``types.MappingProxyType``); a user's callback gets one whose ``trials`` are copies (``Notifier``)."""

    def __init__(self, controller: Any, _copies: bool = False) -> None:
        self._c = controller
        self._copies = _copies
        self._for_users: ExperimentInfo | None = None

    def _users_window(self) -> ExperimentInfo:
        """The window given to callbacks that are not tunesmith's own: ``trials`` copies each one read."""
        if self._for_users is None:
            self._for_users = ExperimentInfo(self._c, _copies=True)
        return self._for_users

    @property
    def name(self) -> str:
        return self._c.name

    @property
    def path(self) -> str:
        return self._c.exp_dir

    @property
    def created(self) -> float | None:
        """When the experiment's store was created (epoch seconds; the same after a resume or a move)."""
        return self._c.created  # read once, by the controller (the trials' experiment key is made of it too)

    def _stored_results(self, trial_id: int) -> list[Result]:
        """The stored results of ``trial_id`` (its current generation), for tunesmith's file loggers in a resumed
        driver: a trial's files start as the store has it (``tunesmith export``'s), whatever an earlier driver
        left."""
        from tunesmith.store.sqlite import stored_results

        return stored_results(self._c.store, trial_id)

    def _past_configs(self, trial_id: int) -> list[Any]:
        """The configs ``trial_id`` had before its PBT exploits (``Store.past_configs``): its stored results up to an
        exploit's clone were reported under one of them, and are masked with its secrets too."""
        return self._c.store.past_configs(trial_id).get(trial_id, [])

    @property
    def metric(self) -> Any:
        return self._c.metric

    @property
    def mode(self) -> Any:
        return self._c.mode

    @property
    def trials(self) -> Mapping[int, TrialView]:
        """The trials the controller holds, by id: every unfinished one. Finished trials leave it when they end
        (the store keeps them: ``tunesmith.load(path)``), unless the scheduler reads them
        (``Scheduler.needs_finished_trials``: PBT, PB2, HyperBand...): the driver's memory then follows the
        running trials. ``counts`` and ``num_trials`` count every trial. Read-only."""
        if self._copies:
            return _CopiedTrials(self._c.trials)
        return MappingProxyType(self._c.trials)

    @property
    def counts(self) -> dict[TrialStatus, int]:
        """How many trials are in each status, the finished ones no longer in ``trials`` included."""
        return self._c.counts()

    @property
    def num_trials(self) -> int:
        """How many trials the experiment has so far (in ``trials`` or finished)."""
        return self._c.num_trials

    @property
    def elapsed(self) -> float:
        return self._c.elapsed()

    @property
    def status(self) -> str:
        """``"running"``, then how the run ended, as ``on_experiment_end`` sees it: ``"finished"``, ``"failed"`` (a
        fatal error, ``fail_fast``, a store that could not be written) or ``"interrupted"`` (Ctrl-C, SIGTERM; from
        then on, while its running trials are stopped)."""
        return getattr(self._c, "ended", None) or "running"

    @property
    def ended_by(self) -> str | None:
        """What stopped the experiment before its trials were done, once it began stopping them:
        ``"time_budget_s=600"``, ``"stop rule ExperimentPlateau at trial_00003's result 12"``, ``"a stop from the
        dashboard"``; None otherwise (the trials ran out, or a Ctrl-C or an error ended it: ``status`` says)."""
        return self._c.ended_by

    @property
    def best(self) -> tuple[int, float] | None:
        """(trial id, value) of the best single result so far for the metric, or None."""
        return self._c.best_so_far

    @property
    def num_results(self) -> int:
        return self._c.num_results

    @property
    def num_samples(self) -> int:
        return self._c.num_samples

    @property
    def total_trials(self) -> int | None:
        """How many trials the experiment will have in all, when known: every trial once the searcher
        said it has no more; before that the searcher's own count (``Random``: grid points x
        ``num_samples``); None when unbounded (``num_samples=-1``) or the searcher does not say."""
        c = self._c
        if getattr(c, "_searcher_done", False):
            return c.num_trials
        total = getattr(getattr(c, "searcher", None), "_total", None)
        if isinstance(total, int) and not isinstance(total, bool):
            return max(total, c.num_trials)
        return None

    @property
    def time_budget_s(self) -> float | None:
        return self._c.time_budget_s

    @property
    def resources_in_use(self) -> dict[str, float]:
        return self._c.resources_in_use()

    @property
    def total_resources(self) -> Mapping[str, float]:
        return MappingProxyType(self._c.total_resources)


class _CopiedTrials(Mapping[int, TrialView]):
    """The controller's trials as a user's callback reads them: a copy of each trial it looks up."""

    def __init__(self, trials: dict[int, TrialView]) -> None:
        self._trials = trials

    def __getitem__(self, trial_id: int) -> TrialView:
        return _copy_view(self._trials[trial_id])

    def __iter__(self) -> Iterator[int]:
        return iter(self._trials)

    def __len__(self) -> int:
        return len(self._trials)

    def __contains__(self, trial_id: object) -> bool:
        return trial_id in self._trials


def _own(cb: Callback) -> bool:
    """Whether ``cb`` is one of tunesmith's own callbacks (its class defined in a ``tunesmith.`` module)."""
    return type(cb).__module__.startswith("tunesmith.")


def _copy_result(result: Result) -> Result:
    new = object.__new__(Result)  # as ``__replace__`` does, without its checks (a third of the time)
    vars(new).update(vars(result), metrics=result.metrics.copy())
    return new


_SCALARS = frozenset((int, float, str, bool, type(None)))


class _NotPlain(Exception):
    pass


def _plain_copy(value: Any) -> Any:
    """A deep copy of scalars in dicts, lists and tuples (what a config holds); ``_NotPlain`` for anything else."""
    cls = value.__class__
    if cls in _SCALARS:
        return value
    if cls is dict:
        return {k: _plain_copy(v) for k, v in value.items()}
    if cls is list:
        return [_plain_copy(v) for v in value]
    if cls is tuple:
        return tuple(_plain_copy(v) for v in value)
    raise _NotPlain


def _copy_config(config: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of a config: built directly when it holds scalars in dicts, lists and tuples (the usual, a
    fraction of ``copy.deepcopy``'s time), else by ``copy.deepcopy`` (a value it cannot copy is shared)."""
    try:
        for v in config.values():
            if v.__class__ not in _SCALARS:
                return {k: _plain_copy(v) for k, v in config.items()}
        return config.copy()  # flat scalars: a new dict is a deep copy
    except _NotPlain:
        pass
    try:
        return copy.deepcopy(config)
    except Exception:  # noqa: BLE001 - a config value that cannot be copied: a new dict at least
        return dict(config)


def _copy_view(trial: TrialView) -> TrialView:
    """A copy of ``trial`` that a callback may change without changing the controller's: config deep-copied,
    resources and last result copied."""
    config = _copy_config(trial.config)
    last = trial.last_result
    new = object.__new__(type(trial))
    vars(new).update(vars(trial), config=config, resources=trial.resources.copy(),
                     last_result=None if last is None else _copy_result(last))
    return new


def _copy_arg(arg: Any) -> Any:
    if isinstance(arg, TrialView):
        return _copy_view(arg)
    if isinstance(arg, ExperimentInfo):
        return arg._users_window()
    if isinstance(arg, list):
        return [_copy_result(r) if isinstance(r, Result) else r for r in arg]
    return arg


class Notifier:
    """The controller's way to call its callbacks: ``notify(hook, *args)`` calls ``hook`` on every callback.
    Callbacks observe and never decide, so one that raises is logged (with its traceback, the first time per
    callback and hook) and the experiment goes on.

    Callbacks observe and never change: tunesmith's own (their class in a ``tunesmith.`` module: ``Progress``,
    the loggers) get the controller's objects, a user's callback gets copies (a ``TrialView`` with a deep-copied
    config, results with copied ``metrics``), made once per notification for all of them and only when there
    is one."""

    def __init__(self, callbacks: list[Callback]) -> None:
        self.callbacks = callbacks
        self._failures: set[tuple[int, str]] = set()
        # set once a callback's sys.exit() ends the run: while its trials stop, another SystemExit (a hook that
        # exits at every result) is logged and the stopping goes on, so they are paused, not killed
        self.exiting = False

    @property
    def callbacks(self) -> list[Callback]:
        return self._callbacks

    @callbacks.setter
    def callbacks(self, callbacks: list[Callback]) -> None:
        self._callbacks = callbacks
        self._plan = [(cb, _own(cb)) for cb in callbacks]  # whose class is tunesmith's, found once

    def __call__(self, hook: str, *args: Any) -> None:
        copies: tuple[Any, ...] | None = None
        for cb, own in self._plan:
            given = args
            if not own:
                if copies is None:
                    copies = tuple(_copy_arg(a) for a in args)
                given = copies
            try:
                getattr(cb, hook)(*given)
            except SystemExit as e:
                if not self.exiting:
                    raise
                log.warning("callback %s.%s raised SystemExit(%r) again while the run stops: ignored",
                            type(cb).__name__, hook, e.code)
            except Exception:  # noqa: BLE001 - a broken logger must not end hours of tuning
                key = (id(cb), hook)
                if key not in self._failures:
                    self._failures.add(key)
                    log.exception("callback %s.%s failed (later failures of it are not logged); the experiment "
                                  "goes on", type(cb).__name__, hook)
