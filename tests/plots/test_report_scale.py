"""The report at scale: long histories thinned to what a screen shows (the extremes kept), many trials
aggregated, a bounded timeline, and the whole report from one read of the store."""

from __future__ import annotations

import json
import math
import os
import random
import re
from typing import Any

import numpy as np
import pytest

from tunesmith.plots import data as pd_
from tunesmith.plots.report import build_panels, summary, write_report
from tunesmith.results import ResultSet
from tunesmith.store.sqlite import STORE_FILE, Store, dumps

T0 = 1_000_000.0


def build(root: Any, name: str, trials: int, per_trial: int, slots: int = 8, seed: int = 0,
          metric: str = "loss", mode: str = "min", errors: frozenset[int] = frozenset()) -> ResultSet:
    """A finished experiment written straight into a store: ``trials`` trials of ``per_trial`` noisy, falling
    losses each (a spike and a dip in each), ``slots`` trials at a time, one second per result; the trials in
    ``errors`` ended in an error."""
    path = os.path.join(str(root), name)
    store = Store(os.path.join(path, STORE_FILE))
    rng = random.Random(seed)
    free = [0.0] * slots
    with store.transaction() as db:
        store.set_meta(db, "spec", {"name": name, "metric": metric, "mode": mode})
        store.set_meta(db, "status", "finished")
        store.set_meta(db, "created", T0)
        for tid in range(1, trials + 1):
            slot = min(range(slots), key=free.__getitem__)
            begin = free[slot]
            values = [10.0 / (i + 1) + rng.random() for i in range(per_trial)]
            if per_trial > 10:
                values[rng.randrange(per_trial)] = 50.0 + tid  # a spike
                values[rng.randrange(per_trial)] = -5.0 - tid  # a dip
            store.insert_trial(db, tid, {"lr": rng.choice([0.1, 0.01, 0.001]), "width": rng.randrange(8, 64)},
                               {"cpu": 1.0}, "ERROR" if tid in errors else "TERMINATED", created=T0 + begin,
                               start_time=T0 + begin)
            store.append_results(db, [(tid, i + 1, float(i + 1), T0 + begin + i + 1, dumps({metric: v}))
                                      for i, v in enumerate(values)])
            end = begin + per_trial + 0.5
            free[slot] = end
            last = {metric: values[-1], "training_iteration": per_trial}
            store.update_trial(db, tid, iteration=per_trial, last_result=dumps(last), end_time=T0 + end)
    store.close()
    return ResultSet(path)


def figures(page: str) -> list[dict[str, Any]]:
    found = re.search(r'<script type="application/json" id="tunesmith-figures">(.*?)</script>', page, re.S)
    assert found
    return json.loads(found.group(1))


def points(trace: dict[str, Any]) -> int:
    return len(trace.get("x") or trace.get("dimensions", [{}])[0].get("values", []))


def test_a_big_report_has_every_plot_with_bounded_points_and_each_curves_extremes(tmp_path: Any) -> None:
    rs = build(tmp_path, "big", 50, 2_000)
    out = tmp_path / "report.html"
    titles = write_report(rs, str(out))
    assert titles == ["Learning curves", "Best so far", "Parallel coordinates", "Metric against each parameter",
                      "Trial timeline", "Parameter importance"]
    page = out.read_text()
    figs = dict(zip(titles, figures(page)))
    assert page.count('class="plot"') == len(titles)
    for title, fig in figs.items():
        total = sum(points(t) for t in fig["data"])
        assert total <= pd_.POINTS_PER_FIGURE + 100, (title, total)  # 100,000 results, a screen's worth drawn
        assert all(points(t) <= 2 * pd_.MAX_RESULT_POINTS for t in fig["data"]), title
    assert len(out.read_bytes()) < 8_000_000  # plotly.js is 4.8 MB of it

    # every trial's line keeps its first and last point, its spike and its dip
    curves = figs["Learning curves"]["data"]
    # many points, but lines only: SVG, which plotly.js simplifies to the pixels it draws (WebGL lines cost a
    # second or more to draw where the browser renders them in software)
    assert len(curves) == 50 and {t["type"] for t in curves} == {"scatter"}
    assert sum(points(t) for t in curves) > pd_.WEBGL_POINTS
    for trace in curves:
        history = [r["loss"] for r in rs.history(trace["meta"]["trial_id"])]
        assert trace["x"][0] == 1 and trace["x"][-1] == 2_000
        assert trace["y"] == [history[x - 1] for x in trace["x"]]  # the stored values, not averages
        assert min(history) in trace["y"] and max(history) in trace["y"]

    # best so far: the running best is exact, and the cloud behind it keeps its outline
    best_fig = figs["Best so far"]["data"]
    cloud = next(t for t in best_fig if t["meta"]["kind"] == "results")
    line = next(t for t in best_fig if t["meta"]["kind"] == "best")
    everything = [r["loss"] for t in rs.trials for r in rs.history(t.id)]
    assert cloud["meta"]["n"] == len(everything) == 100_000 and cloud["type"] == "scattergl"
    assert min(everything) in cloud["y"] and max(everything) in cloud["y"]
    assert line["y"][-1] == min(everything) and line["y"] == sorted(line["y"], reverse=True)


def test_the_summary_names_the_same_best_result_as_get_best(tmp_path: Any) -> None:
    rs = build(tmp_path, "best", 6, 40, seed=4)
    ever = rs.get_best("loss", "min", scope="all")
    facts = dict(summary(rs))
    assert facts["best result (any iteration)"] == (f"{ever.name} at iteration {ever.metrics['training_iteration']}: "
                                                    f"loss={ever.metrics['loss']:.6g}")
    maxed = ResultSet(rs.path, metric="loss", mode="max")
    ever = maxed.get_best(scope="all")
    assert dict(summary(maxed))["best result (any iteration)"].startswith(
        f"{ever.name} at iteration {ever.metrics['training_iteration']}:")


def test_hundreds_of_trials_are_drawn_as_quantile_bands_and_the_best_trials(tmp_path: Any) -> None:
    rs = build(tmp_path, "many", 300, 5, slots=50)
    fig = pd_.learning_curves(rs)
    lines = [t for t in fig["data"] if t["meta"]["kind"] == "trial"]
    finals = {t.id: t.last_result["loss"] for t in rs.trials}
    best = sorted(finals, key=finals.__getitem__)[:pd_.TOP_TRIALS]
    assert [t["meta"]["trial_id"] for t in lines] == sorted(best)  # the best 10, not 300 lines
    median = next(t for t in fig["data"] if t["meta"].get("q") == 0.5)
    assert median["x"][-1] == pytest.approx(5, abs=0.02)
    assert median["y"][-1] == pytest.approx(float(np.median(list(finals.values()))))
    assert median["meta"]["n"][-1] == 300  # every trial counted once at its last iteration
    low = next(t for t in fig["data"] if t["meta"].get("q") == 0.1)
    high = next(t for t in fig["data"] if t["meta"].get("q") == 0.9)
    assert all(a <= m <= b for a, m, b in zip(low["y"], median["y"], high["y"]))
    assert "300 trials" in fig["layout"]["title"]["text"]
    assert build_panels(rs)[0][0].note.startswith("300 trials: the median")  # the report says what it shows
    # at most max_trials trials: one line each, as before
    assert len([t for t in pd_.learning_curves(rs, max_trials=300)["data"] if t["meta"]["kind"] == "trial"]) == 300


def _timeline_bars(fig: dict[str, Any]) -> list[tuple[str, str, int | None, int, float, float]]:
    """Each bar of a timeline: (row, status, its trial id or None for a span of several, how many trials it
    holds, begin, end)."""
    out = []
    for t in fig["data"]:
        if t["meta"]["kind"] != "timeline":
            continue
        counts = t["meta"].get("counts") or [1] * len(t["y"])
        for row, tid, n, (begin, end) in zip(t["y"], t["meta"]["trial_ids"], counts, t["customdata"]):
            out.append((row, t["meta"]["status"], tid, n, begin, end))
    return out


def test_a_5000_trial_timeline_has_a_row_per_slot_and_a_bounded_size(tmp_path: Any) -> None:
    """A bar per trial only up to ``MAX_TRIAL_MARKS`` trials (every trial its own bar below it: see
    test_more_concurrent_trials_than_rows_share_the_earliest_freed_slot and the small tests of
    test_plot_data): a bar per trial was ~100 bytes, 2 MB a figure at 20,000 trials, more than a screen's
    pixels. Beyond, consecutive trials in a slot merge into spans, each counting its trials, so every trial is
    still counted once and the slots still hold one trial at a time."""
    rs = build(tmp_path, "wide", 5_000, 1, slots=8)
    fig = pd_.timeline(rs)
    assert fig["layout"]["height"] <= 40 + 18 * pd_.MAX_TIMELINE_ROWS + 160
    bars = _timeline_bars(fig)
    assert len(bars) <= pd_.MAX_TRIAL_MARKS
    assert sum(n for *_, n, _b, _e in bars) == 5_000  # every trial counted once, in its bar or a span
    alone = [tid for _r, _s, tid, *_ in bars if tid is not None]
    assert len(alone) == len(set(alone)) and all(n == 1 for _r, _s, tid, n, *_ in bars if tid is not None)
    assert f"5,000 trials in {len(bars):,} bars" in fig["layout"]["title"]["text"]
    rows: dict[str, list[tuple[float, float]]] = {}
    for row, *_, begin, end in bars:  # the spans (a bar is drawn >= 0.3% wide)
        rows.setdefault(row, []).append((begin, end))
    assert len(rows) == 8 == len(fig["layout"]["yaxis"]["categoryarray"])  # 8 ran at once: 8 slots
    for spans in rows.values():  # a slot holds one trial (or one span of consecutive trials) at a time
        spans.sort()
        assert all(a[1] <= b[0] + 1e-9 for a, b in zip(spans, spans[1:]))
    assert all(math.isfinite(h) for h in fig["layout"]["yaxis"]["domain"])


@pytest.mark.timeout(120)
def test_a_20000_trial_timeline_is_bounded_and_keeps_the_best_and_errored_trials_alone(tmp_path: Any) -> None:
    errors = frozenset(range(7, 20_000, 97))  # 207 errored trials, among terminated ones
    rs = build(tmp_path, "huge", 20_000, 1, slots=8, errors=errors)
    fig = pd_.timeline(rs)
    size = len(json.dumps(fig))
    assert size < 300_000, size  # before: 1.3 MB (a bar per trial)
    bars = _timeline_bars(fig)
    assert len(bars) <= pd_.MAX_TRIAL_MARKS
    assert sum(n for *_, n, _b, _e in bars) == 20_000
    alone = {tid for _r, _s, tid, *_ in bars if tid is not None}
    best = sorted(rs.trials, key=lambda t: (t.last_result["loss"], t.id))[:pd_.TOP_TRIALS]
    assert {t.id for t in best} <= alone  # the best stay visible and hoverable, each its own bar
    assert errors <= alone
    assert {tid for _r, status, tid, *_ in bars if status == "ERROR"} == set(errors)  # no red span hides one
    spans = [b for b in bars if b[2] is None]
    assert spans and all(n > 1 for *_, n, _b, _e in spans)
    span_trace = next(t for t in fig["data"] if t["meta"]["kind"] == "timeline" and None in t["meta"]["trial_ids"])
    text = span_trace["text"][span_trace["meta"]["trial_ids"].index(None)]
    assert " trials: trial_" in text  # hover: how many, the first and the last
    usage = next(t for t in fig["data"] if t["meta"]["kind"] == "resources")
    assert len(usage["x"]) <= pd_.MAX_TRIAL_MARKS and max(usage["y"]) == 8.0  # thinned, the peak kept


def test_a_timeline_at_the_bound_keeps_a_bar_per_trial(tmp_path: Any) -> None:
    """Up to ``MAX_TRIAL_MARKS`` trials nothing merges: a bar per trial, named, as for a small experiment."""
    rs = build(tmp_path, "bound", pd_.MAX_TRIAL_MARKS, 1, slots=8)
    fig = pd_.timeline(rs)
    bars = _timeline_bars(fig)
    assert sorted(tid for _r, _s, tid, *_ in bars) == list(range(1, pd_.MAX_TRIAL_MARKS + 1))  # type: ignore[type-var]
    assert all("counts" not in t["meta"] for t in fig["data"])
    assert " bars" not in fig["layout"]["title"]["text"]


def test_more_concurrent_trials_than_rows_share_the_earliest_freed_slot(tmp_path: Any) -> None:
    """A small experiment (fewer trials than ``MAX_TRIAL_MARKS``): every trial still has its own bar."""
    rs = build(tmp_path, "crowd", 30, 1, slots=30)  # all 30 at once
    fig = pd_.timeline(rs, max_rows=10)
    names = fig["layout"]["yaxis"]["categoryarray"]
    assert names == [f"slot {i}" for i in range(1, 11)]
    assert sorted(tid for t in fig["data"] if t["meta"]["kind"] == "timeline" for tid in t["meta"]["trial_ids"]) \
        == list(range(1, 31))


def test_one_pass_over_the_results_serves_every_plot_of_a_report(tmp_path: Any, monkeypatch: Any) -> None:
    rs = build(tmp_path, "once", 10, 30)
    reads: list[tuple[str, ...]] = []
    original = Store.result_columns

    def counted(self: Store, keys: Any = ()) -> Any:
        reads.append(tuple(keys))
        return original(self, keys)

    monkeypatch.setattr(Store, "result_columns", counted)  # a spy: the real read still runs
    write_report(rs, str(tmp_path / "r.html"))
    assert reads == [("loss", "training_iteration")]
    reads.clear()
    pd_.learning_curves(rs)
    pd_.best_so_far(rs)
    assert len(reads) == 2  # outside a report each plot reads afresh (never stale)


def test_result_columns_reads_numbers_and_leaves_the_rest_out(tmp_path: Any) -> None:
    path = os.path.join(str(tmp_path), STORE_FILE)
    store = Store(path)
    odd = 'we"ird\\key'
    rows = [{"a": 1, "b": "text", odd: 2.5}, {"a": float("nan"), "b": 3, odd: 1}, {"a": float("inf"), "b": True},
            {"a": 2.5, "b": [1], "c": {"d": 1}}, {"a": 10**400, "b": None}]
    with store.transaction() as db:
        store.insert_trial(db, 2, {}, {}, "TERMINATED")
        store.insert_trial(db, 1, {}, {}, "TERMINATED")
        store.append_results(db, [(2, i + 1, float(i), T0 + i, dumps(r)) for i, r in enumerate(rows)])
        store.append_results(db, [(1, 1, 0.5, T0, dumps({"a": -1}))])
    cols = Store(path, readonly=True).result_columns(["a", "b", odd, "missing", "timestamp"])
    assert cols["trial_id"].tolist() == [1, 2, 2, 2, 2, 2]
    assert cols["training_iteration"].tolist() == [1, 1, 2, 3, 4, 5]
    assert cols["timestamp"].tolist() == [T0, T0, T0 + 1, T0 + 2, T0 + 3, T0 + 4]
    nan = float("nan")
    same = np.testing.assert_array_equal
    same(cols["a"], [-1, 1, nan, nan, 2.5, nan])  # NaN, infinities and huge integers are no plottable number
    same(cols["b"], [nan, nan, 3, nan, nan, nan])  # text, booleans, lists and null are not numbers
    same(cols[odd], [nan, 2.5, 1, nan, nan, nan])
    same(cols["missing"], [nan] * 6)
