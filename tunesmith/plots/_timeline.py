"""The trial timeline: when each trial ran (or, for many, rows of concurrent slots), with resources."""

from __future__ import annotations

import heapq
from collections import defaultdict
from typing import Any

import numpy as np

from tunesmith.plots._figure import STATUS_COLORS, Figure, plotly_text
from tunesmith.plots._read import PlotSource, _Experiment, _number, _read
from tunesmith.trial import TIME_TOTAL, TIMESTAMP

MAX_TIMELINE_ROWS = 100  # the timeline: one row per trial up to this many trials, then rows of concurrent slots


def timeline(rs: PlotSource, max_rows: int = MAX_TIMELINE_ROWS) -> Figure:
    """When each trial ran: a horizontal bar per trial (Gantt), coloured by status, in seconds since the
    experiment started.

    A bar starts when the trial was created (it starts right after) and ends at its end time, or its last
    result while it runs. A pause splits the bar: the gap lasts until its first result after the pause
    (so a resumed segment starts a little late, by its first iteration's duration).

    With more than ``max_rows`` trials a row per trial would be thousands of rows tall: the rows are then
    slots instead, each bar in the first slot free when it starts (as many slots as trials ever ran at
    once, so the picture is the machine's occupancy; beyond ``max_rows`` slots, bars share the
    earliest-freed one), and a bar's trial shows on hover. The height stays bounded either way.
    """
    exp = _read(rs)
    pauses: dict[int, list[float]] = defaultdict(list)
    for _seq, when, kind, trial_id, _data in exp.events:
        if kind == "pause" and trial_id is not None:
            pauses[trial_id].append(when)
    segments: list[tuple[int, str, float, float]] = []  # trial id, status, start, end (absolute)
    for t in rs.trials:
        rec = exp.records.get(t.id, {})
        stamp_col = exp.series(t.id, TIMESTAMP)
        stamps = stamp_col[~np.isnan(stamp_col)].tolist()
        start = rec.get("start_time") or _started(exp, t.id) or rec.get("created")
        if start is None:
            continue
        end = rec.get("end_time") or (max(stamps) if stamps else start)
        begin: float | None = float(start)
        for paused_at in sorted(pauses.get(t.id, [])):
            if begin is not None and paused_at >= begin:
                segments.append((t.id, t.status.value, begin, paused_at))
            later = [s for s in stamps if s > paused_at]
            begin = min(later) if later else None
        if begin is not None:
            segments.append((t.id, t.status.value, begin, max(float(end), begin)))
    span = max((e for *_, e in segments), default=exp.t0) - exp.t0
    tiny = max(span, 1e-3) * 0.003  # zero-length bars stay visible
    data = []
    lanes = len(rs.trials) > max_rows
    row_of = _slots(segments, max_rows) if lanes else {}
    for status in ("TERMINATED", "ERROR", "RUNNING", "PAUSED", "PENDING"):
        rows = [(k, s) for k, s in enumerate(segments) if s[1] == status]
        if not rows:
            continue
        data.append({
            "type": "bar", "orientation": "h", "name": status.lower(),
            "y": [f"slot {row_of[k] + 1}" if lanes else f"trial_{tid:05d}" for k, (tid, *_) in rows],
            "base": [b - exp.t0 for _, (_, _, b, _) in rows],
            "x": [max(e - b, tiny) for _, (_, _, b, e) in rows], "marker": {"color": STATUS_COLORS[status]},
            "text": [f"trial_{tid:05d}" for _, (tid, *_) in rows], "textposition": "none",
            "customdata": [[b - exp.t0, e - exp.t0] for _, (_, _, b, e) in rows],
            "hovertemplate": "%{text}<br>%{customdata[0]:.2f} s – %{customdata[1]:.2f} s<extra>" + status.lower()
                             + "</extra>",
            "meta": {"kind": "timeline", "status": status, "trial_ids": [tid for _, (tid, *_) in rows]},
        })
    if lanes:
        names = [f"slot {i + 1}" for i in range(max(row_of.values(), default=-1) + 1)]
    else:
        names = [t.name for t in rs.trials]
    held = {tid: (exp.records.get(tid, {}).get("resources") or {}) for tid, *_ in segments}
    usage = _resource_steps([(held[tid], b - exp.t0, e - exp.t0) for tid, _, b, e in segments])
    for key, (xs, ys) in usage.items():
        name = plotly_text(key)
        data.append({
            "type": "scatter", "mode": "lines", "name": f"{name} in use", "x": xs, "y": ys, "yaxis": "y2",
            "line": {"shape": "hv", "width": 2}, "fill": "tozeroy",
            "hovertemplate": "%{x:.2f} s: %{y:g} " + name + "<extra></extra>",
            "meta": {"kind": "resources", "resource": key}})
    gantt_height = 40 + 18 * len(names)
    layout: dict[str, Any] = {
        "title": {"text": f"Trial timeline ({len(rs.trials)} trials by slot: a row is one trial at a time)"
                          if lanes else "Trial timeline"}, "barmode": "overlay", "hovermode": "closest",
        "xaxis": {"title": {"text": "seconds since start"}},
        "yaxis": {"type": "category", "categoryorder": "array", "categoryarray": names, "autorange": "reversed"}}
    if usage:
        # Resources in use under the bars, on the same time axis: how full the machine was.
        below = 160
        layout["height"] = max(300, gantt_height) + below
        split = below / layout["height"]
        layout["yaxis"]["domain"] = [split + 0.06, 1.0]
        layout["yaxis2"] = {"domain": [0.0, split], "anchor": "x", "title": {"text": "in use"},
                            "rangemode": "tozero"}
        layout["xaxis"]["anchor"] = "y2"
    else:
        layout["height"] = max(300, gantt_height)
    return {"data": data, "layout": layout}


def _slots(segments: list[tuple[int, str, float, float]], most: int) -> dict[int, int]:
    """Segment index -> slot: each segment in the lowest slot free when it begins (as few slots as segments
    ever ran at once); with ``most`` slots busy, the one freed earliest (bars overlap there)."""
    free: list[int] = []  # slots free now (a heap: lowest first)
    busy: list[tuple[float, int]] = []  # (end, slot) of the running segments
    slot_of: dict[int, int] = {}
    count = 0
    for k in sorted(range(len(segments)), key=lambda i: (segments[i][2], segments[i][3])):
        begin, end = segments[k][2], segments[k][3]
        while busy and busy[0][0] <= begin:
            heapq.heappush(free, heapq.heappop(busy)[1])
        if free:
            slot = heapq.heappop(free)
        elif count < most:
            slot, count = count, count + 1
        else:
            slot = heapq.heappop(busy)[1]
        slot_of[k] = slot
        heapq.heappush(busy, (end, slot))
    return slot_of


def _started(exp: _Experiment, trial_id: int) -> float | None:
    """When a trial began running, from its first result (its timestamp less the trial's time so far): a
    trial is created before a worker is free for it, so its creation time can be well before its start."""
    stamps, totals = exp.series(trial_id, TIMESTAMP), exp.series(trial_id, TIME_TOTAL)
    if not len(stamps):
        return None
    stamp, elapsed = _number(float(stamps[0])), _number(float(totals[0]))
    if stamp is None or elapsed is None or elapsed < 0:
        return None
    return stamp - elapsed


def _resource_steps(spans: list[tuple[dict[str, Any], float, float]]) -> dict[str, tuple[list[float], list[float]]]:
    """Per resource held by any trial, a step function of the amount in use: (times, amounts), each amount
    holding from its time to the next."""
    deltas: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for resources, begin, end in spans:
        for key, amount in resources.items():
            value = _number(amount)
            if value is not None and value > 0:
                deltas[key][begin] += value
                deltas[key][end] -= value
    out: dict[str, tuple[list[float], list[float]]] = {}
    for key in sorted(deltas, key=lambda k: (k != "cpu", k != "gpu", k)):
        xs, ys, level = [], [], 0.0
        for when in sorted(deltas[key]):
            level += deltas[key][when]
            xs.append(when)
            ys.append(round(level, 9) + 0.0)  # no -1e-17 or -0.0 from adding up fractions
        out[key] = (xs, ys)
    return out
