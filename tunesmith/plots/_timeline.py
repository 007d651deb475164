"""The trial timeline: when each trial ran (or, for many, rows of concurrent slots), with resources."""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from typing import Any

import numpy as np

from tunesmith._errors import ConfigError
from tunesmith.plots._figure import MAX_TRIAL_MARKS, STATUS_COLORS, Figure, best_trials, plotly_text, thin
from tunesmith.plots._read import PlotSource, _Experiment, _metric_values, _number, _read, mode_or_none, resolve_metric
from tunesmith.trial import TIME_TOTAL, TIMESTAMP

MAX_TIMELINE_ROWS = 100  # the timeline: one row per trial up to this many trials, then rows of concurrent slots
STATUSES = ("TERMINATED", "ERROR", "RUNNING", "PAUSED", "PENDING")

Segment = tuple[int, str, float, float]  # trial id, status, start, end (absolute)


def timeline(rs: PlotSource, max_rows: int = MAX_TIMELINE_ROWS, most: int = MAX_TRIAL_MARKS) -> Figure:
    """When each trial ran: a horizontal bar per trial (Gantt), coloured by status, in seconds since the
    experiment started.

    A bar starts when the trial was created (it starts right after) and ends at its end time, or its last
    result while it runs. A pause splits the bar: the gap lasts until its first result after the pause
    (so a resumed segment starts a little late, by its first iteration's duration).

    With more than ``max_rows`` trials a row per trial would be thousands of rows tall: the rows are then
    slots instead, each bar in the first slot free when it starts (as many slots as trials ever ran at
    once, so the picture is the machine's occupancy; beyond ``max_rows`` slots, bars share the
    earliest-freed one), and a bar's trial shows on hover. The height stays bounded either way.

    With more than ``most`` bars (``MAX_TRIAL_MARKS``) the size stays bounded too: consecutive bars of a row
    with the same status merge into spans of about as many bars each (a span covers its first start to its
    last end, and its hover says how many trials it holds, the first and the last), at most ``most`` bars in
    all; the best 10 trials (by the experiment's metric and mode) and the errored ones (up to a quarter of
    ``most``) stay bars of their own, and the title says "N trials in M bars". The resources in use are then
    thinned (:func:`thin`: each stretch's lowest and highest kept) to ``most`` points.
    """
    exp = _read(rs)
    pauses: dict[int, list[float]] = defaultdict(list)
    for _seq, when, kind, trial_id, _data in exp.events:
        if kind == "pause" and trial_id is not None:
            pauses[trial_id].append(when)
    segments: list[Segment] = []
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
    row_names = [f"slot {row_of[k] + 1}" if lanes else f"trial_{tid:05d}" for k, (tid, *_) in enumerate(segments)]
    merged = len(segments) > most
    groups = _merge(segments, row_names, _alone(exp, rs, segments, most), most) if merged \
        else [[k] for k in range(len(segments))]
    bars = [_bar(segments, group) for group in groups]
    for status in STATUSES:
        rows = [(group, bar) for group, bar in zip(groups, bars) if bar[0] == status]
        if not rows:
            continue
        meta: dict[str, Any] = {"kind": "timeline", "status": status,
                                "trial_ids": [segments[group[0]][0] if len(group) == 1 else None for group, _ in rows]}
        if merged:
            meta["counts"] = [len(tids) for _, (*_, tids, _) in rows]
        data.append({
            "type": "bar", "orientation": "h", "name": status.lower(),
            "y": [row_names[group[0]] for group, _ in rows],
            "base": [b - exp.t0 for _, (_, b, _, _, _) in rows],
            "x": [max(e - b, tiny) for _, (_, b, e, _, _) in rows], "marker": {"color": STATUS_COLORS[status]},
            "text": [text for *_, text in (bar for _, bar in rows)], "textposition": "none",
            "customdata": [[b - exp.t0, e - exp.t0] for _, (_, b, e, _, _) in rows],
            "hovertemplate": "%{text}<br>%{customdata[0]:.2f} s – %{customdata[1]:.2f} s<extra>" + status.lower()
                             + "</extra>",
            "meta": meta,
        })
    if lanes:
        names = [f"slot {i + 1}" for i in range(max(row_of.values(), default=-1) + 1)]
    else:
        names = [t.name for t in rs.trials]
    held = {tid: (exp.records.get(tid, {}).get("resources") or {}) for tid, *_ in segments}
    usage = _resource_steps([(held[tid], b - exp.t0, e - exp.t0) for tid, _, b, e in segments])
    for key, (xs, ys) in usage.items():
        if len(xs) > most:  # each stretch's lowest and highest level: the peaks stay
            keep = thin(np.asarray(ys), most).tolist()
            usage[key] = ([xs[i] for i in keep], [ys[i] for i in keep])
    for key, (xs, ys) in usage.items():
        name = plotly_text(key)
        data.append({
            "type": "scatter", "mode": "lines", "name": f"{name} in use", "x": xs, "y": ys, "yaxis": "y2",
            "line": {"shape": "hv", "width": 2}, "fill": "tozeroy",
            "hovertemplate": "%{x:.2f} s: %{y:g} " + name + "<extra></extra>",
            "meta": {"kind": "resources", "resource": key}})
    gantt_height = 40 + 18 * len(names)
    title = f"Trial timeline ({len(rs.trials)} trials by slot: a row is one trial at a time)" if lanes \
        else "Trial timeline"
    if merged:
        title = (f"Trial timeline ({len(rs.trials):,} trials in {len(bars):,} bars"
                 + (" by slot: a row is one trial at a time" if lanes else "")
                 + "; consecutive trials of a row merged, the best and errored ones alone)")
    layout: dict[str, Any] = {
        "title": {"text": title}, "barmode": "overlay", "hovermode": "closest",
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


def _alone(exp: _Experiment, rs: PlotSource, segments: list[Segment], most: int) -> set[int]:
    """The trials that keep bars of their own when bars merge: the best 10 (by the metric's final value in the
    experiment's mode, if it has both), then errored ones in trial order, while their bars fill at most half of
    ``most`` (the rest merge with their status kept: a red span)."""
    try:
        metric = resolve_metric(rs)
        best = best_trials(_metric_values(exp, metric), mode_or_none(rs, None, metric))
    except ConfigError:  # no metric reported: none singled out
        best = []
    bars_of = Counter(tid for tid, *_ in segments)
    errored = sorted({tid for tid, status, *_ in segments if status == "ERROR"})
    kept: set[int] = set()
    room = most // 2
    for tid in best + errored:
        if tid not in kept and bars_of[tid] <= room:
            kept.add(tid)
            room -= bars_of[tid]
    return kept


def _merge(segments: list[Segment], rows: list[str], alone: set[int], most: int) -> list[list[int]]:
    """Segment indices grouped into at most ``most`` bars (where the rows and ``alone`` allow): a group per
    segment of the ``alone`` trials, and each row's runs of consecutive others split into chunks of about
    equal length, the shortest chunks that fit. A run is of one status; if even a bar per run is too many,
    runs mix statuses (a span then takes its commonest, and its hover counts each)."""
    by_row: dict[str, list[int]] = defaultdict(list)
    for k in sorted(range(len(segments)), key=lambda i: (segments[i][2], segments[i][3])):
        by_row[rows[k]].append(k)
    singles = [[k] for k in range(len(segments)) if segments[k][0] in alone]
    room = max(1, most - len(singles))
    for by_status in (True, False):
        runs: list[list[int]] = []
        for ks in by_row.values():
            run: list[int] = []
            for k in ks:
                if segments[k][0] in alone or (by_status and run and segments[run[-1]][1] != segments[k][1]):
                    if run:
                        runs.append(run)
                    run = []
                if segments[k][0] not in alone:
                    run.append(k)
            if run:
                runs.append(run)
        if len(runs) <= room:
            break
    low, high = 1, max((len(r) for r in runs), default=1)  # the smallest chunk length that fits
    while low < high:
        mid = (low + high) // 2
        if sum(-(-len(r) // mid) for r in runs) <= room:
            high = mid
        else:
            low = mid + 1
    chunks = []
    for run in runs:
        pieces = -(-len(run) // low)
        chunks += [run[len(run) * i // pieces:len(run) * (i + 1) // pieces] for i in range(pieces)]
    return singles + chunks


def _bar(segments: list[Segment], group: list[int]) -> tuple[str, float, float, list[int], str]:
    """A bar for a group of segments: (status, begin, end, its trials in order, hover text). One segment: its
    trial's bar; several: a span from the first start to the last end, its status the commonest."""
    tids = list(dict.fromkeys(segments[k][0] for k in group))
    statuses = Counter(segments[k][1] for k in group)
    status = max(STATUSES, key=lambda s: (statuses[s], -STATUSES.index(s)))
    begin, end = min(segments[k][2] for k in group), max(segments[k][3] for k in group)
    if len(group) == 1:
        text = f"trial_{tids[0]:05d}"
    elif len(tids) == 1:
        text = f"trial_{tids[0]:05d}: {len(group)} stretches between pauses"
    else:
        text = f"{len(tids):,} trials: trial_{tids[0]:05d} … trial_{tids[-1]:05d}"
    if len(statuses) > 1:
        text += " (" + ", ".join(f"{n} {s.lower()}" for s, n in statuses.most_common()) + ")"
    return status, begin, end, tids, text


def _slots(segments: list[Segment], most: int) -> dict[int, int]:
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
