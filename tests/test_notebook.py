"""Results in Jupyter: HTML tables (escaped, masked, bounded), inline plots, the dashboard frame, and the example
notebook executed on a real kernel."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import pytest

from tunesmith import _notebook, dashboard
from tunesmith._errors import ConfigError
from tunesmith.plots import data as plot_data
from tunesmith.results import ResultSet

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "plots"))
from test_plot_data import curve, make_experiment  # noqa: E402  (tests have no packages)

EXAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, "examples", "tunesmith_quickstart.ipynb")
EVIL = '<script>alert("x")</script>'
EVIL_KEY = "<img src=x onerror=alert(1)>"  # keys cannot hold "/" (it nests)


@pytest.fixture
def hostile(tmp_path: Any) -> ResultSet:
    """Config keys and values, a metric and an error that carry markup, and a secret."""
    return make_experiment(tmp_path, "hostile", [
        {"id": 1, "config": {"name": EVIL, "api_key": "sk-verysecret-123", EVIL_KEY: 1}, "status": "ERROR",
         "results": curve([1.0, 0.5])},
        {"id": 2, "config": {"name": "plain", "api_key": "sk-verysecret-123", EVIL_KEY: 2}, "status": "TERMINATED",
         "results": curve([0.4, 0.2])}])


def test_result_set_html_escapes_every_value_and_masks_secrets(hostile: ResultSet) -> None:
    page = hostile._repr_html_()
    assert "<script>" not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    assert "sk-verysecret-123" not in page and "***" in page
    assert "trial_00001" in page and "trial_00002 ★" in page  # the best (by last result) is marked
    assert "best by last result: trial_00002 loss=0.2 (min)" in page


def test_trial_html_escapes_masks_and_shows_the_error(hostile: ResultSet) -> None:
    failed = hostile.trial(1)
    page = failed._repr_html_()
    assert "<script>" not in page and "&lt;script&gt;" in page and "<img" not in page
    assert "sk-verysecret-123" not in page and "config/api_key" in page
    assert "ValueError: boom" in page and "ERROR" in page


def test_result_set_html_is_bounded(tmp_path: Any) -> None:
    rs = make_experiment(tmp_path, "many", [
        {"id": i, "config": {"x": i}, "status": "TERMINATED", "results": curve([float(i)])} for i in range(1, 31)])
    page = _notebook.result_set_html(rs, max_rows=5)
    assert page.count("<tr><td>") == 5 and "… and 25 more trials" in page
    assert page.count("<tr><td>trial_000") == 5
    assert len(rs._repr_html_()) < 20_000  # MAX_ROWS by default


def test_plot_accessor_returns_the_reports_figures(hostile: ResultSet) -> None:
    fig = hostile.plot.learning_curves()
    assert isinstance(fig, _notebook.PlotFigure)
    assert fig.figure == plot_data.learning_curves(hostile)  # the same pure function as the report
    bundle = fig._repr_mimebundle_(include=[_notebook.PLOTLY_MIME])
    assert bundle[_notebook.PLOTLY_MIME]["data"][0]["meta"]["trial_id"] == 1
    html = fig.to_html()
    assert "Plotly.newPlot" in html and "</script><script>" not in html.split("var fig=")[1].split(";")[0]
    assert hostile.plot.sensitivity() is None  # does not apply: no grid
    assert "learning_curves()" in repr(hostile.plot)


def test_plotly_js_is_sent_once_per_kernel(hostile: ResultSet, monkeypatch: Any) -> None:
    monkeypatch.setattr(_notebook, "_plotly_sent", False)
    first = hostile.plot.timeline().to_html()
    second = hostile.plot.timeline().to_html()
    assert "plotly.js v4" in first and len(first) > 1_000_000
    assert "plotly.js v4" not in second and len(second) < 100_000 and "window.Plotly" in second


def test_a_figure_cannot_close_its_script_element(tmp_path: Any) -> None:
    rs = make_experiment(tmp_path, "names", [
        {"id": 1, "config": {"x": 1}, "status": "TERMINATED", "results": curve([1.0])}], metric=f"loss{EVIL}")
    rs_plain = make_experiment(tmp_path, "plain2", [
        {"id": 1, "config": {"x": 1}, "status": "TERMINATED",
         "results": [{"iteration": 1, "t": 1.0, f"loss{EVIL}": 1.0}]}], metric=f"loss{EVIL}")
    html = rs_plain.plot.learning_curves().to_html()
    body = html.split("var fig=", 1)[1]
    assert "</script" not in body.split("function draw")[0]  # the JSON holds \u003c/script
    assert rs.plot.learning_curves(metric="loss") is not None


def test_dashboard_frame_escapes_and_checks_the_url() -> None:
    frame = dashboard.show('http://127.0.0.1:8788/?a="><script>x</script>', height=400)
    page = frame._repr_html_()
    assert "<script>" not in page and 'height="400"' in page and page.startswith("<iframe ")
    with pytest.raises(ConfigError, match="url"):
        dashboard.show("javascript:alert(1)")
    with pytest.raises(ConfigError, match="height"):
        dashboard.show("http://127.0.0.1:1/", height=True)  # type: ignore[arg-type]


@pytest.mark.timeout(180)
def test_the_example_notebook_runs_on_a_real_kernel(tmp_path: Any, monkeypatch: Any) -> None:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(EXAMPLE, as_version=4)
    env_path = os.environ.get("PYTHONPATH", "")
    here = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))
    monkeypatch.setenv("PYTHONPATH", here + (os.pathsep + env_path if env_path else ""))  # the kernel imports this tree
    nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [(i, o) for i, cell in enumerate(nb.cells) if cell.cell_type == "code" for o in cell.outputs]
    assert [o for _i, o in outputs if o.output_type == "error"] == []
    html = {i: o.data["text/html"] for i, o in outputs if "text/html" in o.get("data", {})}
    code = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    run_cell, table_cell, best_cell, seeds_cell, curves_cell = code
    # progress: one display, updated in place (its last state is the finished table), not a line every 10 s
    progress = [o for i, o in outputs if i == run_cell and o.output_type in ("display_data", "update_display_data")]
    assert len(progress) == 1 and "tunesmith-progress" in progress[0].data["text/html"]
    assert "6 terminated" in progress[0].data["text/html"]
    text = "".join(o.get("text", "") for i, o in outputs if i == run_cell and o.output_type == "stream")
    assert "tunesmith: experiment" not in text and " done in " in text  # the end line, as text
    assert 'class="tunesmith-table"' in html[table_cell] and "6 trials (6 terminated)" in html[table_cell]
    assert "config/lr" in html[best_cell]
    assert "plotly.js v4" in html[seeds_cell] and "Plotly.newPlot" in html[seeds_cell]
    seeds = next(o for i, o in outputs if i == seeds_cell and "text/html" in o.get("data", {}))
    assert sorted(seeds.data) == ["text/html", "text/plain"]  # the figure once (no plotly MIME copy)
    figure = _figure_in(seeds.data)
    assert [t["name"] for t in figure["data"] if t["meta"]["kind"] == "seed_mean"] == ["lr=0.01", "lr=0.1"]
    assert "plotly.js v4" not in html[curves_cell] and "Plotly.newPlot" in html[curves_cell]  # sent once
    assert json.loads(json.dumps(figure))  # plain JSON in the saved notebook


@pytest.mark.timeout(90)
def test_inline_figures_draw_in_a_real_browser_with_plotly_js_sent_once(tmp_path: Any, monkeypatch: Any) -> None:
    """Two figures' outputs as a notebook page holds them: the first carries plotly.js, the second waits for it."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    from browser_helpers import ARGS, CHROMIUM, require_chromium

    require_chromium()
    rs = make_experiment(tmp_path, "draw", [
        {"id": i, "config": {"lr": 10.0 ** -i, "seed": i % 2}, "status": "TERMINATED",
         "results": curve([1.0 / i, 0.5 / i, 0.2 / i])} for i in range(1, 5)])
    monkeypatch.setattr(_notebook, "_plotly_sent", False)
    cells = [rs.plot.learning_curves().to_html(), rs.plot.parallel_coordinates().to_html()]  # type: ignore[union-attr]
    page_file = tmp_path / "cells.html"
    page_file.write_text("<!DOCTYPE html><html><body>" + "".join(f"<div class='cell'>{c}</div>" for c in cells)
                         + "</body></html>")
    problems: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, timeout=30_000)
        try:
            page = browser.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.route("**/*", lambda r: r.continue_() if r.request.url.startswith("file://") else r.abort())
            page.goto("file://" + str(page_file), wait_until="load", timeout=30_000)
            page.wait_for_function("() => document.querySelectorAll('.cell .js-plotly-plot .main-svg').length >= 2",
                                   timeout=30_000)
            traces = page.evaluate("() => [...document.querySelectorAll('.js-plotly-plot')].map(d => d.data.length)")
        finally:
            browser.close()
    assert problems == []
    assert traces == [4, 1]  # four trials' lines; one parcoords trace


def test_trial_html_shows_control_characters_escaped(tmp_path: Any) -> None:
    rs = make_experiment(tmp_path, "ctl", [
        {"id": 1, "config": {"name": "a\x1b[2Jb\x07"}, "status": "ERROR", "results": curve([1.0, 0.5])}])
    for page in (rs.trial(1)._repr_html_(), rs._repr_html_()):
        assert "\x1b" not in page and "\x07" not in page
        assert "a\\x1b[2Jb\\x07" in page
    assert "ValueError: boom" in rs.trial(1)._repr_html_()  # newlines of the traceback kept


def _long_strings(config: dict[str, Any]) -> None:
    import tunesmith as ts

    if config["i"] % 2:
        raise ValueError("E" * 50_000)  # one line of 50 KB
    ts.report({"loss": float(config["i"]), "note": "N" * 50_000})


def test_a_long_value_is_cut_in_the_notebook_tables_not_written_whole(results_dir: Any) -> None:
    """A 50 KB prompt in each config and a 50 KB one-line error made a 20-row ResultSet table 1.5 MB (7.4 MB with
    ten such keys): each cell is cut, saying how long the value was (the value itself is in the store)."""
    import tunesmith as ts

    rs = ts.run(_long_strings, {"i": ts.grid(list(range(30))), "prompt": "P" * 50_000}, verbose=0,
                max_concurrent=2)
    table = rs._repr_html_()
    assert len(table) < 60_000, len(table)
    assert "(50000 characters)" in table  # said, not silently dropped
    one = rs.trial(2)._repr_html_()
    assert len(one) < 10_000, len(one)
    assert "(50000 characters)" in one
    assert rs.trial(2).config["prompt"] == "P" * 50_000  # the data is whole


# ------------------------------------------------------------------------------ inline figures at scale

_OPTS = ["adam", "sgd", "rms", "lamb"]


def _simulated(config: dict[str, Any], ctx: Any) -> Any:
    rate = config["lr"] * (1 + _OPTS.index(config["opt"])) * 10
    for i in range(ctx.iteration, 3):
        noise = 0.01 * ((config["seed"] * 7919 + config["width"] * 31 + i * 104729) % 97) / 97
        yield ({"loss": 1.0 / (1.0 + rate * (i + 1)) + noise, "latency": config["width"] / 64 + 0.001 * i}, 1.0)


@pytest.fixture(scope="module")
def large(tmp_path_factory: Any) -> ResultSet:
    """4,000 trials (a grid of 4 optimizers x 5 seeds, 200 samples of lr and width), 3 results each, in
    virtual time: more trials than any per-trial plot draws."""
    import tunesmith as ts

    return ts.run(_simulated, {"opt": ts.grid(_OPTS), "seed": ts.grid(list(range(5))),
                               "lr": ts.loguniform(1e-4, 1e-1), "width": ts.randint(8, 64)},
                  metric="loss", mode="min", num_samples=200, backend=ts.SimulatedBackend({"cpu": 64}, seed=0),
                  name="large", storage_path=str(tmp_path_factory.mktemp("large")), verbose=0, seed=0)


_KINDS = {
    "learning_curves": lambda p: p.learning_curves(), "best_so_far": lambda p: p.best_so_far(),
    "sensitivity": lambda p: p.sensitivity(), "parallel_coordinates": lambda p: p.parallel_coordinates(),
    "scatter": lambda p: p.scatter(), "timeline": lambda p: p.timeline(),
    "pareto_front": lambda p: p.pareto_front(["loss", "latency"], ["min", "min"])}


def _figure_in(bundle: dict[str, Any]) -> dict[str, Any]:
    """The figure a display bundle carries: the plotly MIME type's, else the one inside the HTML's script."""
    if _notebook.PLOTLY_MIME in bundle:
        return bundle[_notebook.PLOTLY_MIME]  # type: ignore[no-any-return]
    return json.loads(bundle["text/html"].split("var fig=", 1)[1].split(",n=0;", 1)[0])  # type: ignore[no-any-return]


def test_a_figure_is_sent_once_in_one_mime_type(hostile: ResultSet, monkeypatch: Any) -> None:
    """A bundle carried the figure twice (as the plotly MIME type and inside the HTML): a saved notebook held
    each plot twice. Now one or the other, with text/plain."""
    monkeypatch.delenv("VSCODE_PID", raising=False)
    fig = hostile.plot.learning_curves()
    bundle = fig._repr_mimebundle_()
    assert sorted(bundle) == ["text/html", "text/plain"]  # the vendored plotly.js draws it everywhere
    assert bundle["text/html"].count('"trial_id":1') == 1
    assert _figure_in(bundle)["data"][0]["meta"]["trial_id"] == 1
    # VS Code renders plotly's MIME type itself (as plotly's own default renderer there assumes): no plotly.js
    monkeypatch.setenv("VSCODE_PID", "1")
    monkeypatch.setattr(_notebook, "_plotly_sent", False)
    bundle = fig._repr_mimebundle_()
    assert sorted(bundle) == [_notebook.PLOTLY_MIME, "text/plain"]
    assert not _notebook._plotly_sent  # plotly.js still goes with the first HTML figure
    assert json.loads(json.dumps(bundle[_notebook.PLOTLY_MIME])) == _figure_in(bundle)
    # display(fig, include=[...]) / exclude=[...] choose
    monkeypatch.delenv("VSCODE_PID")
    assert sorted(fig._repr_mimebundle_(include=[_notebook.PLOTLY_MIME])) == [_notebook.PLOTLY_MIME, "text/plain"]
    assert sorted(fig._repr_mimebundle_(exclude=["text/html"])) == [_notebook.PLOTLY_MIME, "text/plain"]
    # what IPython sends: it adds any _repr_*_ type a bundle lacks, so a figure has no _repr_html_
    from IPython.core.formatters import DisplayFormatter

    for env in ({}, {"VSCODE_PID": "1"}):
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        data, _meta = DisplayFormatter().format(fig)
        assert len(set(data) & {"text/html", _notebook.PLOTLY_MIME}) == 1, sorted(data)


@pytest.mark.timeout(120)
def test_inline_figures_of_a_large_experiment_are_bounded_and_keep_the_best(large: ResultSet,
                                                                            monkeypatch: Any) -> None:
    """4,000 trials: the per-trial plots (scatter, parallel coordinates, Pareto front, the sensitivity plot's
    points, the timeline's bars) drew every trial (20,000 trials: 0.9-2.9 MB a figure, each sent twice); now at most
    ``MAX_TRIAL_MARKS`` trials each, always the best ones and each stretch's best and worst, while the means
    and bands still count every trial."""
    monkeypatch.delenv("VSCODE_PID", raising=False)
    monkeypatch.setattr(_notebook, "_plotly_sent", True)  # plotly.js (4.8 MB, once a kernel) apart
    best = sorted(large.trials, key=lambda t: t.last_result["loss"])[:plot_data.TOP_TRIALS]
    best_ids = {t.id for t in best}
    assert len(large.trials) == 4_000 > plot_data.MAX_TRIAL_MARKS
    for kind, make in _KINDS.items():
        fig = make(large.plot)
        assert fig is not None, kind
        bundle = fig._repr_mimebundle_()
        size = sum(len(v.encode()) for v in bundle.values())
        assert size < 400_000, (kind, size)  # before: every trial drawn, the figure twice in the bundle
        drawn = _figure_in(bundle)
        assert drawn == json.loads(fig.to_json())
        for trace in drawn["data"]:
            ids = trace["meta"].get("trial_ids")
            if ids is not None and trace["meta"]["kind"] in ("scatter", "parcoords", "trials", "seeds"):
                assert len(ids) <= plot_data.MAX_TRIAL_MARKS, kind
                if trace["meta"]["kind"] != "seeds" or trace["meta"]["group"] == "":
                    assert best_ids <= set(ids), (kind, trace["meta"])
    # the timeline: at most MAX_TRIAL_MARKS bars, consecutive trials of a slot merged into spans that count
    # them, the best trials each a bar of their own (before: a bar per trial, 2 MB at 20,000 trials)
    timeline = [t for t in large.plot.timeline().figure["data"] if t["meta"]["kind"] == "timeline"]
    assert sum(len(t["y"]) for t in timeline) <= plot_data.MAX_TRIAL_MARKS
    assert best_ids <= {i for t in timeline for i in t["meta"]["trial_ids"]}
    assert sum(n for t in timeline for n in t["meta"]["counts"]) == 4_000
    lines = large.plot.learning_curves().figure["data"]
    assert {t["meta"]["q"] for t in lines if t["meta"]["kind"] == "quantile"} == {0.1, 0.25, 0.5, 0.75, 0.9}
    assert {t["meta"]["trial_id"] for t in lines if t["meta"]["kind"] == "trial"} == best_ids
    sens = large.plot.sensitivity().figure  # type: ignore[union-attr]
    means = [t for t in sens["data"] if t["meta"]["kind"] == "mean"]
    assert sum(n for t in means for n in t["meta"]["n"]) == 4_000  # the bands and means count every trial
    assert {t["meta"]["kind"] for t in sens["data"]} >= {"band_low", "band_high", "mean", "seeds"}
    front = large.plot.pareto_front(["loss", "latency"], ["min", "min"]).figure["data"]
    assert next(t for t in front if t["meta"]["kind"] == "front")["meta"]["trial_ids"] == sorted(
        (t.id for t in large.pareto_front(["loss", "latency"], ["min", "min"])),
        key=lambda i: (large.trial(i).last_result["loss"], large.trial(i).last_result["latency"], i))
    scatter = large.plot.scatter().figure  # type: ignore[union-attr]
    assert f"of {len(large.trials):,} trials" in scatter["layout"]["title"]["text"]  # says what it shows
