"""BOHB-style search: a TPE-like density model per budget, fed by the results at ASHA/HyperBand rungs.

Pair it with the ``ASHA`` or ``HyperBand`` scheduler (Falkner, Klein & Hutter, "BOHB: Robust and
Efficient Hyperparameter Optimization at Scale", ICML 2018): the scheduler decides how long each
trial runs; this searcher decides what to try, from a model of the good and bad configs at the
largest budget that has seen enough of them.

Why our own kernel density model rather than Optuna's TPESampler: BOHB's model is one multivariate
KDE per budget, refit from the results at that budget whenever they change, and BOHB chooses the
budget. Optuna's TPE fits over one study's completed trials; feeding it per-budget studies means
copying trials between studies and undoing its own choices (priors, liars, startup counts). The
model below is ~150 lines of NumPy, a core dependency, so BOHB needs no extra; it is a pure
function of the observations, so a resume by replay is exact.
"""

from __future__ import annotations

import math
import numbers
import random
from typing import Any

import numpy as np

from tunesmith._errors import ConfigError
from tunesmith._objective import Objective
from tunesmith.searchers._base import FINISHED, UNLIMITED, Searcher, _check_num_samples, _Finished
from tunesmith.searchers._seeding import check_seed, seed_sequence
from tunesmith.searchers._unit_cube import Dim, UnitCube, fits
from tunesmith.searchers.points import check_points, check_points_fit
from tunesmith.searchers.repeat import fold_repeats
from tunesmith.space import KeyPath, validate_space

__all__ = ["BOHB"]

BUDGET_KEY = "training_iteration"
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class BOHB(Searcher):
    """BOHB-style model-based search over budgets (``training_iteration`` values).

    Every result a trial reports is an observation of its config at budget ``training_iteration``;
    under ASHA or HyperBand most trials stop at a rung, so low budgets have many observations and
    high budgets few. Each suggestion:

    1. Points to evaluate first, if any; then with probability ``random_fraction`` a random config
       (so the search never stops exploring, as in BOHB).
    2. Otherwise the model budget is the largest budget with at least ``min_points_in_model`` + 2
       observations (random configs until there is one). Its observations are split into the best
       ``top_n_percent`` and the worst ``100 - top_n_percent`` (each at least
       ``min_points_in_model``, so with few observations they overlap); a product-kernel density is fit
       to each (Gaussian kernels on the unit cube, Scott's bandwidth, Aitchison-Aitken kernels for
       choices). ``n_candidates`` configs are drawn from the good density with bandwidths widened by
       ``bandwidth_factor``, and the one with the largest ratio good/bad density is suggested. No
       uniform prior enters the ratio: far from all data it would favour the edges of the space.

    The space is seen as ``QuasiRandom`` sees it (``tunesmith.searchers.sobol.UnitCube``): one
    coordinate per domain, every branch of a conditional choice included; a coordinate on a branch a
    config did not take counts as unknown (its kernel factor is 1). A ``grid`` is searched as a
    choice, not crossed: the experiment has ``num_samples`` trials. ``sample_from`` keys are computed
    as usual. One metric only.

    Args:
        seed: seed of this searcher's draws (each suggestion uses its own stream from ``(seed, its
            number)``); ``None`` draws one at construction (``self._seed``).
        min_points_in_model: observations a budget needs before it is modelled (an int >= 2);
            ``None``: the number of cube coordinates + 1.
        top_n_percent: the share of a budget's observations that make the good density (0 < x < 100).
        random_fraction: probability of a purely random suggestion once a model exists (0..1).
        bandwidth_factor: how much wider than the fitted bandwidth candidates are drawn (> 0).
        min_bandwidth: the smallest bandwidth on the unit cube (0 < x < 1).
        n_candidates: candidates drawn per model-based suggestion (an int >= 1).
        points_to_evaluate: (partial) configs to suggest first (see ``tunesmith.searchers.points``).
    """

    def __init__(self, seed: int | None = None, min_points_in_model: int | None = None,
                 top_n_percent: float = 15, random_fraction: float = 1 / 3, bandwidth_factor: float = 3.0,
                 min_bandwidth: float = 1e-3, n_candidates: int = 64,
                 points_to_evaluate: list[dict[str, Any]] | None = None) -> None:
        self.seed = seed
        self.min_points_in_model = min_points_in_model
        self.top_n_percent = top_n_percent
        self.random_fraction = random_fraction
        self.bandwidth_factor = bandwidth_factor
        self.min_bandwidth = min_bandwidth
        self.n_candidates = n_candidates
        self.points_to_evaluate = points_to_evaluate
        self._seed: Any = seed if seed is not None else random.SystemRandom().randrange(2**63)
        self._cube: UnitCube | None = None
        self._metric = ""
        self._sign = 1.0
        self._min_points = 2
        self._given: list[dict[KeyPath, Any]] = []
        self._total: int | None = None
        self._count = 0
        self._vectors: dict[int, np.ndarray] = {}
        self._obs: dict[float, dict[int, float]] = {}  # budget -> trial id -> loss (lower is better)

    def setup(self, space: dict[str, Any], metric: str | list[str] | None, mode: str | list[str] | None,
              num_samples: int) -> None:
        """Validate the space, the metric and every argument.

        Raises:
            ConfigError: naming the offending key or argument.
        """
        super().setup(space, metric, mode, num_samples)
        validate_space(space)
        _check_num_samples(num_samples)
        objective = Objective.for_searcher(metric, mode, multi=False, owner="BOHB")
        self._metric, self._sign = objective.primary, (1.0 if objective.primary_mode == "min" else -1.0)
        check_seed(self._seed)
        _check_int("min_points_in_model", self.min_points_in_model, 2, optional=True)
        _check_real("top_n_percent", self.top_n_percent, 0, 100, "0 < top_n_percent < 100")
        _check_real("random_fraction", self.random_fraction, 0, 1, "0 <= random_fraction <= 1", closed=True)
        _check_real("bandwidth_factor", self.bandwidth_factor, 0, math.inf, "bandwidth_factor > 0")
        _check_real("min_bandwidth", self.min_bandwidth, 0, 1, "0 < min_bandwidth < 1")
        _check_int("n_candidates", self.n_candidates, 1)
        self._cube = UnitCube(space, cross_grids=False)
        dims = len(self._cube.dims)
        self._min_points = int(self.min_points_in_model) if self.min_points_in_model is not None \
            else max(2, dims + 1)
        self._total = None if num_samples == UNLIMITED else num_samples
        self._given = check_points(self.points_to_evaluate, space)
        check_points_fit(self._given, self._total)
        self._count = 0
        self._vectors, self._obs = {}, {}

    # -- suggest --------------------------------------------------------------------------------------
    def suggest(self, trial_id: int) -> dict[str, Any] | _Finished:
        """A point to evaluate, a random config, or the model's best candidate."""
        cube = self._cube
        assert cube is not None, "setup() first"
        if self._total is not None and self._count >= self._total:
            return FINISHED
        k = self._count
        rng = np.random.default_rng(seed_sequence(self._seed, k))
        if k < len(self._given):
            fixed = cube.fixed(rng.random(len(cube.dims)), point=self._given[k])[0]
        else:
            fixed = cube.fixed(self._propose(rng))[0]
        config = cube.config(fixed)
        self._remember(trial_id, config)
        return config

    def restore_suggestion(self, trial_id: int, config: dict[str, Any]) -> None:
        """Replay: the stored config is taken as given (the model depends only on configs and results)."""
        assert self._cube is not None, "setup() first"
        self._remember(trial_id, config)

    def _remember(self, trial_id: int, config: dict[str, Any]) -> None:
        assert self._cube is not None
        self._vectors[trial_id] = self._cube.encode(config)
        self._count += 1

    def observe(self, trial_id: int, result: dict[str, Any], final: bool) -> None:
        """Record the metric at budget ``training_iteration`` (1 when absent); NaN and non-numbers are
        skipped."""
        if trial_id not in self._vectors:
            return
        value = result.get(self._metric)
        budget = result.get(BUDGET_KEY, 1)
        if (isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value)
                or isinstance(budget, bool) or not isinstance(budget, numbers.Real)):
            return
        self._obs.setdefault(float(budget), {})[trial_id] = self._sign * float(value)

    def warm_start(self, trials: list[tuple[dict[str, Any], dict[str, Any]]]) -> int:
        """Earlier trials become observations at their last result's budget (under ids below zero, which no
        trial of this experiment has); a config this space cannot draw is skipped. Trials of an experiment that
        ran ``Repeat``: without the repeat index, a config once with its repeats' average (``fold_repeats``), as
        ``Repeat`` passes on live results. Returns how many of ``trials`` were taken in, every repeat counted."""
        cube = self._cube
        assert cube is not None, "setup() first"
        used = 0
        for config, result, count in fold_repeats(trials, self.space):
            if (not isinstance(config, dict) or set(config) != set(self.space)
                    or not all(fits(v, config[k]) for k, v in self.space.items())):
                continue
            wid = -1 - len([k for k in self._vectors if k < 0])
            self._vectors[wid] = cube.encode(config)
            before = sum(len(seen) for seen in self._obs.values())
            self.observe(wid, result, True)
            if sum(len(seen) for seen in self._obs.values()) == before:
                del self._vectors[wid]  # no usable metric
                continue
            used += count
        return used

    def model_budget(self) -> float | None:
        """The budget the next model-based suggestion models: the largest with at least
        ``min_points_in_model`` + 2 observations (as in BOHB), or ``None``."""
        ready = [b for b, seen in self._obs.items() if len(seen) >= self._min_points + 2]
        return max(ready) if ready else None

    def _propose(self, rng: np.random.Generator) -> np.ndarray:
        cube = self._cube
        assert cube is not None
        dims = len(cube.dims)
        budget = self.model_budget()
        explore = rng.random() < self.random_fraction
        if budget is None or explore or dims == 0:
            return rng.random(dims)
        seen = self._obs[budget]
        ids = sorted(seen)
        losses = np.array([seen[i] for i in ids])
        data = np.array([self._vectors[i] for i in ids])
        order = np.lexsort((np.array(ids), losses))  # by loss, ties by trial id
        # As in BOHB: each density rests on at least ``min_points_in_model`` points (with few
        # observations the bad one reaches into the good ones rather than resting on one point).
        n = len(ids)
        n_good = max(self._min_points, n * self.top_n_percent // 100)
        n_bad = max(self._min_points, n * (100 - self.top_n_percent) // 100)
        good = _KDE(data[order[:n_good]], cube.dims, self.min_bandwidth)
        bad = _KDE(data[order[max(0, n - n_bad):]], cube.dims, self.min_bandwidth)
        candidates = good.sample(rng, int(self.n_candidates), float(self.bandwidth_factor))
        active = np.array([cube.fixed(c)[1] for c in candidates])
        score = good.log_pdf(candidates, active) - bad.log_pdf(candidates, active)
        best: np.ndarray = candidates[int(np.argmax(score))]
        return best


class _KDE:
    """A product-kernel density on the unit cube, mixed with the uniform density (weight one point).

    NaN coordinates (branches not taken) have kernel factor 1, as if uniform; so do coordinates a
    candidate does not use.
    """

    def __init__(self, data: np.ndarray, dims: list[Dim], min_bandwidth: float) -> None:
        self.data = data
        self.cats = np.array([d.categories for d in dims])
        m = data.shape[0]
        known = ~np.isnan(data)
        counts = known.sum(axis=0)
        self.bw = np.ones(len(dims))
        numeric = self.cats == 0
        d_eff = max(1, int(numeric.sum()))
        for j in range(len(dims)):
            n_j = int(counts[j])
            if n_j == 0:
                continue
            if numeric[j]:
                sd = float(np.std(data[known[:, j], j]))
                scott = sd * n_j ** (-1.0 / (d_eff + 4))
                self.bw[j] = max(scott, min_bandwidth)
            else:
                c = int(self.cats[j])
                self.bw[j] = max(min_bandwidth, (c - 1) / (c + n_j))
        self.m = m

    def log_pdf(self, points: np.ndarray, active: np.ndarray) -> np.ndarray:
        """Log density at ``points`` (n x d), counting only the coordinates ``active`` marks."""
        n, dims = points.shape
        total = np.zeros((n, self.m))
        for j in range(dims):
            x = self.data[:, j]
            known = ~np.isnan(x)
            if not known.any():
                continue
            c = int(self.cats[j])
            p = points[:, j]
            if c:
                lam = self.bw[j]
                pc = _category(p, c)[:, None]
                xc = _category(np.where(known, x, 0.0), c)[None, :]
                same, other = math.log((1 - lam) * c), math.log(lam / (c - 1) * c) if c > 1 else 0.0
                term = np.where(pc == xc, same, other)
            else:
                h = self.bw[j]
                z = (p[:, None] - np.where(known, x, 0.0)[None, :]) / h
                term = -0.5 * z * z - math.log(h) - _LOG_SQRT_2PI
            term = np.where(known[None, :], term, 0.0)
            total += np.where(active[:, j][:, None], term, 0.0)
        top = total.max(axis=1, keepdims=True)
        return (top[:, 0] + np.log(np.exp(total - top).sum(axis=1))) - math.log(self.m)

    def sample(self, rng: np.random.Generator, n: int, widen: float) -> np.ndarray:
        """``n`` draws from the mixture, kernels ``widen`` times wider."""
        dims = self.data.shape[1]
        out = rng.random((n, dims))
        which = rng.integers(0, self.m, size=n)
        for i in range(n):
            center = self.data[which[i]]
            for j in range(dims):
                x = center[j]
                if math.isnan(x):
                    continue  # unknown: keep the uniform draw
                c = int(self.cats[j])
                if c:
                    if rng.random() >= min(1.0, self.bw[j] * widen):
                        out[i, j] = x
                else:
                    out[i, j] = _truncated_normal(rng, x, self.bw[j] * widen)
        return out


def _category(u: np.ndarray, c: int) -> np.ndarray:
    return np.minimum(np.floor(np.clip(u, 0.0, 1.0) * c), c - 1).astype(int)


def _truncated_normal(rng: np.random.Generator, mean: float, sd: float) -> float:
    for _ in range(20):
        v = rng.normal(mean, sd)
        if 0.0 <= v <= 1.0:
            return float(v)
    return float(min(max(mean, 0.0), 1.0))


def _check_int(name: str, value: Any, low: int, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        extra = " or None" if optional else ""
        raise ConfigError(f"{name}: expected an int >= {low}{extra}; got {value!r}")


def _check_real(name: str, value: Any, low: float, high: float, what: str, closed: bool = False) -> None:
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and not math.isnan(value)
    if ok:
        ok = (low <= value <= high) if closed else (low < value < high)
    if not ok:
        raise ConfigError(f"{name}: expected a number with {what}; got {value!r}")
