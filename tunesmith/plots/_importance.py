"""Parameter importance: PED-ANOVA (``ResultSet.importance``) as bars."""

from __future__ import annotations

from tunesmith._errors import ConfigError
from tunesmith.plots._figure import PALETTE, Figure, plotly_text
from tunesmith.plots._read import PlotSource, resolve_metric, resolve_mode, shown_name


def importance(rs: PlotSource, metric: str | None = None, mode: str | None = None) -> Figure | None:
    """A horizontal bar per parameter: its PED-ANOVA importance for the metric (``ResultSet.importance``),
    largest on top; None with fewer than 4 trials that reported the metric or no parameter that varies."""
    metric = resolve_metric(rs, metric)
    mode = resolve_mode(rs, mode, metric)
    try:
        ranked = rs.importance(metric, mode)
    except ConfigError:
        return None
    if not ranked or not any(ranked.values()):
        return None
    names = [plotly_text(name) for name in ranked]  # a parameter's name, not its values: no secret
    values = list(ranked.values())
    data = [{"type": "bar", "orientation": "h", "x": values[::-1], "y": names[::-1], "name": "importance",
             "marker": {"color": PALETTE[0]}, "hovertemplate": "%{y}: %{x:.3f}<extra></extra>"}]
    return {"data": data, "layout": {
        "title": {"text": f"Parameter importance for {plotly_text(shown_name(rs, metric))} (PED-ANOVA)"},
        "xaxis": {"title": {"text": "importance (sums to 1)"}, "range": [0, 1]},
        "yaxis": {"automargin": True}, "hovermode": "closest"}}
