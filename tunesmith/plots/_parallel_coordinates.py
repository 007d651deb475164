"""Parallel coordinates: every trial's varying parameters and its metric."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from tunesmith.plots._figure import MISSING, MISSING_LABEL, Figure, _label, drawn_note, plotly_text
from tunesmith.plots._read import (
    PlotSource,
    _check_metric,
    _drawn_parameters,
    _log_axis,
    _metric_values,
    _number,
    _read,
    mode_or_none,
    resolve_metric,
    shown_name,
)


def parallel_coordinates(rs: PlotSource, metric: str | None = None, mode: str | None = None,
                         seeds: Sequence[str] | None = None) -> Figure | None:
    """One line per trial through an axis per varying parameter (not the seed keys: ``seeds=`` declares
    them, default :func:`is_seed_key`) and a last axis for the final metric,
    coloured by the metric (the best trials darkest). Text and other non-numeric parameters are
    categorical axes (values as :func:`_label` writes them); log-scaled ones are shown as ``log10(key)``. On a
    numeric axis, the trials that lack the key (a conditional space) sit below the values at ``(missing)``.
    Beyond ``MAX_TRIAL_MARKS`` trials, the lines of those :func:`drawn_trials` picks (the best among them).

    Returns:
        The figure, or None when no trial reported the metric.
    """
    exp = _read(rs)
    metric = resolve_metric(rs, metric)
    _check_metric(exp, metric)
    mode = mode_or_none(rs, mode, metric)
    finals = _metric_values(exp, metric)
    if not finals:
        return None
    ids, varying = _drawn_parameters(exp, finals, seeds, mode, metric)
    dimensions = []
    for key, values in varying.items():
        label = plotly_text(key)
        present = [v for v in values if v is not MISSING]
        numeric = all(_number(v) is not None for v in present)
        if numeric:
            log = _log_axis(exp, key, present)
            dimensions.append(_numeric({"label": f"log10({label})" if log else label},
                                       [None if v is MISSING else math.log10(float(v)) if log else float(v)
                                        for v in values]))
        else:
            labels = [_label(v) for v in values]
            cats = sorted(set(labels))
            index = {c: i for i, c in enumerate(cats)}
            # as they are: plotly.js draws a parcoords tick label as plain text (an entity would show)
            dimensions.append({"label": label, "values": [index[c] for c in labels],
                               "tickvals": list(range(len(cats))), "ticktext": cats})
    ys = [finals[i] for i in ids]
    name = plotly_text(shown_name(rs, metric))
    dimensions.append({"label": name, "values": ys})
    reverse = mode == "max"
    data = [{"type": "parcoords", "dimensions": dimensions,
             "line": {"color": ys, "colorscale": "Viridis", "reversescale": reverse, "showscale": True,
                      "colorbar": {"title": {"text": name}}},
             "meta": {"kind": "parcoords", "trial_ids": ids}}]
    title = f"Parallel coordinates ({name}){drawn_note(len(ids), len(finals))}"
    return {"data": data, "layout": {"title": {"text": title}, "margin": {"l": 80, "r": 80}}}


def _numeric(dimension: dict[str, Any], values: list[float | None]) -> dict[str, Any]:
    """A numeric axis; trials that lack the key (None: a conditional space's other branch) are drawn together
    below its values at a ``(missing)`` tick, not read as a number (plotly.js draws NaN as 0)."""
    present = [v for v in values if v is not None]
    if len(present) == len(values):
        return {**dimension, "values": values}
    low, high = min(present), max(present)
    span = high - low or abs(high) or 1.0
    below = low - span / 4
    ticks = _ticks(low, high) if high > low else [low]
    return {**dimension, "values": [below if v is None else v for v in values], "range": [below, high],
            "tickvals": [below, *ticks], "ticktext": [MISSING_LABEL, *(f"{t:.4g}" for t in ticks)]}


def _ticks(low: float, high: float) -> list[float]:
    """Round values from ``low`` to ``high``, 3 to 10 of them (1, 2 or 5 times a power of ten apart)."""
    step = 10.0 ** math.floor(math.log10((high - low) / 4))
    step *= next(m for m in (1, 2, 5, 10) if (high - low) / (step * m) <= 8)
    first = math.ceil(low / step - 1e-9)
    return [float(f"{i * step:.12g}") for i in range(first, math.floor(high / step + 1e-9) + 1)]
