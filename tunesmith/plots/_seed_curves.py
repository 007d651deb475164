"""Curves averaged over seeds: a mean line and a band (std or 95% CI) per configuration."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tunesmith._errors import ConfigError
from tunesmith.plots._figure import MISSING, PALETTE, Figure, _label, _plain_list, _transparent, plotly_text
from tunesmith.plots._read import PlotSource, _check_metric, _check_x, _read, _seed_set, resolve_metric, shown_name
from tunesmith.trial import ITERATION

BANDS = ("std", "ci95")
# Student's t at 0.975 for 1..30 degrees of freedom (no scipy in the core); beyond, the normal 1.96
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


def seed_curves(rs: PlotSource, metric: str | None = None, x: str = ITERATION, band: str = "std",
                seeds: Sequence[str] | None = None, max_points: int = 300) -> Figure | None:
    """The standard RL figure: one curve per swept value, the mean over its seeds, with a band.

    Trials that differ only in their seed keys form a group, labelled by the values of the other keys that
    vary (``lr=0.001``). Each seed's curve is taken at every counter value any seed of the group reported
    (linear between its own points, never beyond its first or last), so seeds that log at different
    ``timesteps`` still average; ``meta["n"]`` says how many seeds each point averages.

    Args:
        rs: the experiment.
        metric: default: the experiment's.
        x: the counter on the x axis (``training_iteration``, ``timesteps``, ``episodes``...).
        band: ``"std"`` (mean ± one sample standard deviation) or ``"ci95"`` (a 95% confidence interval
            of the mean, Student's t).
        seeds: the config keys that are seeds; default: those :func:`is_seed_key` recognises.
        max_points: per curve at most this many counter values (evenly spaced).

    Returns:
        The figure, or None when no group has two seeds (nothing to average).

    Raises:
        ConfigError: an unknown ``band``, or no result reported a number for ``x``.
    """
    from tunesmith._secrets import shown
    from tunesmith.space import flatten

    if band not in BANDS:
        raise ConfigError(f"band: expected one of {list(BANDS)}, got {band!r}")
    metric = resolve_metric(rs, metric)
    exp = _read(rs, [metric, x])
    _check_x(exp, x)
    _check_metric(exp, metric)
    flat = {t.id: flatten(shown(t).config) for t in rs.trials}
    seed_keys = _seed_set(list(dict.fromkeys(k for cfg in flat.values() for k in cfg)), seeds)
    if not seed_keys:
        return None
    curves: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # counters (ascending), values
    for t in rs.trials:
        cx, cy = exp.series(t.id, x), exp.series(t.id, metric)
        keep = ~(np.isnan(cx) | np.isnan(cy))
        cx, cy = cx[keep][::-1], cy[keep][::-1]
        if len(cx):
            counters, first = np.unique(cx, return_index=True)  # one value per counter: the latest
            curves[t.id] = (counters, cy[first])
    others = [k for k in dict.fromkeys(k for cfg in flat.values() for k in cfg) if k not in seed_keys]
    varying = [k for k in others if len({_label(flat[i].get(k, MISSING)) for i in curves}) > 1]
    groups: dict[str, list[int]] = {}
    for tid in curves:
        label = ", ".join(f"{k}={_label(flat[tid].get(k, MISSING))}" for k in varying) or shown_name(rs, metric)
        groups.setdefault(label, []).append(tid)
    if not any(len(ids) > 1 for ids in groups.values()):
        return None
    data: list[dict[str, Any]] = []
    x_name, metric_name = plotly_text(shown_name(rs, x)), plotly_text(shown_name(rs, metric))
    for g, (label, ids) in enumerate(groups.items()):
        grid = np.unique(np.concatenate([curves[tid][0] for tid in ids]))
        if len(grid) > max_points > 1:
            step = (len(grid) - 1) / (max_points - 1)
            grid = grid[[round(i * step) for i in range(max_points)]]
        # each seed's curve at every grid counter, linear between its own points, never beyond its ends
        at_grid = []
        for tid in ids:
            cx, cy = curves[tid]
            ys = np.interp(grid, cx, cy)
            ys[(grid < cx[0]) | (grid > cx[-1])] = np.nan
            at_grid.append(ys)
        table = np.array(at_grid)  # seeds x grid counters
        present = ~np.isnan(table)
        counts = present.sum(axis=0)
        at = counts > 0
        table, present, counts = table[:, at], present[:, at], counts[at]
        mean = np.where(present, table, 0.0).sum(axis=0) / counts
        spread = np.where(present, table - mean, 0.0)
        std = np.sqrt((spread ** 2).sum(axis=0) / np.maximum(counts - 1, 1))  # sample std; 0 for one seed
        if band == "std":
            half = std
        else:
            # Student's t at n - 1 degrees of freedom (1.96 beyond the table; one seed has no band anyway)
            t975 = np.array([_T975[n - 2] if 2 <= n <= len(_T975) + 1 else 1.96 for n in counts.tolist()])
            half = t975 * std / np.sqrt(counts)
        half = np.where(counts > 1, half, 0.0)
        xs = _plain_list(grid[at])
        means, lows, highs, ns = mean.tolist(), (mean - half).tolist(), (mean + half).tolist(), counts.tolist()
        color = PALETTE[g % len(PALETTE)]
        name = plotly_text(label)
        common = {"legendgroup": name, "hoverinfo": "skip", "showlegend": False}
        data.append({"type": "scatter", "mode": "lines", "x": xs, "y": lows, "name": f"{name} low",
                     "line": {"width": 0, "color": color},
                     "meta": {"kind": "seed_band_low", "group": label}, **common})
        data.append({"type": "scatter", "mode": "lines", "x": xs, "y": highs, "name": f"{name} high",
                     "fill": "tonexty", "fillcolor": _transparent(color), "line": {"width": 0, "color": color},
                     "meta": {"kind": "seed_band_high", "group": label}, **common})
        data.append({"type": "scatter", "mode": "lines", "x": xs, "y": means, "name": name,
                     "legendgroup": name, "line": {"color": color, "width": 2}, "customdata": ns,
                     "hovertemplate": f"{name}<br>{x_name}=%{{x}}<br>mean {metric_name}=%{{y:.5g}}<br>"
                                      "seeds=%{customdata}<extra></extra>",
                     "meta": {"kind": "seed_mean", "group": label, "n": ns, "trial_ids": ids}})
    what = "±1 std" if band == "std" else "95% CI"
    return {"data": data, "layout": {
        "title": {"text": f"{metric_name} against {x_name}: mean over seeds "
                          f"({plotly_text(', '.join(sorted(seed_keys)))}), band {what}"},
        "xaxis": {"title": {"text": x_name}}, "yaxis": {"title": {"text": metric_name}}, "hovermode": "closest"}}
