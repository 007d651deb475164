"""Learning curves: each trial's metric against an x (or, for many trials, quantile bands and the
best few as lines).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from tunesmith._objective import Objective
from tunesmith.plots._figure import (
    ERROR_RED,
    GREY,
    PALETTE,
    POINTS_PER_FIGURE,
    Figure,
    _plain_list,
    _transparent,
    _webgl,
    plotly_text,
    thin,
)
from tunesmith.plots._read import (
    PlotSource,
    _check_metric,
    _check_x,
    _Experiment,
    _metric_values,
    _read,
    _stopped_early,
    mode_or_none,
    resolve_metric,
    shown_name,
)
from tunesmith.trial import ITERATION, TrialStatus

MAX_TRIAL_LINES = 200  # learning curves: beyond this many trials, quantile bands over trials and the best few
TOP_TRIALS = 10  # ... drawn as lines


def learning_curves(rs: PlotSource, metric: str | None = None, x: str = ITERATION,
                    max_points: int = 1000, mode: str | None = None, max_trials: int = MAX_TRIAL_LINES) -> Figure:
    """Every trial's metric over its iterations, one line per trial (up to ``max_trials`` trials).

    Trials a scheduler stopped early (ASHA, HyperBand...; not those the user's ``stop=`` rule ended) are
    grey; failed ones red and dashed. A PBT exploit is drawn as a dotted link from the source trial's
    point at the checkpoint's iteration to the trial's first point after it, and the trial's own line
    breaks there (its earlier points are its life before the exploit).

    At scale: a long history is thinned to what a screen shows, keeping each stretch's lowest and highest
    value (:func:`thin`), the points of all lines together bounded by ``POINTS_PER_FIGURE`` (lines stay SVG,
    which plotly.js simplifies to the pixels drawn; single-point markers go WebGL beyond ``WEBGL_POINTS``).
    With more than ``max_trials`` trials, one line per trial is an unreadable band: the figure shows instead
    the median and the 10–90% and 25–75% bands over trials of their values (each trial's latest value in each
    of ``BUCKETS`` stretches of ``x``), and the best ``TOP_TRIALS`` trials (by final value in ``mode``;
    default the experiment's) as lines.

    Args:
        rs: the experiment.
        metric: default: the experiment's.
        x: the result key on the x axis: ``training_iteration`` (default), ``time_total_s`` or any counter
            the trials report (``timesteps``, ``episodes``); results without it are left out.
        max_points: per trial at most this many points are drawn (first, last and each stretch's extremes).
        mode: which trials are the best ones drawn when aggregating; default: the experiment's.
        max_trials: more trials than this are aggregated.

    Raises:
        ConfigError: no result reported a number for ``x`` (or for a ``metric`` not the experiment's), or a
            ``mode`` not ``"min"``/``"max"``.
    """
    metric = resolve_metric(rs, metric)
    mode = mode_or_none(rs, mode, metric)
    exp = _read(rs, [metric, x])
    _check_x(exp, x)
    _check_metric(exp, metric)
    early = _stopped_early(exp)
    links = _lineage(exp)
    breaks: dict[int, set[int]] = defaultdict(set)
    for child, _source, iteration in links:
        breaks[child].add(iteration)
    trials = list(rs.trials)
    aggregate = len(trials) > max_trials
    data: list[dict[str, Any]] = []
    x_name, name = plotly_text(shown_name(rs, x)), plotly_text(shown_name(rs, metric))
    if aggregate:
        data.extend(_quantile_bands(exp, metric, x, x_name, name))
        objective = Objective.single(metric, mode) if mode else None
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
            "hovertemplate": f"{t.name}<br>{x_name}=%{{x}}<br>{name}=%{{y:.5g}}<extra></extra>",
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
    title = f"Learning curves: {name}"
    if aggregate:
        title += (f" ({len(rs.trials)} trials: median and bands over trials"
                  + (f", the best {len(lines)} drawn)" if lines else ")"))
    return {"data": data, "layout": {
        "title": {"text": title}, "xaxis": {"title": {"text": x_name}},
        "yaxis": {"title": {"text": name}}, "showlegend": aggregate or len(rs.trials) <= 20,
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


def _quantile_bands(exp: _Experiment, metric: str, x: str, x_name: str, name: str) -> list[dict[str, Any]]:
    """The 10–90% and 25–75% bands and the median over trials of the metric along ``x``: in each of
    ``BUCKETS`` equal stretches of ``x``, each trial's latest value there counts once (``x_name``, ``name``: their
    names as the figure shows them)."""
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
         "hovertemplate": f"{x_name}≈%{{x:.4g}}<br>median {name}=%{{y:.5g}}<br>"
                          "trials=%{customdata}<extra></extra>",
         "meta": {"kind": "quantile", "q": 0.5, "n": counts}},
    ]


def _point_at(exp: _Experiment, trial_id: int, metric: str, x: str, match: Any) -> tuple[Any, float] | None:
    """The first result of a trial whose iteration ``match``es and that holds the metric: (x, value)."""
    values, its, xs = exp.series(trial_id, metric), exp.series(trial_id, ITERATION), exp.series(trial_id, x)
    hits = np.flatnonzero(match(its) & ~np.isnan(values))
    if not len(hits):
        return None
    return _plain_list(xs[hits[:1]])[0], float(values[hits[0]])
