"""Parameter scatter: the metric against each parameter that varies."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tunesmith.plots._figure import PALETTE, Figure, _label, _subplots, _webgl
from tunesmith.plots._read import PlotSource, _log_axis, _metric_values, _number, _parameters, _read, resolve_metric


def scatter(rs: PlotSource, metric: str | None = None, seeds: Sequence[str] | None = None) -> Figure | None:
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
