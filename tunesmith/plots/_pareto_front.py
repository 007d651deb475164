"""The Pareto front of two metrics."""

from __future__ import annotations

from collections.abc import Sequence

from tunesmith._errors import ConfigError
from tunesmith.plots._figure import GREY, MAX_TRIAL_MARKS, PALETTE, Figure, drawn_note, drawn_trials, plotly_text
from tunesmith.plots._read import PlotSource, _check_metric, _number, _read, shown_name
from tunesmith.store.sqlite import feasible_result


def pareto_front(rs: PlotSource, metrics: Sequence[str], modes: Sequence[str]) -> Figure:
    """Two objectives: every trial's last result as a point, the non-dominated ones highlighted and joined.

    The front is ``rs.pareto_front(metrics, modes)``'s (the one rule: with ``run(constraints=...)`` only the
    trials whose last result is feasible rank, when there is one). Trials whose last result breaks a constraint
    are drawn apart, as crosses (the trace named "infeasible"). A trial whose last result lacks a finite
    number for either metric is not drawn (``pareto_front()`` leaves out the missing and NaN values too; an
    infinity it ranks cannot be drawn). Beyond ``MAX_TRIAL_MARKS`` trials, every trial of the front and, of the
    others, those :func:`drawn_trials` picks by each metric in turn (half of them each).

    Args:
        rs: the experiment.
        metrics: the two metric names (x, y).
        modes: ``"min"`` or ``"max"`` for each.

    Raises:
        ConfigError: not two metrics and two modes (lists), a bad mode, or a metric no result reported as a number
            that the experiment does not optimise.
    """
    if isinstance(metrics, str) or isinstance(modes, str) or len(metrics) != 2 or len(modes) != 2:
        shown = [repr(m) if isinstance(m, str) else repr(list(m)) for m in (metrics, modes)]
        raise ConfigError(f"pareto_front needs two metrics and two modes as lists (['loss', 'latency'], ['min', "
                          f"'min']), got {shown[0]} and {shown[1]}")
    if metrics[0] == metrics[1]:
        raise ConfigError(f"pareto_front needs two different metrics, got {metrics[0]!r} twice")
    exp = _read(rs, list(metrics))
    for metric in metrics:
        _check_metric(exp, metric)  # a typo is named, not drawn as an empty front
    on_front = {t.id for t in rs.pareto_front(list(metrics), list(modes))}
    points: dict[int, tuple[float, float]] = {}
    infeasible: list[int] = []
    for t in rs.trials:  # by id
        a, b = _number(t.last_result.get(metrics[0])), _number(t.last_result.get(metrics[1]))
        if a is None or b is None:
            continue
        points[t.id] = (a, b)
        if feasible_result(t.last_result) is False:
            infeasible.append(t.id)
    if len(points) > MAX_TRIAL_MARKS:
        drawn = {i for k in (0, 1) for i in drawn_trials({i: p[k] for i, p in points.items()}, modes[k],
                                                          MAX_TRIAL_MARKS // 2)}
        infeasible = [i for i in infeasible if i in drawn]
    else:
        drawn = set(points)
    apart = set(infeasible)
    ranked = [i for i in points if i in drawn and i not in apart]
    front_pts = sorted((*points[i], i) for i in on_front if i in points)
    x_name, y_name = (plotly_text(shown_name(rs, m)) for m in metrics)
    hover = f"%{{text}}<br>{x_name}=%{{x:.5g}}<br>{y_name}=%{{y:.5g}}<extra></extra>"

    def markers(name: str, kind: str, ids: list[int], marker: dict[str, object], note: str = "") -> dict[str, object]:
        return {"type": "scatter", "mode": "markers", "name": name, "x": [points[i][0] for i in ids],
                "y": [points[i][1] for i in ids], "text": [f"trial_{i:05d}{note}" for i in ids], "marker": marker,
                "hovertemplate": hover, "meta": {"kind": kind, "trial_ids": ids}}

    data = [markers("trials", "trials", ranked, {"color": GREY, "size": 7})]
    if infeasible:
        data.append(markers("infeasible", "infeasible", infeasible,
                            {"color": GREY, "size": 8, "symbol": "x", "opacity": 0.7}, " (infeasible)"))
    data.append(
        {"type": "scatter", "mode": "lines+markers", "name": "Pareto front", "x": [p[0] for p in front_pts],
         "y": [p[1] for p in front_pts], "text": [f"trial_{p[2]:05d}" for p in front_pts],
         "marker": {"color": PALETTE[1], "size": 9}, "line": {"color": PALETTE[1]},
         "hovertemplate": hover, "meta": {"kind": "front", "trial_ids": [p[2] for p in front_pts]}})
    return {"data": data, "layout": {
        "title": {"text": f"Pareto front: {x_name} ({modes[0]}) vs {y_name} ({modes[1]})"
                          f"{drawn_note(len(drawn), len(points))}"},
        "xaxis": {"title": {"text": x_name}}, "yaxis": {"title": {"text": y_name}},
        "hovermode": "closest"}}
