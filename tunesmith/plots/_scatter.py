"""Parameter scatter: the metric against each parameter that varies."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tunesmith.plots._figure import MISSING, PALETTE, Figure, _label, _subplots, _webgl, drawn_note, plotly_text
from tunesmith.plots._read import (
    PlotSource,
    _check_metric,
    _drawn_parameters,
    _log_axis,
    _metric_values,
    _number,
    _read,
    resolve_metric,
    shown_name,
)


def scatter(rs: PlotSource, metric: str | None = None, seeds: Sequence[str] | None = None) -> Figure | None:
    """The final metric against each parameter that varies between trials, one subplot per parameter
    (seed keys are not parameters: ``seeds=`` declares them, default :func:`is_seed_key`). A parameter that is
    not a number in every trial that has it is a categorical axis (values as :func:`_label` writes them); a trial
    without it (a conditional space's other branch) has no point in its subplot. Beyond ``MAX_TRIAL_MARKS``
    trials, those :func:`drawn_trials` picks (the best in the experiment's mode among them).

    Returns:
        The figure, or None when no parameter varies or no trial reported the metric.
    """
    exp = _read(rs)
    metric = resolve_metric(rs, metric)
    _check_metric(exp, metric)
    finals = _metric_values(exp, metric)
    ids, varying = _drawn_parameters(exp, finals, seeds, None, metric)
    if not varying:
        return None
    names = [f"trial_{i:05d}" for i in ids]
    name = plotly_text(shown_name(rs, metric))
    layout, axes = _subplots(len(varying), [f"{name} vs {plotly_text(k)}" for k in varying])
    data = []
    for (xa, ya, xkey, ykey), (key, all_values) in zip(axes, varying.items()):
        # a trial that lacks the key (a conditional space's other branch) has no point here
        kept = [n for n, v in enumerate(all_values) if v is not MISSING]
        values = [all_values[n] for n in kept]
        numeric = all(_number(v) is not None for v in values)
        xs = values if numeric else [plotly_text(_label(v)) for v in values]  # categories: the axis's tick labels
        label = plotly_text(key)
        data.append({"type": "scatter", "mode": "markers", "x": xs, "y": [finals[ids[n]] for n in kept],
                     "text": [names[n] for n in kept], "xaxis": xa, "yaxis": ya, "name": label, "showlegend": False,
                     "marker": {"size": 7, "color": PALETTE[0], "opacity": 0.75},
                     "hovertemplate": f"%{{text}}<br>{label}=%{{x}}<br>{name}=%{{y:.5g}}<extra></extra>",
                     "meta": {"kind": "scatter", "param": key, "trial_ids": [ids[n] for n in kept]}})
        axis: dict[str, Any] = {"title": {"text": label}}
        if not numeric:
            axis["type"] = "category"
        elif _log_axis(exp, key, values):
            axis["type"] = "log"
        layout[xkey].update(axis)
        layout[ykey].update({"title": {"text": name}})
    layout["title"] = {"text": f"{name} against each parameter{drawn_note(len(ids), len(finals))}"}
    _webgl(data)
    return {"data": data, "layout": layout}
