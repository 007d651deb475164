"""Population Based Bandits (Parker-Holder et al., "Provably Efficient Online Hyperparameter Optimization
with Population-Based Bandits", NeurIPS 2020).

PB2 exploits as PBT (``tunesmith.schedulers.pbt``: the same perturbation points, quantiles, choice of a
top-quantile source and restart from its checkpoint) and explores differently: instead of multiplying the
source's values by 0.8/1.2 it picks the new values of the bounded hyperparameters with a time-varying
Gaussian-process bandit fitted to the whole population's recent progress.

The data: at each perturbation point of every trial, one point ``(tau, x) -> y`` where ``tau`` is the
trial's time in perturbation intervals, ``x`` its bounded hyperparameters mapped to [0, 1] (linearly, or
logarithmically for a ``ts.loguniform`` or ``ts.lograndint`` bound) and ``y`` the change of its score (the
metric signed so that higher is better) since its previous perturbation point, per interval. Only the latest
``max_data`` points are kept.

The model: a GP on standardised ``y`` with the paper's time-varying kernel::

    k((tau, x), (tau', x')) = s2 * exp(-|x - x'|^2 / (2 l^2)) * (1 - eps) ** (|tau - tau'| / 2)  (+ noise)

(``eps`` lets old data count less: the best hyperparameters drift during training). ``l``, ``s2``, the
noise and ``eps`` maximise the marginal likelihood (L-BFGS-B from fixed starting points, in log space,
within bounds).

The choice: ``x`` maximising the UCB ``mu(tau_now, x) + kappa * sigma(tau_now, x)`` over [0, 1]^d, with
``kappa = sqrt(max(0.2 * ln(0.4 * n), 0.1))`` for ``n`` data points (the schedule of the paper's code).
Trials explored at the same time step and not yet measured are pending points: they take no part in the
mean but shrink ``sigma`` around them (GP-BUCB), so simultaneous exploits spread out. The maximiser: the
best of ``256`` random candidates, refined by L-BFGS-B. Before any data point exists the values are drawn
uniformly within the bounds.

Pure: no I/O and no clock; all randomness comes from the seed (PBT's ``random.Random`` for the exploit,
a ``numpy`` generator for the candidates). Needs scipy (the ``optuna`` extra installs it).
"""

from __future__ import annotations

import copy
import math
import numbers
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tunesmith._errors import ConfigError
from tunesmith._optional import require
from tunesmith.schedulers._base import Decision, Exploit, SchedulerView
from tunesmith.schedulers.asha import _check_number, _reached, _time
from tunesmith.schedulers.pbt import PBT, _flatten, _get, _set
from tunesmith.trial import ITERATION, Result, TrialView

_CANDIDATES = 256
# GP hyperparameter bounds, in the units of the standardised data: length scale, signal variance, noise
# variance, and the time-kernel's forgetting rate eps.
_GP_BOUNDS = ((0.05, 5.0), (0.05, 20.0), (1e-4, 2.0), (1e-4, 0.5))
_GP_STARTS = ((0.3, 1.0, 0.1, 0.05), (1.0, 1.0, 0.5, 0.1), (0.1, 2.0, 0.01, 0.01))


@dataclass(frozen=True)
class _Bound:
    """A bounded key: ``low``/``high`` inclusive (an integer domain's ``high - 1``), ``log`` for a log scale, and
    whether proposals are whole numbers: ``True`` (``ts.randint``, ``ts.lograndint``), ``False`` (``ts.uniform``,
    ``ts.loguniform``), ``None`` (a ``[low, high]`` list: as the explored config's value, ``_whole``)."""

    path: tuple[str, ...]
    low: float
    high: float
    log: bool
    integer: bool | None

    def to_unit(self, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
            return 0.5
        v = float(value)
        if self.log:
            u = (math.log(max(v, self.low)) - math.log(self.low)) / (math.log(self.high) - math.log(self.low))
        else:
            u = (v - self.low) / (self.high - self.low)
        return min(max(u, 0.0), 1.0)

    def from_unit(self, u: float, like: Any = None) -> float | int:
        """The value at ``u`` in [0, 1]; a whole number for an integer domain, or for a list bound when ``like``
        (the explored config's value) is an int and a whole number lies within the bounds."""
        u = min(max(float(u), 0.0), 1.0)
        if self.log:
            v = math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))
        else:
            v = self.low + u * (self.high - self.low)
        v = min(max(v, self.low), self.high)
        whole = self.integer if self.integer is not None else _whole(like)
        if whole and math.ceil(self.low) <= math.floor(self.high):
            return min(max(int(round(v)), math.ceil(self.low)), math.floor(self.high))
        return v


def _whole(value: Any) -> bool:
    """Whether a config value is an int (not a bool): Ray Tune's PB2 proposes ints for those keys."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


@dataclass
class _Track:
    """A trial's bookkeeping: its last perturbation point, the (time, score) its current interval started
    from, its last result and its hyperparameters (unit cube)."""

    point: float = 0.0
    base: tuple[float, float] | None = None
    last: tuple[float, float] | None = None
    x: tuple[float, ...] | None = None


class PB2(PBT):
    """Population Based Bandits: PBT's exploit, with a time-varying GP-UCB bandit as the explore step.

    Args:
        perturbation_interval: how much ``time_attr`` passes between a trial's perturbation points.
        hyperparam_bounds: key (or ``"a/b"`` path, or a nested dict of them, as in PBT's
            ``hyperparam_mutations``) -> ``[low, high]`` (a linear scale), ``ts.uniform(low, high)``,
            ``ts.loguniform(low, high)`` (a log scale), ``ts.randint(low, high)`` or
            ``ts.lograndint(low, high)`` (whole numbers, ``high`` excluded as the domains draw them). A
            ``ts.uniform``/``ts.loguniform`` bound gives floats whatever its literals (``ts.uniform(0, 1)``
            proposes 0.37); a list gives floats too, except for a key whose value in the explored config is an
            int (a batch size), which gets ints, as in Ray Tune's PB2. Only these keys are explored; every
            other key keeps the source's value.
        quantile_fraction: the share of the population in each quantile, in (0, 0.5].
        seed: seed of the scheduler's random generators; ``None`` draws one at construction.
        time_attr: the progress counter perturbation points are measured in.
        metric: the metric to compare; defaults to the experiment's.
        mode: ``"min"`` or ``"max"``; defaults to the experiment's.
        max_data: how many of the latest data points the GP is fitted to.
    """

    _mutations_arg = "hyperparam_bounds"

    def __init__(self, perturbation_interval: float, hyperparam_bounds: dict[str, Any],
                 quantile_fraction: float = 0.25, seed: int | None = None, time_attr: str = ITERATION,
                 metric: str | None = None, mode: str | None = None, max_data: int = 400) -> None:
        self.perturbation_interval = perturbation_interval
        self.hyperparam_bounds = hyperparam_bounds
        self.quantile_fraction = quantile_fraction
        self.seed = seed
        self._seed: Any = seed if seed is not None else random.SystemRandom().randrange(2**63)
        self.time_attr = time_attr
        self.metric = metric
        self.mode = mode
        self.max_data = max_data

    def setup(self, metric: str | list[str] | None, mode: str | list[str] | None) -> None:
        """Validate the arguments and reset all state (the random generators included).

        Raises:
            ConfigError: naming the bad argument.
        """
        self._bounds = _check_bounds(self.hyperparam_bounds)
        _check_number("PB2", "max_data", self.max_data, low=2, integer=True)
        self._optimize = require("scipy.optimize", "optuna", what="PB2")
        # PBT's machinery: every bounded key is a "mutation" (PB2 replaces the explore step, so the
        # mutation specs only satisfy PBT's checks; a resample probability of 0 draws nothing).
        self.hyperparam_mutations = {"/".join(b.path): [b.low, b.high] for b in self._bounds}
        self.resample_probability = 0.0
        super().setup(metric, mode)
        self._np_rng = np.random.default_rng(int(self._seed) % 2**63)
        self._tracks: dict[int, _Track] = {}
        self._data: list[tuple[float, tuple[float, ...], float]] = []  # (tau, x, y)
        self._pending: dict[int, tuple[float, tuple[float, ...]]] = {}  # trial -> (tau, x) chosen, unmeasured
        self._fit: tuple[int, np.ndarray] | None = None  # (len(data) when fitted, GP hyperparameters)
        self._explore_at: tuple[int, float] | None = None  # (trial, time) of the exploit being decided

    # -- hooks

    def on_result(self, trial: TrialView, result: Result, view: SchedulerView) -> Decision:
        t = _time(result, self.time_attr)
        score = self._objective.reported_score(result)
        if score is None:  # no metric: no data point, no interval starts or ends; PBT's decision (it continues)
            return super().on_result(trial, result, view)
        track = self._tracks.setdefault(trial.id, _Track())
        x = self._unit(trial.config)
        if track.base is None or track.x != x or t <= track.base[0]:
            track.base, track.x = (t, score), x  # a new interval starts (first result, restart, new config)
        elif _reached(t - track.point, self._interval):
            base_t, base_score = track.base
            if math.isfinite(score) and math.isfinite(base_score):
                self._data.append((t / self._interval, x, (score - base_score) / ((t - base_t) / self._interval)))
                del self._data[:-int(self.max_data)]
            self._pending.pop(trial.id, None)
            track.base = (t, score)
        if _reached(t - track.point, self._interval):
            track.point = t
        track.last = (t, score)
        self._explore_at = (trial.id, t)
        decision = super().on_result(trial, result, view)
        self._explore_at = None
        if isinstance(decision, Exploit):
            source = self._tracks.get(decision.source_trial, _Track())
            track.point = self._trials[trial.id].last_perturbation  # the point PBT's clone took over (its source's)
            track.x = None  # the restart's first result starts the next interval
            if source.last is not None and decision.source_iteration == source.last[0]:
                track.base, track.x = source.last, self._unit(decision.config)
        return decision

    def on_complete(self, trial: TrialView, result: Result | None, view: SchedulerView) -> None:
        super().on_complete(trial, result, view)
        self._pending.pop(trial.id, None)

    # -- exploration

    def explore(self, config: dict[str, Any]) -> dict[str, Any]:
        """A deep copy of ``config`` (the source's) with the bounded keys chosen by GP-UCB."""
        new = copy.deepcopy(config)
        trial_id, t = self._explore_at if self._explore_at is not None else (-1, 0.0)
        tau = t / self._interval
        u = self._select(tau)
        for bound, value in zip(self._bounds, u):
            _set(new, bound.path, bound.from_unit(float(value), _get(config, bound.path)[1]))
        if trial_id >= 0:
            self._pending[trial_id] = (tau, tuple(float(v) for v in u))
        return new

    def _unit(self, config: dict[str, Any]) -> tuple[float, ...]:
        return tuple(b.to_unit(_get(config, b.path)[1]) for b in self._bounds)

    def _select(self, tau: float) -> np.ndarray:
        d = len(self._bounds)
        if len(self._data) < 2:
            return self._np_rng.random(d)
        taus = np.array([p[0] for p in self._data])
        xs = np.array([p[1] for p in self._data], dtype=float)
        ys = np.array([p[2] for p in self._data], dtype=float)
        spread = float(ys.std())
        ys = (ys - ys.mean()) / (spread if spread > 1e-12 else 1.0)
        theta = self._hyperparameters(taus, xs, ys)
        pending = [p for p in self._pending.values()]
        ptaus = np.array([p[0] for p in pending]) if pending else np.empty(0)
        pxs = np.array([p[1] for p in pending], dtype=float) if pending else np.empty((0, d))
        gp = _Posterior(theta, taus, xs, ys, np.concatenate([taus, ptaus]), np.vstack([xs, pxs]))
        n = len(ys)
        kappa = math.sqrt(max(0.2 * math.log(0.4 * n), 0.1))

        def negative_ucb(u: np.ndarray) -> float:
            mu, sigma = gp.predict(tau, np.atleast_2d(u))
            return float(-(mu[0] + kappa * sigma[0]))

        candidates = self._np_rng.random((_CANDIDATES, d))
        mu, sigma = gp.predict(tau, candidates)
        start = candidates[int(np.argmax(mu + kappa * sigma))]
        best = self._optimize.minimize(negative_ucb, start, method="L-BFGS-B", bounds=[(0.0, 1.0)] * d)
        if best.success and negative_ucb(best.x) <= negative_ucb(start):
            return np.clip(best.x, 0.0, 1.0)
        return start

    def _hyperparameters(self, taus: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """The GP's (length scale, signal variance, noise variance, eps), refitted when data arrived."""
        if self._fit is not None and self._fit[0] == len(self._data):
            return self._fit[1]
        logb = [(math.log(lo), math.log(hi)) for lo, hi in _GP_BOUNDS]
        dt = np.abs(taus[:, None] - taus[None, :])
        sq = ((xs[:, None, :] - xs[None, :, :]) ** 2).sum(-1)

        def nll(log_theta: np.ndarray) -> float:
            return _negative_log_likelihood(np.exp(log_theta), dt, sq, ys)

        best: tuple[float, np.ndarray] | None = None
        for start in _GP_STARTS:
            out = self._optimize.minimize(nll, np.log(start), method="L-BFGS-B", bounds=logb)
            value = float(out.fun)
            if math.isfinite(value) and (best is None or value < best[0]):
                best = (value, np.exp(out.x))
        theta = best[1] if best is not None else np.array(_GP_STARTS[0])
        self._fit = (len(self._data), theta)
        return theta


def _kernel(theta: np.ndarray, dt: np.ndarray, sq: np.ndarray) -> np.ndarray:
    length, signal, _noise, eps = theta
    return signal * np.exp(-sq / (2 * length**2)) * (1 - eps) ** (dt / 2)


def _negative_log_likelihood(theta: np.ndarray, dt: np.ndarray, sq: np.ndarray, ys: np.ndarray) -> float:
    k = _kernel(theta, dt, sq) + (theta[2] + 1e-8) * np.eye(len(ys))
    try:
        chol = np.linalg.cholesky(k)
    except np.linalg.LinAlgError:
        return 1e10
    alpha = np.linalg.solve(chol.T, np.linalg.solve(chol, ys))
    return float(0.5 * ys @ alpha + np.log(np.diag(chol)).sum() + 0.5 * len(ys) * math.log(2 * math.pi))


class _Posterior:
    """The GP's mean from the data and its standard deviation from the data plus the pending points."""

    def __init__(self, theta: np.ndarray, taus: np.ndarray, xs: np.ndarray, ys: np.ndarray,
                 all_taus: np.ndarray, all_xs: np.ndarray) -> None:
        self.theta = theta
        self.taus, self.xs = taus, xs
        self.all_taus, self.all_xs = all_taus, all_xs
        noise = theta[2] + 1e-8
        k = self._k(taus, xs, taus, xs) + noise * np.eye(len(taus))
        self.alpha = np.linalg.solve(k, ys)
        k_all = self._k(all_taus, all_xs, all_taus, all_xs) + noise * np.eye(len(all_taus))
        self.chol_all = np.linalg.cholesky(k_all)

    def _k(self, ta: np.ndarray, xa: np.ndarray, tb: np.ndarray, xb: np.ndarray) -> np.ndarray:
        dt = np.abs(ta[:, None] - tb[None, :])
        sq = ((xa[:, None, :] - xb[None, :, :]) ** 2).sum(-1)
        return _kernel(self.theta, dt, sq)

    def predict(self, tau: float, us: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t_new = np.full(len(us), tau)
        mu = self._k(t_new, us, self.taus, self.xs) @ self.alpha
        v = np.linalg.solve(self.chol_all, self._k(self.all_taus, self.all_xs, t_new, us))
        var = np.maximum(self.theta[1] - (v**2).sum(0), 1e-12)
        return mu, np.sqrt(var)


def _check_bounds(bounds: Any) -> list[_Bound]:
    """The bounds in order, nested dicts walked as PBT walks ``hyperparam_mutations`` (``"a/b"`` paths and nested
    dicts name the same keys)."""
    if not isinstance(bounds, Mapping) or not bounds:
        raise ConfigError(f"hyperparam_bounds: PB2 expects a non-empty dict of key -> [low, high], ts.uniform, "
                          f"ts.loguniform, ts.randint or ts.lograndint (or a nested dict of them); got {bounds!r}")
    out = []
    for path, spec in _flatten(bounds, (), "hyperparam_bounds", ("bounds", "bounded")):
        key = "/".join(path)
        kind = type(spec).__name__
        integer: bool | None = None  # a list: continuous bounds, whole numbers where the config's value is an int
        if isinstance(spec, (list, tuple)) and len(spec) == 2:
            low, high = spec
        elif kind in _DOMAINS and hasattr(spec, "low") and hasattr(spec, "high"):
            low, high = spec.low, spec.high
            integer = kind in ("RandInt", "LogRandInt")
        else:
            raise ConfigError(f"hyperparam_bounds[{key!r}]: expected [low, high], ts.uniform(low, high), "
                              f"ts.loguniform(low, high), ts.randint(low, high) or ts.lograndint(low, high); "
                              f"got {spec!r}")
        log = kind in ("LogUniform", "LogRandInt")
        for value in (low, high):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
                raise ConfigError(f"hyperparam_bounds[{key!r}]: the bounds must be finite numbers; got {spec!r}")
        if integer:
            if not float(low) < float(high) - 1:  # high excluded, as the domain draws
                raise ConfigError(f"hyperparam_bounds[{key!r}]: {spec!r} holds one value or none (high is "
                                  f"excluded): nothing to explore")
            high = float(high) - 1
        if not float(low) < float(high) or (log and float(low) <= 0):
            raise ConfigError(f"hyperparam_bounds[{key!r}]: expected low < high{' and low > 0' if log else ''}; "
                              f"got {spec!r}")
        out.append(_Bound(path, float(low), float(high), log, integer))
    return out


# the search-space domains a bound may be, by class name: continuous, then integer (high excluded)
_DOMAINS = ("Uniform", "LogUniform", "RandInt", "LogRandInt")
