"""Results in a Jupyter notebook: HTML tables and inline plots (the live dashboard in a cell is
:func:`tunesmith.dashboard.show`).

``ResultSet`` and ``TrialResult`` show themselves as HTML tables (``_repr_html_`` calls here): bounded (the
first ``MAX_ROWS`` trials and a count of the rest), secret-looking config values masked as everywhere
else (``tunesmith._secrets.shown``), every value and key HTML-escaped (a config value is data, never
markup).

``result.plot.<name>()`` returns a :class:`PlotFigure`: the report's figure for that plot (one pure
function in ``tunesmith.plots.data`` per plot), drawn inline by the plotly.js that ships with tunesmith.
It is the same object whether or not the ``plotly`` Python package is installed (a notebook behaves alike
on every machine, and the core takes no 60 MB dependency for one 4.8 MB script it already has);
``.to_plotly()`` gives a ``plotly.graph_objects.Figure`` when that package is there.

A figure goes to the frontend once, in one MIME type (with ``text/plain``): ``text/html`` (the figure JSON in a
script that draws it with that plotly.js) everywhere but in VS Code, which renders plotly's own
``application/vnd.plotly.v1+json`` itself (plotly's default renderer there sends that type alone: it needs no
plotly.js in the notebook). ``display(fig, include=[...])`` or ``exclude=[...]`` choose the other. Sending both
(as before) saved every figure twice in the notebook, the plotly MIME type's copy the larger (nbformat writes
it indented, a number a line). Plots with a mark per trial draw at most ``MAX_TRIAL_MARKS`` trials (the best
and each stretch's extremes, ``tunesmith.plots._figure.drawn_trials``, as the report does), so a figure's size
does not grow with the experiment's.
"""

from __future__ import annotations

import html
import itertools
import json
import os
from typing import Any

from tunesmith._display import error_lines, printable, trial_counts
from tunesmith._errors import ConfigError
from tunesmith.trial import AUTO_KEYS

MAX_ROWS = 20  # trials shown in a ResultSet's table; the rest are counted
MAX_CONFIG_COLUMNS = 8
MAX_TRACEBACK_LINES = 30
MAX_CELL_CHARS = 200  # a value in a ResultSet's table (the whole value is in the store: result.trial(id))
MAX_VALUE_CHARS = 1_000  # a value, a key or a traceback line in a TrialResult's table
PLOTLY_MIME = "application/vnd.plotly.v1+json"

_CSS = ("<style>.tunesmith-table td,.tunesmith-table th{text-align:left;padding:2px 8px;font-family:monospace;"
        "vertical-align:top}.tunesmith-table caption{text-align:left;font-weight:600}</style>")


def _e(value: Any, limit: int | None = None) -> str:
    """Any value as escaped HTML text (quotes too: safe in an attribute as well), control characters written as
    their escapes (``\\x1b``, ``tunesmith._display.printable``; newlines and tabs kept); with ``limit``, cut to
    that many characters, saying how long it was (a 50 KB prompt in a config is data, not a cell)."""
    text = value if isinstance(value, str) else _short(value)
    if limit is not None and len(text) > limit:
        text = f"{text[:limit]}… ({len(text)} characters)"
    return html.escape(printable(text), quote=True)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, default=str, sort_keys=True, ensure_ascii=False)
    return str(value)


def _metric_keys(rs: Any, trials: list[Any]) -> list[str]:
    """The experiment's metrics, else the first few numeric keys the trials reported."""
    if rs.metrics:
        return list(rs.metrics)
    keys = dict.fromkeys(k for t in trials for k, v in t.last_result.items()
                         if k not in AUTO_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool))
    return list(keys)[:4]


def result_set_html(rs: Any, max_rows: int = MAX_ROWS) -> str:
    """A ``ResultSet`` as an HTML table: a caption with the experiment, its status, the trials by status and
    the best trial (by last result), then the first ``max_rows`` trials by id and a count of the rest."""
    from tunesmith._secrets import shown
    from tunesmith.space import flatten

    trials = rs.trials
    head = list(itertools.islice(trials, max_rows))
    best_text, best_id = "", None
    if len(rs.metrics) == 1 and rs.modes:
        try:
            best = rs.best
        except ConfigError:
            best = None
        if best is not None:
            best_id = best.id
            best_text = (f"; best by last result: {best.name} {rs.metrics[0]}="
                         f"{_short(best.last_result.get(rs.metrics[0]))} ({rs.modes[0]})")
    caption = f"tunesmith experiment {rs.name} ({rs.status}): {trial_counts(trials, ' trials')}{best_text}"
    masked = [shown(t) for t in head]
    configs = [flatten(t.config) for t in masked]
    keys = list(dict.fromkeys(k for c in configs for k in c))
    varying = [k for k in keys if len({repr(c.get(k)) for c in configs}) > 1]
    config_keys = (varying + [k for k in keys if k not in varying])[:MAX_CONFIG_COLUMNS]
    metrics = _metric_keys(rs, masked)  # a reported name that quotes a secret masked
    columns = ["trial", "status", "iter", *metrics, *config_keys, "error"]
    rows = []
    for t, config in zip(masked, configs):
        error = error_lines(t.error)
        cells = [t.name + (" ★" if t.id == best_id else ""), t.status.value, t.iteration,
                 *[t.last_result.get(m, "") for m in metrics], *[config.get(k, "") for k in config_keys],
                 error[-1] if error else ""]
        rows.append("<tr>" + "".join(f"<td>{_e(c, MAX_CELL_CHARS)}</td>" for c in cells) + "</tr>")
    if len(trials) > len(head):
        rows.append(f'<tr><td colspan="{len(columns)}">… and {len(trials) - len(head)} more trials '
                    f"(result.dataframe() has them all)</td></tr>")
    return (f'{_CSS}<table class="tunesmith-table"><caption>{_e(caption)}</caption><thead><tr>'
            + "".join(f"<th>{_e(c, MAX_CELL_CHARS)}</th>" for c in columns) + "</tr></thead><tbody>" + "".join(rows)
            + "</tbody></table>")


def trial_html(trial: Any) -> str:
    """A ``TrialResult`` as an HTML table: status, iteration, its config (masked), its last result, and the
    end of its traceback if it failed."""
    from tunesmith._secrets import shown
    from tunesmith.space import flatten

    t = shown(trial)
    rows: list[tuple[str, Any]] = [("status", t.status.value), ("iteration", t.iteration)]
    if t.parent_id is not None:
        rows.append(("exploited", f"trial_{t.parent_id:05d} at iteration {t.parent_iteration}"))
    rows += [(f"config/{k}", v) for k, v in flatten(t.config).items()]
    rows += [(k, v) for k, v in t.metrics.items() if k not in AUTO_KEYS]
    if t.checkpoint is not None:
        rows.append(("checkpoint", t.checkpoint.path))
    body = "".join(f"<tr><th>{_e(k, MAX_VALUE_CHARS)}</th><td>{_e(v, MAX_VALUE_CHARS)}</td></tr>" for k, v in rows)
    if t.error:
        lines = error_lines(t.error)[-MAX_TRACEBACK_LINES:]
        shown_lines = chr(10).join(_e(line, MAX_VALUE_CHARS) for line in lines)
        body += f"<tr><th>error</th><td><pre>{shown_lines}</pre></td></tr>"
    return f'{_CSS}<table class="tunesmith-table"><caption>{_e(t.name)}</caption>{body}</table>'


# -------------------------------------------------------------------------------------------- plots

_plotly_sent = False  # plotly.js goes into the first figure's output of this kernel only (4.8 MB)


class PlotFigure:
    """One of the report's plots for inline display: ``.figure`` is the plotly figure as plain dicts.

    Drawn in the notebook by the vendored plotly.js (no network, no ``plotly`` package needed);
    ``to_plotly()`` gives a ``plotly.graph_objects.Figure`` to restyle or export.
    """

    def __init__(self, figure: dict[str, Any], title: str = "") -> None:
        self.figure = figure
        self.title = title

    def to_plotly(self) -> Any:
        """The figure as a ``plotly.graph_objects.Figure``.

        Raises:
            ImportError: the ``plotly`` package is not installed (``pip install plotly``).
        """
        try:
            import plotly.graph_objects as go
        except ImportError as e:
            raise ImportError("to_plotly() needs the plotly package: pip install plotly (inline display does "
                              "not: tunesmith ships plotly.js)") from e
        return go.Figure(self.figure)

    def to_json(self) -> str:
        from tunesmith.plots.render import figure_json

        return figure_json(self.figure)

    def to_html(self) -> str:
        """The figure as HTML for a notebook output: a div and a script that draws it with plotly.js (the
        vendored plotly.js itself, 4.8 MB, with the first figure of this kernel only)."""
        global _plotly_sent
        from tunesmith.plots.render import plotly_js

        library = ""
        if not _plotly_sent:
            library = "<script>" + plotly_js().replace("</script", "<\\/script") + "</script>"
            _plotly_sent = True
        div = f"tunesmith-plot-{id(self):x}-{next(_ids)}"
        # Later figures wait (bounded) for the first one's plotly.js; the JSON is escaped for a script element.
        return (f'{library}<div id="{div}" style="width:100%;min-height:380px"></div><script>(function(){{'
                f"var fig={self.to_json()},n=0;"
                "function draw(){if(window.Plotly){window.Plotly.newPlot(" + json.dumps(div)
                + ",fig.data,fig.layout||{},{responsive:true,displaylogo:false});}"
                "else if(n++<100){setTimeout(draw,100);}}draw();})();</script>")

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        """The figure once: as plotly's MIME type in VS Code (or when ``include``/``exclude`` ask for it), else as
        ``text/html``; and ``text/plain``. (No ``_repr_html_``: IPython would add its HTML to a bundle of the
        plotly MIME type, the figure twice again.)"""
        from tunesmith.plots.render import _plain

        wanted = PLOTLY_MIME if "VSCODE_PID" in os.environ else "text/html"
        other = "text/html" if wanted == PLOTLY_MIME else PLOTLY_MIME
        if (include and wanted not in include and other in include) or (exclude and wanted in exclude):
            wanted = other
        body = _plain(self.figure) if wanted == PLOTLY_MIME else self.to_html()
        return {wanted: body, "text/plain": repr(self)}

    def __repr__(self) -> str:
        return f"PlotFigure({self.title or 'plot'!r}, traces={len(self.figure.get('data', []))})"


_ids = itertools.count(1)


class PlotAccessor:
    """``result.plot``: each of the report's plots as a :class:`PlotFigure` (None when it does not apply,
    e.g. ``sensitivity()`` without a grid). Arguments as for the functions of ``tunesmith.plots.data``."""

    def __init__(self, rs: Any) -> None:
        self._rs = rs

    def _make(self, name: str, *args: Any, **kwargs: Any) -> PlotFigure | None:
        from tunesmith.plots import data

        figure = getattr(data, name)(self._rs, *args, **kwargs)
        return None if figure is None else PlotFigure(figure, name)

    def learning_curves(self, metric: str | None = None, x: str = "training_iteration", **kw: Any) -> PlotFigure:
        """Every trial's metric against ``x`` (``training_iteration``, ``timesteps``, ``episodes``...)."""
        return self._make("learning_curves", metric, x, **kw)  # type: ignore[return-value]

    def seed_curves(self, metric: str | None = None, x: str = "training_iteration", **kw: Any) -> PlotFigure | None:
        """Per swept value, the mean over seeds with a band (``band="std"`` or ``"ci95"``)."""
        return self._make("seed_curves", metric, x, **kw)

    def best_so_far(self, metric: str | None = None, mode: str | None = None) -> PlotFigure:
        return self._make("best_so_far", metric, mode)  # type: ignore[return-value]

    def sensitivity(self, metric: str | None = None, **kw: Any) -> PlotFigure | None:
        """Grid sensitivity; ``final="last"|"best"|"mean_last"``, ``last_k=``, ``repeats=``."""
        return self._make("sensitivity", metric, **kw)

    def parallel_coordinates(self, metric: str | None = None, mode: str | None = None, **kw: Any) -> PlotFigure | None:
        return self._make("parallel_coordinates", metric, mode, **kw)

    def scatter(self, metric: str | None = None, **kw: Any) -> PlotFigure | None:
        """The final metric against each parameter."""
        return self._make("scatter", metric, **kw)

    def timeline(self) -> PlotFigure:
        return self._make("timeline")  # type: ignore[return-value]

    def pareto_front(self, metrics: list[str], modes: list[str]) -> PlotFigure:
        return self._make("pareto_front", metrics, modes)  # type: ignore[return-value]

    def __repr__(self) -> str:
        names = [n for n in type(self).__dict__ if not n.startswith("_")]
        return f"result.plot: {', '.join(n + '()' for n in names)}"
