"""Stop rules: ``stop={"training_iteration": 100}``, ``stop={"loss": 0.01}``, ``{"done": True}``, a callable, a
:class:`Stopper` (``TrialPlateau``, ``ExperimentPlateau``, your own), a list of any of them, or none.

Per-trial rules are pure and travel to the workers (each trial evaluates them on the result it makes);
experiment-level rules (a ``Stopper`` that defines ``stop_all``) see every trial's results, so they stay in
the driver, which ends the whole experiment when one says so.
"""

from __future__ import annotations

import logging
import math
import numbers
from collections import deque
from collections.abc import Callable
from typing import Any

from tunesmith._errors import ConfigError
from tunesmith._objective import Objective
from tunesmith.trial import ITERATION, TIME_TOTAL, TIMESTAMP, trial_name

log = logging.getLogger("tunesmith")

StopFn = Callable[[int, dict[str, Any]], bool]


class Stopper:
    """A stop rule with state, as Ray Tune's ``Stopper``: ``__call__(trial_id, result)`` stops that trial when it
    returns True; ``stop_all()`` (checked after each result) ends the whole experiment when it returns True.

    A stopper that does not override ``stop_all`` is per trial: it is shipped to the trials (cloudpickled) and
    evaluated on each result there, so it must keep its state per ``trial_id`` (and be pure: no I/O, no clock).
    One that overrides ``stop_all`` sees every trial's results in order, in the driver only.
    """

    # Whether an experiment-level stopper's ``__call__`` may stop a trial. It is asked in the driver, so a trial then
    # waits for the driver's answer at each result (one round trip a result), to make the result that met the rule
    # its last stored one. A stopper whose ``__call__`` only observes (``ExperimentPlateau``) says False.
    stops_trials: bool = True

    def __call__(self, trial_id: int, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        return False

    def bind(self, objective: Objective) -> None:
        """Called once by ``run`` with the experiment's objective (a stopper without ``mode`` takes its mode)."""

    @property
    def experiment_level(self) -> bool:
        return type(self).stop_all is not Stopper.stop_all

    def to_spec(self) -> Any:
        return {"stopper": stored_name(self)}


def stored_name(obj: Any) -> str:
    """How the store names a function or a Stopper of the user's (``resources=``, ``constraints=``, ``stop=``):
    ``module:qualname`` of the function, or of the stopper's class, which ``tunesmith resume`` imports once the
    user confirms it. Anything else (a ``functools.partial``, a callable object) is named without a module: the
    command line cannot rebuild it and asks the user to name one."""
    import inspect

    target = type(obj) if isinstance(obj, Stopper) else obj
    if inspect.isfunction(target) or inspect.isclass(target):
        return f"{target.__module__}:{target.__qualname__}"
    return getattr(target, "__qualname__", None) or type(target).__qualname__


def signature_refusing(fn: Any, *args: Any) -> str | None:
    """The signature of ``fn`` when it cannot be called with ``args``; None when it can, or when Python cannot tell
    (a builtin)."""
    import inspect

    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    try:
        signature.bind(*args)
    except TypeError:
        return str(signature)
    return None


def _check_callable(stop: Any, where: str) -> None:
    """A stop rule that cannot be called as the trials and the driver call it is refused before anything starts
    (else every trial fails at its first result with a ``TypeError``)."""
    is_stopper = isinstance(stop, Stopper)
    name = f"{type(stop).__qualname__}.__call__" if is_stopper else getattr(stop, "__qualname__", repr(stop))
    refused = signature_refusing(stop, 0, {})
    if refused is not None:
        raise ConfigError(f"{where}: {name}{refused} cannot be called as fn(trial_id, result) (a trial's id and its "
                          f"result's metrics), which is how a stop rule is called")
    if is_stopper and stop.experiment_level:
        refused = signature_refusing(stop.stop_all)
        if refused is not None:
            raise ConfigError(f"{where}: {type(stop).__qualname__}.stop_all{refused} cannot be called as "
                              f"stop_all(), which is how an experiment-level stop rule is asked")


def _std(values: Any) -> float:
    values = list(values)
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))


def _check_number(owner: str, name: str, value: Any, low: float = 0.0, integer: bool = False) -> None:
    kinds = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kinds) or not math.isfinite(value) or value < low:
        raise ConfigError(f"{owner}: {name} must be {'an integer' if integer else 'a number'} >= {low:g}, "
                          f"got {value!r}")


class TrialPlateau(Stopper):
    """Stop a trial whose ``metric`` has plateaued: the standard deviation of its last ``num_results`` values is
    below ``std``, after at least ``grace_period`` results (Ray Tune's ``TrialPlateauStopper``).

    ``metric_threshold`` (with ``mode``, default the experiment's): stop only once the metric is at least that
    good, so a trial stuck at a bad value is not mistaken for a converged one. Non-numeric and NaN values are
    skipped. Per trial: shipped to the trials, so it stops on exactly the result that plateaued.
    """

    def __init__(self, metric: str, std: float = 0.01, num_results: int = 4, grace_period: int = 4,
                 metric_threshold: float | None = None, mode: str | None = None) -> None:
        if not isinstance(metric, str):
            raise ConfigError(f"TrialPlateau: metric must be a metric name (str), got {metric!r}")
        _check_number("TrialPlateau", "std", std)
        _check_number("TrialPlateau", "num_results", num_results, 1, integer=True)
        _check_number("TrialPlateau", "grace_period", grace_period, 0, integer=True)
        if mode not in (None, "min", "max"):
            raise ConfigError(f"TrialPlateau: mode must be 'min', 'max' or None (the experiment's), got {mode!r}")
        if metric_threshold is not None:
            _check_number("TrialPlateau", "metric_threshold", metric_threshold, -math.inf)
        self.metric, self.std, self.num_results, self.grace_period = metric, float(std), num_results, grace_period
        self.metric_threshold, self.mode = metric_threshold, mode
        self._values: dict[int, deque[float]] = {}
        self._seen: dict[int, int] = {}

    def bind(self, objective: Objective) -> None:
        if self.mode is None and self.metric_threshold is not None:
            self.mode = objective.mode_of(self.metric)
            if self.mode is None:
                raise ConfigError(f"TrialPlateau(metric={self.metric!r}, metric_threshold=...): {self.metric!r} "
                                  f"is not the experiment's metric; give mode='min' or 'max'")

    def __call__(self, trial_id: int, result: dict[str, Any]) -> bool:
        value = _real(result.get(self.metric))
        if value is None:
            return False
        seen = self._seen[trial_id] = self._seen.get(trial_id, 0) + 1
        window = self._values.setdefault(trial_id, deque(maxlen=self.num_results))
        window.append(value)
        if seen < self.grace_period or len(window) < self.num_results:
            return False
        if self.metric_threshold is not None:
            if (value > self.metric_threshold) if self.mode == "min" else (value < self.metric_threshold):
                return False
        return _std(window) < self.std

    def to_spec(self) -> Any:
        return {"TrialPlateau": {"metric": self.metric, "std": self.std, "num_results": self.num_results,
                                 "grace_period": self.grace_period, "metric_threshold": self.metric_threshold,
                                 "mode": self.mode}}


class ExperimentPlateau(Stopper):
    """End the whole experiment once the best ``top`` values of ``metric`` (over all results so far, in the
    direction of ``mode``, default the experiment's) have a standard deviation below ``std`` for more than
    ``patience`` results in a row (Ray Tune's ``ExperimentPlateauStopper``; ``patience=0``: at the first). Running
    trials are stopped, none is started.
    """

    stops_trials = False  # its __call__ only observes: trials do not wait for the driver at each result

    def __init__(self, metric: str, top: int = 10, std: float = 0.001, patience: int = 0,
                 mode: str | None = None) -> None:
        if not isinstance(metric, str):
            raise ConfigError(f"ExperimentPlateau: metric must be a metric name (str), got {metric!r}")
        _check_number("ExperimentPlateau", "top", top, 2, integer=True)
        _check_number("ExperimentPlateau", "std", std)
        _check_number("ExperimentPlateau", "patience", patience, 0, integer=True)
        if mode not in (None, "min", "max"):
            raise ConfigError(f"ExperimentPlateau: mode must be 'min', 'max' or None (the experiment's), got "
                              f"{mode!r}")
        self.metric, self.top, self.std, self.patience, self.mode = metric, top, float(std), patience, mode
        self._best: list[float] = []  # the top values, best first
        self._flat = 0

    def bind(self, objective: Objective) -> None:
        if self.mode is None:
            self.mode = objective.mode_of(self.metric)
            if self.mode is None:
                raise ConfigError(f"ExperimentPlateau(metric={self.metric!r}): {self.metric!r} is not the "
                                  f"experiment's metric; give mode='min' or 'max' (which values are the best)")

    def __call__(self, trial_id: int, result: dict[str, Any]) -> bool:
        value = _real(result.get(self.metric))
        if value is None:
            return False
        self._best.append(value)
        self._best.sort(reverse=self.mode == "max")
        del self._best[self.top:]
        if len(self._best) == self.top and _std(self._best) < self.std:
            self._flat += 1
        else:
            self._flat = 0
        return False

    def stop_all(self) -> bool:
        return self._flat > self.patience

    def to_spec(self) -> Any:
        return {"ExperimentPlateau": {"metric": self.metric, "top": self.top, "std": self.std,
                                      "patience": self.patience, "mode": self.mode}}


def _real(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    value = float(value)
    return None if math.isnan(value) else value


class StopRules:
    """Checks one result against the user's stop rules.

    A dict rule ``{key: threshold}`` stops a trial once ``result[key]`` reaches the threshold: for the
    experiment's metric in the direction of ``mode`` (``<=`` for min, ``>=`` for max), for every other
    key ``>=``. A callable is called as ``fn(trial_id, result)`` and stops the trial when it returns True.
    """

    def __init__(self, stop: Any, objective: Objective, keep_by: str | None = None) -> None:
        self.fns: list[StopFn] = []  # per trial: callables and Stoppers without stop_all
        self.experiment: list[Stopper] = []  # experiment-level: kept in the driver
        self.rules: list[tuple[str, float, bool]] = []  # key, threshold, stop when value <= threshold
        self.flags: list[tuple[str, bool]] = []  # key, the boolean value that stops a trial
        self.max_iteration: int | None = None
        # Result keys that run()'s arguments name, checked in the driver against the first results (check_keys)
        self._unchecked_stop_keys: set[str] = set()
        self._keep_by = keep_by
        self.watching = keep_by is not None
        self._raised: set[int] = set()  # the experiment-level stoppers that raised (observe_experiment)
        self.ended_by: Stopper | None = None  # the experiment-level stopper whose stop_all() ended the experiment
        self._shipped: tuple[bytes | None] | None = None  # (for_trials(),) once made
        if stop is None:
            return
        for i, item in enumerate(stop if isinstance(stop, (list, tuple)) else [stop]):
            where = f"stop[{i}]" if isinstance(stop, (list, tuple)) else "stop"
            self._add(item, objective, where)
        self.watching = self.watching or bool(self._unchecked_stop_keys)

    def _add(self, stop: Any, objective: Objective, where: str) -> None:
        if isinstance(stop, type):  # called with (trial_id, result), a class would be built at each result
            name = stop.__qualname__
            raise ConfigError(f"{where} is the class {name}: pass an instance, {name}(...)")
        if callable(stop):
            _check_callable(stop, where)
        if isinstance(stop, Stopper):
            stop.bind(objective)
            (self.experiment if stop.experiment_level else self.fns).append(stop)
            return
        if callable(stop):
            self.fns.append(stop)
            return
        if not isinstance(stop, dict):
            raise ConfigError(f"{where} must be a dict like {{'training_iteration': 100}}, a callable "
                              f"fn(trial_id, result) -> bool, a tunesmith Stopper (TrialPlateau, ExperimentPlateau) "
                              f"or a list of them, got {type(stop).__name__}")
        for key, threshold in stop.items():
            if not isinstance(key, str):
                raise ConfigError(f"{where}: keys must be metric names (str), got {key!r}")
            if isinstance(threshold, bool):
                if key == ITERATION:
                    raise ConfigError(f"{where}[{key!r}] must be a number of iterations, got {threshold!r}")
                self.flags.append((key, threshold))  # {"done": True}: stops when the result says so
                self._unchecked_stop_keys.add(key)
                continue
            if not isinstance(threshold, numbers.Real) or math.isnan(float(threshold)):
                raise ConfigError(f"{where}[{key!r}] must be a number (or True/False for a flag), got {threshold!r}")
            threshold = float(threshold) if not isinstance(threshold, numbers.Integral) else int(threshold)
            if key == ITERATION:
                if not math.isfinite(threshold) or threshold < 1:
                    raise ConfigError(f"{where}[{key!r}] must be >= 1 and finite (a number of iterations), got "
                                      f"{threshold!r} (for no iteration limit, leave {key!r} out)")
                limit = int(math.ceil(threshold))
                self.max_iteration = limit if self.max_iteration is None else min(self.max_iteration, limit)
                continue
            below = objective.mode_of(key) == "min"
            if threshold == (math.inf if below else -math.inf):
                raise ConfigError(f"{where}[{key!r}] = {threshold!r} is met by every result ({key} "
                                  f"{'<=' if below else '>='} {threshold!r}): each trial would stop after its first "
                                  f"result; give a finite threshold")
            self.rules.append((key, float(threshold), below))
            self._unchecked_stop_keys.add(key)

    def check_keys(self, trial_name: str, metrics: dict[str, Any], has_checkpoint: bool,
                   strict: bool = True) -> ConfigError | None:
        """Check a result (in the driver, while ``watching``) for the keys that ``stop`` and ``keep_by`` name.

        A ``stop`` key missing from a result, or reported as text, logs one warning per key (a rule on a key no
        trial reports as a number never fires); a key once seen is not checked again. The first result that carries
        a checkpoint must hold ``keep_by`` (it ranks the checkpoints): without it, the returned ``ConfigError``
        (``strict``) or a warning.

        Returns:
            The error that should end the experiment, or None.
        """
        for key in list(self._unchecked_stop_keys):  # checked once, against the first result
            self._unchecked_stop_keys.discard(key)
            if key not in metrics:
                log.warning("stop[%r]: %s reported a result without %r (it reported: %s); a stop rule on a key "
                            "that trials never report never stops them", key, trial_name, key, _reported(metrics))
            elif not isinstance(metrics[key], numbers.Real):  # text: judged by no threshold nor flag (a bool is one)
                log.warning("stop[%r]: %s reported %r as %s, not a number; a stop rule on a key that trials report "
                            "as %s never stops them", key, trial_name, key, type(metrics[key]).__name__,
                            type(metrics[key]).__name__)
        error = None
        if self._keep_by is not None and has_checkpoint:
            keep_by, self._keep_by = self._keep_by, None
            if keep_by not in metrics:
                message = (f"keep_by={keep_by!r} is not in the result of {trial_name} that carries a checkpoint (it "
                           f"reported: {_reported(metrics)}); report it with every checkpoint, or pass keep_by= one "
                           f"of those")
                if strict:
                    error = ConfigError(message)
                else:
                    log.warning("%s; checkpoints without it are the first to be deleted", message)
        self.watching = bool(self._unchecked_stop_keys) or self._keep_by is not None
        return error

    def should_stop(self, trial_id: int, iteration: int, metrics: dict[str, Any]) -> bool:
        if self.max_iteration is not None and iteration >= self.max_iteration:
            return True
        for key, threshold, below in self.rules:
            value = metrics.get(key)
            if value is None or isinstance(value, str):
                continue
            if (value <= threshold) if below else (value >= threshold):
                return True
        for key, flag in self.flags:
            value = metrics.get(key)
            if isinstance(value, (bool, numbers.Real)) and not isinstance(value, str) and bool(value) is flag:
                return True
        # every per-trial stopper sees every result (they keep state), even once one of them said stop
        stops = [self._call(fn, trial_id, iteration, metrics) for fn in self.fns]
        return any(stops)

    @staticmethod
    def _call(fn: StopFn, trial_id: int, iteration: int, metrics: dict[str, Any]) -> bool:
        """A per-trial rule's verdict; one that raises (or returns what has no truth value) is a ConfigError naming
        it and the result: the trial fails with it (in the trial), or the experiment does (in the driver)."""
        try:
            return bool(fn(trial_id, metrics))
        except Exception as e:  # noqa: BLE001 - the user's rule: named in the error
            raise _rule_error(fn, "", e, f"{trial_name(trial_id)}'s result {iteration}") from e

    @property
    def stops_trials_from_driver(self) -> bool:
        """Whether an experiment-level stopper may stop a single trial (``__call__``, asked in the driver): a trial
        then waits for the driver at each result (``Controller._decision_iteration``)."""
        return any(s.stops_trials and type(s).__call__ is not Stopper.__call__ for s in self.experiment)

    def observe_experiment(self, trial_id: int, metrics: dict[str, Any],
                           fail: Callable[[BaseException], None] | None = None,
                           where: str = "a result") -> tuple[bool, bool]:
        """In the driver, each result of every trial in order: (stop this trial, end the experiment) by the
        experiment-level stoppers.

        A stopper whose ``__call__`` or ``stop_all()`` raises is a ConfigError naming it, ``where`` (the trial's
        result) and the exception: given to ``fail`` (the controller's, which ends the experiment), raised
        without one. The stopper is not asked again."""
        trial = False
        for stopper in self.experiment:  # every stopper sees the result before any is asked to end
            trial = bool(self._ask(stopper, "__call__", (trial_id, metrics), fail, where)) or trial
        return trial, self.ended(fail, where)

    def ended(self, fail: Callable[[BaseException], None] | None = None, where: str = "a result") -> bool:
        """Whether an experiment-level stopper's ``stop_all()`` ends the experiment (asked in order until one
        does); one that raises is handled as :meth:`observe_experiment` says."""
        for stopper in self.experiment:
            if self._ask(stopper, "stop_all()", (), fail, where):
                self.ended_by = stopper
                return True
        return False

    def _ask(self, stopper: Stopper, method: str, args: tuple[Any, ...],
             fail: Callable[[BaseException], None] | None, where: str) -> bool:
        if id(stopper) in self._raised:
            return False
        try:
            return bool(stopper(*args) if method == "__call__" else stopper.stop_all())
        except Exception as e:  # noqa: BLE001 - the user's stopper: named in the error
            self._raised.add(id(stopper))
            error = _rule_error(stopper, f": {method}", e, where)
            if fail is None:
                raise error from e
            fail(error)
            return False

    def for_trials(self) -> bytes | None:
        """These rules cloudpickled for the trial's own process, which evaluates them on each result it makes
        and stops at exactly the one that met them (the driver sees results in batches, thousands late in a
        tight loop). None when there is nothing to ship: no rule, or only ``training_iteration``, which the
        trial already waits for at its report; or a callable that cannot be pickled (the driver alone
        evaluates it then, as before).

        Made once, at the first call (the executor's setup, before any result): the rules as given, with no
        trial's state, which every trial starts from (and ``for_restart`` rebuilds a restarted trial's on)."""
        if self._shipped is None:
            self._shipped = (self._pickled_for_trials(),)
        return self._shipped[0]

    def _pickled_for_trials(self) -> bytes | None:
        if not self.rules and not self.flags and not self.fns:
            return None
        import copy

        import cloudpickle

        shipped = copy.copy(self)
        shipped.experiment = []  # they need every trial's results: the driver's alone
        try:
            return cloudpickle.dumps(shipped)
        except Exception:  # noqa: BLE001 - e.g. a callable holding a lock: evaluated in the driver only
            return None

    def for_restart(self, trial_id: int, history: list[dict[str, Any]]) -> tuple[StopRules, bytes] | None:
        """The rules a trial that starts again (after a pause, a retry, an exploit, a resume) goes on with: those
        every trial starts from (``for_trials``) shown its stored results first, in order, so that a rule that
        keeps state (``TrialPlateau``'s window, a callable's count) is where it was at the restart point rather
        than empty; with them pickled for the trial's process. None where no rule keeps state (thresholds and
        flags judge each result alone) or the rules cannot be pickled (the driver's, as they are, judge then)."""
        shipped = self.for_trials()
        if shipped is None or not self.fns:
            return None
        import pickle

        rules: StopRules = pickle.loads(shipped)  # noqa: S301 - pickled by this process (for_trials)
        for result in history:
            rules.should_stop(trial_id, result[ITERATION], result)
        if not history:
            return rules, shipped
        import cloudpickle

        try:
            return rules, cloudpickle.dumps(rules)
        except Exception:  # noqa: BLE001 - a state that cannot be pickled: the driver's copy judges alone
            return rules, shipped

    def to_spec(self) -> Any:
        spec: dict[str, Any] = {k: t for k, t, _ in self.rules}
        spec.update(dict(self.flags))
        if self.max_iteration is not None:
            spec[ITERATION] = self.max_iteration
        others = [fn.to_spec() if isinstance(fn, Stopper) else {"callable": stored_name(fn)}
                  for fn in [*self.fns, *self.experiment]]
        if not others:
            return spec
        if len(others) == 1 and not spec:
            return others[0]
        return [spec, *others] if spec else others


def _rule_error(rule: Any, method: str, error: Exception, where: str) -> ConfigError:
    return ConfigError(f"stop rule {stored_name(rule)}{method} raised {type(error).__name__}: {error} at {where}")


def _reported(metrics: dict[str, Any]) -> str:
    return ", ".join(sorted(k for k in metrics if k not in (TIME_TOTAL, TIMESTAMP)))
