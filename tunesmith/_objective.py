"""What an experiment optimises: one metric and its direction, or (multi-objective) several.

``run(metric=..., mode=...)`` takes a name and ``"min"``/``"max"``, or lists of them. Past ``run`` that pair
is one :class:`Objective`, validated once, so "one name or a list?" and "which way is better?" are answered
here instead of in every searcher, scheduler, the controller, the results API and plots.

Conventions: ``score`` is *higher is better* (the value for ``"max"``, its negation for ``"min"``), so a
descending sort puts the best first; ``better(a, b)`` compares two raw values in the objective's direction.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

from tunesmith._errors import ConfigError
from tunesmith._record import FrozenRecord
from tunesmith.trial import Result, trial_name

MODES = ("min", "max")


def unwrap_single(metric: Any, mode: Any) -> tuple[Any, Any]:
    """One metric in a list (``["loss"]``, a tuple too) as that single metric, and its mode alone in a list as that
    mode: what ``run``, ``load`` and a stored spec mean by it (a multi-objective experiment of one metric would have
    no ``best``). Anything else is returned as given, for :meth:`Objective.from_args` to check."""
    if isinstance(metric, (list, tuple)) and len(metric) == 1:
        return metric[0], mode[0] if isinstance(mode, (list, tuple)) and len(mode) == 1 else mode
    return metric, mode


class Objective(FrozenRecord):
    """An experiment's metric(s) and mode(s).

    Attributes:
        names: the metric names (none when the experiment has no metric).
        modes: ``"min"``/``"max"`` per name.
        multi: given as a list of several names: multi-objective, so there is no single "best" (one name in a list
            is that single metric: ``unwrap_single``).
    """

    names: tuple[str, ...]
    modes: tuple[str, ...]
    multi: bool
    _fields = ("names", "modes", "multi")

    def __init__(self, names: tuple[str, ...] = (), modes: tuple[str, ...] = (), multi: bool = False) -> None:
        self._set(names=names, modes=modes, multi=multi)

    # -- construction ---------------------------------------------------------------------------------
    @classmethod
    def from_args(cls, metric: Any, mode: Any) -> Objective:
        """Check ``run``'s ``metric``/``mode``: one name and ``"min"``/``"max"``, or a list of distinct names
        and a list of as many modes; no metric and no mode is the empty objective.

        Raises:
            ConfigError: naming ``metric`` or ``mode`` and what was expected.
        """
        if metric is None:
            if mode is not None:
                raise ConfigError(f"mode={mode!r} was given without a metric: pass metric='<name>' too")
            return cls()
        if isinstance(metric, (list, tuple)):
            if not metric:
                raise ConfigError("metric: expected a metric name or a non-empty list of names, got []")
            for i, name in enumerate(metric):
                if not isinstance(name, str) or not name:
                    raise ConfigError(f"metric[{i}] must be the name (str) of a reported metric, got {name!r}")
                if name in metric[:i]:
                    raise ConfigError(f"metric[{i}]: {name!r} is listed twice; each metric once")
            if not isinstance(mode, (list, tuple)) or len(mode) != len(metric):
                raise ConfigError(f"mode must be a list of {len(metric)} 'min'/'max' values, one per metric in "
                                  f"{list(metric)!r}, got {mode!r}")
            for i, m in enumerate(mode):
                if m not in MODES:
                    raise ConfigError(f"mode[{i}] (for metric {metric[i]!r}) must be 'min' or 'max', got {m!r}")
            return cls(tuple(metric), tuple(mode), multi=True)
        if not isinstance(metric, str) or not metric:
            raise ConfigError(f"metric must be the name (str) of a reported metric, or a list of names, got {metric!r}")
        if mode not in MODES:
            raise ConfigError(f"mode must be 'min' or 'max' when metric is given, got {mode!r}")
        return cls((metric,), (mode,))

    @classmethod
    def single(cls, metric: str, mode: str) -> Objective:
        """One metric and its mode (checked: the name non-empty, the mode ``"min"``/``"max"``)."""
        if not isinstance(metric, str) or not metric or mode not in MODES:
            raise ValueError(f"Objective.single expects a metric name and 'min'/'max', got {metric!r}, {mode!r}")
        return cls((metric,), (mode,))

    @classmethod
    def for_searcher(cls, metric: Any, mode: Any, *, multi: bool = True, owner: str = "this searcher") -> Objective:
        """The objective of a searcher that learns from results: ``setup``'s ``metric``/``mode`` must name
        one metric, or (``multi=True``) several.

        Raises:
            ConfigError: naming ``metric`` or ``mode``, and the searcher (``owner``).
        """
        if isinstance(metric, str) and metric:
            if mode not in MODES:
                raise ConfigError(f"mode: {owner} expects 'min' or 'max' for metric {metric!r}; got {mode!r}")
            return cls((metric,), (mode,))
        if not multi or not isinstance(metric, (list, tuple)):
            what = "the name of a reported metric" + (" or a list of names" if multi else "")
            raise ConfigError(f"metric: {owner} learns from results and needs {what}; got {metric!r}")
        if not metric or not all(isinstance(m, str) and m for m in metric) or len(set(metric)) != len(metric):
            raise ConfigError(f"metric: expected a non-empty list of distinct metric names; got {metric!r}")
        if not isinstance(mode, (list, tuple)) or len(mode) != len(metric):
            raise ConfigError(f"mode: expected a list of {len(metric)} 'min'/'max' values, one per metric in "
                              f"{list(metric)!r}; got {mode!r}")
        if any(m not in MODES for m in mode):
            raise ConfigError(f"mode: expected only 'min' or 'max'; got {mode!r}")
        return cls(tuple(metric), tuple(mode), multi=True)

    @classmethod
    def for_scheduler(cls, owner: str, own_metric: Any, own_mode: Any, metric: Any, mode: Any) -> Objective:
        """The one metric a scheduler compares trials by: its own ``metric``/``mode`` if given, else the
        experiment's (``setup``'s arguments).

        Raises:
            ConfigError: naming ``metric`` or ``mode`` when the result is missing or is not one metric.
        """
        chosen_metric = own_metric if own_metric is not None else metric
        chosen_mode = own_mode if own_mode is not None else mode
        if not isinstance(chosen_metric, str) or not chosen_metric:
            raise ConfigError(
                f"metric: {owner} needs the name of one reported metric (pass metric= to {owner} or to "
                f"run()); got {chosen_metric!r}")
        if chosen_mode not in MODES:
            raise ConfigError(f"mode: {owner} expects 'min' or 'max' (to {owner} or to run()); got {chosen_mode!r}")
        return cls((chosen_metric,), (chosen_mode,))

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> Objective:
        """The objective an experiment was run with, from its stored spec (``metric``/``mode`` as ``run``
        stored them). A spec that does not hold a valid pair (a damaged or foreign store) reads as no
        objective rather than failing: the trials can still be read."""
        try:  # a spec an earlier version stored with one metric in a list: that metric
            return cls.from_args(*unwrap_single(spec.get("metric"), spec.get("mode")))
        except ConfigError:
            return cls()

    def to_spec(self) -> dict[str, Any]:
        """``{"metric": ..., "mode": ...}`` as the store keeps them (a name or a list; ``None`` without a metric),
        so experiments stored before this type existed read the same."""
        return {"metric": self.metric, "mode": self.mode}

    # -- the public (run/store) form ----------------------------------------------------------------------
    @property
    def metric(self) -> str | list[str] | None:
        """The names as ``run`` takes them: one name, a list (multi-objective), or None."""
        if self.multi:
            return list(self.names)
        return self.names[0] if self.names else None

    @property
    def mode(self) -> str | list[str] | None:
        """The modes as ``run`` takes them, matching :attr:`metric`."""
        if self.multi:
            return list(self.modes)
        return self.modes[0] if self.modes else None

    @property
    def is_multi(self) -> bool:
        return self.multi

    def __bool__(self) -> bool:
        """Whether there is a metric at all."""
        return bool(self.names)

    @property
    def primary(self) -> str:
        """The one metric of a single objective.

        Raises:
            ValueError: several metrics, or none.
        """
        if self.multi or len(self.names) != 1:
            raise ValueError(f"not a single objective: {self.metric!r}")
        return self.names[0]

    @property
    def primary_mode(self) -> str:
        """The mode of :attr:`primary`."""
        self.primary  # noqa: B018 - raises for a multi or empty objective
        return self.modes[0]

    def mode_of(self, name: str) -> str | None:
        """The mode of metric ``name``, or None when it is not one of the objective's."""
        return self.modes[self.names.index(name)] if name in self.names else None

    # -- comparing results ---------------------------------------------------------------------------------
    def value(self, metrics: Mapping[str, Any]) -> float | None:
        """The single objective's value in a result: a real number (not bool, not NaN) as a float, else None
        (missing, not a number, NaN, or not a single objective)."""
        if self.multi or len(self.names) != 1:
            return None
        return _real(metrics.get(self.names[0]))

    def values(self, metrics: Mapping[str, Any]) -> list[float] | None:
        """Every metric's value in a result (as :meth:`value`), or None if one is unusable."""
        out = [_real(metrics.get(name)) for name in self.names]
        return None if any(v is None for v in out) else [float(v) for v in out if v is not None]

    def better(self, a: float, b: float) -> bool:
        """Whether value ``a`` of the single objective is strictly better than ``b`` (NaN never is)."""
        return a < b if self.primary_mode == "min" else a > b

    def score(self, result: Result | Mapping[str, Any]) -> float:
        """The single objective's value in ``result`` (a :class:`~tunesmith.trial.Result` or a metrics dict),
        signed so that higher is better; NaN stays NaN (callers rank it worst).

        Raises:
            ConfigError: the metric is missing from the result or is not a number (naming the trial when
                ``result`` is a ``Result``).
        """
        name = self.primary
        metrics = result.metrics if isinstance(result, Result) else result
        where = f" of {trial_name(result.trial_id)}" if isinstance(result, Result) else ""
        try:
            value = metrics[name]
        except KeyError:
            at = f" at iteration {result.iteration}" if isinstance(result, Result) else ""
            raise ConfigError(f"metric {name!r} is missing from the result{where}{at} (reported keys: "
                              f"{sorted(metrics)})") from None
        if not isinstance(value, numbers.Real):
            raise ConfigError(f"metric {name!r}{where} must be a number; got {value!r}")
        return float(value) if self.primary_mode == "max" else -float(value)

    def reported_score(self, result: Result | Mapping[str, Any]) -> float | None:
        """:meth:`score`, or None when the result does not hold the metric (absent, or ``None``): a result that a
        scheduler has nothing to decide on (a trial that validates every few steps reports its metric only then).

        Raises:
            ConfigError: the metric is there but is not a number.
        """
        metrics = result.metrics if isinstance(result, Result) else result
        return None if metrics.get(self.primary) is None else self.score(result)

    def missing(self, metrics: Mapping[str, Any]) -> list[str]:
        """The objective's metrics that a result does not hold (absent or None)."""
        return [name for name in self.names if metrics.get(name) is None]

    def missing_error(self, missing: list[str], trial: str, reported: str) -> ConfigError:
        """The error for a trial whose first result lacks ``missing`` (``reported``: the keys it has)."""
        if self.multi:
            return ConfigError(f"metric {missing[0]!r} (of {self.metric!r}) is not in the results of {trial} (it "
                               f"reported: {reported}); report every metric, or pass metric= some of those")
        return ConfigError(f"metric {missing[0]!r} is not in the results of {trial} (it reported: {reported}); "
                           f"report it, or pass metric= one of those")


def _real(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
        return None
    return float(value)
