"""Parallel coordinates: every trial's varying parameters and its metric."""

from __future__ import annotations

import math
from collections.abc import Sequence

from tunesmith._errors import ConfigError
from tunesmith.plots._figure import Figure, _label, plotly_text
from tunesmith.plots._read import (
    PlotSource,
    _log_axis,
    _metric_values,
    _number,
    _parameters,
    _read,
    resolve_metric,
    resolve_mode,
)


def parallel_coordinates(rs: PlotSource, metric: str | None = None, mode: str | None = None,
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
        label = plotly_text(key)
        numeric = all(_number(v) is not None for v in values)
        if numeric and _log_axis(exp, key, values):
            dimensions.append({"label": f"log10({label})", "values": [math.log10(float(v)) for v in values]})
        elif numeric:
            dimensions.append({"label": label, "values": [float(v) for v in values]})
        else:
            labels = [_label(v) for v in values]
            cats = sorted(set(labels))
            index = {c: i for i, c in enumerate(cats)}
            # as they are: plotly.js draws a parcoords tick label as plain text (an entity would show)
            dimensions.append({"label": label, "values": [index[c] for c in labels],
                               "tickvals": list(range(len(cats))), "ticktext": cats})
    ys = [finals[i] for i in ids]
    name = plotly_text(metric)
    dimensions.append({"label": name, "values": ys})
    try:
        reverse = resolve_mode(rs, mode) == "max"
    except ConfigError:
        reverse = False
    data = [{"type": "parcoords", "dimensions": dimensions,
             "line": {"color": ys, "colorscale": "Viridis", "reversescale": reverse, "showscale": True,
                      "colorbar": {"title": {"text": name}}},
             "meta": {"kind": "parcoords", "trial_ids": ids}}]
    return {"data": data, "layout": {"title": {"text": f"Parallel coordinates ({name})"},
                                     "margin": {"l": 80, "r": 80}}}
