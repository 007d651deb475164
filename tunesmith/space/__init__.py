"""Search-space domains: what a searcher may try for each key of a (nested) config dict.

A space is a dict whose values are domains (``uniform(0, 1)``, ``choice([...])``, ...), nested dicts of
the same, or constants that pass through unchanged. Constructors only store their arguments;
``validate_space`` checks a whole space in one place and names the offending key path.

Every sampled domain maps a number ``u`` in [0, 1) to a value (``from_unit``), so random search
(``from_unit(rng.random())``) and quasi-random search (Sobol points) share one mapping. Each sampled
domain consumes exactly one ``rng.random()`` in order of appearance, so the same seed gives the same
configs.

One concept per module: ``_domains`` (the domains, their constructors and argument checks, ``domains``),
``_unit`` (the unit mappings), ``_validate`` (``validate_space``, ``check_storable``), ``_grid``
(``GridPoints``), ``_resolve`` (``resolve``), ``_plain``, ``_flatten``, ``_json``. Import from here.
"""

from __future__ import annotations

from tunesmith.space._domains import (
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
    choice,
    domains,
    grid,
    lograndint,
    loguniform,
    normal,
    qloguniform,
    qnormal,
    quniform,
    randint,
    sample_from,
    uniform,
)
from tunesmith.space._flatten import FLAT_SEP as FLAT_SEP  # joins nested keys in flat views (not in __all__)
from tunesmith.space._flatten import flatten, unflatten
from tunesmith.space._grid import GridPoints, grid_points
from tunesmith.space._json import space_from_json, space_to_json
from tunesmith.space._plain import plain
from tunesmith.space._resolve import resolve
from tunesmith.space._validate import check_storable, validate_space

__all__ = [
    "Choice",
    "Domain",
    "Grid",
    "GridPoints",
    "KeyPath",
    "LogRandInt",
    "LogUniform",
    "Normal",
    "QLogUniform",
    "QNormal",
    "QUniform",
    "RandInt",
    "SampleFrom",
    "Uniform",
    "check_storable",
    "choice",
    "domains",
    "flatten",
    "grid",
    "grid_points",
    "lograndint",
    "loguniform",
    "normal",
    "plain",
    "qloguniform",
    "qnormal",
    "quniform",
    "randint",
    "resolve",
    "sample_from",
    "space_from_json",
    "space_to_json",
    "unflatten",
    "uniform",
    "validate_space",
]
