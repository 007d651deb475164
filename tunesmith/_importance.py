"""Hyperparameter importance by PED-ANOVA (Watanabe et al., "PED-ANOVA: Efficiently Quantifying
Hyperparameter Importance in Arbitrary Subspaces", IJCAI 2023), numpy only.

Why PED-ANOVA and not fANOVA: it needs no surrogate model (fANOVA fits a random forest and integrates over
it), so it is a few lines of numpy, deterministic (no random trees to seed) and fast for any number of
trials, and it asks the question users ask of a sweep: which parameters set the good trials apart?

For each parameter, the importance is the Pearson divergence between the distribution of its values among
the top ``gamma`` share of the trials and among all of them::

    d = sum over x of p_all(x) * (p_top(x) / p_all(x) - 1) ** 2

A parameter whose good values are spread as all its values are (noise) scores 0; one whose good values
crowd into a small region scores high. The densities: numeric values are scaled to [0, 1] (a log scale
when every value is positive and they span more than 100x), then a Gaussian kernel density (Scott's
bandwidth, at least 0.02) is evaluated on a grid of 201 points; other values are categories, with
frequencies (smoothed by one count per category). The importances are normalised to sum to 1 (all 0 when
no parameter matters).
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tunesmith._errors import ConfigError
from tunesmith._flat import flatten

_GRID = np.linspace(0.0, 1.0, 201)
_MIN_BANDWIDTH = 0.02


def ped_anova(configs: Sequence[Mapping[str, Any]], scores: Sequence[float], gamma: float = 0.1,
              min_top: int = 10) -> dict[str, float]:
    """{parameter: importance}, normalised to sum to 1, for configs and their scores (higher is better).

    Args:
        configs: one config per trial (nested dicts are flattened to ``"a/b"``).
        scores: the trials' objective, signed so that higher is better (NaN trials are left out).
        gamma: the share of the trials that counts as "top"; at least ``min_top`` trials (and at most half):
            a top of a few trials makes noise look important.

    Raises:
        ConfigError: fewer than 4 trials with a finite score.
    """
    rows = [(flatten(dict(c)), float(s)) for c, s in zip(configs, scores) if math.isfinite(float(s))]
    if len(rows) < 4:
        raise ConfigError(f"importance needs at least 4 trials with a finite metric; got {len(rows)}")
    names = sorted({name for config, _s in rows for name in config})
    if max(s for _c, s in rows) == min(s for _c, s in rows):
        return dict.fromkeys(names, 0.0)  # every trial as good as the next: nothing sets the good ones apart
    rows.sort(key=lambda r: -r[1])
    n = len(rows)
    k = min(max(math.ceil(gamma * n), min_top), n // 2)
    raw: dict[str, float] = {}
    for name in names:
        values = [config.get(name) for config, _s in rows]
        raw[name] = _divergence(values, k)
    total = sum(raw.values())
    return {name: (value / total if total > 0 else 0.0) for name, value in raw.items()}


def _divergence(values: list[Any], k: int) -> float:
    if all(_is_number(v) for v in values):
        x = np.array([float(v) for v in values])
        if np.ptp(x) == 0:
            return 0.0
        if x.min() > 0 and x.max() / x.min() > 100:
            x = np.log(x)
        x = (x - x.min()) / np.ptp(x)
        p_all, p_top = _kde(x), _kde(x[:k])
    else:
        keys = [json.dumps(v, sort_keys=True, default=str) for v in values]
        categories = sorted(set(keys))
        if len(categories) == 1:
            return 0.0
        p_all = np.array([keys.count(c) + 1.0 for c in categories])
        p_top = np.array([keys[:k].count(c) + 1.0 for c in categories])
    p_all, p_top = p_all / p_all.sum(), p_top / p_top.sum()
    return float((p_all * (p_top / np.maximum(p_all, 1e-300) - 1.0) ** 2).sum())


def _kde(x: np.ndarray) -> np.ndarray:
    bandwidth = max(1.06 * float(x.std()) * len(x) ** -0.2, _MIN_BANDWIDTH)
    density = np.exp(-0.5 * ((_GRID[:, None] - x[None, :]) / bandwidth) ** 2).sum(1)
    return density + 1e-12


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(float(value))
