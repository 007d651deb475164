"""Model-based search through Optuna's ask/tell interface: TPE, CMA-ES, GP, NSGA-II or random sampling.

The space is translated define-by-run: every config is drawn with ``trial.suggest_*`` calls in the
space's order, so a conditional choice (options that hold domains) is one categorical parameter (the
option index) followed by the chosen option's parameters only, and Optuna sees exactly the parameters
a config uses.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import numbers
import random
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from tunesmith._errors import ConfigError
from tunesmith._objective import Objective
from tunesmith._optional import require
from tunesmith._secrets import mask_text_at
from tunesmith.searchers._base import FINISHED, UNLIMITED, Searcher, _check_num_samples, _Finished
from tunesmith.searchers._seeding import check_seed, seed_sequence
from tunesmith.searchers._unit_cube import fits, options, resolve_fixed
from tunesmith.searchers.points import check_points, check_points_fit, fits_partial, picked_option
from tunesmith.searchers.repeat import fold_repeats
from tunesmith.space import (
    Choice,
    Domain,
    Grid,
    KeyPath,
    LogRandInt,
    LogUniform,
    Normal,
    QLogUniform,
    QNormal,
    QUniform,
    RandInt,
    SampleFrom,
    Uniform,
    check_storable,
    plain,
    validate_space,
)
from tunesmith.space._unit import _multipliers, _quantize, _times  # quniform: as the domain rounds

__all__ = ["SAMPLERS", "OptunaSearch"]

SAMPLERS = ("tpe", "cmaes", "gp", "nsgaii", "random")
CONSTRAINT_PREFIX = "constraint/"  # run(constraints=fn) stores fn(result)[i] as the metric constraint/<i>
_CONSTRAINTS_ATTR = "tunesmith:constraints"
_SEP = "/"
_MISSING = object()
_SCALARS = (type(None), bool, int, float, str)


class OptunaSearch(Searcher):
    """Search with an Optuna sampler, driven through ``study.ask()`` / ``study.tell()``.

    How the space maps to Optuna distributions (parameter names are key paths joined with ``/``):

    - ``uniform`` / ``loguniform``: ``FloatDistribution`` (``log=True`` for the latter);
      ``quniform``: ``FloatDistribution(step=q)`` over the multiples of ``q`` in the bounds (an
      ``IntDistribution`` over the multiplier if Optuna cannot take that step exactly);
      ``qloguniform``: a log-scaled ``IntDistribution`` over the multiplier of ``q``.
    - ``randint(low, high)``: ``IntDistribution(low, high - 1)`` (our ``high`` is excluded);
      ``lograndint``: the same with ``log=True``.
    - ``choice``: ``CategoricalDistribution`` of the options when they are all plain scalars
      (None/bool/int/float/str, pairwise distinct); of the option indices otherwise. A choice whose
      options hold domains is conditional: the index is the parameter ``"optim"``, then only the
      chosen option's domains are suggested, under ``"optim/<index>/..."`` (``"optim/1/lr"``).
    - ``grid``: a ``CategoricalDistribution`` too. Under Optuna a grid is *searched*, not crossed: the
      experiment has ``num_samples`` trials whatever the grid's size.
    - ``normal`` / ``qnormal`` (unbounded) and ``sample_from`` cannot be expressed: ``setup`` raises
      ``ConfigError`` naming the key.

    Every suggestion is ``study.ask()``; intermediate results are ``trial.report(value,
    step=training_iteration)`` (single objective), so samplers see learning curves; a trial's end is
    ``study.tell`` with its last result's metric (a list of values for several metrics), or state FAIL
    when it reported nothing, or NaN. With several metrics (``metric=["loss", "latency"]``,
    ``mode=["min", "min"]``) the study has one direction per metric.

    Seeds and resume: a named sampler is created afresh for every ``ask`` with a seed drawn from
    ``(seed, ask number)``, so a suggestion depends only on the seed and on the study's trials, not on
    how the sampler's random state got where it is. ``restore_suggestion`` replays a stored trial with
    its stored parameters (``enqueue_trial`` + ``ask``) and the replayed ``observe`` calls report and
    tell as before, so with ``tpe``, ``gp`` and ``random`` the next suggestion after a resume is the
    one an uninterrupted run would have made (``quniform`` values go back to Optuna as the exact
    multiples of ``q`` in the config, which can lie an ulp from the float Optuna drew: ``gp``'s next
    suggestion may then differ in the last digits). Known limits: ``cmaes`` and ``nsgaii`` keep their
    generations in trial attributes that a replay does not rebuild, so they start a new search
    distribution / population after a resume (the history stays in the study); a sampler *instance*
    keeps its own random state.

    TPE is Optuna's default (multivariate, with the constant liar for trials still running). For a
    conditional space it is grouped multivariate TPE (``group=True``) without the constant liar:
    grouped TPE draws values for every branch and the liar would keep, for running trials, values of
    branches they did not take, which a replay cannot know.

    Needs ``pip install 'tunesmith[optuna]'``; ``sampler="gp"`` also needs PyTorch
    (``'tunesmith[optuna,torch]'``), ``"cmaes"`` the ``cmaes`` package (in the ``optuna`` extra).

    Args:
        sampler: ``"tpe"`` (default; see above), ``"cmaes"``,
            ``"gp"``, ``"nsgaii"``, ``"random"``, or an ``optuna.samplers.BaseSampler`` instance used as
            given (then ``seed`` and ``n_startup_trials`` must stay ``None``: set them on the instance). A sampler
            that stops the study (``study.stop()``: ``GridSampler`` and ``BruteForceSampler`` once every point was
            told) ends the search: ``suggest`` says ``FINISHED``, so ``num_samples`` beyond the grid's size (or
            ``-1``) ends with the grid. Trials asked while the grid's last points still run may be given a point
            again (Optuna's own behaviour, as in a distributed study; one trial at a time avoids it).
        seed: seed of the named samplers; ``None`` draws one at construction (``self._seed``, recorded in
            the spec).
        n_startup_trials: random trials before the model takes over (``tpe``, ``gp``, ``cmaes``);
            ``None``: Optuna's default.
        points_to_evaluate: (partial) configs to try first, through ``study.enqueue_trial`` (see
            ``tunesmith.searchers.points``; a partial option dict picks the first option it fits). A number outside
            its domain's bounds is used as given (in an option of a choice of dicts too), but a ``choice``/``grid``
            value that is none of its options cannot be (an Optuna categorical holds only its choices), nor can a NaN,
            a non-integer for an integer domain, a value <= 0 for a log-scaled one or another value for a constant of
            the space (the config is made from Optuna's parameters only): ``setup`` raises ``ConfigError`` naming the
            point. With a define-by-run ``space``: dicts of Optuna parameters (the names the function suggests).
        space: a define-by-run function ``fn(trial)`` that calls ``trial.suggest_float/int/categorical``, as
            Optuna users write conditional spaces; it may return a dict of constants to add to the config. The
            config is the suggested parameters (by the names given) plus those constants; pass ``space=None``
            to ``run``. The function is called at ``setup`` on a throwaway study, once and once per point to
            evaluate, so an error in it, a point it refuses or a config the store cannot hold (a ``/`` in a name) is
            a ``ConfigError`` before anything is created. Conditional spaces get grouped TPE (see above).

    Warm start (``run(warm_start=...)``): earlier trials are added to the study as finished trials
    (``study.add_trial``) before the first suggestion; a config outside this space is skipped.

    Constraints (``run(constraints=fn)``): ``tpe``, ``nsgaii`` and ``gp`` are created with Optuna's
    ``constraints_func``, which reads each finished trial's ``constraint/<i>`` values (<= 0 feasible). A NaN value
    (not feasible) is told as +inf.
    """

    def __init__(self, sampler: Any = "tpe", seed: int | None = None, n_startup_trials: int | None = None,
                 points_to_evaluate: list[dict[str, Any]] | None = None, space: Any = None) -> None:
        if space is not None and not callable(space):
            raise ConfigError(f"OptunaSearch(space=...): expected a define-by-run function fn(trial) that calls "
                              f"trial.suggest_*; got {type(space).__name__} (give a dict space to run(space=...))")
        self._define: Any = space
        self._constrained = False
        self._n_constraints = 0
        self.sampler = sampler
        self.seed = seed
        self.n_startup_trials = n_startup_trials
        self.points_to_evaluate = points_to_evaluate
        self._seed: Any = seed if seed is not None else random.SystemRandom().randrange(2**63)
        self._optuna: Any = None
        self._study: Any = None
        self._metrics: list[str] = []
        self._modes: list[str] = []
        self._params: dict[str, _Param] = {}
        self._conditional = False
        self._points: list[dict[str, Any]] = []
        self._total: int | None = None
        self._count = 0
        self._stopped = False  # the sampler stopped the study (study.stop()): no more suggestions
        self._trials: dict[int, Any] = {}
        self._reported: dict[int, set[int]] = {}

    def to_spec(self) -> dict[str, Any]:
        """Constructor arguments as JSON, with the seed drawn when none was given; ``seed`` stays ``None``
        beside a sampler instance (which keeps its own)."""
        spec = super().to_spec()
        spec.pop("space", None)  # setup's space (run's), not the constructor's
        if self._define is not None:
            spec["space"] = {"define_by_run": getattr(self._define, "__qualname__", repr(self._define))}
        if not isinstance(self.sampler, str):
            spec["seed"] = self.seed
        return spec

    @property
    def study(self) -> Any:
        """The ``optuna.Study`` (``None`` before ``setup``): read it, don't ask or tell on it."""
        return self._study

    # -- setup ----------------------------------------------------------------------------------------
    def setup(self, space: dict[str, Any], metric: str | list[str] | None, mode: str | list[str] | None,
              num_samples: int) -> None:
        """Validate everything and create the study.

        Raises:
            ConfigError: naming the key of a domain Optuna cannot express, or the argument at fault
                (``metric``, ``mode``, ``sampler``, ``seed``, ``n_startup_trials``, ``num_samples``,
                ``points_to_evaluate``), or what a define-by-run function does wrong on the probe (raises,
                suggests a name with ``/``); ``MissingDependency`` (a ``ConfigError``) without Optuna.
        """
        super().setup(space, metric, mode, num_samples)
        validate_space(space)
        _check_num_samples(num_samples)
        objective = Objective.for_searcher(metric, mode, owner="OptunaSearch")
        self._metrics, self._modes = list(objective.names), list(objective.modes)
        optuna = require("optuna", "optuna", what="OptunaSearch")
        self._optuna = optuna
        self._check_sampler(optuna)
        self._params = {}
        self._conditional = False
        self._total = None if num_samples == UNLIMITED else num_samples
        if self._define is not None:
            if space:
                raise ConfigError(f"OptunaSearch(space=fn) defines the space by run: pass space=None to run(), "
                                  f"not the space with keys {sorted(space)!r}")
            self._conditional = True  # a define-by-run space may branch: grouped TPE, as for conditional choices
            self._points = []
            for i, p in enumerate(self.points_to_evaluate or []):
                if not isinstance(p, dict):
                    raise ConfigError(f"points_to_evaluate[{i}]: expected a dict of Optuna parameters; got {p!r}")
                self._points.append(plain(p))  # numpy values as the Python ones Optuna compares
            # the function runs here, once and once per point (the branches the first trials take): an error in it,
            # a point it cannot take, or a config the store cannot hold (a "/" in a name) is a ConfigError now
            check_storable(self._probe({})[1], "config")
            for i, point in enumerate(self._points):
                try:
                    check_storable(self._probe(point)[1], "config")
                except ConfigError as e:
                    raise ConfigError(f"points_to_evaluate[{i}]: {e}") from e
        else:
            for key, value in space.items():
                self._collect(value, (key,), (key,), _key("space", key))
            check_points(self.points_to_evaluate, space)  # the keys exist
            self._points = [self._point_params(plain(p), f"points_to_evaluate[{i}]")  # np.True_ is True
                            for i, p in enumerate(self.points_to_evaluate or [])]
        check_points_fit(self._points, self._total)
        directions = ["minimize" if m == "min" else "maximize" for m in self._modes]
        with _quiet(optuna):
            self._study = optuna.create_study(directions=directions, sampler=self._make_sampler(0),
                                              pruner=optuna.pruners.NopPruner())
        # A sampler ends the search with study.stop() (GridSampler, BruteForceSampler: in the tell of the last point),
        # which Optuna allows only inside study.optimize: the request is kept, and suggest says FINISHED.
        self._stopped = False
        self._study.stop = self._stop
        self._count = 0
        self._trials, self._reported = {}, {}

    def _stop(self) -> None:
        """The study's ``stop``: the sampler has nothing more to suggest."""
        self._stopped = True

    def _check_sampler(self, optuna: Any) -> None:
        sampler, n = self.sampler, self.n_startup_trials
        if isinstance(sampler, optuna.samplers.BaseSampler):
            if self.seed is not None:
                raise ConfigError("seed: a sampler instance keeps its own seed; pass seed=None and seed the "
                                  "sampler itself")
            if n is not None:
                raise ConfigError("n_startup_trials: a sampler instance has its own settings; pass "
                                  "n_startup_trials=None and set it on the sampler")
            return
        if not isinstance(sampler, str) or sampler not in SAMPLERS:
            raise ConfigError(f"sampler: expected one of {list(SAMPLERS)} or an optuna.samplers.BaseSampler "
                              f"instance; got {sampler!r}")
        check_seed(self._seed)
        if n is not None:
            if sampler not in ("tpe", "gp", "cmaes"):
                raise ConfigError(f"n_startup_trials: not used by sampler {sampler!r} (only by 'tpe', 'gp' "
                                  "and 'cmaes'); leave it None")
            if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
                raise ConfigError(f"n_startup_trials: expected an int >= 0 or None; got {n!r}")
        if sampler == "cmaes":
            require("cmaes", "optuna", what="sampler: 'cmaes'")
            if len(self._metrics) > 1:
                raise ConfigError("sampler: 'cmaes' optimises a single metric; use 'tpe', 'gp' or 'nsgaii' "
                                  f"for the metrics {self._metrics!r}")
        if sampler == "gp":
            require("torch", "optuna,torch", what="sampler: 'gp'")

    def _make_sampler(self, ask: int) -> Any:
        """A fresh named sampler seeded for ask number ``ask`` (the instance itself if one was given)."""
        if not isinstance(self.sampler, str):
            return self.sampler
        samplers = self._optuna.samplers
        seed = int(seed_sequence(self._seed, ask).generate_state(1)[0])
        startup: dict[str, Any] = {}
        if self.n_startup_trials is not None:
            startup["n_startup_trials"] = int(self.n_startup_trials)
        if self._constrained and self.sampler in ("tpe", "nsgaii", "gp") and not _HAS_SET_CONSTRAINT(self._optuna):
            startup = {**startup, "constraints_func": self._constraint_values}  # Optuna < 5: set_constraint is new
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", self._optuna.exceptions.ExperimentalWarning)
            if self.sampler == "tpe":
                # Conditional spaces: multivariate TPE over groups of parameters that appear together.
                # Its constant liar would remember, for running trials, values drawn for branches they
                # did not take, which a replay cannot know; without it a resume is exact.
                grouped = ({"multivariate": True, "group": True, "constant_liar": False}
                           if self._conditional else {})
                return samplers.TPESampler(seed=seed, **grouped, **startup)
            if self.sampler == "cmaes":
                return samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False, **startup)
            if self.sampler == "gp":
                return samplers.GPSampler(seed=seed, warn_independent_sampling=False, **startup)
            if self.sampler == "nsgaii":
                return samplers.NSGAIISampler(seed=seed, **startup)  # no n_startup_trials: refused above
            return samplers.RandomSampler(seed=seed)

    # -- the space ------------------------------------------------------------------------------------
    def _collect(self, value: Any, path: KeyPath, name: tuple[str, ...], where: str) -> None:
        """Check one value of the space and record the Optuna parameters under it (all branches)."""
        if isinstance(value, (Normal, QNormal)):
            raise ConfigError(f"{where}: {value.kind} is unbounded and OptunaSearch cannot express it; "
                              "expected bounds, e.g. uniform(mean - 3 * sd, mean + 3 * sd)")
        if isinstance(value, SampleFrom):
            raise ConfigError(f"{where}: sample_from is not supported by OptunaSearch (Optuna must see every "
                              "parameter it samples); compute the value from the config in the training "
                              "function, or use Random / QuasiRandom")
        if isinstance(value, Domain):
            param = _Param.of(value)
            if param.kind == "int" and max(abs(int(param.low)), abs(int(param.high))) > 2**53:
                # Optuna keeps an int parameter as a float: past 2**53 its draws lose integers (or fail in numpy)
                raise ConfigError(f"{where}: {value.kind} bounds beyond 2**53 (9007199254740992) in magnitude; "
                                  f"OptunaSearch holds integers as floats, which lose those; expected bounds within "
                                  f"+-2**53, or Random / QuasiRandom, which draw such integers exactly")
            joined = _SEP.join(name)
            if joined in self._params:
                raise ConfigError(f"{where}: its Optuna parameter name {joined!r} is also that of another "
                                  f"key; rename a key (names are key paths joined with {_SEP!r})")
            self._params[joined] = param
            if param.by_index:
                for i, item in enumerate(param.items):
                    before = len(self._params)
                    self._collect(item, path, (*name, str(i)), f"{where}.{_items(value)}[{i}]")
                    self._conditional |= len(self._params) > before
        elif isinstance(value, dict):
            for key, item in value.items():
                self._collect(item, (*path, key), (*name, key), _key(where, key))

    def _draw(self, trial: Any, value: Any, path: KeyPath, name: tuple[str, ...],
              fixed: dict[KeyPath, Any]) -> Any:
        """Define-by-run: suggest the parameters of one value of the space; return what goes at ``path``."""
        if isinstance(value, Domain):
            param = self._params[_SEP.join(name)]
            got = param.suggest(trial, _SEP.join(name))
            if param.by_index:
                return self._draw(trial, param.items[got], path, (*name, str(got)), fixed)
            return param.value(value, got)
        if isinstance(value, dict):
            for key, item in value.items():
                fixed[(*path, key)] = self._draw(trial, item, (*path, key), (*name, key), fixed)
        return value

    def _config(self, trial: Any) -> dict[str, Any]:
        if self._define is not None:
            return self._defined_config(trial)
        fixed: dict[KeyPath, Any] = {}
        for key, value in self.space.items():
            fixed[(key,)] = self._draw(trial, value, (key,), (key,), fixed)
        return resolve_fixed(self.space, fixed)

    def _defined_config(self, trial: Any) -> dict[str, Any]:
        """Define-by-run: the user's function suggests; the config is its parameters and returned constants."""
        what = f"OptunaSearch(space={getattr(self._define, '__qualname__', repr(self._define))})"
        try:
            constants = self._define(trial)
        except Exception as e:  # noqa: BLE001 - the user's function: named in the error
            raise ConfigError(f"{what}: the define-by-run function raised {type(e).__name__}: {e}") from e
        if constants is not None and not isinstance(constants, dict):
            raise ConfigError(f"{what}: the define-by-run function must return None or a dict of constants; got "
                              f"{type(constants).__name__}")
        config = dict(trial.params)
        for key, value in (constants or {}).items():
            if key in config:
                raise ConfigError(f"{what}: the returned constant {key!r} is also a suggested parameter")
            config[key] = plain(value)  # as a resume reads it back from the store (a tuple a list)
        return config

    def _probe(self, params: dict[str, Any]) -> Any:
        """A throwaway study's trial with ``params`` fixed (an in-memory study: no I/O), after drawing the config
        from it: its ``params`` and ``distributions`` are what this space makes of ``params``."""
        optuna = self._optuna
        with _quiet(optuna), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            probe = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
            if params:
                probe.enqueue_trial(params)
            trial = probe.ask()
            config = self._config(trial)
        return trial, config

    def _encode(self, value: Any, name: tuple[str, ...], got: Any, out: dict[str, Any], partial: bool,
                where: str) -> None:
        """The Optuna parameters of a (partial) config: the inverse of ``_draw``."""
        if got is _MISSING:
            return
        if isinstance(value, Domain):
            joined = _SEP.join(name)
            param = self._params[joined]
            if param.by_index:
                idx = _option_index(param.items, got, fits_partial if partial else fits)
                if idx is None and partial and isinstance(value, (Choice, Grid)):  # a point's number outside its domain
                    option = picked_option(value, got)
                    idx = next((i for i, item in enumerate(param.items) if item is option), None)
                if idx is None:
                    raise ConfigError(mask_text_at(name, f"{where}: {got!r} is none of the options "
                                                         f"{list(param.items)!r}", got, list(param.items)))
                out[joined] = idx
                self._encode(param.items[idx], (*name, str(idx)), got, out, partial, where)
            else:
                try:
                    out[joined] = param.internal(value, got, where)
                except ConfigError as e:  # it quotes the value, and the options: not under a secret key
                    raise ConfigError(mask_text_at(name, str(e), got, list(param.items))) from None
        elif isinstance(value, dict) and isinstance(got, dict):
            for key, item in value.items():
                self._encode(item, (*name, key), got.get(key, _MISSING), out, partial, _key(where, key))
        elif partial and not fits_partial(value, got):
            # a constant (or nested dict) of the space has no Optuna parameter: the config would hold the space's own
            raise ConfigError(mask_text_at(name, f"{where}: {got!r} is not the space's constant {value!r}; "
                                                 "OptunaSearch makes a config from its parameters, so a point may give "
                                                 "a constant's value or leave it out, not another", got, value))

    def _point_params(self, point: dict[str, Any], where: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in self.space.items():
            self._encode(value, (key,), point.get(key, _MISSING), out, True, _key(where, key))
        return out

    # -- ask / tell -----------------------------------------------------------------------------------
    def suggest(self, trial_id: int) -> dict[str, Any] | None | _Finished:
        """``study.ask()`` (a point to evaluate first, if any are left) and the config it draws."""
        assert self._study is not None, "setup() first"
        if self._stopped or (self._total is not None and self._count >= self._total):
            return FINISHED
        params = self._points[self._count] if self._count < len(self._points) else None
        return self._ask(trial_id, params)

    def restore_suggestion(self, trial_id: int, config: dict[str, Any]) -> None:
        """Replay a stored trial: ``enqueue_trial`` with its parameters, then ``ask`` (no sampling)."""
        assert self._study is not None, "setup() first"
        if self._define is not None:
            params = {k: v for k, v in config.items() if type(v) in _SCALARS}
        else:
            params = {}
            for key, value in self.space.items():
                self._encode(value, (key,), config.get(key, _MISSING), params, False,
                             _key(f"trial {trial_id}'s stored config", key))
        self._ask(trial_id, params)

    # -- warm start and constraints -------------------------------------------------------------------
    def warm_start(self, trials: list[tuple[dict[str, Any], dict[str, Any]]]) -> int:
        """Add earlier finished trials to the study (``study.add_trial``): those whose config this space
        can draw (the same parameters, in range) and whose result holds every metric. Trials of an experiment that
        ran ``Repeat`` are taken in as ``Repeat`` tells live results: without the repeat index, a config once with
        its repeats' average (``fold_repeats``; not with a define-by-run space, whose parameter names are its
        own). Returns how many of ``trials`` were taken in, every repeat counted."""
        assert self._study is not None, "setup() first"
        optuna = self._optuna
        used = 0
        folded = ([(config, result, 1) for config, result in trials] if self._define is not None
                  else fold_repeats(trials, self.space))
        for config, result, count in folded:
            values = [_number(result.get(m)) for m in self._metrics]
            if any(v is None or math.isnan(v) for v in values):
                continue
            params = self._params_of(config)
            if params is None:
                continue
            trial, drawn = self._probe(params)
            if json.dumps(drawn, sort_keys=True, default=repr) != json.dumps(config, sort_keys=True, default=repr):
                continue  # a parameter this space does not have, or cannot reach
            if any(not dist._contains(dist.to_internal_repr(trial.params[name]))
                   for name, dist in trial.distributions.items()):
                continue
            attrs: dict[str, Any] = {}
            constraints = self._told_constraints(result) if self._constrained else None
            if constraints is not None:
                if _HAS_SET_CONSTRAINT(optuna):  # as Trial.set_constraint stores them
                    attrs = {f"constraints:{CONSTRAINT_PREFIX}{i}": v for i, v in enumerate(constraints)}
                else:  # as constraints_func's values are stored
                    attrs["constraints"] = tuple(constraints)
            with _quiet(optuna):
                self._study.add_trial(optuna.trial.create_trial(
                    params=trial.params, distributions=trial.distributions, system_attrs=attrs,
                    values=values, state=optuna.trial.TrialState.COMPLETE))
            used += count
        return used

    def _params_of(self, config: dict[str, Any]) -> dict[str, Any] | None:
        if not isinstance(config, dict):
            return None
        if self._define is not None:
            return {k: v for k, v in config.items() if type(v) in _SCALARS}
        if set(config) != set(self.space) or not all(fits(v, config[k]) for k, v in self.space.items()):
            return None
        params: dict[str, Any] = {}
        try:
            for key, value in self.space.items():
                self._encode(value, (key,), config[key], params, False, _key("warm_start", key))
        except ConfigError:
            return None
        return params

    def use_constraints(self) -> bool:
        """Create ``tpe``, ``nsgaii`` and ``gp`` with ``constraints_func`` (a sampler instance: set it yourself)."""
        self._constrained = True
        return isinstance(self.sampler, str) and self.sampler in ("tpe", "nsgaii", "gp")

    def _constraint_values(self, trial: Any) -> list[float]:
        values = trial.user_attrs.get(_CONSTRAINTS_ATTR)
        if values is None:  # told without them (a result the constraints could not be computed for): infeasible
            return [math.inf] * max(self._n_constraints, 1)
        return list(values)

    def _told_constraints(self, result: dict[str, Any], complete: bool = True) -> list[float] | None:
        """The constraint values a finished trial's ``result`` gives the sampler: as many for every trial as for
        the first (Optuna's GP sampler refuses trials whose constraints differ; the driver ends an experiment
        whose function changed its number of values, but a resume replays the stored results), NaN as +inf."""
        values = _constraints(result)
        if values is None:
            if not complete:
                return None
            # none stored (warm start from an experiment run without constraints): as Optuna's TPE and NSGA-II
            # take a trial without constraints, feasible
            values = [0.0] * max(self._n_constraints, 1)
        if not self._n_constraints:
            self._n_constraints = len(values)
        return _fit(values, self._n_constraints)

    def _ask(self, trial_id: int, params: dict[str, Any] | None) -> dict[str, Any]:
        self._study.sampler = self._make_sampler(self._count)
        with _quiet(self._optuna), warnings.catch_warnings():
            # the +inf told for a NaN or missing constraint value (infeasible): the GP sampler clips it to the
            # worst finite value, as meant, and warns on every ask
            warnings.filterwarnings("ignore", "Clip non-finite values", UserWarning)
            if params is not None:
                self._study.enqueue_trial(params)
            trial = self._study.ask()
            config = self._config(trial)
        self._count += 1
        self._trials[trial_id] = trial
        self._reported[trial_id] = set()
        return config

    def observe(self, trial_id: int, result: dict[str, Any], final: bool) -> None:
        """Intermediate results: ``trial.report``; the final one: ``study.tell`` (FAIL when unusable)."""
        trial = self._trials.get(trial_id)
        if trial is None:
            return
        if not final:
            step = result.get("training_iteration")
            value = _number(result.get(self._metrics[0]))
            reported = self._reported[trial_id]
            if (len(self._metrics) == 1 and value is not None and not math.isnan(value)
                    and isinstance(step, numbers.Integral) and not isinstance(step, bool)
                    and int(step) not in reported):
                reported.add(int(step))  # a trial restarted from a checkpoint reports steps again
                trial.report(value, int(step))
            return
        del self._trials[trial_id], self._reported[trial_id]
        values = [_number(result.get(m)) for m in self._metrics]
        failed = any(v is None or math.isnan(v) for v in values)
        constraints = self._told_constraints(result, not failed) if self._constrained else None
        if constraints is not None:
            if _HAS_SET_CONSTRAINT(self._optuna):
                # Optuna >= 5: the samplers that support constraints read these
                for i, value in enumerate(constraints):
                    trial.set_constraint(f"{CONSTRAINT_PREFIX}{i}", value)
            else:
                trial.set_user_attr(_CONSTRAINTS_ATTR, constraints)
        with _quiet(self._optuna):
            if failed:
                self._study.tell(trial, state=self._optuna.trial.TrialState.FAIL)
            else:
                self._study.tell(trial, values[0] if len(values) == 1 else values)


# --------------------------------------------------------------------------------------------- params


@dataclass(frozen=True)
class _Param:
    """How one domain of the space becomes one Optuna parameter."""

    kind: str  # "float", "int", "categorical"
    low: float = 0.0
    high: float = 0.0
    step: float | None = None
    log: bool = False
    items: tuple[Any, ...] = ()  # a choice/grid's options
    by_index: bool = False  # categorical over option indices (options not all plain scalars)
    q: float | None = None  # the parameter is the multiplier k of q (value = k * q)

    @staticmethod
    def of(domain: Domain) -> _Param:
        if isinstance(domain, (Choice, Grid)):
            items = tuple(options(domain))
            return _Param("categorical", items=items, by_index=not _plain(items))
        if isinstance(domain, Uniform):
            return _Param("float", domain.low, domain.high)
        if isinstance(domain, LogUniform):
            return _Param("float", domain.low, domain.high, log=True)
        if isinstance(domain, RandInt):
            return _Param("int", int(domain.low), int(domain.high) - 1)
        if isinstance(domain, LogRandInt):
            return _Param("int", int(domain.low), int(domain.high) - 1, log=True)
        if isinstance(domain, (QUniform, QLogUniform)):
            q = domain.q
            k_low, k_high = _multipliers(domain.low, domain.high, q)  # as Random rounds: the same values
            if isinstance(domain, QUniform):
                low, high = _times(k_low, q), _times(k_high, q)
                # Optuna takes a step only when (high - low) is a multiple of it in decimal; else it moves
                # high. Then count multiples of q instead.
                if (Decimal(str(high)) - Decimal(str(low))) % Decimal(str(q)) == 0:
                    return _Param("float", low, high, step=q)
            return _Param("int", max(k_low, 1) if isinstance(domain, QLogUniform) else k_low, k_high,
                          log=isinstance(domain, QLogUniform), q=q)
        raise AssertionError(f"no Optuna distribution for {domain!r}")  # Normal/SampleFrom: _collect

    def suggest(self, trial: Any, name: str) -> Any:
        if self.kind == "categorical":
            choices = list(range(len(self.items))) if self.by_index else list(self.items)
            return trial.suggest_categorical(name, choices)
        if self.kind == "int":
            return trial.suggest_int(name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=self.log)

    def value(self, domain: Domain, got: Any) -> Any:
        """The config value for Optuna's value ``got``."""
        if self.q is not None or self.step is not None:
            # Optuna's low + k * step can be 0.30000000000000004; give the multiple of q that Random
            # would, rounded as the domain rounds its draws (the replay enqueues that, an ulp away, which no
            # sampler can tell apart).
            q = self.q if self.q is not None else self.step
            assert isinstance(domain, (QUniform, QLogUniform)) and q is not None
            return _quantize(_times(int(got), q) if self.q is not None else float(got), q, domain.low, domain.high)
        return got

    def internal(self, domain: Domain, got: Any, where: str) -> Any:
        """The Optuna value for a config value (for ``enqueue_trial``)."""
        if self.kind == "categorical":
            if not any(_same_scalar(got, item) for item in self.items):
                raise ConfigError(f"{where}: {got!r} is none of the options {list(self.items)!r}")
            return got
        if isinstance(got, bool) or not isinstance(got, numbers.Real):
            raise ConfigError(f"{where}: expected a number; got {got!r}")
        if not isinstance(got, numbers.Integral) and math.isnan(got):  # no Optuna distribution holds NaN
            raise ConfigError(f"{where}: expected a number Optuna can hold (not NaN); got {got!r}")
        if self.log and got <= 0:  # Optuna's log-scaled distributions hold positive values only
            raise ConfigError(f"{where}: expected a positive number ({domain.kind} is on a log scale); got {got!r}")
        if self.q is not None:
            if not math.isfinite(got):
                raise ConfigError(f"{where}: expected a finite number ({domain.kind} holds multiples of q); "
                                  f"got {got!r}")
            k = int(round(float(got) / self.q))
            # qloguniform's multiplier is >= 1 (Optuna's log scale): 0 < got < q/2 is q, as the domain rounds it
            return max(k, 1) if self.log else k
        if self.kind == "int":
            if not isinstance(got, numbers.Integral) and not float(got).is_integer():  # 2.5 would run as 2
                raise ConfigError(f"{where}: expected an integer ({domain.kind}); got {got!r}")
            return math.trunc(got)  # an integral value: int() of a Real, typed
        return float(got)


def _plain(items: tuple[Any, ...]) -> bool:
    """Whether Optuna can take the options themselves as categorical choices."""
    if not all(type(item) in _SCALARS for item in items):
        return False
    if any(isinstance(item, float) and math.isnan(item) for item in items):
        return False
    # Optuna finds a value's index with ==, to which 1, 1.0 and True are one value.
    return len(set(items)) == len(items)


def _option_index(items: tuple[Any, ...], got: Any, match: Callable[[Any, Any], bool]) -> int | None:
    """The index of the option ``got`` is: one of its own type first (``==`` takes 1, 1.0 and True for one value, a
    choice holds three options), else the first that ``match`` finds it could be."""
    value = plain(got)
    if type(value) in _SCALARS:
        same = next((i for i, item in enumerate(items) if type(plain(item)) is type(value) and plain(item) == value),
                    None)
        if same is not None:
            return same
    return next((i for i, item in enumerate(items) if match(item, got)), None)


def _same_scalar(a: Any, b: Any) -> bool:
    a, b = plain(a), plain(b)  # np.True_ is True (and not 1), as a stored config holds it
    return isinstance(a, bool) == isinstance(b, bool) and bool(a == b)


def _key(where: str, key: str) -> str:
    """``space["optim"]``: key paths are written as ``validate_space`` writes them."""
    return f"{where}[{json.dumps(key)}]"


def _items(domain: Domain) -> str:
    return "options" if isinstance(domain, Choice) else "values"


def _HAS_SET_CONSTRAINT(optuna: Any) -> bool:  # noqa: N802 - read as a constant
    return hasattr(optuna.trial.Trial, "set_constraint")


def _constraints(result: dict[str, Any]) -> list[float] | None:
    """A result's ``constraint/<i>`` values in order, or None when it has none. NaN (and anything not a number)
    is +inf: not feasible, as ``feasible_result`` has it (Optuna refuses NaN; its samplers take +inf)."""
    values: list[float] = []
    while f"{CONSTRAINT_PREFIX}{len(values)}" in result:
        value = _number(result[f"{CONSTRAINT_PREFIX}{len(values)}"])
        values.append(math.inf if value is None or math.isnan(value) else value)
    return values or None


def _fit(values: list[float], count: int) -> list[float]:
    """``values`` as ``count`` values: missing ones +inf (not known to be feasible); the last kept one and the
    extra ones as one with the same feasibility and violation (the sum of the positive ones, else their max)."""
    if len(values) <= count:
        return values + [math.inf] * (count - len(values))
    rest = values[count - 1:]
    violation = sum(v for v in rest if v > 0)
    return [*values[:count - 1], violation if violation > 0 else max(rest)]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


@contextlib.contextmanager
def _quiet(optuna: Any) -> Iterator[None]:
    """Optuna logs every finished trial at INFO; our progress display reports trials already."""
    logger = logging.getLogger("optuna")
    level = logger.level
    if logger.getEffectiveLevel() < logging.WARNING:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)
