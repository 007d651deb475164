"""Plot data: pure functions from an experiment's results to plotly figures as plain dicts.

Each function reads a :class:`~tunesmith.results.ResultSet` (never writes; typed as ``_read.PlotSource``, the
part of it the plots use, so no plot imports the results module) and returns a plotly figure
``{"data": [trace, ...], "layout": {...}}`` made of lists, dicts, strings and numbers only, so it can be
tested as data, dumped as JSON, drawn by plotly.js (``render.py``) or by the ``plotly`` Python package
(``plotly.graph_objects.Figure(fig)``). Every trace carries a ``meta`` dict saying what it shows (trial
id, status, ...). A function returns ``None`` when its plot does not apply (no grid for a sensitivity
plot, no varying parameter for a scatter plot).

Seeds: a config key whose last part is ``seed`` or ends in ``_seed`` (``seed``, ``env_seed``,
``ppo/train_seed``) is a repeat, not a parameter (:func:`is_seed_key`); the functions that use this take
``seeds=`` (or ``repeats=``) to declare the seed keys instead (``[]``: none). Seeds are averaged over in
:func:`seed_curves` and :func:`sensitivity`, and never drawn as a parameter axis.

Layout (one module per plot, as Optuna's visualization package): ``_read`` (one columnar read of the store,
shared by a report's plots, and what several plots derive from it), ``_figure`` (colours, thinning to a
screen's worth of points, labels, subplots), then ``_learning_curves``, ``_seed_curves``, ``_best_so_far``,
``_sensitivity``, ``_scatter``, ``_parallel_coordinates``, ``_timeline``, ``_pareto_front``, ``_importance``.
This module re-exports their public names: import from here.
"""

from __future__ import annotations

from tunesmith.plots._best_so_far import MAX_RESULT_POINTS, best_so_far
from tunesmith.plots._figure import (
    ERROR_RED,
    GREY,
    MAX_TRIAL_MARKS,
    PALETTE,
    POINTS_PER_FIGURE,
    STATUS_COLORS,
    WEBGL_POINTS,
    Figure,
    drawn_trials,
    thin,
)
from tunesmith.plots._importance import importance
from tunesmith.plots._learning_curves import BUCKETS, MAX_TRIAL_LINES, TOP_TRIALS, learning_curves
from tunesmith.plots._parallel_coordinates import parallel_coordinates
from tunesmith.plots._pareto_front import pareto_front
from tunesmith.plots._read import (
    FINALS,
    is_seed_key,
    mode_or_none,
    reported,
    resolve_metric,
    resolve_mode,
    shared_read,
    shown_name,
)
from tunesmith.plots._scatter import scatter
from tunesmith.plots._seed_curves import BANDS, seed_curves
from tunesmith.plots._sensitivity import MAX_LINES, SweepPoint, sensitivity, sweep_stats
from tunesmith.plots._timeline import MAX_TIMELINE_ROWS, timeline

__all__ = [
    "BANDS",
    "BUCKETS",
    "ERROR_RED",
    "FINALS",
    "Figure",
    "GREY",
    "MAX_LINES",
    "MAX_RESULT_POINTS",
    "MAX_TIMELINE_ROWS",
    "MAX_TRIAL_MARKS",
    "MAX_TRIAL_LINES",
    "PALETTE",
    "POINTS_PER_FIGURE",
    "STATUS_COLORS",
    "SweepPoint",
    "TOP_TRIALS",
    "WEBGL_POINTS",
    "best_so_far",
    "drawn_trials",
    "importance",
    "is_seed_key",
    "learning_curves",
    "mode_or_none",
    "parallel_coordinates",
    "pareto_front",
    "reported",
    "resolve_metric",
    "resolve_mode",
    "scatter",
    "seed_curves",
    "sensitivity",
    "shared_read",
    "shown_name",
    "sweep_stats",
    "thin",
    "timeline",
]
