"""Reading an experiment for the plots: one columnar read of the store (``shared_read`` lets every
plot of a report share it), and what several plots derive from it (the metric and mode, final values,
seed keys, early stops, the parameters that vary).

The plots read an experiment through :class:`PlotSource`, the part of ``tunesmith.results.ResultSet`` they
use, so they sit below the results module (which draws them for a notebook: ``result.plot``) instead of
importing it.
"""

from __future__ import annotations

import contextvars
import math
import numbers
import statistics
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from tunesmith._errors import ConfigError
from tunesmith._layout import store_path
from tunesmith.plots._figure import MISSING, _label, drawn_trials
from tunesmith.store.sqlite import Store
from tunesmith.trial import AUTO_KEYS, ITERATION, TrialStatus


class PlotTrial(Protocol):
    """One trial as the plots read it (``tunesmith.results.TrialResult`` is one)."""

    @property
    def id(self) -> int: ...
    @property
    def name(self) -> str: ...
    @property
    def config(self) -> dict[str, Any]: ...
    @property
    def status(self) -> TrialStatus: ...
    @property
    def iteration(self) -> int: ...
    @property
    def last_result(self) -> dict[str, Any]: ...
    @property
    def error(self) -> str | None: ...
    @property
    def parent_id(self) -> int | None: ...
    @property
    def parent_iteration(self) -> int | None: ...


class PlotSource(Protocol):
    """An experiment's results as the plots read them (``tunesmith.results.ResultSet`` is one): its folder (the
    plots read the store there, in columns), its spec and metadata, its objective and its trials, and what it
    ranks (``pareto_front``: the Pareto plot's front is the results API's, feasible trials first)."""

    @property
    def path(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def meta(self) -> dict[str, Any]: ...
    @property
    def metric(self) -> str | list[str] | None: ...
    @property
    def mode(self) -> str | list[str] | None: ...
    @property
    def trials(self) -> Sequence[PlotTrial]: ...
    def importance(self, metric: str | None = None, mode: str | None = None) -> dict[str, float]: ...
    def pareto_front(self, metrics: list[str] | None = None,
                     modes: list[str] | None = None) -> Sequence[PlotTrial]: ...


@dataclass
class _Experiment:
    """What the plots need from one experiment, read once: the trials and events, and the results as
    columns (``Store.result_columns``: a float per result and key, not a dict per result), one pass over the
    store for every key asked so far."""

    rs: PlotSource
    records: dict[int, dict[str, Any]]  # raw store rows of trials (created, start_time, end_time)
    events: list[tuple[int, float, str, int | None, Any]]
    t0: float
    columns: dict[str, np.ndarray]
    slices: dict[int, slice]  # each trial's rows in the columns
    space: dict[str, Any] | None = None
    secrets: frozenset[str] | None = None  # every trial's config's secret values, once asked (shown_name)

    def need(self, *keys: str) -> None:
        """Read the columns of ``keys`` not read yet, all in one more pass over the results."""
        missing = [k for k in dict.fromkeys(keys) if k and k not in self.columns]
        if missing:
            self.columns.update(_columns(self.rs, missing))

    def series(self, trial_id: int, key: str) -> np.ndarray:
        """One trial's values of ``key``, in iteration order (NaN where a result has no finite number)."""
        self.need(key)
        return self.columns[key][self.slices.get(trial_id, slice(0, 0))]

    def column(self, key: str) -> np.ndarray:
        self.need(key)
        return self.columns[key]


def _columns(rs: PlotSource, keys: Sequence[str]) -> dict[str, np.ndarray]:
    store = Store(store_path(rs.path), readonly=True)
    try:
        return store.result_columns(keys)
    finally:
        store.close()


# build_panels' experiment, shared by every plot function it calls: one read of the store for the whole report
_shared: contextvars.ContextVar[tuple[PlotSource, _Experiment] | None] = contextvars.ContextVar("_shared", default=None)


@contextmanager
def shared_read(rs: PlotSource, keys: Sequence[str] = ()) -> Iterator[None]:
    """Within this block every plot function of ``rs`` uses one read of its store (the columns of
    ``keys`` read in a single pass up front; a key asked later costs one more pass). Outside, each call
    reads afresh, so a plot of a running experiment is never stale."""
    exp = _read(rs, keys)
    token = _shared.set((rs, exp))
    try:
        yield
    finally:
        _shared.reset(token)


def events(rs: Any) -> list[tuple[int, float, str, int | None, Any]]:
    """The experiment's events: those :func:`shared_read` read with its results (one state of the store, which
    ``write_report`` has let go by the time the plots are computed), else read now."""
    current = _shared.get()
    if current is not None and current[0] is rs:
        return current[1].events
    return list(rs._store.events())


def _read(rs: PlotSource, keys: Sequence[str] = ()) -> _Experiment:
    current = _shared.get()
    if current is not None and current[0] is rs:
        current[1].need(*keys)
        return current[1]
    held = getattr(rs, "_store", None)  # a ResultSet's own, inside its snapshot(): the report's one state
    own = not (isinstance(held, Store) and held.in_snapshot)
    store = held if isinstance(held, Store) and not own else Store(store_path(rs.path), readonly=True)
    try:
        with store.snapshot():  # the trials, their results and the events of one state of a store being written
            records = {rec["id"]: rec for rec in store.trials()}
            columns = store.result_columns(keys)
            events = store.events()
    finally:
        if own:
            store.close()
    ids = columns["trial_id"]
    starts_at = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]]) if len(ids) else np.array([], dtype=np.int64)
    ends_at = np.r_[starts_at[1:], len(ids)]
    slices = {int(ids[a]): slice(int(a), int(b)) for a, b in zip(starts_at, ends_at)}
    starts = [rec["created"] for rec in records.values() if rec.get("created") is not None]
    created = rs.meta.get("created")
    t0 = float(created) if isinstance(created, (int, float)) else min(starts, default=0.0)
    space = None
    encoded = rs.meta.get("spec", {}).get("space")
    if isinstance(encoded, dict):
        from tunesmith.space import space_from_json

        try:
            space = space_from_json(encoded)
        except ConfigError:
            space = None
    return _Experiment(rs, records, events, t0, columns, slices, space)


def resolve_metric(rs: PlotSource, metric: str | None = None) -> str:
    """The metric to plot: ``metric``, else the experiment's (the first of several), else the first numeric key
    trials reported.

    Raises:
        ConfigError: ``metric`` is not a name, or none was given and no trial reported a numeric metric.
    """
    if metric is not None and not isinstance(metric, str):
        raise ConfigError(f"metric: expected a metric's name, got {metric!r}")
    if metric:
        return metric
    names = _objective_names(rs)
    if names:
        return names[0]
    for t in rs.trials:
        for key, value in t.last_result.items():
            if key not in AUTO_KEYS and _number(value) is not None:
                return key
    raise ConfigError(f"experiment {rs.name} has no metric to plot: no trial reported a number")


def shown_name(rs: PlotSource, name: str) -> str:
    """A result's name (the metric, a counter) as a plot shows it: a config secret it quotes masked
    (``f"loss_{config['api_key']}"``, as every output masks it: ``_secrets.mask_name``), with the secret values
    of every trial's config (a name picked from one trial's results may be another's)."""
    from tunesmith._secrets import mask_name, secret_strings

    current = _shared.get()
    exp = current[1] if current is not None and current[0] is rs else None
    secrets = exp.secrets if exp is not None else None
    if secrets is None:
        trials = rs.trials
        try:
            known = _SECRETS.get(rs)
        except TypeError:  # a source that cannot be weakly referenced: read each time
            known = None
        if known is not None and known[0] is trials:  # the trials read as before: a notebook's next plot
            secrets = known[1]
        else:
            secrets = frozenset(s for t in trials for s in secret_strings(t.config))
            try:
                _SECRETS[rs] = (trials, secrets)  # a refresh reads the trials into a new list
            except TypeError:
                pass
        if exp is not None:
            exp.secrets = secrets
    return mask_name(name, secrets)


# shown_name's secrets of each source asked, while it lives: (its trials list, their configs' secret values); a
# source that reads its trials again (a refresh) makes a new list
_SECRETS: weakref.WeakKeyDictionary[Any, tuple[Any, frozenset[str]]] = weakref.WeakKeyDictionary()


def resolve_mode(rs: PlotSource, mode: str | None = None, metric: str | None = None) -> str:
    """``mode``, else the experiment's for ``metric`` (with several metrics, that one's mode among them; default
    the first's).

    Raises:
        ConfigError: ``mode`` given that is not ``"min"``/``"max"``, or none given and the experiment has none
            (for ``metric``).
    """
    if mode is not None:
        if mode not in ("min", "max"):
            raise ConfigError(f"mode: expected 'min' or 'max', got {mode!r}")
        return str(mode)
    chosen = rs.mode
    if isinstance(rs.mode, list) and isinstance(rs.metric, list):
        modes = dict(zip(rs.metric, rs.mode))
        chosen = modes.get(metric if metric is not None else rs.metric[0])
    if chosen not in ("min", "max"):
        which = "" if metric is None else f" for {shown_name(rs, metric)!r}"
        raise ConfigError(f"experiment {rs.name} has no mode ('min' or 'max'){which}: pass mode=")
    return str(chosen)


def mode_or_none(rs: PlotSource, mode: str | None = None, metric: str | None = None) -> str | None:
    """``resolve_mode``, or None when no mode was given and the experiment has none for ``metric`` (no best to
    single out). A ``mode`` given that is not ``"min"``/``"max"`` is still a ConfigError."""
    if mode is not None:
        return resolve_mode(rs, mode)
    try:
        return resolve_mode(rs, None, metric)
    except ConfigError:
        return None


def _objective_names(rs: PlotSource) -> list[str]:
    """The experiment's metrics (none, one, or several)."""
    names = rs.metric if isinstance(rs.metric, list) else [rs.metric]
    return [name for name in names if isinstance(name, str) and name]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _metric_values(exp: _Experiment, metric: str) -> dict[int, float]:
    """Each trial's final value of ``metric`` (its last result that holds a finite number)."""
    out: dict[int, float] = {}
    for t in exp.rs.trials:
        value = _number(t.last_result.get(metric))
        if value is None:
            values = exp.series(t.id, metric)
            finite = np.flatnonzero(~np.isnan(values))
            value = float(values[finite[-1]]) if len(finite) else None
        if value is not None:
            out[t.id] = value
    return out


FINALS = ("last", "best", "mean_last")


def _final_values(exp: _Experiment, metric: str, final: str = "last", last_k: int = 5,
                  mode: str | None = None) -> dict[int, float]:
    """Each trial's "final" value of ``metric``: its ``last`` result's, its ``best`` result's (in the
    experiment's mode) or the ``mean_last`` of its last ``last_k`` results that hold the metric.

    Raises:
        ConfigError: an unknown ``final``, ``last_k`` < 1, or ``best`` without a mode.
    """
    if final not in FINALS:
        raise ConfigError(f"final: expected one of {list(FINALS)}, got {final!r}")
    if final == "last":
        return _metric_values(exp, metric)
    if isinstance(last_k, bool) or not isinstance(last_k, int) or last_k < 1:
        raise ConfigError(f"last_k: expected a whole number >= 1 of last results to average, got {last_k!r}")
    sign = 1.0
    if final == "best":
        sign = 1.0 if resolve_mode(exp.rs, mode, metric) == "max" else -1.0
    out: dict[int, float] = {}
    for t in exp.rs.trials:
        values = [float(v) for v in exp.series(t.id, metric) if not math.isnan(v)]
        if not values:
            continue
        out[t.id] = sign * max(sign * v for v in values) if final == "best" else statistics.fmean(values[-last_k:])
    return out


def is_seed_key(key: str) -> bool:
    """A config key that names a seed, a repeat rather than a parameter: its last part (of ``outer/inner``)
    is ``seed`` or ends in ``_seed``, in any case (``seed``, ``env_seed``, ``ppo/Train_Seed``)."""
    last = str(key).rsplit("/", 1)[-1].lower()
    return last == "seed" or last.endswith("_seed")


def _seed_set(keys: Sequence[str], seeds: Sequence[str] | None) -> set[str]:
    """The seed keys among ``keys``: ``seeds`` when declared, else those :func:`is_seed_key` recognises."""
    if seeds is not None:
        if isinstance(seeds, str):
            raise ConfigError(f"seeds: expected a list of config keys, got the string {seeds!r}")
        return set(seeds)
    return {k for k in keys if is_seed_key(k)}


def _stopped_early(exp: _Experiment) -> set[int]:
    """Trials a scheduler stopped early (ASHA, HyperBand, median stopping), as the driver logged it: a
    ``stop`` event with reason ``scheduler``. A trial ended by the user's own ``stop=`` rule (a solved
    task), by the end of the run or by returning is not "stopped early".

    Stores written before the driver logged stop events have none: there, as before, a TERMINATED trial
    short of the longest one counts as stopped, unless the experiment ran with FIFO (which never stops
    a trial)."""
    logged = False
    stopped: set[int] = set()
    for _seq, _time, kind, trial_id, data in exp.events:
        if kind == "stop" and trial_id is not None:
            logged = True
            if isinstance(data, dict) and data.get("reason") == "scheduler":
                stopped.add(trial_id)
            else:
                stopped.discard(trial_id)
    if logged:
        return {t.id for t in exp.rs.trials if t.id in stopped and t.status is TrialStatus.TERMINATED}
    scheduler = exp.rs.meta.get("spec", {}).get("scheduler")
    if isinstance(scheduler, dict) and scheduler.get("type") == "FIFO":
        return set()
    longest = max((t.iteration for t in exp.rs.trials), default=0)
    return {t.id for t in exp.rs.trials if t.status is TrialStatus.TERMINATED and t.iteration < longest}


def _check_x(exp: _Experiment, x: str) -> None:
    """``x`` must be a counter some result reported as a number (``timesteps``, ``episodes``...)."""
    if x != ITERATION:
        _check_reported(exp, x, "x")


def _check_metric(exp: _Experiment, metric: str) -> None:
    """A ``metric`` the experiment does not optimise must be one some result reported as a number (a typo is an
    error naming it, not an empty plot); the experiment's own may have none yet (a run just started)."""
    if metric not in _objective_names(exp.rs):
        _check_reported(exp, metric, "metric")


def reported(rs: PlotSource, key: str) -> bool:
    """Whether any result reported a number for ``key`` (an experiment whose every trial failed at once has none:
    its curves would be empty axes)."""
    return _reported(_read(rs, [key]), key)


def _reported(exp: _Experiment, key: str) -> bool:
    return not np.isnan(exp.column(key)).all()


def _check_reported(exp: _Experiment, key: str, argument: str) -> None:
    if _reported(exp, key):
        return
    from tunesmith._secrets import mask_name, secret_strings

    keys = {mask_name(k, secret_strings(t.config)) for t in exp.rs.trials  # a name may quote a secret
            for k, v in t.last_result.items() if _number(v) is not None}
    raise ConfigError(f"{argument}: no result reported a number for {key!r}; expected one of the reported keys "
                      f"{sorted(keys) or [ITERATION]}")


def _varying(exp: _Experiment, trial_ids: Sequence[int]) -> dict[str, list[Any]]:
    """Flattened config keys whose value differs between the given trials -> values in trial order (secret
    values masked: a report is shared more widely than the store; ``MISSING`` where a trial lacks the key)."""
    from tunesmith._secrets import MASK, shown
    from tunesmith.space import flatten

    by_id = {t.id: t for t in exp.rs.trials}
    raw = [flatten(by_id[i].config) for i in trial_ids]
    flat = [flatten(shown(by_id[i]).config) for i in trial_ids]
    keys = list(dict.fromkeys(k for cfg in raw for k in cfg))
    out = {}
    for key in keys:
        given = [_label(cfg.get(key, MISSING)) for cfg in raw]
        if len(set(given)) < 2:
            continue
        values = [cfg.get(key, MISSING) for cfg in flat]
        if len({_label(v) for v in values}) < len(set(given)):  # the mask made values one: told apart, not shown
            number: dict[str, int] = {}
            values = [v if v is MISSING else f"{MASK} #{number.setdefault(g, len(number) + 1)}"
                      for g, v in zip(given, values)]
        out[key] = values
    return out


def _parameters(exp: _Experiment, trial_ids: Sequence[int], seeds: Sequence[str] | None) -> dict[str, list[Any]]:
    """``_varying`` less the seed keys: a seed is a repeat, not a parameter to draw an axis for."""
    varying = _varying(exp, trial_ids)
    skip = _seed_set(list(varying), seeds)
    return {k: v for k, v in varying.items() if k not in skip}


def _drawn_parameters(exp: _Experiment, finals: dict[int, float], seeds: Sequence[str] | None,
                      mode: str | None, metric: str) -> tuple[list[int], dict[str, list[Any]]]:
    """The trials a plot with a mark per trial draws (``drawn_trials``, the best in ``mode``, default the
    experiment's) and ``_parameters`` in their order: the parameters that vary among all the trials, not only
    among those drawn."""
    everyone = sorted(finals)
    varying = _parameters(exp, everyone, seeds)
    ids = drawn_trials(finals, mode_or_none(exp.rs, mode, metric))
    if len(ids) < len(everyone):
        at = {tid: n for n, tid in enumerate(everyone)}
        varying = {k: [values[at[tid]] for tid in ids] for k, values in varying.items()}
    return ids, varying


def _log_axis(exp: _Experiment, key: str, values: list[Any]) -> bool:
    """Log scale for log-uniform domains; for choices, grids and constants, when the values are positive
    numbers spanning two decades or more."""
    numbers_ = [_number(v) for v in values]
    positive = [v for v in numbers_ if v is not None and v > 0]
    if not numbers_ or len(positive) < len(numbers_):
        return False
    if exp.space is not None:
        from tunesmith.space import Choice, Grid, LogRandInt, LogUniform, QLogUniform, domains

        for path, domain in domains(exp.space):
            if "/".join(path) != key:
                continue
            if isinstance(domain, (LogUniform, QLogUniform, LogRandInt)):
                return True
            if not isinstance(domain, (Choice, Grid)):
                return False  # a linear domain stays linear, whatever its span
    return max(positive) / min(positive) >= 100
