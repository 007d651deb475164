"""Grid sensitivity: the final metric against each swept grid parameter, averaged over repeats."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tunesmith.plots._figure import (
    MISSING,
    PALETTE,
    Figure,
    _label,
    _subplots,
    _transparent,
    drawn_note,
    drawn_trials,
    plotly_text,
)
from tunesmith.plots._read import (
    PlotSource,
    _check_metric,
    _Experiment,
    _final_values,
    _number,
    _read,
    _seed_set,
    mode_or_none,
    resolve_metric,
    shown_name,
)

MAX_LINES = 6  # sensitivity: more combinations of the other swept parameters than this are pooled


@dataclass(frozen=True)
class SweepPoint:
    """The metric over the repeats of one grid value: ``n`` trials, their mean, spread and values."""

    value: Any
    n: int
    mean: float
    std: float
    low: float
    high: float


def sweep_stats(values_by_x: dict[str, list[float]], order: Sequence[Any], labelled: bool = False) -> list[SweepPoint]:
    """Mean, sample standard deviation (0 for one value), min and max per x, in ``order``; x values with
    no finite metric are left out. Keys of ``values_by_x`` are ``_label(x)`` (``labelled``: ``order`` holds
    those labels)."""
    out = []
    for value in order:
        ys = values_by_x.get(value if labelled else _label(value), [])
        if not ys:
            continue
        std = statistics.stdev(ys) if len(ys) > 1 else 0.0
        out.append(SweepPoint(value, len(ys), statistics.fmean(ys), std, min(ys), max(ys)))
    return out


def sensitivity(rs: PlotSource, metric: str | None = None, repeats: Sequence[str] | None = None,
                final: str = "last", last_k: int = 5, mode: str | None = None) -> Figure | None:
    """For a grid sweep: the final metric against each swept parameter, mean line with a min–max band
    over the repeats (seeds) and the other parameters' values, and each trial's own value as a point.

    One subplot per swept parameter. When other swept parameters have at most ``MAX_LINES`` combinations,
    each combination gets its own line (its band is the spread over the repeats); otherwise they are
    pooled into one line. The means and bands count every trial; beyond ``MAX_TRIAL_MARKS`` trials, the points
    are those :func:`drawn_trials` picks (the best in ``mode``, default the experiment's, among them).

    Args:
        rs: the experiment; its stored space says which keys are ``grid`` dimensions.
        metric: default: the experiment's.
        repeats: grid keys (``outer/inner`` for nested ones) that are repeats rather than parameters;
            default: the seed keys (:func:`is_seed_key`).
        final: which value of a trial counts: its ``last`` result's, its ``best`` (in ``mode``), or the
            ``mean_last`` of its last ``last_k`` results (a noisy RL return).
        mode: for ``final="best"``; default: the experiment's.

    Returns:
        The figure, or None when the space has no grid dimension besides the repeats or no trial reported the
        metric.
    """
    exp = _read(rs)
    metric = resolve_metric(rs, metric)
    _check_metric(exp, metric)
    grids = _grids(exp)
    repeat_keys = _seed_set(list(grids), repeats)
    params = [k for k in grids if k not in repeat_keys]
    if not params:
        return None
    finals = _final_values(exp, metric, final, last_k, mode)
    if not finals:  # no trial reported the metric (all failed first): no point to draw
        return None
    trials = [t for t in rs.trials if t.id in finals]
    drawn = set(drawn_trials(finals, mode_or_none(rs, mode, metric)))
    shown = {q: _shown_labels(path, values) for q, (path, values) in grids.items()}
    metric_name = plotly_text(shown_name(rs, metric))
    layout, axes = _subplots(len(params), [f"{metric_name} vs {plotly_text(p)}" for p in params])
    data: list[dict[str, Any]] = []
    legend_seen: set[str] = set()
    for (xa, ya, xkey, ykey), param in zip(axes, params):
        path, order = grids[param]
        param_name = plotly_text(param)
        others = [q for q in params if q != param]
        groups: dict[str, dict[str, list[float]]] = {}
        members: dict[str, dict[str, list[int]]] = {}  # the trials behind each value, for the seed points
        for t in trials:
            value = _get(t.config, path)
            if value is MISSING:  # not a grid point of this parameter (a trial of another space)
                continue
            group = ", ".join(f"{q}={_shown(grids[q][0], shown[q], _get(t.config, grids[q][0]))}" for q in others)
            label = _shown(path, shown[param], value)
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
            stats = sweep_stats(by_x, order if not masked else labels, labelled=masked)
            # categories: the axis's tick labels
            xs = [p.value if numeric else plotly_text(p.value if masked else _label(p.value)) for p in stats]
            color = PALETTE[g % len(PALETTE)]
            name = plotly_text(group) if group else metric_name
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
                "hovertemplate": (f"{param_name}=%{{x}}<br>mean {metric_name}=%{{y:.5g}}<br>n=%{{customdata[0]}} "
                                  "std=%{customdata[1]:.3g}<br>min=%{customdata[2]:.5g} "
                                  "max=%{customdata[3]:.5g}<extra>" + plotly_text(group) + "</extra>"),
                "meta": {"kind": "mean", "param": param, "group": group,
                         "n": [p.n for p in stats], "std": [p.std for p in stats]},
            })
            legend_seen.add(name)
            # every trial's own value: the seeds behind the mean, so a lucky seed shows
            by_label = {(p.value if masked else _label(p.value)): x for p, x in zip(stats, xs)}
            ids = [tid for label in by_label for tid in members[group].get(label, []) if tid in drawn]
            data.append({"type": "scatter", "mode": "markers", "name": f"{name} trials", "legendgroup": name,
                         "showlegend": False, "xaxis": xa, "yaxis": ya,
                         "x": [by_label[label] for label in by_label for tid in members[group].get(label, [])
                               if tid in drawn],
                         "y": [finals[tid] for tid in ids], "text": [f"trial_{tid:05d}" for tid in ids],
                         "marker": {"size": 5, "color": color, "opacity": 0.6},
                         "hovertemplate": f"%{{text}}<br>{param_name}=%{{x}}<br>{metric_name}=%{{y:.5g}}"
                                          "<extra></extra>",
                         "meta": {"kind": "seeds", "param": param, "group": group, "trial_ids": ids}})
        axis: dict[str, Any] = {"title": {"text": param_name}}
        if numeric:
            numbers_ = [float(v) for v in order]
            if min(numbers_) > 0 and max(numbers_) / min(numbers_) >= 100:
                # ticks at the swept values only: a log axis's minor digits crowd a short sweep
                axis.update({"type": "log", "tickvals": numbers_, "ticktext": [_label(v) for v in order]})
        else:
            axis["type"] = "category"
            axis["categoryarray"] = [plotly_text(label) for label in labels]
        layout[xkey].update(axis)
        layout[ykey].update({"title": {"text": metric_name}})
    what = {"last": "last result", "best": "best result", "mean_last": f"mean of the last {last_k} results"}[final]
    layout["title"] = {"text": f"Parameter sensitivity: {metric_name}, {what} (mean, band: min–max over repeats, "
                               f"points: trials){drawn_note(len(drawn), len(finals))}"}
    return {"data": data, "layout": layout}


def _grids(exp: _Experiment) -> dict[str, tuple[tuple[str, ...], list[Any]]]:
    """Flattened name -> (key path, values) of each grid dimension of the stored space."""
    if exp.space is None:
        return {}
    from tunesmith.space import Grid, domains

    return {"/".join(path): (path, list(d.values)) for path, d in domains(exp.space) if isinstance(d, Grid)}


def _get(config: dict[str, Any], path: tuple[str, ...]) -> Any:
    """The value at ``path``, or ``MISSING``."""
    value: Any = config
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return MISSING
        value = value[key]
    return value


def _shown_labels(path: tuple[str, ...], values: list[Any]) -> dict[str, str]:
    """Label of each grid value (by its ``_label``) as the plot shows it: a secret-looking key's values as
    ``*** #1``, ``*** #2``... (told apart, not shown: a report is shared more widely than the store),
    others with their URL passwords masked."""
    from tunesmith._secrets import MASK, hidden_at, mask_at

    out: dict[str, str] = {}
    hidden = any(hidden_at(path, value) for value in values)
    for value in values:
        key = _label(value)
        if key not in out:
            out[key] = f"{MASK} #{len(out) + 1}" if hidden else _label(mask_at(path, value))
    return out


def _shown(path: tuple[str, ...], labels: dict[str, str], value: Any) -> str:
    """A trial's value as ``_shown_labels`` shows it; a value off the grid (a PBT exploit's) as ``***`` under
    a secret-looking key, else masked as in a config."""
    from tunesmith._secrets import MASK, hidden_at, mask_at

    label = labels.get(_label(value))
    if label is not None:
        return label
    if value is MISSING:
        return _label(value)
    return MASK if hidden_at(path, value) else _label(mask_at(path, value))
