"""The Pareto front of two metrics."""

from __future__ import annotations

from collections.abc import Sequence

from tunesmith._errors import ConfigError
from tunesmith.plots._figure import GREY, PALETTE, Figure, plotly_text
from tunesmith.plots._pareto import non_dominated
from tunesmith.plots._read import PlotSource, _metric_values, _read


def pareto_front(rs: PlotSource, metrics: Sequence[str], modes: Sequence[str]) -> Figure:
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
    x_name, y_name = plotly_text(metrics[0]), plotly_text(metrics[1])
    hover = f"%{{text}}<br>{x_name}=%{{x:.5g}}<br>{y_name}=%{{y:.5g}}<extra></extra>"
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
        "title": {"text": f"Pareto front: {x_name} ({modes[0]}) vs {y_name} ({modes[1]})"},
        "xaxis": {"title": {"text": x_name}}, "yaxis": {"title": {"text": y_name}},
        "hovermode": "closest"}}
