"""Plot data functions on hand-made experiments (stores written directly) and on one real run."""

from __future__ import annotations

import json
import math
import os
import random
import re
import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

import tunesmith as ts
from tunesmith._errors import ConfigError
from tunesmith.plots import data as pd_
from tunesmith.plots.render import Panel, figure_json, plotly_js, render_html
from tunesmith.plots.report import write_report
from tunesmith.results import ResultSet
from tunesmith.space import choice, grid, loguniform, space_to_json, uniform
from tunesmith.store.sqlite import STORE_FILE, Store, dumps

T0 = 1_000_000.0


def make_experiment(root: Any, name: str, trials: list[dict[str, Any]], space: dict[str, Any] | None = None,
                    metric: Any = "loss", mode: Any = "min",
                    events: Sequence[tuple[float, str, int, Any]] = ()) -> ResultSet:
    """Write an experiment store by hand.

    Each trial: ``id``, ``config``, ``status``, ``results`` (metrics dicts with ``iteration`` and ``t``,
    the timestamp offset), optional ``created`` and ``end`` offsets, ``parent`` = (id, iteration),
    ``resources`` (default one CPU).
    """
    path = os.path.join(str(root), name)
    store = Store(os.path.join(path, STORE_FILE))
    with store.transaction() as db:
        store.set_meta(db, "spec", {"name": name, "metric": metric, "mode": mode,
                                    "space": space_to_json(space or {})})
        store.set_meta(db, "status", "finished")
        store.set_meta(db, "created", T0)
        for t in trials:
            store.insert_trial(db, t["id"], t["config"], t.get("resources", {"cpu": 1.0}), t["status"])
            rows = []
            last = None
            for r in t["results"]:
                metrics = {k: v for k, v in r.items() if k not in ("iteration", "t")}
                rows.append((t["id"], r["iteration"], float(r["iteration"]), T0 + r["t"], dumps(metrics)))
                last = {**metrics, "training_iteration": r["iteration"], "time_total_s": float(r["iteration"]),
                        "timestamp": T0 + r["t"]}
            store.append_results(db, rows)
            fields: dict[str, Any] = {"created": T0 + t.get("created", 0.0),
                                      "iteration": t["results"][-1]["iteration"] if t["results"] else 0,
                                      "last_result": dumps(last) if last else None}
            if "end" in t:
                fields["end_time"] = T0 + t["end"]
            if "parent" in t:
                fields["parent_id"], fields["parent_iteration"] = t["parent"]
            if t["status"] == "ERROR":
                fields["error"] = "Traceback...\nValueError: boom"
            store.update_trial(db, t["id"], **fields)
        for when, kind, tid, data in events:
            db.execute("INSERT INTO events(time, kind, trial_id, data) VALUES (?, ?, ?, ?)",
                       (T0 + when, kind, tid, dumps(data)))
    store.close()
    return ResultSet(path)


def curve(values: list[float], start: int = 1, t0: float = 0.0, dt: float = 1.0) -> list[dict[str, Any]]:
    return [{"iteration": start + i, "t": t0 + dt * (i + 1), "loss": v} for i, v in enumerate(values)]


@pytest.fixture
def pbt(tmp_path: Any) -> ResultSet:
    """Trial 1 runs 6 iterations; 2 is stopped at 2; 3 fails at 3; 4 exploits 1's checkpoint at 3."""
    return make_experiment(tmp_path, "pbt", [
        {"id": 1, "config": {"lr": 0.1}, "status": "TERMINATED", "results": curve([6, 5, 4, 3, 2, 1]), "end": 7},
        {"id": 2, "config": {"lr": 0.2}, "status": "TERMINATED", "results": curve([9, 8]), "end": 3},
        {"id": 3, "config": {"lr": 0.3}, "status": "ERROR", "results": curve([7, 7, 7]), "end": 4},
        {"id": 4, "config": {"lr": 0.4}, "status": "TERMINATED", "parent": (1, 3), "end": 8,
         "results": curve([8, 7.5, 7.2]) + curve([3.5, 2.5, 1.5], start=4, t0=4)},
    ], events=[(3.5, "exploit", 4, {"source": 1, "iteration": 3, "config": {"lr": 0.4}}),
               (3.4, "pause", 4, {"iteration": 3, "resources": {}})])


def _trace(fig: dict[str, Any], **meta: Any) -> dict[str, Any]:
    found = [t for t in fig["data"] if all(t["meta"].get(k) == v for k, v in meta.items())]
    assert len(found) == 1, f"expected one trace with {meta}, got {len(found)}"
    return found[0]


# -- learning curves ----------------------------------------------------------------------------------


def test_learning_curves_one_line_per_trial_with_the_stored_values(pbt: ResultSet) -> None:
    fig = pd_.learning_curves(pbt)
    trials = [t for t in fig["data"] if t["meta"]["kind"] == "trial"]
    assert [t["meta"]["trial_id"] for t in trials] == [1, 2, 3, 4]
    t1 = _trace(fig, kind="trial", trial_id=1)
    assert t1["x"] == [1, 2, 3, 4, 5, 6] and t1["y"] == [6, 5, 4, 3, 2, 1]
    assert t1["meta"]["stopped"] is False and t1["line"]["color"] != pd_.GREY


def test_learning_curves_grey_stopped_and_red_failed(pbt: ResultSet) -> None:
    fig = pd_.learning_curves(pbt)
    stopped = _trace(fig, kind="trial", trial_id=2)
    assert stopped["meta"]["stopped"] is True and stopped["line"]["color"] == pd_.GREY
    failed = _trace(fig, kind="trial", trial_id=3)
    assert failed["meta"]["status"] == "ERROR" and failed["line"]["dash"] == "dash"
    assert failed["meta"]["stopped"] is False  # failed is not "stopped early"


def test_learning_curves_connect_pbt_lineage_and_break_the_child_line(pbt: ResultSet) -> None:
    fig = pd_.learning_curves(pbt)
    child = _trace(fig, kind="trial", trial_id=4)
    assert child["x"] == [1, 2, 3, None, 4, 5, 6]
    assert child["y"] == [8, 7.5, 7.2, None, 3.5, 2.5, 1.5]
    link = _trace(fig, kind="lineage")
    assert (link["meta"]["child"], link["meta"]["source"], link["meta"]["iteration"]) == (4, 1, 3)
    assert link["x"] == [3, 4] and link["y"] == [4, 3.5]  # from trial 1 at 3 to trial 4's first point after
    assert link["line"]["dash"] == "dot"


def test_learning_curves_thin_long_histories_keeping_the_ends_and_the_extremes(tmp_path: Any) -> None:
    values = [float(i) for i in range(50)]
    values[17], values[33] = 500.0, -500.0  # a spike and a dip an even sampling would step over
    rs = make_experiment(tmp_path, "long", [
        {"id": 1, "config": {}, "status": "TERMINATED", "results": curve(values)}])
    trace = pd_.learning_curves(rs, max_points=10)["data"][0]
    assert len(trace["x"]) <= 10 and trace["x"][0] == 1 and trace["x"][-1] == 50
    assert trace["x"] == sorted(trace["x"]) and trace["y"] == [values[x - 1] for x in trace["x"]]
    assert 500.0 in trace["y"] and -500.0 in trace["y"]


def test_thin_keeps_each_stretchs_min_and_max() -> None:
    rng = random.Random(3)
    values = [rng.gauss(0, 1) for _ in range(10_000)]
    kept = pd_.thin(np.array(values), 202)
    assert len(kept) <= 202 and kept[0] == 0 and kept[-1] == len(values) - 1
    assert list(kept) == sorted(set(kept))
    for stretch in range(100):  # 100 stretches of 100 consecutive values each
        part = range(stretch * 100, stretch * 100 + 100)
        low = min(part, key=values.__getitem__)
        high = max(part, key=values.__getitem__)
        assert low in kept and high in kept
    assert list(pd_.thin(np.array(values[:50]), 202)) == list(range(50))  # short: all


def test_only_points_drawn_as_markers_go_webgl() -> None:
    from tunesmith.plots._figure import _webgl

    many = pd_.WEBGL_POINTS + 1
    lines = {"type": "scatter", "mode": "lines", "x": list(range(many))}
    dots = {"type": "scatter", "mode": "markers", "x": list(range(many))}
    both = {"type": "scatter", "mode": "lines+markers", "x": [1, 2]}
    band = {"type": "scatter", "mode": "markers", "fill": "tonexty", "x": [1, 2]}
    _webgl(data := [lines, dict(lines)])
    assert [t["type"] for t in data] == ["scatter", "scatter"]  # lines alone: SVG, simplified by plotly.js
    _webgl(data := [dict(lines), dots, both, band])
    assert [t["type"] for t in data] == ["scatter", "scattergl", "scattergl", "scatter"]
    _webgl(data := [{**dots, "type": "scatter", "x": list(range(pd_.WEBGL_POINTS))}, lines])
    assert [t["type"] for t in data] == ["scatter", "scatter"]  # the markers fit SVG


def test_learning_curves_other_x_and_unknown_metric(pbt: ResultSet) -> None:
    fig = pd_.learning_curves(pbt, x="time_total_s")
    assert _trace(fig, kind="trial", trial_id=2)["x"] == [1.0, 2.0]
    with pytest.raises(ConfigError, match="metric: no result reported a number for 'nope'"):
        pd_.learning_curves(pbt, metric="nope")  # a typo is named, not drawn as empty curves


# -- best so far --------------------------------------------------------------------------------------


def test_best_so_far_is_the_running_best_over_time(pbt: ResultSet) -> None:
    fig = pd_.best_so_far(pbt)
    results = _trace(fig, kind="results")
    best = _trace(fig, kind="best")
    points = sorted(zip(results["x"], results["y"]))
    assert len(points) == 6 + 2 + 3 + 6
    expected_x, expected_y, running = [], [], math.inf
    for x, y in points:
        if y < running:
            running = y
            expected_x.append(x)
            expected_y.append(y)
    assert best["x"][:-1] == expected_x and best["y"][:-1] == expected_y
    assert best["x"][-1] == points[-1][0] and best["y"][-1] == 1  # held to the last result
    assert best["x"][0] == 1.0  # seconds since the experiment was created
    assert best["line"]["shape"] == "hv"


def test_best_so_far_max_and_mode_needed(pbt: ResultSet, tmp_path: Any) -> None:
    best = _trace(pd_.best_so_far(pbt, mode="max"), kind="best")
    assert best["y"][:-1] == sorted(best["y"][:-1]) and max(best["y"]) == 9
    no_mode = make_experiment(tmp_path, "nomode", [
        {"id": 1, "config": {}, "status": "TERMINATED", "results": curve([1.0])}], metric=None, mode=None)
    with pytest.raises(ConfigError, match="mode"):
        pd_.best_so_far(no_mode)
    assert pd_.resolve_metric(no_mode) == "loss"  # the first numeric key reported


# -- sensitivity --------------------------------------------------------------------------------------


def _grid_experiment(root: Any, name: str, values: dict[tuple[Any, ...], Any], space: dict[str, Any],
                     keys: list[str]) -> ResultSet:
    trials = []
    for i, (combo, loss) in enumerate(sorted(values.items(), key=lambda kv: str(kv[0])), start=1):
        trials.append({"id": i, "config": dict(zip(keys, combo)), "status": "TERMINATED",
                       "results": [{"iteration": 1, "t": float(i), "loss": loss + 10}, {"iteration": 2, "t": i + 0.5,
                                                                                         "loss": loss}]})
    return make_experiment(root, name, trials, space=space)


def test_sensitivity_mean_and_min_max_band_over_seeds(tmp_path: Any) -> None:
    lrs, seeds = [0.1, 0.01, 0.001], [0, 1, 2]
    values = {(lr, s): lr * 100 + s for lr in lrs for s in seeds}
    rs = _grid_experiment(tmp_path, "sens", values, {"lr": grid(lrs), "seed": grid(seeds), "w": uniform(0, 1)},
                          ["lr", "seed"])
    fig = pd_.sensitivity(rs)
    assert fig is not None
    mean = _trace(fig, kind="mean", param="lr")
    low = _trace(fig, kind="band_low", param="lr")
    high = _trace(fig, kind="band_high", param="lr")
    assert mean["x"] == lrs  # grid order
    assert mean["y"] == pytest.approx([lr * 100 + 1 for lr in lrs])  # the final value, not the first
    assert low["y"] == pytest.approx([lr * 100 for lr in lrs])
    assert high["y"] == pytest.approx([lr * 100 + 2 for lr in lrs]) and high["fill"] == "tonexty"
    assert mean["meta"]["n"] == [3, 3, 3] and mean["meta"]["std"] == pytest.approx([1.0, 1.0, 1.0])
    assert fig["layout"]["xaxis"]["type"] == "log"  # 0.001..0.1 spans two decades
    assert not any(t["meta"].get("param") == "seed" for t in fig["data"])  # seeds are the repeats


def test_sensitivity_one_line_per_other_parameter_or_pooled(tmp_path: Any) -> None:
    a_values, b_values = ["x", "y", "z"], [1, 2, 3, 4, 5, 6, 7]
    values = {(a, b): b * 10 + a_values.index(a) for a in a_values for b in b_values}
    rs = _grid_experiment(tmp_path, "two", values, {"a": grid(a_values), "b": grid(b_values)}, ["a", "b"])
    fig = pd_.sensitivity(rs)
    assert fig is not None
    # against b: a has 3 values -> 3 lines, each one trial per point
    lines_b = [t for t in fig["data"] if t["meta"]["kind"] == "mean" and t["meta"]["param"] == "b"]
    assert sorted(t["meta"]["group"] for t in lines_b) == ["a=x", "a=y", "a=z"]
    line_y = next(t for t in lines_b if t["meta"]["group"] == "a=y")
    assert line_y["y"] == [b * 10 + 1 for b in b_values] and line_y["meta"]["n"] == [1] * 7
    # against a: b has 7 values (> MAX_LINES) -> pooled into one line over all of them
    lines_a = [t for t in fig["data"] if t["meta"]["kind"] == "mean" and t["meta"]["param"] == "a"]
    assert len(lines_a) == 1 and lines_a[0]["meta"]["n"] == [7, 7, 7]
    assert lines_a[0]["x"] == a_values and fig["layout"]["xaxis"]["type"] == "category"
    assert lines_a[0]["y"] == pytest.approx([40 + i for i in range(3)])


def test_sensitivity_needs_a_grid(tmp_path: Any) -> None:
    no_grid = make_experiment(tmp_path, "nogrid", [
        {"id": 1, "config": {"x": 0.5}, "status": "TERMINATED", "results": curve([1.0])}], space={"x": uniform(0, 1)})
    assert pd_.sensitivity(no_grid) is None
    seeds_only = make_experiment(tmp_path, "seeds", [
        {"id": 1, "config": {"seed": 0}, "status": "TERMINATED", "results": curve([1.0])}],
        space={"seed": grid([0, 1])})
    assert pd_.sensitivity(seeds_only) is None
    assert pd_.sensitivity(seeds_only, repeats=[]) is not None


def test_sweep_stats_single_value_has_zero_std() -> None:
    stats = pd_.sweep_stats({"1": [2.0], "2": [1.0, 3.0]}, [1, 2, 3])
    assert [(p.value, p.n, p.mean, p.std, p.low, p.high) for p in stats] == [
        (1, 1, 2.0, 0.0, 2.0, 2.0), (2, 2, 2.0, pytest.approx(math.sqrt(2)), 1.0, 3.0)]


# -- parameters ---------------------------------------------------------------------------------------


@pytest.fixture
def params(tmp_path: Any) -> ResultSet:
    rng = random.Random(0)
    trials: list[dict[str, Any]] = []
    for i in range(1, 9):
        config: dict[str, Any] = {"lr": 10 ** rng.uniform(-4, -1), "opt": {"name": rng.choice(["adam", "sgd"])},
                                  "const": 5, "drop": rng.uniform(0, 0.5)}
        trials.append({"id": i, "config": config, "status": "TERMINATED",
                       "results": curve([1.0, config["lr"] * 10 + config["drop"]])})
    trials.append({"id": 9, "config": {"lr": 0.01, "opt": {"name": "adam"}, "const": 5, "drop": 0.1},
                   "status": "ERROR", "results": []})  # no metric: left out
    space = {"lr": loguniform(1e-4, 1e-1), "opt": {"name": choice(["adam", "sgd"])}, "const": 5,
             "drop": uniform(0, 0.5)}
    return make_experiment(tmp_path, "params", trials, space=space)


def test_scatter_one_subplot_per_varying_parameter(params: ResultSet) -> None:
    fig = pd_.scatter(params)
    assert fig is not None
    by_param = {t["meta"]["param"]: t for t in fig["data"]}
    assert list(by_param) == ["lr", "opt/name", "drop"]  # "const" does not vary
    finals = {t.id: t.last_result["loss"] for t in params.trials if t.last_result}
    lr = by_param["lr"]
    assert lr["meta"]["trial_ids"] == list(range(1, 9))
    assert lr["x"] == [params.trial(i).config["lr"] for i in range(1, 9)]
    assert lr["y"] == [finals[i] for i in range(1, 9)]
    assert by_param["opt/name"]["x"] == [params.trial(i).config["opt"]["name"] for i in range(1, 9)]
    axes = {fig["layout"][f"xaxis{'' if n == 0 else n + 1}"]["title"]["text"]: fig["layout"][
        f"xaxis{'' if n == 0 else n + 1}"] for n in range(3)}
    assert axes["lr"]["type"] == "log" and axes["opt/name"]["type"] == "category"
    assert "type" not in axes["drop"]  # linear
    assert lr["xaxis"] == "x" and by_param["drop"]["xaxis"] == "x3"


def test_parallel_coordinates_dimensions(params: ResultSet) -> None:
    fig = pd_.parallel_coordinates(params)
    assert fig is not None
    trace = fig["data"][0]
    assert trace["type"] == "parcoords" and trace["meta"]["trial_ids"] == list(range(1, 9))
    dims = {d["label"]: d for d in trace["dimensions"]}
    assert list(dims) == ["log10(lr)", "opt/name", "drop", "loss"]
    assert dims["log10(lr)"]["values"] == pytest.approx(
        [math.log10(params.trial(i).config["lr"]) for i in range(1, 9)])
    names = [params.trial(i).config["opt"]["name"] for i in range(1, 9)]
    assert dims["opt/name"]["ticktext"] == sorted(set(names))
    assert [dims["opt/name"]["ticktext"][v] for v in dims["opt/name"]["values"]] == names
    assert trace["line"]["color"] == dims["loss"]["values"]


def test_parameter_plots_absent_without_data(tmp_path: Any) -> None:
    rs = make_experiment(tmp_path, "one", [
        {"id": 1, "config": {"x": 1}, "status": "TERMINATED", "results": curve([1.0])},
        {"id": 2, "config": {"x": 1}, "status": "TERMINATED", "results": curve([2.0])}])
    assert pd_.scatter(rs) is None  # x never varies
    fig = pd_.parallel_coordinates(rs)
    assert fig is not None and [d["label"] for d in fig["data"][0]["dimensions"]] == ["loss"]
    empty = make_experiment(tmp_path, "empty", [{"id": 1, "config": {"x": 1}, "status": "ERROR", "results": []}])
    assert pd_.parallel_coordinates(empty, metric="loss") is None


# -- timeline -----------------------------------------------------------------------------------------


def test_timeline_bars_from_creation_to_end_split_at_pauses(pbt: ResultSet) -> None:
    fig = pd_.timeline(pbt)
    bars: dict[int, list[tuple[float, float]]] = {}
    for trace in fig["data"]:
        if trace["meta"]["kind"] == "resources":
            continue
        assert trace["type"] == "bar" and trace["orientation"] == "h"
        for name, base, width in zip(trace["y"], trace["base"], trace["x"]):
            bars.setdefault(int(name[6:]), []).append((base, base + width))
    assert bars[1] == [(0.0, 7.0)] and bars[2] == [(0.0, 3.0)]
    assert bars[4] == [(0.0, pytest.approx(3.4)), (5.0, 8.0)]  # paused at 3.4, its next result at 5.0
    error = next(t for t in fig["data"] if t["meta"]["status"] == "ERROR")
    assert error["y"] == ["trial_00003"] and error["marker"]["color"] == pd_.STATUS_COLORS["ERROR"]
    assert fig["layout"]["yaxis"]["categoryarray"] == [f"trial_{i:05d}" for i in (1, 2, 3, 4)]
    # resources in use below the bars (one CPU per trial): the pause of trial 4 frees its CPU until 5.0
    usage = _trace(fig, kind="resources", resource="cpu")
    assert usage["x"] == [0.0, 3.0, pytest.approx(3.4), 4.0, 5.0, 7.0, 8.0]
    assert usage["y"] == [4.0, 3.0, 2.0, 1.0, 2.0, 1.0, 0.0]
    assert usage["yaxis"] == "y2" and fig["layout"]["xaxis"]["anchor"] == "y2"
    top, bottom = fig["layout"]["yaxis"]["domain"], fig["layout"]["yaxis2"]["domain"]
    assert bottom[1] < top[0]  # stacked, not overlapping


def test_timeline_starts_a_waiting_trial_at_its_first_result_not_at_its_creation(tmp_path: Any) -> None:
    # One CPU: trial 2 is created at once but waits for trial 1's worker; its first result at t=5 took
    # 1 s (time_total_s), so it ran from 4, and the machine never had two trials on its one CPU.
    rs = make_experiment(tmp_path, "queue", [
        {"id": 1, "config": {"x": 1}, "status": "TERMINATED", "results": curve([3, 2, 1]), "end": 3.5},
        {"id": 2, "config": {"x": 2}, "status": "TERMINATED", "created": 0.1, "end": 6.5,
         "results": curve([3, 2], t0=4.0)}])
    fig = pd_.timeline(rs)
    bars = _trace(fig, kind="timeline", status="TERMINATED")
    assert bars["y"] == ["trial_00001", "trial_00002"]
    assert bars["base"] == [0.0, 4.0] and bars["x"] == [3.5, 2.5]
    usage = _trace(fig, kind="resources", resource="cpu")
    assert usage["x"] == [0.0, 3.5, 4.0, 6.5] and usage["y"] == [1.0, 0.0, 1.0, 0.0]


# -- Pareto -------------------------------------------------------------------------------------------


def test_pareto_front_of_two_metrics(tmp_path: Any) -> None:
    pts = {1: (1.0, 5.0), 2: (2.0, 3.0), 3: (3.0, 3.0), 4: (4.0, 1.0), 5: (2.5, 4.0), 6: (1.0, 5.0)}
    rs = make_experiment(tmp_path, "mo", [
        {"id": i, "config": {"i": i}, "status": "TERMINATED",
         "results": [{"iteration": 1, "t": 1.0, "loss": a, "latency": b}]} for i, (a, b) in pts.items()])
    fig = pd_.pareto_front(rs, ["loss", "latency"], ["min", "min"])
    front = _trace(fig, kind="front")
    assert front["meta"]["trial_ids"] == [1, 6, 2, 4]  # sorted by loss; duplicates both kept
    assert front["x"] == [1.0, 1.0, 2.0, 4.0]
    assert _trace(fig, kind="trials")["meta"]["trial_ids"] == [1, 2, 3, 4, 5, 6]
    fig = pd_.pareto_front(rs, ["loss", "latency"], ["max", "min"])
    assert _trace(fig, kind="front")["meta"]["trial_ids"] == [4]
    with pytest.raises(ConfigError):
        pd_.pareto_front(rs, ["loss"], ["min"])


# -- rendering ----------------------------------------------------------------------------------------


def test_figure_json_is_safe_inside_a_script_element() -> None:
    text = figure_json({"data": [{"name": "</script><script>alert(1)</script>", "y": [1.0, math.nan, math.inf]}]})
    assert "</script" not in text and "<" not in text
    assert json.loads(text) == {"data": [{"name": "</script><script>alert(1)</script>", "y": [1.0, None, None]}]}


def test_render_html_inlines_plotly_and_needs_no_network() -> None:
    page = render_html("t <b>", [Panel("a", {"data": [], "layout": {}}), Panel("b", {"data": []}, "note")])
    assert page.count('class="plot"') == 2
    assert plotly_js() in page and "plotly.js v4" in page and "Plotly.newPlot" in page
    ours = page.replace(plotly_js(), "")
    assert "<script src" not in ours and "http" not in ours.replace('content="width=device-width', "")
    assert "t &lt;b&gt;" in page


# -- a real experiment --------------------------------------------------------------------------------


def train(config: dict[str, Any]) -> None:
    for i in range(1, 4):
        ts.report({"loss": config["lr"] * 10 / i + config["seed"], "latency": config["width"] / 10 + i})


def test_every_plot_on_a_real_run_and_the_report(tmp_path: Any) -> None:
    # width follows lr, so each lr value ran with both seeds at one width: "Learning curves by value" applies
    # (a random width could split a value's seeds into two groups of one, and the panel would not apply)
    space = {"lr": grid([0.1, 0.01]), "seed": grid([0, 1]),
             "width": ts.sample_from(lambda c: 32 if c["lr"] == 0.1 else 64)}
    rs = ts.run(train, space=space, metric="loss", mode="min", name="real", storage_path=str(tmp_path), verbose=0)
    assert len(rs.trials) == 4
    curves = pd_.learning_curves(rs)
    assert [len(t["y"]) for t in curves["data"]] == [3, 3, 3, 3]
    for t in curves["data"]:
        assert t["y"] == [r["loss"] for r in rs.history(t["meta"]["trial_id"])]
    assert len(_trace(pd_.best_so_far(rs), kind="results")["y"]) == 12
    assert _trace(pd_.sensitivity(rs) or {}, kind="mean", param="lr")["meta"]["n"] == [2, 2]
    assert len(pd_.timeline(rs)["data"][0]["y"]) == 4
    titles = write_report(rs, str(tmp_path / "out" / "report.html"), pareto=[("loss", "min"), ("latency", "min")])
    assert titles == ["Learning curves", "Learning curves by value", "Best so far", "Parameter sensitivity",
                      "Parallel coordinates", "Metric against each parameter", "Trial timeline",
                      "Parameter importance", "Pareto front"]
    page = (tmp_path / "out" / "report.html").read_text()
    assert "best trial (by last result)" in page and "best result (any iteration)" in page  # which best
    assert page.count('class="plot"') == len(titles)
    assert not os.path.exists(str(tmp_path / "out" / "report.html.tmp"))


def test_report_notes_plots_that_do_not_apply(tmp_path: Any) -> None:
    make_experiment(tmp_path, "plain", [
        {"id": 1, "config": {"x": 1}, "status": "TERMINATED", "results": curve([1.0, 0.5])}],
        space={"x": 1}, mode=None)
    titles = write_report(str(tmp_path / "plain"), str(tmp_path / "r.html"))
    assert titles == ["Learning curves", "Parallel coordinates", "Trial timeline"]
    page = (tmp_path / "r.html").read_text()
    assert "Best so far: left out" in page and "Parameter sensitivity: left out" in page


# -- RL-shaped views ----------------------------------------------------------------------------------


def _rl_curve(values: list[float], steps: int = 2048, **extra: Any) -> list[dict[str, Any]]:
    return [{"iteration": i + 1, "t": float(i + 1), "reward": v, "timesteps": steps * (i + 1), **extra}
            for i, v in enumerate(values)]


@pytest.fixture
def seeds(tmp_path: Any) -> ResultSet:
    """A PPO-style sweep: lr in {0.1, 0.01} x 3 seeds, reward against timesteps; reward = base + seed."""
    trials: list[dict[str, Any]] = []
    n = 0
    for lr, base in ((0.1, 10.0), (0.01, 20.0)):
        for seed in (0, 1, 2):
            n += 1
            trials.append({"id": n, "config": {"lr": lr, "seed": seed, "env_seed": 7 * seed},
                           "status": "TERMINATED",
                           "results": _rl_curve([base + seed + i for i in range(4)])})
    space = {"lr": grid([0.1, 0.01]), "seed": grid([0, 1, 2]), "env_seed": choice([0, 7, 14])}
    return make_experiment(tmp_path, "ppo", trials, space=space, metric="reward", mode="max")


def test_learning_curves_against_any_reported_counter(seeds: ResultSet) -> None:
    fig = pd_.learning_curves(seeds, x="timesteps")
    assert _trace(fig, kind="trial", trial_id=1)["x"] == [2048, 4096, 6144, 8192]
    assert fig["layout"]["xaxis"]["title"]["text"] == "timesteps"
    with pytest.raises(ConfigError, match="'episodes'.*timesteps"):
        pd_.learning_curves(seeds, x="episodes")  # names the key and what was reported


def test_seed_keys_are_recognised_by_name_or_declared() -> None:
    assert pd_.is_seed_key("seed") and pd_.is_seed_key("env_seed") and pd_.is_seed_key("ppo/Train_Seed")
    assert not pd_.is_seed_key("seedling") and not pd_.is_seed_key("lr") and not pd_.is_seed_key("seeds/x")


def test_seed_curves_mean_and_std_band_per_swept_value(seeds: ResultSet) -> None:
    fig = pd_.seed_curves(seeds, x="timesteps")
    assert fig is not None
    means = [t for t in fig["data"] if t["meta"]["kind"] == "seed_mean"]
    assert [t["name"] for t in means] == ["lr=0.1", "lr=0.01"]  # the swept value, not trial names
    lr1 = _trace(fig, kind="seed_mean", group="lr=0.1")
    assert lr1["x"] == [2048, 4096, 6144, 8192]
    assert lr1["y"] == pytest.approx([11.0, 12.0, 13.0, 14.0])  # mean over seeds 0, 1, 2 of 10 + seed + i
    assert lr1["meta"]["n"] == [3, 3, 3, 3] and lr1["meta"]["trial_ids"] == [1, 2, 3]
    high = _trace(fig, kind="seed_band_high", group="lr=0.1")
    low = _trace(fig, kind="seed_band_low", group="lr=0.1")
    assert high["y"] == pytest.approx([12.0, 13.0, 14.0, 15.0]) and high["fill"] == "tonexty"  # std of 0,1,2 is 1
    assert low["y"] == pytest.approx([10.0, 11.0, 12.0, 13.0])
    assert "env_seed" not in json.dumps([t["name"] for t in fig["data"]])  # a seed key is not a label


def test_seed_curves_ci95_band_and_interpolated_counters(tmp_path: Any) -> None:
    # seed 1 reports at other timesteps than seed 0: its value at seed 0's counters is interpolated
    rs = make_experiment(tmp_path, "ci", [
        {"id": 1, "config": {"lr": 1, "seed": 0}, "status": "TERMINATED",
         "results": _rl_curve([0.0, 10.0], steps=100)},
        {"id": 2, "config": {"lr": 1, "seed": 1}, "status": "TERMINATED",
         "results": _rl_curve([0.0, 20.0, 40.0], steps=150)}], metric="reward", mode="max")
    fig = pd_.seed_curves(rs, x="timesteps", band="ci95")
    assert fig is not None
    mean = _trace(fig, kind="seed_mean")
    assert mean["x"] == [100, 150, 200, 300, 450]
    # a seed counts where its own counters reach: seed 1 starts at 150, seed 0 ends at 200
    assert mean["meta"]["n"] == [1, 2, 2, 1, 1]
    assert mean["y"][1] == pytest.approx((5.0 + 0.0) / 2) and mean["y"][2] == pytest.approx((10 + 20 * 50 / 150) / 2)
    high = _trace(fig, kind="seed_band_high")
    values = [5.0, 0.0]
    half = 12.706 * statistics.stdev(values) / math.sqrt(2)  # Student's t, 1 degree of freedom
    assert high["y"][1] == pytest.approx(2.5 + half, rel=1e-3)
    assert high["y"][0] == pytest.approx(0.0)  # one seed: no band
    with pytest.raises(ConfigError, match="band"):
        pd_.seed_curves(rs, band="iqr")


def test_seed_curves_absent_without_repeated_seeds(pbt: ResultSet) -> None:
    assert pd_.seed_curves(pbt) is None  # no seed key at all


def test_sensitivity_final_is_selectable_and_shows_each_seed(seeds: ResultSet) -> None:
    last = _trace(pd_.sensitivity(seeds) or {}, kind="mean", param="lr")
    assert last["y"] == pytest.approx([14.0, 24.0])  # mean over seeds of the last reward
    best = _trace(pd_.sensitivity(seeds, final="best") or {}, kind="mean", param="lr")
    assert best["y"] == pytest.approx([14.0, 24.0])  # max mode: the best is the last here
    mean2 = _trace(pd_.sensitivity(seeds, final="mean_last", last_k=2) or {}, kind="mean", param="lr")
    assert mean2["y"] == pytest.approx([13.5, 23.5])
    points = _trace(pd_.sensitivity(seeds) or {}, kind="seeds", param="lr")
    assert sorted(zip(points["x"], points["y"])) == sorted(
        [(0.1, 13.0), (0.1, 14.0), (0.1, 15.0), (0.01, 23.0), (0.01, 24.0), (0.01, 25.0)])
    with pytest.raises(ConfigError, match="final"):
        pd_.sensitivity(seeds, final="median")


def test_sensitivity_best_final_in_min_mode(tmp_path: Any) -> None:
    rs = make_experiment(tmp_path, "dip", [
        {"id": 1, "config": {"lr": 1}, "status": "TERMINATED", "results": curve([5.0, 1.0, 3.0])}],
        space={"lr": grid([1])})
    assert _trace(pd_.sensitivity(rs, final="best") or {}, kind="mean")["y"] == [1.0]
    assert _trace(pd_.sensitivity(rs, final="last") or {}, kind="mean")["y"] == [3.0]


def test_a_seed_key_is_not_a_parameter_axis(seeds: ResultSet) -> None:
    fig = pd_.parallel_coordinates(seeds)
    assert fig is not None and [d["label"] for d in fig["data"][0]["dimensions"]] == ["lr", "reward"]
    scatter = pd_.scatter(seeds)
    assert scatter is not None and [t["meta"]["param"] for t in scatter["data"]] == ["lr"]
    declared = pd_.scatter(seeds, seeds=[])  # declared: no key is a seed
    assert declared is not None and [t["meta"]["param"] for t in declared["data"]] == ["lr", "seed", "env_seed"]


def test_only_a_schedulers_stop_is_stopped_early(tmp_path: Any) -> None:
    trials = [{"id": 1, "config": {"lr": 1}, "status": "TERMINATED", "results": curve([6, 5, 4, 3])},
              {"id": 2, "config": {"lr": 2}, "status": "TERMINATED", "results": curve([9, 8])},
              {"id": 3, "config": {"lr": 3}, "status": "TERMINATED", "results": curve([2, 1])},
              {"id": 4, "config": {"lr": 4}, "status": "TERMINATED", "results": curve([7, 6, 5])}]
    rs = make_experiment(tmp_path, "why", trials, events=[
        (3.0, "stop", 2, {"reason": "scheduler", "iteration": 2}),
        (3.0, "stop", 3, {"reason": "stop_rule", "iteration": 2})])
    fig = pd_.learning_curves(rs)
    assert _trace(fig, kind="trial", trial_id=2)["meta"]["stopped"] is True
    assert _trace(fig, kind="trial", trial_id=3)["meta"]["stopped"] is False  # the user's rule: solved
    assert _trace(fig, kind="trial", trial_id=4)["meta"]["stopped"] is False  # returned by itself
    assert _trace(fig, kind="trial", trial_id=3)["line"]["color"] != pd_.GREY


def solve(config: dict[str, Any]) -> None:
    for i in range(1, 7):
        ts.report({"loss": 1 / i, "solved": int(i >= config["solve_at"])})


def test_a_real_run_records_why_each_trial_stopped(tmp_path: Any) -> None:
    from tunesmith.schedulers._base import CONTINUE, STOP, Scheduler

    class StopTrialOneAt2(Scheduler):
        def decision_iteration(self, trial: Any) -> int:
            return trial.iteration + 1  # every worker waits for the decision on each result: no race

        def on_result(self, trial: Any, result: Any, view: Any) -> Any:
            return STOP if trial.id == 1 and result.iteration == 2 else CONTINUE

    rs = ts.run(solve, space={"solve_at": grid([3, 4, 9])}, metric="loss", mode="min", stop={"solved": 1},
                scheduler=StopTrialOneAt2(), name="why", storage_path=str(tmp_path), verbose=0)
    stops = {tid: data for _s, _t, kind, tid, data in rs._store.events() if kind == "stop"}
    assert stops == {1: {"reason": "scheduler", "iteration": 2}, 2: {"reason": "stop_rule", "iteration": 4}}
    fig = pd_.learning_curves(rs)
    assert [_trace(fig, kind="trial", trial_id=i)["meta"]["stopped"] for i in (1, 2, 3)] == [True, False, False]


# -- user strings are text ----------------------------------------------------------------------------

# plotly.js reads a few tags in every text it draws (a link, bold, a style...) and, in hover templates, trace
# names and titles, ``%{...}`` placeholders: these user strings must be drawn as they are, never read.
EVIL = '<a href="https://evil.example/phish">click me</a>'
PLAIN = "<i>plain</i>"
KEY = "<b>opt %{z}"  # no "/": a config key never has one (it separates nested keys)
METRIC = "<sub>loss</sub>%{z}"
OTHER = "<sup>lat</sup>%{meta}"
COUNTER = "<span style='color:red'>steps</span>"
RESOURCE = "<b>gpu</b>%{y}"
USER_STRINGS = (EVIL, PLAIN, KEY, METRIC, OTHER, COUNTER, RESOURCE)

# how plotly.js reads a text (svg_text_utils and Lib.templateString in tunesmith/plots/static/plotly.min.js)
_PLOTLY_TAG = re.compile(r"(<[^<>]*>)")
_PLOTLY_PLACEHOLDER = re.compile(r"%{([^\s%{}:]*)([:|\|][^}]*)?}")
_PLOTLY_ENTITY = re.compile(r"&(#\d+|#x[\da-fA-F]+|[a-z]+);")
_PLOTLY_ENTITIES = {"mu": "\u03bc", "amp": "&", "lt": "<", "gt": ">", "nbsp": "\xa0", "times": "\xd7",
                    "plusmn": "\xb1", "deg": "\xb0"}
OUR_TAGS = {"<br>", "<extra>", "</extra>"}  # what the figures' own hover templates use
OUR_PLACEHOLDERS = {"x", "y", "text", "customdata", "customdata[0]", "customdata[1]", "customdata[2]",
                    "customdata[3]"}


def _plotly_shows(text: str) -> str:
    """The characters plotly.js draws for ``text``: its tags and placeholders left out, entities decoded."""
    def entity(m: re.Match[str]) -> str:
        name = m.group(1)
        if name.startswith("#"):
            return chr(int(name[2:], 16) if name[1] == "x" else int(name[1:]))
        return _PLOTLY_ENTITIES.get(name, m.group(0))

    parts = _PLOTLY_TAG.split(_PLOTLY_PLACEHOLDER.sub("", text))
    return "".join(_PLOTLY_ENTITY.sub(entity, p) for p in parts if not _PLOTLY_TAG.fullmatch(p))


def _texts(node: Any, path: str = "") -> Any:
    """(path, string) of every string of a figure that plotly.js reads: not its ``meta`` (data for readers, never
    drawn), nor a parcoords axis's ``ticktext`` (drawn as plain text, read by no one: the browser test checks)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key != "meta" and not (key == "ticktext" and ".dimensions[" in path):
                yield from _texts(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _texts(value, f"{path}[{i}]")
    elif isinstance(node, str):
        yield path, node


def markup_experiment(root: Any) -> ResultSet:
    """A small experiment whose config keys and values, metrics, counter and resource hold plotly markup and
    placeholders: a grid of two text values x two learning rates x two seeds, and a PBT exploit."""
    trials: list[dict[str, Any]] = []
    n = 0
    for value in (EVIL, PLAIN):
        for lr in (0.1, 0.001):
            for seed in (0, 1):
                n += 1
                trials.append({"id": n, "config": {KEY: value, "lr": lr, "seed": seed}, "status": "TERMINATED",
                               "end": 5.0 + n, "resources": {RESOURCE: 1.0},
                               "results": [{"iteration": i, "t": float(i), METRIC: lr * 10 / i + seed + n / 10,
                                            OTHER: float(n % 3 + i), COUNTER: 100 * i} for i in range(1, 4)]})
    space = {KEY: grid([EVIL, PLAIN]), "lr": grid([0.1, 0.001]), "seed": grid([0, 1])}
    return make_experiment(root, "markup", trials, space=space, metric=METRIC, mode="min", events=[
        (2.5, "exploit", 2, {"source": 1, "iteration": 2, "old_config": {KEY: PLAIN, "lr": 0.1},
                             "config": {KEY: EVIL, "lr": 0.1}, "generation": 1})])


@pytest.fixture(scope="module")
def markup(tmp_path_factory: Any) -> ResultSet:
    return markup_experiment(tmp_path_factory.mktemp("markup"))


_MARKUP_FIGURES: dict[str, tuple[Any, tuple[str, ...]]] = {  # how to draw it, the user strings it shows
    "learning_curves": (lambda rs: pd_.learning_curves(rs, x=COUNTER), (METRIC, COUNTER)),
    "learning_curves_aggregated": (lambda rs: pd_.learning_curves(rs, x=COUNTER, max_trials=2), (METRIC, COUNTER)),
    "seed_curves": (lambda rs: pd_.seed_curves(rs, x=COUNTER), (METRIC, COUNTER, KEY, EVIL, PLAIN)),
    "best_so_far": (pd_.best_so_far, (METRIC,)),
    "sensitivity": (pd_.sensitivity, (METRIC, KEY, EVIL, PLAIN)),
    "parallel_coordinates": (pd_.parallel_coordinates, (METRIC, KEY, EVIL, PLAIN)),
    "scatter": (pd_.scatter, (METRIC, KEY, EVIL, PLAIN)),
    "timeline": (pd_.timeline, (RESOURCE,)),
    "importance": (pd_.importance, (METRIC, KEY)),
    "pareto_front": (lambda rs: pd_.pareto_front(rs, [METRIC, OTHER], ["min", "min"]), (METRIC, OTHER)),
    "lineage": (lambda rs: __import__("tunesmith.plots.lineage", fromlist=["x"]).lineage_graph_for(rs),
                (KEY, PLAIN)),  # a changed value is cut to 30 characters
}


@pytest.mark.parametrize("plot", list(_MARKUP_FIGURES))
def test_user_strings_are_drawn_as_text_never_read_as_markup_or_placeholders(markup: ResultSet, plot: str) -> None:
    make, shown = _MARKUP_FIGURES[plot]
    fig = make(markup)
    assert fig is not None
    texts = list(_texts(fig))
    for path, text in texts:
        for user in USER_STRINGS:
            assert user not in text, (path, text)
        tags = set(_PLOTLY_TAG.findall(text))
        assert tags <= OUR_TAGS, (path, text)
        assert {m.group(1) for m in _PLOTLY_PLACEHOLDER.finditer(text)} <= OUR_PLACEHOLDERS, (path, text)
        assert "&quot;" not in text and "&#x27;" not in text, (path, text)  # plotly.js decodes neither
    drawn = [_plotly_shows(text) for _path, text in texts]
    drawn += [text for trace in fig["data"] for d in trace.get("dimensions", []) for text in d.get("ticktext", [])]
    for user in shown:
        assert any(user in d for d in drawn), (plot, user)  # escaped, not left out


def test_escaped_category_values_stay_numbers_where_they_are_numbers(markup: ResultSet) -> None:
    fig = pd_.scatter(markup)
    assert fig is not None
    by_param = {t["meta"]["param"]: t for t in fig["data"]}
    assert by_param["lr"]["x"] == [0.1, 0.1, 0.001, 0.001] * 2
    assert [_plotly_shows(v) for v in by_param[KEY]["x"]] == [EVIL] * 4 + [PLAIN] * 4
    sens = pd_.sensitivity(markup)
    assert sens is not None
    means = {t["meta"]["param"]: t for t in sens["data"] if t["meta"]["kind"] == "mean"}
    assert all(isinstance(v, float) for v in means["lr"]["x"])
    axes = [sens["layout"][k] for k in sens["layout"] if k.startswith("xaxis")]
    categories = next(a["categoryarray"] for a in axes if a.get("type") == "category")
    assert [_plotly_shows(c) for c in categories] == [EVIL, PLAIN]
    assert set(means[KEY]["x"]) == set(categories)  # the values drawn are the axis's categories


def test_plotly_text_shows_any_string_as_it_is() -> None:
    from tunesmith.plots._figure import plotly_text

    for text in USER_STRINGS + ("a & b &lt; c", "100% {x}", "%{x:.2f} and %{customdata[0]}", "say \"hi\" 'x'",
                                "&#60;b&#62;", "<br>line"):
        shown_ = plotly_text(text)
        assert not _PLOTLY_TAG.search(shown_) and not _PLOTLY_PLACEHOLDER.search(shown_)
        assert _plotly_shows(shown_) == text
    assert plotly_text(0.5) == "0.5" and plotly_text(2.0) == "2.0"  # numbers as _label writes them


def test_the_reports_best_config_and_the_notebook_show_unicode_as_written(tmp_path: Any) -> None:
    """``ünïcode_kéy: naïve`` in the report's facts and a notebook cell, not ``"\\u00fcn\\u00efcode..."``."""
    from tunesmith.plots.report import write_report

    rs = make_experiment(tmp_path, "uni", [
        {"id": 1, "config": {"ünïcode_kéy": {"naïve": "日本"}}, "status": "TERMINATED",
         "results": [{"iteration": 1, "t": 1.0, "loss": 0.5}]}])
    out = tmp_path / "r.html"
    write_report(rs, str(out))
    page = out.read_text(encoding="utf-8")
    row = page[page.index("<th>best config</th>"):]
    assert row[:row.index("</tr>")] == ('<th>best config</th><td>{&quot;ünïcode_kéy&quot;: {&quot;naïve&quot;: '
                                        '&quot;日本&quot;}}</td>')
    html = rs._repr_html_()
    assert "日本" in html and "\\u65e5" not in html


# -- values that print alike, keys a trial lacks ------------------------------------------------------

ALIKE = ["1", 1, 1.0, "true", True, "null", None, ""]
ALIKE_LABELS = ['"1"', "1", "1.0", '"true"', "true", '"null"', "null", '""']


def test_values_that_print_alike_stay_apart_in_the_report(tmp_path: Any) -> None:
    """Text "1", the int 1 and the float 1.0, text "true" and true, text "null" and null, and empty text are
    distinct grid options: each its own category, recognisable (text quoted where it would read as another value),
    in parallel coordinates, the sensitivity plot (one mean each, not n=2) and the scatter."""
    rs = make_experiment(tmp_path, "alike", [
        {"id": i + 1, "config": {"b": v}, "status": "TERMINATED", "results": curve([float(i)])}
        for i, v in enumerate(ALIKE)], space={"b": grid(ALIKE)})
    par = pd_.parallel_coordinates(rs)
    assert par is not None
    dim = par["data"][0]["dimensions"][0]
    assert [dim["ticktext"][v] for v in dim["values"]] == ALIKE_LABELS
    sens = pd_.sensitivity(rs)
    assert sens is not None
    mean = _trace(sens, kind="mean")
    assert mean["x"] == ALIKE_LABELS and mean["y"] == [float(i) for i in range(len(ALIKE))]
    assert mean["meta"]["n"] == [1] * len(ALIKE)
    assert sens["layout"]["xaxis"]["categoryarray"] == ALIKE_LABELS
    assert _trace(sens, kind="seeds")["x"] == ALIKE_LABELS
    sc = pd_.scatter(rs)
    assert sc is not None
    assert sc["data"][0]["x"] == ALIKE_LABELS and sc["layout"]["xaxis"]["type"] == "category"


def test_a_numeric_parameter_some_trials_lack_stays_numeric(tmp_path: Any) -> None:
    """A conditional space: trials of the other branch lack ``model/lr``. The scatter leaves them out of that
    subplot (a numeric axis); parallel coordinates draw them below the axis's values at a "(missing)" tick."""
    from tunesmith.space import randint

    configs = [{"model": {"lr": 0.01}}, {"model": {"depth": 2}}, {"model": {"lr": 0.05}}, {"model": {"depth": 4}}]
    rs = make_experiment(tmp_path, "cond", [
        {"id": i + 1, "config": c, "status": "TERMINATED", "results": curve([float(i)])}
        for i, c in enumerate(configs)],
        space={"model": choice([{"lr": uniform(0.001, 0.1)}, {"depth": randint(1, 5)}])})
    sc = pd_.scatter(rs)
    assert sc is not None
    lr = _trace(sc, kind="scatter", param="model/lr")
    assert lr["x"] == [0.01, 0.05] and lr["meta"]["trial_ids"] == [1, 3] and lr["y"] == [0.0, 2.0]
    axis = sc["layout"]["xaxis" if lr["xaxis"] == "x" else "xaxis" + lr["xaxis"][1:]]
    assert axis.get("type") != "category"
    par = pd_.parallel_coordinates(rs)
    assert par is not None
    dims = {d["label"]: d for d in par["data"][0]["dimensions"]}
    for key, present in (("model/lr", {0: 0.01, 2: 0.05}), ("model/depth", {1: 2.0, 3: 4.0})):
        dim = dims[key]
        assert all(isinstance(v, float) for v in dim["values"])
        assert {i: v for i, v in enumerate(dim["values"]) if i in present} == present
        gone = [v for i, v in enumerate(dim["values"]) if i not in present]
        assert len(set(gone)) == 1 and gone[0] < min(present.values())  # below the values, all at one place
        assert dim["range"][0] <= gone[0] and dim["range"][1] >= max(present.values())
        assert dim["ticktext"][dim["tickvals"].index(gone[0])] == "(missing)"
        assert all(float(t) == v for t, v in zip(dim["ticktext"], dim["tickvals"]) if v != gone[0])


def test_a_text_that_reads_as_another_value_is_quoted() -> None:
    from tunesmith.plots._figure import MISSING, _label

    assert [_label(v) for v in ALIKE] == ALIKE_LABELS
    assert _label("adam") == "adam" and _label("1e-3") == '"1e-3"' and _label("[1, 2]") == '"[1, 2]"'
    assert _label([1, 2]) == "[1, 2]" and _label("NaN") == '"NaN"' and _label(math.nan) == "NaN"
    assert _label("(missing)") == '"(missing)"' and _label(MISSING) == "(missing)"
    assert _label("naïve 1") == "naïve 1" and _label('"x"') == '"\\"x\\""'


def test_control_characters_in_a_metric_and_experiment_name_are_written_as_escapes_in_the_report(tmp_path: Any
                                                                                                 ) -> None:
    """NUL and ESC in a metric name (and ESC in a folder's name) reached the report's facts and notes as raw
    characters (a NUL that HTML turns into U+FFFD, an ESC that a terminal paging the file obeys): they are
    written as their escapes, \\x00 and \\x1b, as the notebook's tables and the CLI write them."""
    metric = "lo\x00ss\x1b[31m"
    rs = make_experiment(tmp_path, "ex\x1bp", [
        {"id": n, "config": {"x": n}, "status": "TERMINATED",
         "results": [{"iteration": i, "t": float(i), metric: 1.0 / (n + i)} for i in (1, 2)]} for n in (1, 2)],
        space={"x": ts.grid([1, 2])}, metric=metric)
    report = str(tmp_path / "r.html")
    write_report(rs, report)
    with open(report, encoding="utf-8") as f:
        page = f.read()
    assert "\x00" not in page and "\x1b" not in page
    assert "metric</th><td>lo\\x00ss\\x1b[31m (min)</td>" in page, page[:3000]
    assert "<title>tunesmith report: ex\\x1bp</title>" in page
    assert "trial_00002 at iteration 2: lo\\x00ss\\x1b[31m=" in page


@pytest.mark.parametrize(("mode", "extreme"), [("min", -math.inf), ("max", math.inf)])
def test_the_reports_best_result_at_any_iteration_is_get_bests_with_infinities_too(tmp_path: Any, mode: str,
                                                                                   extreme: float) -> None:
    """An infinite result (a loss that went to -inf) is what ``get_best(scope="all")`` ranks best; the report's
    "best result (any iteration)" read the metric's column, where infinities are NaN, and named another."""
    rs = make_experiment(tmp_path, "inf", [
        {"id": 1, "config": {"x": 1}, "status": "TERMINATED", "results": curve([3.0, 2.0])},
        {"id": 2, "config": {"x": 2}, "status": "TERMINATED", "results": curve([1.0, extreme, 4.0])}],
        space={"x": grid([1, 2])}, mode=mode)
    best = ts.load(rs.path).get_best("loss", mode, scope="all")
    assert (best.id, best.metrics["training_iteration"], best.metrics["loss"]) == (2, 2, extreme)
    write_report(rs, str(tmp_path / "r.html"))
    page = (tmp_path / "r.html").read_text()
    assert f"best result (any iteration)</th><td>trial_00002 at iteration 2: loss={extreme}</td>" in page, \
        re.findall(r"best result \(any iteration\).*?</td>", page)
