"""What every plot shares: the figure type, colours, thinning lines to what a screen shows, labels,
user text as plotly draws it, and subplot grids.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

from tunesmith._display import printable

if TYPE_CHECKING:  # numpy is imported where it is used: `tunesmith show` writes values with _label, without it
    import numpy as np

Figure = dict[str, Any]


GREY = "rgba(150, 150, 150, 0.55)"
ERROR_RED = "#d62728"
# plotly.js's default colour cycle, given explicitly so that a PBT lineage link can take its child's colour
PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf"]
STATUS_COLORS = {"RUNNING": "#2ca02c", "PAUSED": "#bcbd22", "PENDING": "#7f7f7f", "TERMINATED": "#1f77b4",
                 "ERROR": ERROR_RED}


POINTS_PER_FIGURE = 60_000  # a figure's points, shared among its lines: what a screen can show, many times over
WEBGL_POINTS = 20_000  # a figure with more markers than this draws them with WebGL (scattergl), not as SVG
MAX_TRIAL_MARKS = 2_000  # a plot with a mark per trial (scatter, parallel coordinates...) draws this many at most


def thin(values: np.ndarray, max_points: int) -> np.ndarray:
    """Indices (ascending) of at most ``max_points`` of ``values`` that draw the same curve on a screen: the
    first and the last, and in each of ``(max_points - 2) // 2`` stretches of consecutive points its lowest
    and its highest, so no spike or dip is lost (min/max decimation). All of them when they fit.
    ``max_points`` < 2 keeps all."""
    import numpy as np

    n = len(values)
    if max_points < 2 or n <= max_points:
        return np.arange(n)
    buckets = (max_points - 2) // 2
    picked = [np.array([0, n - 1])]
    if buckets > 0:
        bucket = np.arange(n) * buckets // n
        order = np.lexsort((values, bucket))  # by bucket, then value: each bucket's min first, max last
        b = bucket[order]
        first = np.r_[True, b[1:] != b[:-1]]
        last = np.r_[b[1:] != b[:-1], True]
        picked += [order[first], order[last]]
    return np.unique(np.concatenate(picked))


def drawn_trials(finals: dict[int, float], mode: str | None = None, most: int = MAX_TRIAL_MARKS,
                 top: int = 10) -> list[int]:
    """Which trials a plot with a mark per trial draws (ascending ids): all of them up to ``most``; beyond, the
    best ``top`` by their final value in ``mode`` (``"min"``/``"max"``; None: none singled out) and, by
    :func:`thin` over the values in trial order, the first and last trial and each stretch's lowest and highest
    value: the cloud keeps its outline, its best and its worst, and a figure its size whatever the experiment's.

    Args:
        finals: trial id -> its final value of the metric.
    """
    import numpy as np

    ids = sorted(finals)
    if len(ids) <= most:
        return ids
    values = np.array([finals[i] for i in ids], dtype=float)
    picked = set(np.asarray(ids)[thin(values, max(2, most - top))].tolist())
    picked.update(best_trials(finals, mode, top))
    return sorted(picked)


def best_trials(finals: dict[int, float], mode: str | None, top: int = 10) -> list[int]:
    """The ``top`` best trials by their final value in ``mode`` (``"min"``/``"max"``; None: none), best first;
    stable (the first trials first among equal values), NaN last.

    Args:
        finals: trial id -> its final value of the metric.
    """
    import numpy as np

    if mode not in ("min", "max") or not finals:
        return []
    ids = sorted(finals)
    values = np.array([finals[i] for i in ids], dtype=float)
    ranked = np.argsort(values if mode == "min" else -values, kind="stable")
    return np.asarray(ids)[ranked[:top]].tolist()  # type: ignore[no-any-return]


def drawn_note(drawn: int, total: int) -> str:
    """What a title adds when :func:`drawn_trials` left trials out: how many of how many it draws."""
    if drawn >= total:
        return ""
    return f" ({drawn:,} of {total:,} trials: the best and each stretch's best and worst)"


def _plain_list(values: np.ndarray) -> list[Any]:
    """A column as JSON-ready numbers: whole numbers as ints (iterations, timesteps), others as floats."""
    if values.dtype.kind in "iu":
        return values.tolist()
    out = values.tolist()
    return [int(v) if v.is_integer() and abs(v) < 2**53 else v for v in out]


def _webgl(data: list[dict[str, Any]]) -> None:
    """Draw a figure's markers with WebGL when it has too many for SVG (one element each) to draw quickly.

    Lines stay SVG at any length: plotly.js simplifies an SVG line to the pixels it covers, while WebGL lines
    are slow to draw where the browser has no GPU and renders them in software (headless, remote desktops).
    """
    dotted = [t for t in data if t.get("type") == "scatter" and "fill" not in t and t.get("mode") != "lines"]
    if sum(len(t.get("x") or ()) for t in dotted) > WEBGL_POINTS:
        for trace in dotted:
            trace["type"] = "scattergl"


class _Missing:
    """A key a trial's config lacks (a conditional space's other branch): not null, which a config may hold."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()
MISSING_LABEL = "(missing)"


def _label(value: Any) -> str:
    """A stable text for a value, a different one for each value (grid values may be numbers, strings, lists or
    dicts): JSON (``1``, ``1.0``, ``true``, ``null``, ``[1, 2]``, ``NaN``), but text as it is (``adam``) unless it
    would read as another value, then quoted (``"1"``, ``"true"``, ``"null"``, ``"[1, 2]"``, ``""``,
    ``"(missing)"``). A key the config lacks (``MISSING``) is ``(missing)``."""
    if value is MISSING:
        return MISSING_LABEL
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False) if _reads_as_another(value) else value
    return json.dumps(value, sort_keys=True, default=str)


def _reads_as_another(text: str) -> bool:
    """Whether ``text`` shown as it is would read as another value: JSON for one (a number, true/false/null, a
    list, a mapping or quoted text, which Python's JSON extends with NaN and Infinity), empty, or ``(missing)``."""
    if not text.strip() or text == MISSING_LABEL:
        return True
    try:
        json.loads(text)
    except ValueError:
        return False
    except RecursionError:  # "[[[[..." nested past Python's limit: it reads as a list
        return True
    return True


def plotly_text(value: Any) -> str:
    """A user's string (a config key or value, a metric, counter or resource name) for any text of a figure
    (a title, a label, a trace name, a category that is a tick label, a hover template), drawn as it is.

    plotly.js reads a few HTML tags in every text it draws (``<a href>``, ``<b>``, ``<br>``, ``<span style>``...)
    and ``%{...}`` placeholders in hover templates, trace names and titles; it decodes ``&lt;``, ``&gt;``,
    ``&amp;`` and numeric entities, but not ``&quot;``. So ``&``, ``<``, ``>`` and ``%`` become entities: a
    link, a tag or ``%{x}`` in an experiment's strings is shown, never followed or filled in. Control
    characters are written as their escapes (``\\x1b``, ``\\n``: ``_display.printable``), as the report's
    facts and the dashboard's pages write them: an SVG text would hide them. Not a string: as :func:`_label`
    writes it (a number drawn as a number stays a number: only text goes through here)."""
    text = printable(value if isinstance(value, str) else _label(value), one_line=True)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("%", "&#37;")


def _transparent(hex_color: str, alpha: float = 0.2) -> str:
    r, g, b = (int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r}, {g}, {b}, {alpha})"


def _subplots(n: int, titles: list[str], cols: int = 3) -> tuple[dict[str, Any], list[tuple[str, str, str, str]]]:
    """A layout with ``n`` axis pairs on a grid; returns it and per subplot (xref, yref, x key, y key)."""
    cols = max(1, min(cols, n))
    rows = math.ceil(n / cols)
    total = max(380, 340 * rows + 60)
    # Room between rows in pixels (tick labels and axis title of one row, subplot title of the next), as a
    # fraction of the plotting area (the figure less plotly's default top and bottom margins).
    gap_x, gap_y = 0.08, 120 / (total - 180)
    width = (1 - gap_x * (cols - 1)) / cols
    height = (1 - gap_y * (rows - 1)) / rows
    layout: dict[str, Any] = {"height": total, "annotations": [], "hovermode": "closest"}
    axes = []
    for i in range(n):
        row, col = divmod(i, cols)
        suffix = "" if i == 0 else str(i + 1)
        x0 = col * (width + gap_x)
        y1 = 1 - row * (height + gap_y)
        layout[f"xaxis{suffix}"] = {"domain": [x0, x0 + width], "anchor": f"y{suffix}"}
        layout[f"yaxis{suffix}"] = {"domain": [y1 - height, y1], "anchor": f"x{suffix}"}
        layout["annotations"].append({"text": titles[i], "showarrow": False, "xref": "paper", "yref": "paper",
                                      "x": x0 + width / 2, "y": y1, "yanchor": "bottom", "xanchor": "center"})
        axes.append((f"x{suffix}", f"y{suffix}", f"xaxis{suffix}", f"yaxis{suffix}"))
    return layout, axes
