"""Plot data: pure functions from an experiment's results to plotly figures as plain dicts.

Each function reads a :class:`~tunesmith.analysis.ResultSet` (never writes) and returns a plotly figure
``{"data": [trace, ...], "layout": {...}}`` made of lists, dicts, strings and numbers only, so it can be
tested as data, dumped as JSON, drawn by plotly.js (``render.py``) or by the ``plotly`` Python package
(``plotly.graph_objects.Figure(fig)``). Every trace carries a ``meta`` dict saying what it shows (trial
id, status, ...). A function returns ``None`` when its plot does not apply (no grid for a sensitivity
plot, no varying parameter for a scatter plot).

Seeds: a config key whose last part is ``seed`` or ends in ``_seed`` (``seed``, ``env_seed``,
``ppo/train_seed``) is a repeat, not a parameter (:func:`is_seed_key`); the functions that use this take
``seeds=`` (or ``repeats=``) to declare the seed keys instead (``[]``: none). Seeds are averaged over in
:func:`seed_curves` and :func:`sensitivity`, and never drawn as a parameter axis.
"""

from __future__ import annotations

import contextvars
import heapq
import json
import math
import numbers
import statistics
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from tunesmith._errors import ConfigError
from tunesmith._layout import store_path
from tunesmith._objective import Objective
from tunesmith.analysis import ResultSet
from tunesmith.plots._pareto import non_dominated
from tunesmith.store.sqlite import Store
from tunesmith.trial import AUTO_KEYS, ITERATION, TIME_TOTAL, TIMESTAMP, TrialStatus

Figure = dict[str, Any]

GREY = "rgba(150, 150, 150, 0.55)"
ERROR_RED = "#d62728"
# plotly.js's default colour cycle, given explicitly so that a PBT lineage link can take its child's colour
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf"]
STATUS_COLORS = {"RUNNING": "#2ca02c", "PAUSED": "#bcbd22", "PENDING": "#7f7f7f", "TERMINATED": "#1f77b4",
                 "ERROR": ERROR_RED}
MAX_LINES = 6  # sensitivity: more combinations of the other swept parameters than this are pooled


# ---------------------------------------------------------------------------------------------- reading


@dataclass
class _Experiment:
    """What the plots need from one experiment, read once: the trials and events, and the results as
    columns (``Store.result_columns``: a float per result and key, not a dict per result), one pass over the
    store for every key asked so far."""

    rs: ResultSet
    records: dict[int, dict[str, Any]]  # raw store rows of trials (created, start_time, end_time)
    events: list[tuple[int, float, str, int | None, Any]]
    t0: float
    columns: dict[str, np.ndarray]
    slices: dict[int, slice]  # each trial's rows in the columns
    space: dict[str, Any] | None = None

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


def _columns(rs: ResultSet, keys: Sequence[str]) -> dict[str, np.ndarray]:
    store = Store(store_path(rs.path), readonly=True)
    try:
        return store.result_columns(keys)
    finally:
        store.close()


# build_panels' experiment, shared by every plot function it calls: one read of the store for the whole report
_shared: contextvars.ContextVar[tuple[ResultSet, _Experiment] | None] = contextvars.ContextVar("_shared", default=None)


@contextmanager
def shared_read(rs: ResultSet, keys: Sequence[str] = ()) -> Iterator[None]:
    """Within this block every plot function of ``rs`` uses one read of its store (the columns of
    ``keys`` read in a single pass up front; a key asked later costs one more pass). Outside, each call
    reads afresh, so a plot of a running experiment is never stale."""
    exp = _read(rs, keys)
    token = _shared.set((rs, exp))
    try:
        yield
    finally:
        _shared.reset(token)


def _read(rs: ResultSet, keys: Sequence[str] = ()) -> _Experiment:
    current = _shared.get()
    if current is not None and current[0] is rs:
        current[1].need(*keys)
        return current[1]
    store = Store(store_path(rs.path), readonly=True)
    try:
        records = {rec["id"]: rec for rec in store.trials()}
        columns = store.result_columns(keys)
        events = store.events()
    finally:
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


def resolve_metric(rs: ResultSet, metric: str | None = None) -> str:
    """The metric to plot: ``metric``, else the experiment's, else the first numeric key trials reported.

    Raises:
        ConfigError: no trial reported a numeric metric.
    """
    if metric:
        return metric
    if isinstance(rs.metric, str) and rs.metric:
        return rs.metric
    for t in rs.trials:
        for key, value in t.last_result.items():
            if key not in AUTO_KEYS and _number(value) is not None:
                return key
    raise ConfigError(f"experiment {rs.name} has no metric to plot: no trial reported a number")


def resolve_mode(rs: ResultSet, mode: str | None = None) -> str:
    """``mode``, else the experiment's.

    Raises:
        ConfigError: neither is ``"min"`` or ``"max"``.
    """
    chosen = mode or rs.mode
    if chosen not in ("min", "max"):
        raise ConfigError(f"experiment {rs.name} has no mode ('min' or 'max'): pass mode=")
    return str(chosen)


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
        sign = 1.0 if resolve_mode(exp.rs, mode) == "max" else -1.0
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
    if x == ITERATION:
        return
    if not np.isnan(exp.column(x)).all():
        return
    keys = {k for t in exp.rs.trials for k, v in t.last_result.items() if _number(v) is not None}
    raise ConfigError(f"x: no result reported a number for {x!r}; expected one of the reported keys "
                      f"{sorted(keys) or [ITERATION]}")


def best_result(rs: ResultSet, metric: str, mode: str,
                trial_ids: Sequence[int] | None = None) -> tuple[int, int, float] | None:
    """(trial id, iteration, value) of the best result of ``metric`` at any iteration, as
    ``rs.get_best(metric, mode, scope="all")`` finds it (ties: the lowest trial id, then its first such
    iteration), among ``trial_ids`` (default: every trial), from the metric's column rather than a dict per
    result; None when no result holds a finite number."""
    exp = _read(rs, [metric])
    values, ids, its = exp.column(metric), exp.column("trial_id"), exp.column(ITERATION)
    keep = ~np.isnan(values)
    if trial_ids is not None:
        keep &= np.isin(ids, np.fromiter(trial_ids, dtype=np.int64))
    hits = np.flatnonzero(keep)
    if not len(hits):
        return None
    chosen = values[hits]
    best = chosen.min() if mode == "min" else chosen.max()
    first = hits[np.flatnonzero(chosen == best)[0]]  # rows are by trial id, then iteration
    return int(ids[first]), int(its[first]), float(values[first])


# ------------------------------------------------------------------------------------ learning curves


MAX_TRIAL_LINES = 200  # learning curves: beyond this many trials, quantile bands over trials and the best few
TOP_TRIALS = 10  # ... drawn as lines
POINTS_PER_FIGURE = 60_000  # a figure's points, shared among its lines: what a screen can show, many times over
WEBGL_POINTS = 20_000  # a figure with more points than this draws them with WebGL (scattergl), not as SVG


def learning_curves(rs: ResultSet, metric: str | None = None, x: str = ITERATION,
                    max_points: int = 1000, mode: str | None = None, max_trials: int = MAX_TRIAL_LINES) -> Figure:
    """Every trial's metric over its iterations, one line per trial (up to ``max_trials`` trials).

    Trials a scheduler stopped early (ASHA, HyperBand...; not those the user's ``stop=`` rule ended) are
    grey; failed ones red and dashed. A PBT exploit is drawn as a dotted link from the source trial's
    point at the checkpoint's iteration to the trial's first point after it, and the trial's own line
    breaks there (its earlier points are its life before the exploit).

    At scale: a long history is thinned to what a screen shows, keeping each stretch's lowest and highest
    value (:func:`thin`), the points of all lines together bounded by ``POINTS_PER_FIGURE`` and drawn with
    WebGL beyond ``WEBGL_POINTS``. With more than ``max_trials`` trials, one line per trial is an unreadable
    band: the figure shows instead the median and the 10–90% and 25–75% bands over trials of their values
    (each trial's latest value in each of ``BUCKETS`` stretches of ``x``), and the best ``TOP_TRIALS`` trials
    (by final value in ``mode``; default the experiment's) as lines.

    Args:
        rs: the experiment.
        metric: default: the experiment's.
        x: the result key on the x axis: ``training_iteration`` (default), ``time_total_s`` or any counter
            the trials report (``timesteps``, ``episodes``); results without it are left out.
        max_points: per trial at most this many points are drawn (first, last and each stretch's extremes).
        mode: which trials are the best ones drawn when aggregating; default: the experiment's.
        max_trials: more trials than this are aggregated.

    Raises:
        ConfigError: no result reported a number for ``x``.
    """
    metric = resolve_metric(rs, metric)
    exp = _read(rs, [metric, x])
    _check_x(exp, x)
    early = _stopped_early(exp)
    links = _lineage(exp)
    breaks: dict[int, set[int]] = defaultdict(set)
    for child, _source, iteration in links:
        breaks[child].add(iteration)
    trials = list(rs.trials)
    aggregate = len(trials) > max_trials
    data: list[dict[str, Any]] = []
    if aggregate:
        data.extend(_quantile_bands(exp, metric, x))
        try:
            objective = Objective.single(metric, resolve_mode(rs, mode))
        except ConfigError:
            objective = None
        finals = _metric_values(exp, metric)
        ranked = sorted(finals, key=lambda i: -objective.score({metric: finals[i]})) if objective else []
        chosen = set(ranked[:TOP_TRIALS])
        trials = [t for t in trials if t.id in chosen]
    budget = max(2, min(max_points, POINTS_PER_FIGURE // max(1, len(trials))))
    colors: dict[int, str] = {}
    lines: list[dict[str, Any]] = []
    for n, t in enumerate(trials):
        xs_all, ys_all = exp.series(t.id, x), exp.series(t.id, metric)
        its_all = exp.series(t.id, ITERATION)
        keep = ~(np.isnan(xs_all) | np.isnan(ys_all))
        xs_f, ys_f, its_f = xs_all[keep], ys_all[keep], its_all[keep]
        picked = thin(ys_f, budget)
        xs: list[Any] = []
        ys: list[Any] = []
        previous: int | None = None
        cuts = breaks.get(t.id, ())
        for cx, cy, it in zip(_plain_list(xs_f[picked]), ys_f[picked].tolist(), its_f[picked].tolist()):
            if previous is not None and cuts and any(previous <= b < it for b in cuts):
                xs.append(None)
                ys.append(None)  # plotly breaks the line at a gap
            xs.append(cx)
            ys.append(cy)
            previous = it
        stopped = t.id in early
        color = PALETTE[n % len(PALETTE)]
        line: dict[str, Any] = {"width": 1.5, "color": color}
        if t.status is TrialStatus.ERROR:
            line = {"width": 1.5, "color": ERROR_RED, "dash": "dash"}
        elif stopped:
            line = {"width": 1, "color": GREY}
        colors[t.id] = line["color"]
        lines.append({
            "type": "scatter", "mode": "lines+markers" if len(ys) == 1 else "lines", "name": t.name,
            "x": xs, "y": ys, "line": line,
            "hovertemplate": f"{t.name}<br>{x}=%{{x}}<br>{metric}=%{{y:.5g}}<extra></extra>",
            "meta": {"kind": "trial", "trial_id": t.id, "status": t.status.value, "stopped": stopped},
        })
    data.extend(lines)
    for k, (child, source, iteration) in enumerate(links):
        if child not in colors:
            continue  # not drawn (aggregated)
        start = _point_at(exp, source, metric, x, lambda its, i=iteration: its == i)
        end = _point_at(exp, child, metric, x, lambda its, i=iteration: its > i)
        if start is None or end is None:
            continue
        data.append({
            "type": "scatter", "mode": "lines", "name": "PBT exploit", "legendgroup": "lineage",
            "showlegend": k == 0, "x": [start[0], end[0]], "y": [start[1], end[1]],
            "line": {"dash": "dot", "width": 1.5, "color": colors.get(child, GREY)},
            "hovertemplate": f"trial {child} took trial {source}'s checkpoint at {iteration}<extra></extra>",
            "meta": {"kind": "lineage", "child": child, "source": source, "iteration": iteration},
        })
    _webgl(data)
    title = f"Learning curves: {metric}"
    if aggregate:
        title += (f" ({len(rs.trials)} trials: median and bands over trials"
                  + (f", the best {len(lines)} drawn)" if lines else ")"))
    return {"data": data, "layout": {
        "title": {"text": title}, "xaxis": {"title": {"text": x}},
        "yaxis": {"title": {"text": metric}}, "showlegend": aggregate or len(rs.trials) <= 20,
        "hovermode": "closest"}}


def _lineage(exp: _Experiment) -> list[tuple[int, int, int]]:
    """(child, source, iteration) of every exploit: from the event log, and the trials' parent fields."""
    links: list[tuple[int, int, int]] = []
    for _seq, _time, kind, trial_id, data in exp.events:
        if kind == "exploit" and trial_id is not None and isinstance(data, dict):
            source, iteration = data.get("source"), data.get("iteration")
            if isinstance(source, int) and isinstance(iteration, int):
                links.append((trial_id, source, iteration))
    for t in exp.rs.trials:
        if t.parent_id is not None and t.parent_iteration is not None:
            links.append((t.id, t.parent_id, t.parent_iteration))
    return list(dict.fromkeys(links))


BUCKETS = 200  # aggregated learning curves: stretches of x


def _quantile_bands(exp: _Experiment, metric: str, x: str) -> list[dict[str, Any]]:
    """The 10–90% and 25–75% bands and the median over trials of the metric along ``x``: in each of
    ``BUCKETS`` equal stretches of ``x``, each trial's latest value there counts once."""
    xs, ys, ids = exp.column(x), exp.column(metric), exp.column("trial_id")
    keep = ~(np.isnan(xs) | np.isnan(ys))
    xs, ys, ids = xs[keep], ys[keep], ids[keep]
    if not len(xs):
        return []
    lo, hi = float(xs.min()), float(xs.max())
    edges = np.linspace(lo, hi, BUCKETS + 1) if hi > lo else np.array([lo, lo])
    bucket = np.clip(np.searchsorted(edges, xs, side="right") - 1, 0, len(edges) - 2)
    # each trial's latest value per bucket: rows are by trial then iteration, so the last row of each run
    order = np.lexsort((np.arange(len(xs)), ids, bucket))
    b, i = bucket[order], ids[order]
    last = np.r_[(b[1:] != b[:-1]) | (i[1:] != i[:-1]), True]
    b, v = b[last], ys[order][last]
    starts = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])
    ends = np.r_[starts[1:], len(b)]
    centres, qs, counts = [], [], []
    for a, e in zip(starts, ends):
        k = int(b[a])
        centres.append((edges[k] + edges[k + 1]) / 2 if hi > lo else lo)
        qs.append(np.quantile(v[a:e], [0.1, 0.25, 0.5, 0.75, 0.9]))
        counts.append(int(e - a))
    q = np.array(qs).T.tolist()
    cx = [float(c) for c in centres]
    color = PALETTE[0]
    common = {"type": "scatter", "mode": "lines", "x": cx, "hoverinfo": "skip", "showlegend": False}
    return [
        {**common, "y": q[0], "name": "10%", "line": {"width": 0, "color": color},
         "meta": {"kind": "quantile", "q": 0.1}},
        {**common, "y": q[4], "name": "90%", "fill": "tonexty", "fillcolor": _transparent(color, 0.15),
         "line": {"width": 0, "color": color}, "meta": {"kind": "quantile", "q": 0.9}},
        {**common, "y": q[1], "name": "25%", "line": {"width": 0, "color": color},
         "meta": {"kind": "quantile", "q": 0.25}},
        {**common, "y": q[3], "name": "25–75% of trials", "fill": "tonexty", "fillcolor": _transparent(color, 0.3),
         "line": {"width": 0, "color": color}, "showlegend": True, "meta": {"kind": "quantile", "q": 0.75}},
        {"type": "scatter", "mode": "lines", "x": cx, "y": q[2], "name": "median over trials",
         "line": {"width": 2.5, "color": "#222"}, "customdata": counts,
         "hovertemplate": f"{x}≈%{{x:.4g}}<br>median {metric}=%{{y:.5g}}<br>trials=%{{customdata}}<extra></extra>",
         "meta": {"kind": "quantile", "q": 0.5, "n": counts}},
    ]


def _point_at(exp: _Experiment, trial_id: int, metric: str, x: str, match: Any) -> tuple[Any, float] | None:
    """The first result of a trial whose iteration ``match``es and that holds the metric: (x, value)."""
    values, its, xs = exp.series(trial_id, metric), exp.series(trial_id, ITERATION), exp.series(trial_id, x)
    hits = np.flatnonzero(match(its) & ~np.isnan(values))
    if not len(hits):
        return None
    return _plain_list(xs[hits[:1]])[0], float(values[hits[0]])


def thin(values: np.ndarray, max_points: int) -> np.ndarray:
    """Indices (ascending) of at most ``max_points`` of ``values`` that draw the same curve on a screen: the
    first and the last, and in each of ``(max_points - 2) // 2`` stretches of consecutive points its lowest
    and its highest, so no spike or dip is lost (min/max decimation). All of them when they fit.
    ``max_points`` < 2 keeps all."""
    n = len(values)
    if max_points < 2 or n <= max_points:
        return np.arange(n)
    buckets = (max_points - 2) // 2
    picked = [np.array([0, n - 1])]
    if buckets > 0:
        bucket = np.arange(n) * buckets // n
        order = np.lexsort((values, bucket))  # by bucket, then value: each bucket's min first, max last
        b = bucket[order]
        first = np.r_[True, b[1:] != b[:-1]]
        last = np.r_[b[1:] != b[:-1], True]
        picked += [order[first], order[last]]
    return np.unique(np.concatenate(picked))


def _plain_list(values: np.ndarray) -> list[Any]:
    """A column as JSON-ready numbers: whole numbers as ints (iterations, timesteps), others as floats."""
    if values.dtype.kind in "iu":
        return values.tolist()
    out = values.tolist()
    return [int(v) if v.is_integer() and abs(v) < 2**53 else v for v in out]


def _webgl(data: list[dict[str, Any]]) -> None:
    """Draw a figure's scatter traces with WebGL when it has too many points for SVG to draw quickly."""
    if sum(len(t.get("x") or ()) for t in data if t.get("type") == "scatter") > WEBGL_POINTS:
        for trace in data:
            if trace.get("type") == "scatter" and "fill" not in trace:
                trace["type"] = "scattergl"


# ------------------------------------------------------------------------------ curves averaged over seeds

BANDS = ("std", "ci95")
# Student's t at 0.975 for 1..30 degrees of freedom (no scipy in the core); beyond, the normal 1.96
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def seed_curves(rs: ResultSet, metric: str | None = None, x: str = ITERATION, band: str = "std",
                seeds: Sequence[str] | None = None, max_points: int = 300) -> Figure | None:
    """The standard RL figure: one curve per swept value, the mean over its seeds, with a band.

    Trials that differ only in their seed keys form a group, labelled by the values of the other keys that
    vary (``lr=0.001``). Each seed's curve is taken at every counter value any seed of the group reported
    (linear between its own points, never beyond its first or last), so seeds that log at different
    ``timesteps`` still average; ``meta["n"]`` says how many seeds each point averages.

    Args:
        rs: the experiment.
        metric: default: the experiment's.
        x: the counter on the x axis (``training_iteration``, ``timesteps``, ``episodes``...).
        band: ``"std"`` (mean ± one sample standard deviation) or ``"ci95"`` (a 95% confidence interval
            of the mean, Student's t).
        seeds: the config keys that are seeds; default: those :func:`is_seed_key` recognises.
        max_points: per curve at most this many counter values (evenly spaced).

    Returns:
        The figure, or None when no group has two seeds (nothing to average).

    Raises:
        ConfigError: an unknown ``band``, or no result reported a number for ``x``.
    """
    from tunesmith._secrets import shown
    from tunesmith.space import flatten

    if band not in BANDS:
        raise ConfigError(f"band: expected one of {list(BANDS)}, got {band!r}")
    metric = resolve_metric(rs, metric)
    exp = _read(rs, [metric, x])
    _check_x(exp, x)
    flat = {t.id: flatten(shown(t).config) for t in rs.trials}
    seed_keys = _seed_set(list(dict.fromkeys(k for cfg in flat.values() for k in cfg)), seeds)
    if not seed_keys:
        return None
    curves: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # counters (ascending), values
    for t in rs.trials:
        cx, cy = exp.series(t.id, x), exp.series(t.id, metric)
        keep = ~(np.isnan(cx) | np.isnan(cy))
        cx, cy = cx[keep][::-1], cy[keep][::-1]
        if len(cx):
            counters, first = np.unique(cx, return_index=True)  # one value per counter: the latest
            curves[t.id] = (counters, cy[first])
    others = [k for k in dict.fromkeys(k for cfg in flat.values() for k in cfg) if k not in seed_keys]
    varying = [k for k in others if len({_label(flat[i].get(k)) for i in curves}) > 1]
    groups: dict[str, list[int]] = {}
    for tid in curves:
        label = ", ".join(f"{k}={_label(flat[tid].get(k))}" for k in varying) or metric
        groups.setdefault(label, []).append(tid)
    if not any(len(ids) > 1 for ids in groups.values()):
        return None
    data: list[dict[str, Any]] = []
    for g, (label, ids) in enumerate(groups.items()):
        grid = np.unique(np.concatenate([curves[tid][0] for tid in ids]))
        if len(grid) > max_points > 1:
            step = (len(grid) - 1) / (max_points - 1)
            grid = grid[[round(i * step) for i in range(max_points)]]
        # each seed's curve at every grid counter, linear between its own points, never beyond its ends
        at_grid = []
        for tid in ids:
            cx, cy = curves[tid]
            ys = np.interp(grid, cx, cy)
            ys[(grid < cx[0]) | (grid > cx[-1])] = np.nan
            at_grid.append(ys)
        table = np.array(at_grid)  # seeds x grid counters
        present = ~np.isnan(table)
        counts = present.sum(axis=0)
        at = counts > 0
        table, present, counts = table[:, at], present[:, at], counts[at]
        mean = np.where(present, table, 0.0).sum(axis=0) / counts
        spread = np.where(present, table - mean, 0.0)
        std = np.sqrt((spread ** 2).sum(axis=0) / np.maximum(counts - 1, 1))  # sample std; 0 for one seed
        if band == "std":
            half = std
        else:
            # Student's t at n - 1 degrees of freedom (1.96 beyond the table; one seed has no band anyway)
            t975 = np.array([_T975[n - 2] if 2 <= n <= len(_T975) + 1 else 1.96 for n in counts.tolist()])
            half = t975 * std / np.sqrt(counts)
        half = np.where(counts > 1, half, 0.0)
        xs = _plain_list(grid[at])
        means, lows, highs, ns = mean.tolist(), (mean - half).tolist(), (mean + half).tolist(), counts.tolist()
        color = PALETTE[g % len(PALETTE)]
        common = {"legendgroup": label, "hoverinfo": "skip", "showlegend": False}
        data.append({"type": "scatter", "mode": "lines", "x": xs, "y": lows, "name": f"{label} low",
                     "line": {"width": 0, "color": color},
                     "meta": {"kind": "seed_band_low", "group": label}, **common})
        data.append({"type": "scatter", "mode": "lines", "x": xs, "y": highs, "name": f"{label} high",
                     "fill": "tonexty", "fillcolor": _transparent(color), "line": {"width": 0, "color": color},
                     "meta": {"kind": "seed_band_high", "group": label}, **common})
        data.append({"type": "scatter", "mode": "lines", "x": xs, "y": means, "name": label,
                     "legendgroup": label, "line": {"color": color, "width": 2}, "customdata": ns,
                     "hovertemplate": f"{label}<br>{x}=%{{x}}<br>mean {metric}=%{{y:.5g}}<br>"
                                      "seeds=%{customdata}<extra></extra>",
                     "meta": {"kind": "seed_mean", "group": label, "n": ns, "trial_ids": ids}})
    what = "±1 std" if band == "std" else "95% CI"
    return {"data": data, "layout": {
        "title": {"text": f"{metric} against {x}: mean over seeds ({', '.join(sorted(seed_keys))}), band {what}"},
        "xaxis": {"title": {"text": x}}, "yaxis": {"title": {"text": metric}}, "hovermode": "closest"}}


# ------------------------------------------------------------------------------------------ best so far


MAX_RESULT_POINTS = 4000  # best so far: the results behind the line, at most (each time stretch's extremes kept)


def best_so_far(rs: ResultSet, metric: str | None = None, mode: str | None = None,
                max_points: int = MAX_RESULT_POINTS) -> Figure:
    """The best value of the metric found so far, over wall-clock time since the experiment started,
    with the results as grey points behind it: every one, or beyond ``max_points`` the lowest and highest
    of each short stretch of time (:func:`thin`; drawn with WebGL), so the cloud keeps its outline and
    every result that made a new best is on the line."""
    metric = resolve_metric(rs, metric)
    mode = resolve_mode(rs, mode)
    exp = _read(rs, [metric])
    values, stamps, ids = exp.column(metric), exp.column(TIMESTAMP), exp.column("trial_id")
    keep = ~(np.isnan(values) | np.isnan(stamps))
    order = np.lexsort((values[keep], stamps[keep]))  # by time (ties by value, as sorting the points did)
    when = stamps[keep][order] - exp.t0
    values, ids = values[keep][order], ids[keep][order]
    objective = Objective.single(metric, mode)
    best_x: list[float] = []
    best_y: list[float] = []
    best_text: list[str] = []
    if len(values):
        running = np.minimum.accumulate(values) if mode == "min" else np.maximum.accumulate(values)
        better = objective.better
        new = np.flatnonzero(np.r_[True, running[1:] != running[:-1]])  # each result that improved the best
        for k in new.tolist():
            if not best_y or better(float(values[k]), best_y[-1]):
                best_x.append(float(when[k]))
                best_y.append(float(values[k]))
                best_text.append(f"trial {ids[k]}")
        best_x.append(float(when[-1]))  # hold the final best to the last result
        best_y.append(best_y[-1])
        best_text.append(best_text[-1])
    shown = np.arange(len(values))
    if len(values) > max_points:
        # by time stretch rather than by count: a burst of results is as wide on screen as its seconds
        bucket = np.minimum((when - when[0]) * ((max_points - 2) // 2) / max(float(when[-1] - when[0]), 1e-9),
                            (max_points - 2) // 2 - 1).astype(np.int64)
        order_ = np.lexsort((values, bucket))
        b = bucket[order_]
        shown = np.unique(np.concatenate([[0, len(values) - 1], order_[np.r_[True, b[1:] != b[:-1]]],
                                          order_[np.r_[b[1:] != b[:-1], True]]]))
    results = {"type": "scatter", "mode": "markers", "name": "results" if len(shown) == len(values) else
               f"results (extremes of {len(values):,})", "x": when[shown].tolist(), "y": values[shown].tolist(),
               "text": [f"trial {i}" for i in ids[shown].tolist()],
               "marker": {"size": 4, "color": GREY}, "meta": {"kind": "results", "n": int(len(values))},
               "hovertemplate": "%{text}<br>%{x:.1f} s<br>" + metric + "=%{y:.5g}<extra></extra>"}
    if len(shown) > WEBGL_POINTS // 10:
        results["type"] = "scattergl"
    data = [
        results,
        {"type": "scatter", "mode": "lines", "name": f"best {metric} ({mode})", "x": best_x, "y": best_y,
         "text": best_text, "line": {"shape": "hv", "width": 2, "color": PALETTE[0]},
         "meta": {"kind": "best"}, "hovertemplate": "%{text}<br>%{x:.1f} s<br>best=%{y:.5g}<extra></extra>"},
    ]
    return {"data": data, "layout": {
        "title": {"text": f"Best {metric} so far"}, "xaxis": {"title": {"text": "seconds since start"}},
        "yaxis": {"title": {"text": metric}}, "hovermode": "closest"}}


# -------------------------------------------------------------------------------------- grid sensitivity


@dataclass(frozen=True)
class SweepPoint:
    """The metric over the repeats of one grid value: ``n`` trials, their mean, spread and values."""

    value: Any
    n: int
    mean: float
    std: float
    low: float
    high: float


def sweep_stats(values_by_x: dict[str, list[float]], order: Sequence[Any]) -> list[SweepPoint]:
    """Mean, sample standard deviation (0 for one value), min and max per x, in ``order``; x values with
    no finite metric are left out. Keys of ``values_by_x`` are ``_label(x)``."""
    out = []
    for value in order:
        ys = values_by_x.get(_label(value), [])
        if not ys:
            continue
        std = statistics.stdev(ys) if len(ys) > 1 else 0.0
        out.append(SweepPoint(value, len(ys), statistics.fmean(ys), std, min(ys), max(ys)))
    return out


def sensitivity(rs: ResultSet, metric: str | None = None, repeats: Sequence[str] | None = None,
                final: str = "last", last_k: int = 5, mode: str | None = None) -> Figure | None:
    """For a grid sweep: the final metric against each swept parameter, mean line with a min–max band
    over the repeats (seeds) and the other parameters' values, and each trial's own value as a point.

    One subplot per swept parameter. When other swept parameters have at most ``MAX_LINES`` combinations,
    each combination gets its own line (its band is the spread over the repeats); otherwise they are
    pooled into one line.

    Args:
        rs: the experiment; its stored space says which keys are ``grid`` dimensions.
        metric: default: the experiment's.
        repeats: grid keys (``outer/inner`` for nested ones) that are repeats rather than parameters;
            default: the seed keys (:func:`is_seed_key`).
        final: which value of a trial counts: its ``last`` result's, its ``best`` (in ``mode``), or the
            ``mean_last`` of its last ``last_k`` results (a noisy RL return).
        mode: for ``final="best"``; default: the experiment's.

    Returns:
        The figure, or None when the space has no grid dimension besides the repeats.
    """
    exp = _read(rs)
    metric = resolve_metric(rs, metric)
    grids = _grids(exp)
    repeat_keys = _seed_set(list(grids), repeats)
    params = [k for k in grids if k not in repeat_keys]
    if not params:
        return None
    finals = _final_values(exp, metric, final, last_k, mode)
    trials = [t for t in rs.trials if t.id in finals]
    shown = {q: _shown_labels(path, values) for q, (path, values) in grids.items()}
    layout, axes = _subplots(len(params), [f"{metric} vs {p}" for p in params])
    data: list[dict[str, Any]] = []
    legend_seen: set[str] = set()
    for (xa, ya, xkey, ykey), param in zip(axes, params):
        path, order = grids[param]
        others = [q for q in params if q != param]
        groups: dict[str, dict[str, list[float]]] = {}
        members: dict[str, dict[str, list[int]]] = {}  # the trials behind each value, for the seed points
        for t in trials:
            group = ", ".join(f"{q}={_shown(grids[q][0], shown[q], _get(t.config, grids[q][0]))}" for q in others)
            label = _shown(path, shown[param], _get(t.config, path))
            groups.setdefault(group, {}).setdefault(label, []).append(finals[t.id])
            members.setdefault(group, {}).setdefault(label, []).append(t.id)
        if len(groups) > MAX_LINES:
            pooled: dict[str, list[float]] = {}
            pooled_ids: dict[str, list[int]] = {}
            for group, by_x in groups.items():
                for label, ys in by_x.items():
                    pooled.setdefault(label, []).extend(ys)
                    pooled_ids.setdefault(label, []).extend(members[group][label])
            groups, members = {"": pooled}, {"": pooled_ids}
        masked = any(label != _label(value) for value, label in zip(order, shown[param].values()))
        numeric = not masked and all(_number(v) is not None for v in order)
        labels = list(dict.fromkeys(shown[param].values()))
        for g, (group, by_x) in enumerate(sorted(groups.items())):
            stats = sweep_stats(by_x, order if not masked else labels)
            xs = [p.value if numeric else _label(p.value) for p in stats]
            color = PALETTE[g % len(PALETTE)]
            name = group or metric
            common = {"xaxis": xa, "yaxis": ya, "legendgroup": name, "hoverinfo": "skip", "showlegend": False}
            data.append({"type": "scatter", "mode": "lines", "x": xs, "y": [p.low for p in stats],
                         "line": {"width": 0, "color": color}, "name": f"{name} min",
                         "meta": {"kind": "band_low", "param": param, "group": group}, **common})
            data.append({"type": "scatter", "mode": "lines", "x": xs, "y": [p.high for p in stats],
                         "fill": "tonexty", "fillcolor": _transparent(color), "line": {"width": 0, "color": color},
                         "name": f"{name} max", "meta": {"kind": "band_high", "param": param, "group": group},
                         **common})
            data.append({
                "type": "scatter", "mode": "lines+markers", "x": xs, "y": [p.mean for p in stats],
                "name": name, "legendgroup": name, "showlegend": bool(group) and name not in legend_seen,
                "xaxis": xa, "yaxis": ya, "line": {"color": color, "width": 2},
                "customdata": [[p.n, p.std, p.low, p.high] for p in stats],
                "hovertemplate": (f"{param}=%{{x}}<br>mean {metric}=%{{y:.5g}}<br>n=%{{customdata[0]}} "
                                  "std=%{customdata[1]:.3g}<br>min=%{customdata[2]:.5g} "
                                  "max=%{customdata[3]:.5g}<extra>" + (group or "") + "</extra>"),
                "meta": {"kind": "mean", "param": param, "group": group,
                         "n": [p.n for p in stats], "std": [p.std for p in stats]},
            })
            legend_seen.add(name)
            # every trial's own value: the seeds behind the mean, so a lucky seed shows
            by_label = {_label(p.value): (p.value if numeric else _label(p.value)) for p in stats}
            ids = [tid for label in by_label for tid in members[group].get(label, [])]
            data.append({"type": "scatter", "mode": "markers", "name": f"{name} trials", "legendgroup": name,
                         "showlegend": False, "xaxis": xa, "yaxis": ya,
                         "x": [by_label[label] for label in by_label for _ in members[group].get(label, [])],
                         "y": [finals[tid] for tid in ids], "text": [f"trial_{tid:05d}" for tid in ids],
                         "marker": {"size": 5, "color": color, "opacity": 0.6},
                         "hovertemplate": f"%{{text}}<br>{param}=%{{x}}<br>{metric}=%{{y:.5g}}<extra></extra>",
                         "meta": {"kind": "seeds", "param": param, "group": group, "trial_ids": ids}})
        axis: dict[str, Any] = {"title": {"text": param}}
        if numeric:
            numbers_ = [float(v) for v in order]
            if min(numbers_) > 0 and max(numbers_) / min(numbers_) >= 100:
                # ticks at the swept values only: a log axis's minor digits crowd a short sweep
                axis.update({"type": "log", "tickvals": numbers_, "ticktext": [_label(v) for v in order]})
        else:
            axis["type"] = "category"
            axis["categoryarray"] = labels
        layout[xkey].update(axis)
        layout[ykey].update({"title": {"text": metric}})
    what = {"last": "last result", "best": "best result", "mean_last": f"mean of the last {last_k} results"}[final]
    layout["title"] = {"text": f"Parameter sensitivity: {metric}, {what} (mean, band: min–max over repeats, "
                               "points: trials)"}
    return {"data": data, "layout": layout}


def _grids(exp: _Experiment) -> dict[str, tuple[tuple[str, ...], list[Any]]]:
    """Flattened name -> (key path, values) of each grid dimension of the stored space."""
    if exp.space is None:
        return {}
    from tunesmith.space import Grid, domains

    return {"/".join(path): (path, list(d.values)) for path, d in domains(exp.space) if isinstance(d, Grid)}


def _get(config: dict[str, Any], path: tuple[str, ...]) -> Any:
    value: Any = config
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _shown_labels(path: tuple[str, ...], values: list[Any]) -> dict[str, str]:
    """Label of each grid value (by its ``_label``) as the plot shows it: a secret-looking key's values as
    ``*** #1``, ``*** #2``... (told apart, not shown: a report is shared more widely than the store),
    others with their URL passwords masked."""
    from tunesmith._secrets import MASK, is_secret_path, mask_at

    out: dict[str, str] = {}
    for value in values:
        key = _label(value)
        if key not in out:
            out[key] = f"{MASK} #{len(out) + 1}" if is_secret_path(path) else _label(mask_at(path, value))
    return out


def _shown(path: tuple[str, ...], labels: dict[str, str], value: Any) -> str:
    """A trial's value as ``_shown_labels`` shows it; a value off the grid (a PBT exploit's) as ``***`` under
    a secret-looking key, else masked as in a config."""
    from tunesmith._secrets import MASK, is_secret_path, mask_at

    label = labels.get(_label(value))
    if label is not None:
        return label
    return MASK if is_secret_path(path) else _label(mask_at(path, value))


def _label(value: Any) -> str:
    """A stable text for a value (grid values may be numbers, strings, lists or dicts)."""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # 1 and 1.0 are the same grid value
    return json.dumps(value, sort_keys=True, default=str)


def _transparent(hex_color: str, alpha: float = 0.2) -> str:
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r}, {g}, {b}, {alpha})"


def _subplots(n: int, titles: list[str], cols: int = 3) -> tuple[dict[str, Any], list[tuple[str, str, str, str]]]:
    """A layout with ``n`` axis pairs on a grid; returns it and per subplot (xref, yref, x key, y key)."""
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    total = max(380, 340 * rows + 60)
    # Room between rows in pixels (tick labels and axis title of one row, subplot title of the next), as a
    # fraction of the plotting area (the figure less plotly's default top and bottom margins).
    gap_x, gap_y = 0.08, 120 / (total - 180)
    width = (1 - gap_x * (cols - 1)) / cols
    height = (1 - gap_y * (rows - 1)) / rows
    layout: dict[str, Any] = {"height": total, "annotations": [], "hovermode": "closest"}
    axes = []
    for i in range(n):
        row, col = divmod(i, cols)
        suffix = "" if i == 0 else str(i + 1)
        x0 = col * (width + gap_x)
        y1 = 1 - row * (height + gap_y)
        layout[f"xaxis{suffix}"] = {"domain": [x0, x0 + width], "anchor": f"y{suffix}"}
        layout[f"yaxis{suffix}"] = {"domain": [y1 - height, y1], "anchor": f"x{suffix}"}
        layout["annotations"].append({"text": titles[i], "showarrow": False, "xref": "paper", "yref": "paper",
                                      "x": x0 + width / 2, "y": y1, "yanchor": "bottom", "xanchor": "center"})
        axes.append((f"x{suffix}", f"y{suffix}", f"xaxis{suffix}", f"yaxis{suffix}"))
    return layout, axes


# ----------------------------------------------------------------------- parameters: scatter and parallel


def _varying(exp: _Experiment, trial_ids: Sequence[int]) -> dict[str, list[Any]]:
    """Flattened config keys whose value differs between the given trials -> values in trial order (secret
    values masked: a report is shared more widely than the store)."""
    from tunesmith._secrets import shown
    from tunesmith.space import flatten

    by_id = {t.id: t for t in exp.rs.trials}
    flat = [flatten(shown(by_id[i]).config) for i in trial_ids]
    keys = list(dict.fromkeys(k for cfg in flat for k in cfg))
    out = {}
    for key in keys:
        values = [cfg.get(key) for cfg in flat]
        if len({_label(v) for v in values}) > 1:
            out[key] = values
    return out


def _parameters(exp: _Experiment, trial_ids: Sequence[int], seeds: Sequence[str] | None) -> dict[str, list[Any]]:
    """``_varying`` less the seed keys: a seed is a repeat, not a parameter to draw an axis for."""
    varying = _varying(exp, trial_ids)
    skip = _seed_set(list(varying), seeds)
    return {k: v for k, v in varying.items() if k not in skip}


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


def scatter(rs: ResultSet, metric: str | None = None, seeds: Sequence[str] | None = None) -> Figure | None:
    """The final metric against each parameter that varies between trials, one subplot per parameter
    (seed keys are not parameters: ``seeds=`` declares them, default :func:`is_seed_key`).

    Returns:
        The figure, or None when no parameter varies or no trial reported the metric.
    """
    exp = _read(rs)
    metric = resolve_metric(rs, metric)
    finals = _metric_values(exp, metric)
    ids = sorted(finals)
    varying = _parameters(exp, ids, seeds)
    if not varying:
        return None
    names = [f"trial_{i:05d}" for i in ids]
    layout, axes = _subplots(len(varying), [f"{metric} vs {k}" for k in varying])
    data = []
    for (xa, ya, xkey, ykey), (key, values) in zip(axes, varying.items()):
        numeric = all(_number(v) is not None for v in values)
        xs = values if numeric else [_label(v) for v in values]
        data.append({"type": "scatter", "mode": "markers", "x": xs, "y": [finals[i] for i in ids],
                     "text": names, "xaxis": xa, "yaxis": ya, "name": key, "showlegend": False,
                     "marker": {"size": 7, "color": PALETTE[0], "opacity": 0.75},
                     "hovertemplate": f"%{{text}}<br>{key}=%{{x}}<br>{metric}=%{{y:.5g}}<extra></extra>",
                     "meta": {"kind": "scatter", "param": key, "trial_ids": ids}})
        axis: dict[str, Any] = {"title": {"text": key}}
        if not numeric:
            axis["type"] = "category"
        elif _log_axis(exp, key, values):
            axis["type"] = "log"
        layout[xkey].update(axis)
        layout[ykey].update({"title": {"text": metric}})
    layout["title"] = {"text": f"{metric} against each parameter"}
    _webgl(data)
    return {"data": data, "layout": layout}


def parallel_coordinates(rs: ResultSet, metric: str | None = None, mode: str | None = None,
                         seeds: Sequence[str] | None = None) -> Figure | None:
    """One line per trial through an axis per varying parameter (not the seed keys: ``seeds=`` declares
    them, default :func:`is_seed_key`) and a last axis for the final metric,
    coloured by the metric (the best trials darkest). Text and other non-numeric parameters are
    categorical axes; log-scaled ones are shown as ``log10(key)``.

    Returns:
        The figure, or None when no trial reported the metric.
    """
    exp = _read(rs)
    metric = resolve_metric(rs, metric)
    finals = _metric_values(exp, metric)
    ids = sorted(finals)
    if not ids:
        return None
    dimensions = []
    for key, values in _parameters(exp, ids, seeds).items():
        numeric = all(_number(v) is not None for v in values)
        if numeric and _log_axis(exp, key, values):
            dimensions.append({"label": f"log10({key})", "values": [math.log10(float(v)) for v in values]})
        elif numeric:
            dimensions.append({"label": key, "values": [float(v) for v in values]})
        else:
            labels = [_label(v) for v in values]
            cats = sorted(set(labels))
            index = {c: i for i, c in enumerate(cats)}
            dimensions.append({"label": key, "values": [index[c] for c in labels],
                               "tickvals": list(range(len(cats))), "ticktext": cats})
    ys = [finals[i] for i in ids]
    dimensions.append({"label": metric, "values": ys})
    try:
        reverse = resolve_mode(rs, mode) == "max"
    except ConfigError:
        reverse = False
    data = [{"type": "parcoords", "dimensions": dimensions,
             "line": {"color": ys, "colorscale": "Viridis", "reversescale": reverse, "showscale": True,
                      "colorbar": {"title": {"text": metric}}},
             "meta": {"kind": "parcoords", "trial_ids": ids}}]
    return {"data": data, "layout": {"title": {"text": f"Parallel coordinates ({metric})"},
                                     "margin": {"l": 80, "r": 80}}}


# ------------------------------------------------------------------------------------------ timeline


MAX_TIMELINE_ROWS = 100  # the timeline: one row per trial up to this many trials, then rows of concurrent slots


def timeline(rs: ResultSet, max_rows: int = MAX_TIMELINE_ROWS) -> Figure:
    """When each trial ran: a horizontal bar per trial (Gantt), coloured by status, in seconds since the
    experiment started.

    A bar starts when the trial was created (it starts right after) and ends at its end time, or its last
    result while it runs. A pause splits the bar: the gap lasts until its first result after the pause
    (so a resumed segment starts a little late, by its first iteration's duration).

    With more than ``max_rows`` trials a row per trial would be thousands of rows tall: the rows are then
    slots instead, each bar in the first slot free when it starts (as many slots as trials ever ran at
    once, so the picture is the machine's occupancy; beyond ``max_rows`` slots, bars share the
    earliest-freed one), and a bar's trial shows on hover. The height stays bounded either way.
    """
    exp = _read(rs)
    pauses: dict[int, list[float]] = defaultdict(list)
    for _seq, when, kind, trial_id, _data in exp.events:
        if kind == "pause" and trial_id is not None:
            pauses[trial_id].append(when)
    segments: list[tuple[int, str, float, float]] = []  # trial id, status, start, end (absolute)
    for t in rs.trials:
        rec = exp.records.get(t.id, {})
        stamp_col = exp.series(t.id, TIMESTAMP)
        stamps = stamp_col[~np.isnan(stamp_col)].tolist()
        start = rec.get("start_time") or _started(exp, t.id) or rec.get("created")
        if start is None:
            continue
        end = rec.get("end_time") or (max(stamps) if stamps else start)
        begin: float | None = float(start)
        for paused_at in sorted(pauses.get(t.id, [])):
            if begin is not None and paused_at >= begin:
                segments.append((t.id, t.status.value, begin, paused_at))
            later = [s for s in stamps if s > paused_at]
            begin = min(later) if later else None
        if begin is not None:
            segments.append((t.id, t.status.value, begin, max(float(end), begin)))
    span = max((e for *_, e in segments), default=exp.t0) - exp.t0
    tiny = max(span, 1e-3) * 0.003  # zero-length bars stay visible
    data = []
    lanes = len(rs.trials) > max_rows
    row_of = _slots(segments, max_rows) if lanes else {}
    for status in ("TERMINATED", "ERROR", "RUNNING", "PAUSED", "PENDING"):
        rows = [(k, s) for k, s in enumerate(segments) if s[1] == status]
        if not rows:
            continue
        data.append({
            "type": "bar", "orientation": "h", "name": status.lower(),
            "y": [f"slot {row_of[k] + 1}" if lanes else f"trial_{tid:05d}" for k, (tid, *_) in rows],
            "base": [b - exp.t0 for _, (_, _, b, _) in rows],
            "x": [max(e - b, tiny) for _, (_, _, b, e) in rows], "marker": {"color": STATUS_COLORS[status]},
            "text": [f"trial_{tid:05d}" for _, (tid, *_) in rows], "textposition": "none",
            "customdata": [[b - exp.t0, e - exp.t0] for _, (_, _, b, e) in rows],
            "hovertemplate": "%{text}<br>%{customdata[0]:.2f} s – %{customdata[1]:.2f} s<extra>" + status.lower()
                             + "</extra>",
            "meta": {"kind": "timeline", "status": status, "trial_ids": [tid for _, (tid, *_) in rows]},
        })
    if lanes:
        names = [f"slot {i + 1}" for i in range(max(row_of.values(), default=-1) + 1)]
    else:
        names = [t.name for t in rs.trials]
    held = {tid: (exp.records.get(tid, {}).get("resources") or {}) for tid, *_ in segments}
    usage = _resource_steps([(held[tid], b - exp.t0, e - exp.t0) for tid, _, b, e in segments])
    for key, (xs, ys) in usage.items():
        data.append({
            "type": "scatter", "mode": "lines", "name": f"{key} in use", "x": xs, "y": ys, "yaxis": "y2",
            "line": {"shape": "hv", "width": 2}, "fill": "tozeroy",
            "hovertemplate": "%{x:.2f} s: %{y:g} " + key + "<extra></extra>",
            "meta": {"kind": "resources", "resource": key}})
    gantt_height = 40 + 18 * len(names)
    layout: dict[str, Any] = {
        "title": {"text": f"Trial timeline ({len(rs.trials)} trials by slot: a row is one trial at a time)"
                          if lanes else "Trial timeline"}, "barmode": "overlay", "hovermode": "closest",
        "xaxis": {"title": {"text": "seconds since start"}},
        "yaxis": {"type": "category", "categoryorder": "array", "categoryarray": names, "autorange": "reversed"}}
    if usage:
        # Resources in use under the bars, on the same time axis: how full the machine was.
        below = 160
        layout["height"] = max(300, gantt_height) + below
        split = below / layout["height"]
        layout["yaxis"]["domain"] = [split + 0.06, 1.0]
        layout["yaxis2"] = {"domain": [0.0, split], "anchor": "x", "title": {"text": "in use"},
                            "rangemode": "tozero"}
        layout["xaxis"]["anchor"] = "y2"
    else:
        layout["height"] = max(300, gantt_height)
    return {"data": data, "layout": layout}


def _slots(segments: list[tuple[int, str, float, float]], most: int) -> dict[int, int]:
    """Segment index -> slot: each segment in the lowest slot free when it begins (as few slots as segments
    ever ran at once); with ``most`` slots busy, the one freed earliest (bars overlap there)."""
    free: list[int] = []  # slots free now (a heap: lowest first)
    busy: list[tuple[float, int]] = []  # (end, slot) of the running segments
    slot_of: dict[int, int] = {}
    count = 0
    for k in sorted(range(len(segments)), key=lambda i: (segments[i][2], segments[i][3])):
        begin, end = segments[k][2], segments[k][3]
        while busy and busy[0][0] <= begin:
            heapq.heappush(free, heapq.heappop(busy)[1])
        if free:
            slot = heapq.heappop(free)
        elif count < most:
            slot, count = count, count + 1
        else:
            slot = heapq.heappop(busy)[1]
        slot_of[k] = slot
        heapq.heappush(busy, (end, slot))
    return slot_of


def _started(exp: _Experiment, trial_id: int) -> float | None:
    """When a trial began running, from its first result (its timestamp less the trial's time so far): a
    trial is created before a worker is free for it, so its creation time can be well before its start."""
    stamps, totals = exp.series(trial_id, TIMESTAMP), exp.series(trial_id, TIME_TOTAL)
    if not len(stamps):
        return None
    stamp, elapsed = _number(float(stamps[0])), _number(float(totals[0]))
    if stamp is None or elapsed is None or elapsed < 0:
        return None
    return stamp - elapsed


def _resource_steps(spans: list[tuple[dict[str, Any], float, float]]) -> dict[str, tuple[list[float], list[float]]]:
    """Per resource held by any trial, a step function of the amount in use: (times, amounts), each amount
    holding from its time to the next."""
    deltas: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for resources, begin, end in spans:
        for key, amount in resources.items():
            value = _number(amount)
            if value is not None and value > 0:
                deltas[key][begin] += value
                deltas[key][end] -= value
    out: dict[str, tuple[list[float], list[float]]] = {}
    for key in sorted(deltas, key=lambda k: (k != "cpu", k != "gpu", k)):
        xs, ys, level = [], [], 0.0
        for when in sorted(deltas[key]):
            level += deltas[key][when]
            xs.append(when)
            ys.append(round(level, 9) + 0.0)  # no -1e-17 or -0.0 from adding up fractions
        out[key] = (xs, ys)
    return out


# -------------------------------------------------------------------------------------------- Pareto


def pareto_front(rs: ResultSet, metrics: Sequence[str], modes: Sequence[str]) -> Figure:
    """Two objectives: every trial's final pair of values, the non-dominated ones highlighted and joined.

    Args:
        rs: the experiment.
        metrics: the two metric names (x, y).
        modes: ``"min"`` or ``"max"`` for each.

    Raises:
        ConfigError: not two metrics and two modes, or a bad mode.
    """
    if len(metrics) != 2 or len(modes) != 2:
        raise ConfigError(f"pareto_front needs two metrics and two modes, got {list(metrics)} and {list(modes)}")
    exp = _read(rs)
    a = _metric_values(exp, metrics[0])
    b = _metric_values(exp, metrics[1])
    ids = sorted(set(a) & set(b))
    points = [(a[i], b[i]) for i in ids]
    front = [ids[k] for k in non_dominated(points, modes)]
    front_pts = sorted((a[i], b[i], i) for i in front)
    names = [f"trial_{i:05d}" for i in ids]
    hover = f"%{{text}}<br>{metrics[0]}=%{{x:.5g}}<br>{metrics[1]}=%{{y:.5g}}<extra></extra>"
    data = [
        {"type": "scatter", "mode": "markers", "name": "trials", "x": [p[0] for p in points],
         "y": [p[1] for p in points], "text": names, "marker": {"color": GREY, "size": 7},
         "hovertemplate": hover, "meta": {"kind": "trials", "trial_ids": ids}},
        {"type": "scatter", "mode": "lines+markers", "name": "Pareto front", "x": [p[0] for p in front_pts],
         "y": [p[1] for p in front_pts], "text": [f"trial_{p[2]:05d}" for p in front_pts],
         "marker": {"color": PALETTE[1], "size": 9}, "line": {"color": PALETTE[1]},
         "hovertemplate": hover, "meta": {"kind": "front", "trial_ids": [p[2] for p in front_pts]}},
    ]
    return {"data": data, "layout": {
        "title": {"text": f"Pareto front: {metrics[0]} ({modes[0]}) vs {metrics[1]} ({modes[1]})"},
        "xaxis": {"title": {"text": metrics[0]}}, "yaxis": {"title": {"text": metrics[1]}},
        "hovermode": "closest"}}


# ------------------------------------------------------------------------------------ parameter importance


def importance(rs: ResultSet, metric: str | None = None, mode: str | None = None) -> Figure | None:
    """A horizontal bar per parameter: its PED-ANOVA importance for the metric (``ResultSet.importance``),
    largest on top; None with fewer than 4 trials that reported the metric or no parameter that varies."""
    metric = resolve_metric(rs, metric)
    mode = resolve_mode(rs, mode)
    try:
        ranked = rs.importance(metric, mode)
    except ConfigError:
        return None
    if not ranked or not any(ranked.values()):
        return None
    from tunesmith._secrets import MASK, is_secret_path

    names = [MASK if is_secret_path(tuple(name.split("/"))) else name for name in ranked]
    values = list(ranked.values())
    data = [{"type": "bar", "orientation": "h", "x": values[::-1], "y": names[::-1], "name": "importance",
             "marker": {"color": PALETTE[0]}, "hovertemplate": "%{y}: %{x:.3f}<extra></extra>"}]
    return {"data": data, "layout": {
        "title": {"text": f"Parameter importance for {metric} (PED-ANOVA)"},
        "xaxis": {"title": {"text": "importance (sums to 1)"}, "range": [0, 1]},
        "yaxis": {"automargin": True}, "hovermode": "closest"}}
