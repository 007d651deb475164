"""Best so far: the best value of the metric over time, over the results behind it."""

from __future__ import annotations

import numpy as np

from tunesmith._objective import Objective
from tunesmith.plots._figure import GREY, PALETTE, WEBGL_POINTS, Figure, plotly_text
from tunesmith.plots._read import PlotSource, _check_metric, _read, resolve_metric, resolve_mode, shown_name
from tunesmith.trial import TIMESTAMP

MAX_RESULT_POINTS = 4000  # best so far: the results behind the line, at most (each time stretch's extremes kept)


def best_so_far(rs: PlotSource, metric: str | None = None, mode: str | None = None,
                max_points: int = MAX_RESULT_POINTS) -> Figure:
    """The best value of the metric found so far, over wall-clock time since the experiment started,
    with the results as grey points behind it: every one, or beyond ``max_points`` the lowest and highest
    of each short stretch of time (:func:`thin`; drawn with WebGL), so the cloud keeps its outline and
    every result that made a new best is on the line."""
    metric = resolve_metric(rs, metric)
    mode = resolve_mode(rs, mode, metric)
    exp = _read(rs, [metric])
    _check_metric(exp, metric)
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
    name = plotly_text(shown_name(rs, metric))
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
               "hovertemplate": "%{text}<br>%{x:.1f} s<br>" + name + "=%{y:.5g}<extra></extra>"}
    if len(shown) > WEBGL_POINTS // 10:
        results["type"] = "scattergl"
    data = [
        results,
        {"type": "scatter", "mode": "lines", "name": f"best {name} ({mode})", "x": best_x, "y": best_y,
         "text": best_text, "line": {"shape": "hv", "width": 2, "color": PALETTE[0]},
         "meta": {"kind": "best"}, "hovertemplate": "%{text}<br>%{x:.1f} s<br>best=%{y:.5g}<extra></extra>"},
    ]
    return {"data": data, "layout": {
        "title": {"text": f"Best {name} so far"}, "xaxis": {"title": {"text": "seconds since start"}},
        "yaxis": {"title": {"text": name}}, "hovermode": "closest"}}
