"""The PBT lineage as a graph: one node per (trial, generation) segment, one edge per exploit.

A PBT trial runs as generation 0 from iteration 0 until its first exploit; the exploit copies another
trial's checkpoint at some iteration and the trial continues from there as generation 1 with a changed config,
and so on. Drawn against iterations: each segment a horizontal line at its trial's row (later generations a
little lower, so that a segment that restarts behind where the last one stopped stays visible), each exploit an
arrow from the source's segment to the new one at the iteration copied, labelled with the config changes (also
on hover). Pure: it takes the trials and the ``exploit`` events' data, as the dashboard and the report read
them; secrets are masked in the labels as everywhere else.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from tunesmith._flat import flatten
from tunesmith._secrets import mask_at
from tunesmith.plots._figure import _label, plotly_text

Figure = dict[str, Any]

__all__ = ["lineage_graph", "lineage_graph_for"]

_GEN_STEP = 0.14  # how far below its trial's row a later generation's segment is drawn
_MAX_LABELS = 24  # more exploits than this: the changes are on hover only
_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")


def _short(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return f"{value:.4g}" if isinstance(value, float) and math.isfinite(value) else str(value)
    text = _label(value)  # text quoted where it would read as another value ("1", "true")
    # plotly reads a few tags in text (<br>, <a>...): a config's string is shown, never read as one
    return plotly_text(text if len(text) <= 30 else text[:29] + "…")


def changes(old: Any, new: Any) -> list[str]:
    """``key: old → new`` for each flat key whose value the exploit changed (secrets masked)."""
    before = flatten(old) if isinstance(old, dict) else {}
    after = flatten(new) if isinstance(new, dict) else {}
    out = []
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        if a != b:
            path = tuple(key.split("/"))
            out.append(f"{plotly_text(key)}: {_short(mask_at(path, a))} → {_short(mask_at(path, b))}")
    return out


def lineage_graph(trials: Mapping[int, int], exploits: Sequence[Mapping[str, Any]]) -> Figure | None:
    """The lineage figure, or None without exploits.

    Args:
        trials: trial id -> its last iteration (where its last segment ends).
        exploits: the ``exploit`` events in the order they happened, each with ``trial`` (the exploiting
            trial) and the event's data: ``source``, ``iteration`` (the checkpoint copied), ``from_iteration``
            (where the trial stood), ``old_config``, ``config`` and ``generation`` (its new one).
    """
    exploits = [e for e in exploits if isinstance(e.get("trial"), int) and isinstance(e.get("source"), int)
                and isinstance(e.get("iteration"), int)]
    if not exploits:
        return None
    gen: dict[int, int] = dict.fromkeys(trials, 0)
    start: dict[int, int] = dict.fromkeys(trials, 0)
    segments: list[tuple[int, int, int, int]] = []  # trial, generation, first iteration, last iteration
    edges: list[tuple[int, int, int, int, int, list[str]]] = []  # source, its gen, trial, new gen, iteration, changes
    for e in exploits:
        tid, source, it = e["trial"], e["source"], e["iteration"]
        gen.setdefault(tid, 0)
        start.setdefault(tid, 0)
        stood = e.get("from_iteration")
        end = stood if isinstance(stood, int) else it
        segments.append((tid, gen[tid], start[tid], max(end, start[tid])))
        stored_gen = e.get("generation")
        new_gen: int = stored_gen if isinstance(stored_gen, int) else gen[tid] + 1
        edges.append((source, gen.get(source, 0), tid, new_gen, it, changes(e.get("old_config"), e.get("config"))))
        gen[tid], start[tid] = new_gen, it
    for tid in sorted(gen):
        last = trials.get(tid, start[tid])
        segments.append((tid, gen[tid], start[tid], max(last if isinstance(last, int) else 0, start[tid])))

    def y(tid: int, g: int) -> float:
        return tid + _GEN_STEP * (g % 4)

    data: list[dict[str, Any]] = []
    for tid in sorted({s[0] for s in segments}):
        own = [s for s in segments if s[0] == tid]
        xs: list[Any] = []
        ys: list[Any] = []
        hover: list[Any] = []
        for _t, g, a, b in own:
            xs += [a, b, None]
            ys += [y(tid, g), y(tid, g), None]
            text = f"trial_{tid:05d} generation {g}: iterations {a}–{b}"
            hover += [text, text, None]
        data.append({"type": "scatter", "mode": "lines+markers", "name": f"trial_{tid:05d}", "x": xs, "y": ys,
                     "text": hover, "hovertemplate": "%{text}<extra></extra>", "showlegend": False,
                     "line": {"width": 3, "color": _COLORS[tid % len(_COLORS)]}, "marker": {"size": 6},
                     "meta": {"kind": "lineage-segments", "trial": tid,
                              "segments": [[g, a, b] for _t, g, a, b in own]}})
    ex: list[Any] = []
    ey: list[Any] = []
    for source, sg, tid, g, it, _c in edges:
        ex += [it, it, None]
        ey += [y(source, sg), y(tid, g), None]
    data.append({"type": "scatter", "mode": "lines", "name": "exploit", "x": ex, "y": ey, "hoverinfo": "skip",
                 "line": {"width": 1, "color": "#888", "dash": "dot"}, "showlegend": False})
    labels = [f"trial_{tid:05d} ← trial_{source:05d} at iteration {it}" + ("<br>" + "<br>".join(c) if c else "")
              for source, _sg, tid, _g, it, c in edges]
    data.append({"type": "scatter", "mode": "markers+text" if len(edges) <= _MAX_LABELS else "markers",
                 "name": "exploits", "x": [e[4] for e in edges], "y": [y(e[2], e[3]) for e in edges],
                 "text": ["; ".join(e[5]) for e in edges], "textposition": "top right",
                 "textfont": {"size": 10}, "customdata": labels, "hovertemplate": "%{customdata}<extra></extra>",
                 "marker": {"symbol": "triangle-down", "size": 10, "color": "#333"},
                 "showlegend": False,
                 "meta": {"kind": "lineage-exploits",
                          "edges": [[source, sg, tid, g, it] for source, sg, tid, g, it, _c in edges],
                          "changes": [c for *_e, c in edges]}})
    ids = sorted({s[0] for s in segments})
    return {"data": data, "layout": {
        "title": {"text": "PBT lineage"}, "hovermode": "closest", "height": max(300, 60 + 36 * len(ids)),
        "xaxis": {"title": {"text": "training_iteration"}},
        "yaxis": {"tickvals": ids, "ticktext": [f"trial_{i:05d}" for i in ids], "autorange": "reversed",
                  "zeroline": False}}}


def lineage_graph_for(rs: Any) -> Figure | None:
    """:func:`lineage_graph` of a ``ResultSet`` (the report's panel)."""
    trials = {t.id: t.iteration for t in rs.trials}
    from tunesmith.plots._read import events  # (numpy: only a report draws this)

    exploits = [{**data, "trial": tid} for _seq, _t, kind, tid, data in events(rs)
                if kind == "exploit" and isinstance(data, dict)]
    return lineage_graph(trials, exploits)
